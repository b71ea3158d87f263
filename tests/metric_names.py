"""The series names the code exports, read from its source (every Counter, Gauge, Histogram of
shared/ and services/), for the tests of the alert rules and the dashboard."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_DECLARED = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(fileshare_\w+)\"")
READ = re.compile(r"\bfileshare_\w+")
LAUNCHER_METRIC = "fileshare_embedded_broker_resident_bytes"


def exported_names() -> set[str]:
    """A Counter's name gets `_total` (prometheus_client adds it), a Histogram's its `_bucket`,
    `_sum` and `_count`."""
    names = set()
    for path in [*REPO.glob("shared/**/*.py"), *REPO.glob("services/**/*.py")]:
        for kind, name in _DECLARED.findall(path.read_text()):
            if kind == "Counter":
                names.add(name if name.endswith("_total") else name + "_total")
            elif kind in ("Histogram", "Summary"):
                names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(name)
    return names
