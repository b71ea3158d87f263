"""Delivery: turn a resized file into exactly one message.published, and decide who may download.

Dedupe: at most one message per file, ever
------------------------------------------
The state that says "this file already has its message" is the message.published
topic itself, folded into `MessageState` by a TopicView. Before a batch of a
file.resized partition is handled, that view is caught up to the end offset of the
same partition of message.published (both topics are keyed by conversation_id and
created with one partition count, so partition p of each holds the same
conversations). A redelivered file.resized (crash between produce and commit,
rebalance) then finds its message and is skipped (`fileshare_duplicates_suppressed_total`).

Why the topic, not a Faust table or a marker object in storage:
- it survives restarts and rebalances with no second store to keep consistent: the
  message on the topic *is* the fact, so "marker written but publish lost" (a marker
  object written before the publish) or "changelog behind the topic" cannot happen;
- the broker has no transactions (Tansu), so exactly-once produce+commit is not available;
  a Faust changelog would be written with the same at-least-once gap it is meant to close;
- the transcript endpoint reads the very same view, so API and worker agree.

What makes it hold across owners: a member finishes (produces and commits) the record in
flight before it gives a partition away (shared.kafka's revocation fence on rebalance,
and drain on stop), and every member revokes before any member is assigned. The next
owner catches up after that, so it sees every message the previous owner produced.

Limit: a *zombie* producer. A member that stalls beyond the group's session/rebalance
timeout (long GC or VM pause, network partition) is expelled without running its
revocation callback; if it wakes and its produce lands after the new owner caught up,
the file gets a second message.published (same deterministic `message_id`, so a
consumer of the topic can still drop it; `MessageState` shows it once). Closing that
gap needs broker-side fencing (transactional producer with epochs), which Tansu lacks.
"""
from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass

from shared import events as ev
from shared.auth import Principal
from shared.crypto import EncryptedFileStore
from shared.kafka import Outgoing
from shared.logs import file_ctx
from shared.pipeline import StageRejection, carry, open_companion, read_variant, reject
from shared.state import ConversationState, MessageState
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
        await read_variant(event, deps.files)
        preview = await open_companion(event, deps.files, "preview", event.preview_sealed)
    except StageRejection as r:
        return [reject(event, STAGE, r.reason, r.detail)]

    message = ev.MessagePublished(
        message_id=message_id_for(event.file_id), **carry(event),
        content=ev.HostedFileContent(
            content_type=event.content_type, width=event.width, height=event.height, size_bytes=event.size_bytes,
            caption=event.caption, download_path=f"/v1/files/{event.file_id}/content",
            preview=base64.b64encode(preview).decode()))
    log.info("publishing message %s", message.message_id, **file_ctx(event))
    return [Outgoing(MESSAGE_PUBLISHED, event.conversation_id, message)]


def record_published(outputs: list[Outgoing], deps: DeliveryDeps) -> None:
    """Once the broker acknowledged a message.published: the file counts as published (dedupe,
    downloads, transcript) before the next record. Never earlier: a publish that did not happen
    (failed produce, a record abandoned at a rebalance) must not suppress the redelivery."""
    for out in outputs:
        if out.topic == MESSAGE_PUBLISHED:
            deps.messages.apply(out.event)
            if deps.metrics is not None:
                deps.metrics.published.inc()


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
