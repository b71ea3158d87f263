"""Account retention as ISO 8601 durations: calendar months, not 30-day blocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.contract.durations import expires_at, parse_duration


def at(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    "created, retention, expected",
    [
        (at(2025, 1, 31), "P13M", at(2026, 2, 28)),  # month end clamps to the shorter month
        (at(2023, 1, 31), "P13M", at(2024, 2, 29)),  # ... and to the leap day in a leap year
        (at(2024, 2, 29), "P13M", at(2025, 3, 29)),  # from a leap day
        (at(2024, 2, 29), "P12M", at(2025, 2, 28)),  # a leap day's anniversary in a common year
        (at(2025, 3, 31, 23, 59, 59), "P13M", at(2026, 4, 30, 23, 59, 59)),
        (at(2025, 12, 15, 8, 30), "P13M", at(2027, 1, 15, 8, 30)),  # across the year end
        (at(2025, 1, 31), "P1M", at(2025, 2, 28)),
        (at(2025, 1, 1), "P1Y1M", at(2026, 2, 1)),
        (at(2025, 1, 1), "P30D", at(2025, 1, 31)),
        (at(2025, 1, 1), "PT5S", at(2025, 1, 1, 0, 0, 5)),
        (at(2025, 1, 1), "P1DT2H3M4S", at(2025, 1, 2, 2, 3, 4)),
        (at(2025, 1, 1), "P2W", at(2025, 1, 15)),
    ],
)
def test_expiry_in_calendar_terms(created, retention, expected):
    assert expires_at(created, retention) == expected


def test_thirteen_months_is_not_a_fixed_number_of_days():
    spans = {(expires_at(at(2025, m, 1), "P13M") - at(2025, m, 1)).days for m in range(1, 13)}
    assert len(spans) > 1 and min(spans) >= 393 and max(spans) <= 397
    assert expires_at(at(2025, 1, 1), "P13M") - at(2025, 1, 1) == timedelta(days=396)


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "13M", "P13", "P-1M", "P1.5M", "PT0S", "P0D", "P1MT", "p13m", "P13M ", "P13M\n", None]
)
def test_invalid_or_empty_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["P999999999D", "PT99999999999999S", "P101Y", "P1201M", "P99999999999999999999Y"])
def test_absurdly_long_retentions_are_refused_not_left_to_overflow_every_sweep(text):
    with pytest.raises(ValueError, match="longer than 100 years"):
        parse_duration(text)


def test_the_longest_retention_allowed_still_computes():
    assert expires_at(at(2025, 1, 1), "P100Y") == at(2125, 1, 1)
