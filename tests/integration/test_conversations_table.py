"""Conversations as upload and delivery keep them (shared.projections.conversations), on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.upload.policy import Refused, check_conversation
from shared.contract import events as ev
from shared.projections.conversations import apply_conversation_event, get_conversation
from tests.dbsupport import announce
from tests.support import unique


async def test_a_conversation_whose_channel_was_never_named_cannot_receive_files(open_database):
    db, account, conversation = await open_database("upload"), unique("acct"), unique("conv")
    await announce(db, account, conversation, "consumer-1", channel=None)
    async with db.pool.connection() as conn:
        known = await get_conversation(conn, conversation)
    with pytest.raises(Refused) as refused:
        check_conversation(account, known, frozenset({"web"}))
    assert refused.value.code == "channel_not_supported"


async def test_a_close_that_repeats_only_the_ids_keeps_the_known_channel(open_database):
    db, account, conversation = await open_database("delivery"), unique("acct"), unique("conv")
    await announce(db, account, conversation, "consumer-1", channel="web")
    await announce(db, account, conversation, "consumer-1", "conversation.closed", channel=None)
    async with db.pool.connection() as conn:
        known = await get_conversation(conn, conversation)
    assert (known.channel, known.open) == ("web", False)


async def test_another_account_cannot_take_over_a_conversation_id(open_database):
    db, conversation = await open_database("upload"), unique("conv")
    await announce(db, "acct-owner", conversation, "consumer-1")
    async with db.transaction() as conn:
        taken = await apply_conversation_event(
            conn,
            ev.ConversationEvent(
                event_type="conversation.closed",
                account_id="acct-intruder",
                conversation_id=conversation,
                consumer_id="consumer-2",
                channel="web",
            ),
        )
        known = await get_conversation(conn, conversation)
    assert not taken and (known.account_id, known.consumer_id, known.open) == ("acct-owner", "consumer-1", True)


async def test_an_older_event_delivered_again_does_not_move_a_conversation_back(open_database):
    """At-least-once: a partition read again replays opened and closed after resumed; the conversation
    stays open (it answered conversation_closed for a moment before)."""
    db, account, conversation = await open_database("upload"), unique("acct"), unique("conv")
    start = datetime.now(UTC) - timedelta(minutes=1)
    history = [
        ev.ConversationEvent(
            event_type=kind,
            account_id=account,
            conversation_id=conversation,
            consumer_id="consumer-1",
            channel="web",
            occurred_at=start + timedelta(seconds=i),
        )
        for i, kind in enumerate(("conversation.opened", "conversation.closed", "conversation.resumed"))
    ]
    states = []
    for event in [*history, *history[:2]]:
        async with db.transaction() as conn:
            await apply_conversation_event(conn, event)
            states.append((await get_conversation(conn, conversation)).open)
    assert states == [True, False, True, True, True]


async def test_an_event_stamped_in_the_future_does_not_hide_the_events_after_it(open_database):
    """A platform clock an hour ahead (or a local time read as UTC): the close that follows still counts."""
    db, account, conversation = await open_database("delivery"), unique("acct"), unique("conv")
    opened = ev.ConversationEvent(
        event_type="conversation.opened",
        account_id=account,
        conversation_id=conversation,
        consumer_id="consumer-1",
        channel="web",
        occurred_at=datetime.now(UTC) + timedelta(hours=1),
    )
    async with db.transaction() as conn:
        await apply_conversation_event(conn, opened)
    await announce(db, account, conversation, "consumer-1", "conversation.closed")
    async with db.pool.connection() as conn:
        assert not (await get_conversation(conn, conversation)).open
