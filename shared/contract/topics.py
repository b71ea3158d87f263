"""Topic names and their configs; `ensure_topics` creates them idempotently."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

CONVERSATION_EVENTS = "conversation.events"
ACCOUNT_SETTINGS = "account.settings"
FILE_SHARE_REQUESTED = "file.share.requested"
FILE_UPLOADED = "file.uploaded"
FILE_SANITIZED = "file.sanitized"
FILE_RESIZED = "file.resized"
FILE_REJECTED = "file.rejected"
MESSAGE_PUBLISHED = "message.published"
GDPR_FORGET = "gdpr.forget"
FILE_DELETED = "file.deleted"

MAX_MESSAGE_BYTES = 8 * 1024 * 1024 + 65536  # a 5 MB file in base64 plus the envelope
FILE_TOPICS = (FILE_UPLOADED, FILE_SANITIZED, FILE_RESIZED, FILE_REJECTED, MESSAGE_PUBLISHED, FILE_DELETED)


def topic_configs(retention_hours: float) -> dict[str, dict[str, str]]:
    """Every topic is transport, never storage: a finite retention.ms on all of
    them, inputs included; services keep their state in PostgreSQL. Exceptions: account.settings is
    compacted (the upload service re-publishes it from its database when it is empty) and
    file.share.requested is kept 1 hour (bot records carry the file itself, by contract)."""
    kept = {"retention.ms": str(int(retention_hours * 3600 * 1000))}
    configs = {
        name: dict(kept)
        for name in (
            CONVERSATION_EVENTS,
            FILE_UPLOADED,
            FILE_SANITIZED,
            FILE_RESIZED,
            FILE_REJECTED,
            MESSAGE_PUBLISHED,
            GDPR_FORGET,
            FILE_DELETED,
        )
    }
    configs[ACCOUNT_SETTINGS] = {"cleanup.policy": "compact"}
    configs[FILE_SHARE_REQUESTED] = {"max.message.bytes": str(MAX_MESSAGE_BYTES), "retention.ms": str(3600 * 1000)}
    return configs


async def ensure_topics(bootstrap: str, partitions: int, retention_hours: float = 168) -> None:
    """Create every contract topic with an explicit partition count; existing topics are kept.

    All keyed-by-conversation topics share one partition count so that partition p of
    file.resized and partition p of message.published hold the same conversations
    (delivery's dedupe relies on it).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, 1, topic_configs=cfg)
            for name, cfg in topic_configs(retention_hours).items()
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created them first
            log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()
