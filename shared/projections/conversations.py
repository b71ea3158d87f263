"""Conversations as the upload and delivery services keep them: the table `conversations` in their
own schema, filled from the messaging platform's conversation.events."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.adapters.db import Connection, Database, the_row
from shared.adapters.kafka import StreamProcessor
from shared.contract import events as ev
from shared.contract.topics import CONVERSATION_EVENTS
from shared.projections.projection import projection
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conversation:
    account_id: str
    conversation_id: str
    consumer_id: str
    channel: str | None  # None: the platform never named it (cannot receive files)
    authenticated: bool
    open: bool


async def get_conversation(conn: Connection, conversation_id: str) -> Conversation | None:
    row = await (
        await conn.execute(
            "SELECT account_id, conversation_id, consumer_id, channel, authenticated, open FROM conversations "
            "WHERE conversation_id = %s",
            (conversation_id,),
        )
    ).fetchone()
    return Conversation(**row) if row else None


async def apply_conversation_event(conn: Connection, event: ev.ConversationEvent) -> bool:
    """Fold one event in; False when another account already owns the conversation id (ignored).
    An event without a channel keeps the channel already known. An event older than the one the row
    was last folded from (delivered again: at-least-once, a partition read again) changes nothing,
    so a conversation's state never moves back. The platform's clock is not ours: a time in the
    future counts as now, so one mis-stamped event cannot make every later one look old."""
    when = min(event.occurred_at, datetime.now(UTC))
    row = await (
        await conn.execute(
            "INSERT INTO conversations (conversation_id, account_id, consumer_id, channel, authenticated, open, "
            "  event_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (conversation_id) DO UPDATE SET consumer_id = EXCLUDED.consumer_id, "
            "  channel = COALESCE(EXCLUDED.channel, conversations.channel), "
            "  authenticated = EXCLUDED.authenticated, open = EXCLUDED.open, event_at = EXCLUDED.event_at, "
            "  updated_at = now() "
            "WHERE conversations.account_id = EXCLUDED.account_id "
            "  AND (conversations.event_at IS NULL OR conversations.event_at <= EXCLUDED.event_at) "
            "RETURNING conversation_id",
            (
                event.conversation_id,
                event.account_id,
                event.consumer_id,
                event.channel,
                event.authenticated,
                event.event_type != "conversation.closed",
                when,
            ),
        )
    ).fetchone()
    if row is not None:
        return True
    owner = the_row(
        await (
            await conn.execute(
                "SELECT account_id FROM conversations WHERE conversation_id = %s", (event.conversation_id,)
            )
        ).fetchone()
    )
    if owner["account_id"] == event.account_id:
        log.info(
            "conversation %s: %s of %s is older than its known state; ignored",
            event.conversation_id,
            event.event_type,
            event.occurred_at.isoformat(),
        )
        return True
    log.warning(
        "conversation %s claimed by account %s, already owned by another account; ignored",
        event.conversation_id,
        event.account_id,
    )
    return False


def conversation_follower(settings: Settings, service: str, db: Database, metrics=None) -> StreamProcessor:
    """Keeps this service's conversations table up to date."""
    return projection(
        settings,
        service,
        "conversations",
        [CONVERSATION_EVENTS],
        ev.ConversationEvent.model_validate_json,
        apply_conversation_event,
        db,
        metrics,
    )
