"""ISO 8601 durations for account retention ("P13M" = 13 calendar months; seconds for tests)."""

from __future__ import annotations

import re
from datetime import datetime

from dateutil.relativedelta import relativedelta

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


MAX_YEARS = 100
MAX_DURATION = relativedelta(years=MAX_YEARS)
_REFERENCE = datetime(2000, 1, 1)


def parse_duration(text: str) -> relativedelta:
    """Raises ValueError for anything that is not a positive ISO 8601 duration."""
    m = _DURATION.fullmatch(text or "")
    if not m:
        raise ValueError(f"not an ISO 8601 duration: {text!r} (examples: P13M, P30D, PT5S)")
    parts = {k: int(v) for k, v in m.groupdict().items() if v}
    if not any(parts.values()):
        raise ValueError("retention must be longer than zero")
    try:
        delta = relativedelta(**parts)
        too_long = _REFERENCE + delta > _REFERENCE + MAX_DURATION
    except (OverflowError, ValueError):
        too_long = True
    if too_long:
        # An absurd value (P999999999D) would overflow every date computed from it, in every sweep.
        raise ValueError(f"{text!r} is longer than {MAX_YEARS} years")
    return delta


def expires_at(created: datetime, retention: str) -> datetime:
    """created + retention in calendar terms: 2025-01-31 + P1M = 2025-02-28."""
    return created + parse_duration(retention)


def interval_args(retention: str) -> dict[str, int]:
    """The duration as PostgreSQL make_interval() arguments, so the database computes expiry times
    with the same calendar arithmetic (months first, clamped to the month's last day)."""
    d = parse_duration(retention)
    return {
        "years": d.years,
        "months": d.months,
        "days": d.days,
        "hours": d.hours,
        "mins": d.minutes,
        "secs": d.seconds,
    }


# SQL for `timestamp + retention` with the arguments of interval_args() as named parameters.
MAKE_INTERVAL_SQL = (
    "make_interval(years => %(years)s, months => %(months)s, days => %(days)s, "
    "hours => %(hours)s, mins => %(mins)s, secs => %(secs)s)"
)
