"""Conversations as the upload and delivery services keep them: the table `conversations` in their
own schema, filled from the messaging platform's conversation.events."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from shared import events as ev
from shared.db import Connection, Database
from shared.kafka import StreamProcessor
from shared.projection import projection
from shared.topics import CONVERSATION_EVENTS

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
    row = await (await conn.execute(
        "SELECT account_id, conversation_id, consumer_id, channel, authenticated, open FROM conversations "
        "WHERE conversation_id = %s", (conversation_id,))).fetchone()
    return Conversation(**row) if row else None


async def apply_conversation_event(conn: Connection, event: ev.ConversationEvent) -> bool:
    """Fold one event in; False when another account already owns the conversation id (ignored).
    An event without a channel keeps the channel already known."""
    row = await (await conn.execute(
        "INSERT INTO conversations (conversation_id, account_id, consumer_id, channel, authenticated, open) "
        "VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (conversation_id) DO UPDATE SET consumer_id = EXCLUDED.consumer_id, "
        "  channel = COALESCE(EXCLUDED.channel, conversations.channel), "
        "  authenticated = EXCLUDED.authenticated, open = EXCLUDED.open, updated_at = now() "
        "WHERE conversations.account_id = EXCLUDED.account_id RETURNING conversation_id",
        (event.conversation_id, event.account_id, event.consumer_id, event.channel, event.authenticated,
         event.event_type != "conversation.closed"))).fetchone()
    if row is None:
        log.warning("conversation %s claimed by account %s, already owned by another account; ignored",
                    event.conversation_id, event.account_id)
    return row is not None


def conversation_follower(settings, service: str, db: Database, metrics=None) -> StreamProcessor:
    """Keeps this service's conversations table up to date."""
    return projection(settings, service, "conversations", [CONVERSATION_EVENTS],
                      ev.ConversationEvent.model_validate_json, apply_conversation_event, db, metrics)
