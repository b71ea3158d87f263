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

# Services rebuild their state by replaying these topics from the beginning (conversations, file
# status, published messages for downloads and transcripts, receipts), so the log must outlive
# the longest retention: the broker default (7 days on Apache Kafka) would make a restarted
# delivery answer 404 for every photo older than a week.
KEPT = {"retention.ms": "-1"}

TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    CONVERSATION_EVENTS: KEPT,
    ACCOUNT_SETTINGS: {"cleanup.policy": "compact"},
    # Bot records carry the file itself (base64, by contract): keep them only briefly.
    FILE_SHARE_REQUESTED: {"max.message.bytes": str(MAX_MESSAGE_BYTES), "retention.ms": str(3600 * 1000)},
    FILE_UPLOADED: KEPT,
    FILE_SANITIZED: KEPT,
    FILE_RESIZED: KEPT,
    FILE_REJECTED: KEPT,
    MESSAGE_PUBLISHED: KEPT,
    GDPR_FORGET: KEPT,
    FILE_DELETED: KEPT,
}


async def ensure_topics(bootstrap: str, partitions: int) -> None:
    """Create every contract topic with an explicit partition count; existing topics are kept.

    All keyed-by-conversation topics share one partition count so that partition p of
    file.resized and partition p of message.published hold the same conversations
    (delivery's dedupe relies on it).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, 1, topic_configs=cfg)
                   for name, cfg in TOPIC_CONFIGS.items() if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created them first
            log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()
