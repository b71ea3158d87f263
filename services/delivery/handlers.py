"""Delivery: turn a resized file into exactly one message.published, and decide who may download.

Dedupe (at most one message per file, ever): before a partition of file.resized is
handled, the view of message.published is caught up to that partition's end offset
(both topics are keyed by conversation_id with the same partition count, so they hold
the same conversations). The topic itself is the dedupe state: it survives restarts
and rebalances with no extra store, and a file is skipped once its message is in the log.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from shared import events as ev
from shared.auth import Principal
from shared.crypto import BlobIntegrityError, ConsumerForgotten, EncryptedFileStore
from shared.kafka import Outgoing
from shared.logs import file_ctx
from shared.pipeline import carry, reject
from shared.state import ConversationState, MessageState
from shared.storage import ObjectKey
from shared.topics import MESSAGE_PUBLISHED

log = logging.getLogger(__name__)
STAGE = "delivery"
MESSAGE_NAMESPACE = uuid.UUID("5b3c1f0e-8f57-4a55-9d1e-7b7e0f2b9a41")


def message_id_for(file_id: str) -> str:
    """Deterministic: a redelivered file would produce the same message id."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, file_id))


@dataclass
class DeliveryDeps:
    files: EncryptedFileStore
    messages: MessageState
    conversations: ConversationState
    metrics: object = None


async def publish_resized(event: ev.FileResized, deps: DeliveryDeps) -> list[Outgoing]:
    if deps.messages.published(event.file_id):
        log.info("duplicate file.resized: message already published", **file_ctx(event))
        if deps.metrics is not None:
            deps.metrics.duplicates.inc()
        return []
    conversation = deps.conversations.get(event.conversation_id)
    if conversation is not None and not conversation.open:
        return [reject(event, STAGE, "conversation_closed", "the conversation closed before the photo was published")]
    try:
        # Proves the final blob is there and opens with a live consumer key before anyone is told about it.
        await deps.files.get(ObjectKey.parse(event.object_key))
    except ConsumerForgotten:
        # The file's own key is gone, even if the consumer has a newer key: never publish it.
        return [reject(event, STAGE, "consumer_forgotten", "the consumer's key was destroyed")]
    except FileNotFoundError:
        if not await deps.files.keys.has_any(event.account_id, event.consumer_id):
            return [reject(event, STAGE, "consumer_forgotten", "the consumer's files were erased")]
        return [reject(event, STAGE, "processing_failed", "final object is missing")]
    except BlobIntegrityError:
        return [reject(event, STAGE, "processing_failed", "final object failed authentication")]

    message = ev.MessagePublished(
        message_id=message_id_for(event.file_id), **carry(event),
        content=ev.HostedFileContent(
            content_type=event.content_type, width=event.width, height=event.height, size_bytes=event.size_bytes,
            caption=event.caption, download_path=f"/v1/files/{event.file_id}/content", preview=event.preview))
    deps.messages.apply(message)  # a second copy later in this same batch is suppressed too
    log.info("publishing message %s", message.message_id, **file_ctx(event))
    return [Outgoing(MESSAGE_PUBLISHED, event.conversation_id, message)]


class Denied(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def authorize_file_access(principal: Principal, message: ev.MessagePublished) -> None:
    """Users of the file's account (any role but consumer) and the conversation's consumer.
    Another account never learns the file exists (404); another consumer of the account: 403."""
    if principal.account_id != message.account_id:
        raise Denied(404, "not_found", "no such file")
    if principal.role == "consumer" and principal.sub != message.consumer_id:
        raise Denied(403, "forbidden", "this file belongs to another consumer's conversation")


def authorize_conversation(principal: Principal, account_id: str, consumer_id: str) -> None:
    if principal.account_id != account_id:
        raise Denied(404, "not_found", "no such conversation")
    if principal.role == "consumer" and principal.sub != consumer_id:
        raise Denied(403, "forbidden", "not your conversation")
