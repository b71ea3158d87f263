"""The rate limit's arithmetic and scopes (the counting itself runs on PostgreSQL: integration tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.upload.rate_limits import limits_for, retry_after
from shared.contract.auth import Principal
from shared.settings import Settings

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def test_under_the_limit_there_is_no_wait():
    assert retry_after(29, NOW - timedelta(seconds=59), 30, NOW) is None
    assert retry_after(0, None, 30, NOW) is None


def test_at_the_limit_the_wait_is_until_the_oldest_upload_leaves_the_window():
    assert retry_after(30, NOW - timedelta(seconds=15), 30, NOW) == 45
    assert retry_after(30, NOW - timedelta(seconds=59, milliseconds=900), 30, NOW) == 1
    assert retry_after(31, NOW - timedelta(seconds=0.2), 30, NOW) == 60


def test_a_sender_is_counted_per_conversation_and_the_account_as_a_whole():
    settings = Settings(uploads_per_minute=30, account_uploads_per_minute=1200)
    agent, bot = (
        Principal(sub="a-1", account_id="acme", role="agent"),
        Principal(sub="a-1", account_id="acme", role="bot"),
    )
    first, second = limits_for(agent, "acme", "c-1", settings), limits_for(agent, "acme", "c-2", settings)
    assert first[0].scope != second[0].scope and first[1].scope == second[1].scope
    assert limits_for(bot, "acme", "c-1", settings)[0].scope != first[0].scope  # role is part of the sender
    assert [l.per_minute for l in first] == [30, 1200]
