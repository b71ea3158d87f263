"""The reference in docs/ builds with MkDocs in strict mode (no broken link, anchor or missing page lands),
and its configuration page lists exactly the settings the code reads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_docs_build_strictly(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_the_configuration_page_has_a_row_for_every_setting_and_only_those():
    from shared.settings import Settings

    rows = re.findall(r"^\| (.+?) \|", (REPO / "docs" / "configuration.md").read_text(), re.M)
    documented = {name for row in rows for name in re.findall(r"`(FS_[A-Z0-9_]+)`", row)}
    assert documented == {f"FS_{field.upper()}" for field in Settings.model_fields}
