"""Retention's pure parts: the lifecycle safety net and the status summary. (The handlers run on a
real database: tests/integration/test_retention_handlers.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

from services.retention.handlers import safety_net_days
from services.retention.status import summarize
from shared.contract import events as ev

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_safety_net_covers_the_longest_retention_in_use():
    documents = {}
    assert safety_net_days(documents, NOW) == 396 + 1  # 2026-03-01 + P13M = 2027-04-01, plus a day of grace
    documents["short"] = ev.AccountSettingsDocument(retention="PT5S")
    assert safety_net_days(documents, NOW) == 397
    documents["long"] = ev.AccountSettingsDocument(retention="P2Y")
    assert safety_net_days(documents, NOW) == 731 + 1  # 2028 is a leap year


def test_status_summarizes_files_per_account_with_oldest_age_and_next_expiry():
    rows = [
        {
            "account_id": "a",
            "files": 2,
            "bytes": 22,
            "consumers": 2,
            "oldest_created": datetime(2026, 1, 31, tzinfo=UTC),
            "next_expiry": datetime(2026, 2, 28, tzinfo=UTC),
        },
        {
            "account_id": "b",
            "files": 1,
            "bytes": 1,
            "consumers": 1,
            "oldest_created": datetime(2026, 2, 1, tzinfo=UTC),
            "next_expiry": datetime(2027, 3, 1, tzinfo=UTC),
        },
    ]
    status = summarize(rows, {"a": ev.AccountSettingsDocument(retention="P1M")}, NOW)
    a, b = status["accounts"]
    assert (a["account_id"], a["files"], a["bytes"], a["consumers"], a["retention"]) == ("a", 2, 22, 2, "P1M")
    assert a["oldest_file_age_seconds"] == (NOW - datetime(2026, 1, 31, tzinfo=UTC)).total_seconds()
    assert a["next_expiry"] == "2026-02-28T00:00:00+00:00" and a["next_expiry_overdue"]
    assert (b["account_id"], b["retention"], b["next_expiry"], b["next_expiry_overdue"]) == (
        "b",
        "P13M",
        "2027-03-01T00:00:00+00:00",
        False,
    )
    assert status["files"] == 3
