"""ISO 8601 durations for account retention ("P13M" = 13 calendar months; seconds for tests)."""
from __future__ import annotations

import re
from datetime import datetime

from dateutil.relativedelta import relativedelta

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$")


def parse_duration(text: str) -> relativedelta:
    """Raises ValueError for anything that is not a positive ISO 8601 duration."""
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"not an ISO 8601 duration: {text!r} (examples: P13M, P30D, PT5S)")
    parts = {k: int(v) for k, v in m.groupdict().items() if v}
    delta = relativedelta(**parts)
    if not any(parts.values()):
        raise ValueError("retention must be longer than zero")
    return delta


def expires_at(created: datetime, retention: str) -> datetime:
    """created + retention in calendar terms: 2025-01-31 + P1M = 2025-02-28."""
    return created + parse_duration(retention)
