"""Helpers for tests of database-backed handlers (tests/conftest.py `open_database`): a publisher
that records what the broker acknowledged, and conversations as the platform announces them."""

from __future__ import annotations

from types import SimpleNamespace

from shared.adapters.db import Database
from shared.adapters.kafka import Outgoing, TransientError
from shared.contract import events as ev
from shared.projections.conversations import apply_conversation_event


class RecordingPublisher:
    """Stands in for the broker's acknowledgement: `sent` holds what was acked; `failures` sends fail."""

    def __init__(self):
        self.sent: list[Outgoing] = []
        self.failures = 0

    async def send(self, outgoing) -> list[SimpleNamespace]:
        """Where each record landed, like Publisher.send: one partition, offsets in acknowledgement order."""
        outgoing = list(outgoing)
        if self.failures:
            self.failures -= 1
            raise TransientError("broker unavailable")
        first = len(self.sent)
        self.sent += outgoing
        return [SimpleNamespace(topic=o.topic, partition=0, offset=first + i) for i, o in enumerate(outgoing)]

    def events(self, topic: str) -> list[ev.Event]:
        return [o.event for o in self.sent if o.topic == topic]


async def announce(
    db: Database,
    account: str,
    conversation: str,
    consumer: str,
    kind: str = "conversation.opened",
    channel: str | None = "web",
) -> None:
    async with db.transaction() as conn:
        await apply_conversation_event(
            conn,
            ev.ConversationEvent(
                event_type=kind,
                account_id=account,
                conversation_id=conversation,
                consumer_id=consumer,
                channel=channel,
                authenticated=True,
            ),
        )
