"""Delivery: turn a resized file into exactly one message.published, and decide who may download.

At most one message per file, ever: the primary key of delivery.messages. The row is inserted in
the same transaction that produces the message and waits for the broker's ack; a concurrent
handler of the same file (a redelivery on another instance after a rebalance) blocks on that key
until the first commits and then finds the message, or, if the first failed and rolled back,
publishes it itself. A redelivery after the commit finds the row and is skipped
(`fileshare_duplicates_suppressed_total`).

Limit: a crash after the broker's ack and before the commit (milliseconds) rolls the row back, and
the redelivery publishes the file a second time (with the same deterministic `message_id`, so the
platform can drop it). Closing that needs broker transactions, which Tansu lacks.
"""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass

from psycopg.types.json import Jsonb

from services.delivery.metrics import DeliveryMetrics
from services.delivery.republish import note_landed
from shared.adapters.crypto import EncryptedFileStore
from shared.adapters.db import Connection, Database, lock_files
from shared.adapters.kafka import Outgoing, Publisher
from shared.contract import events as ev
from shared.contract.auth import Principal
from shared.contract.topics import MESSAGE_PUBLISHED
from shared.pipeline import StageRejection, carry, check_variant, companion_of, open_caption, open_for_file, reject
from shared.projections.conversations import get_conversation
from shared.rules import Refused, access, enforce
from shared.runtime.logs import file_ctx
from shared.runtime.tracing import current_traceparent

log = logging.getLogger(__name__)
STAGE = "delivery"
MESSAGE_NAMESPACE = uuid.UUID("5b3c1f0e-8f57-4a55-9d1e-7b7e0f2b9a41")


def message_id_for(file_id: str) -> str:
    """Deterministic: a redelivered file would produce the same message id."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, file_id))


@dataclass
class DeliveryDeps:
    db: Database
    files: EncryptedFileStore
    publisher: Publisher
    metrics: DeliveryMetrics | None = None


@dataclass(frozen=True)
class StoredMessage:
    """A published file as delivery keeps it: who may see it, what to serve, the message itself."""

    file_id: str
    account_id: str
    conversation_id: str
    consumer_id: str
    content_type: str
    size_bytes: int
    traceparent: str | None = None  # the publish's span: a download continues the file's trace
    tracestate: str | None = None


async def find_message(conn: Connection, file_id: str) -> StoredMessage | None:
    row = await (
        await conn.execute(
            "SELECT file_id, account_id, conversation_id, consumer_id, content_type, size_bytes, traceparent, tracestate "
            "FROM messages WHERE file_id = %s",
            (file_id,),
        )
    ).fetchone()
    return StoredMessage(**row) if row else None


@dataclass(frozen=True)
class Deletion:
    """What delivery keeps of a deleted file: its receipt."""

    account_id: str
    reason: str  # expired | gdpr


async def find_deletion(conn: Connection, file_id: str) -> Deletion | None:
    row = await (
        await conn.execute("SELECT account_id, reason FROM deleted_files WHERE file_id = %s", (file_id,))
    ).fetchone()
    return Deletion(**row) if row else None


async def transcript_of(conn: Connection, conversation_id: str) -> list[dict]:
    rows = await (
        await conn.execute("SELECT message FROM messages WHERE conversation_id = %s ORDER BY seq", (conversation_id,))
    ).fetchall()
    return [r["message"] for r in rows]


async def record_deletion(conn: Connection, event: ev.FileDeleted) -> None:
    """file.deleted: the message row goes (caption, sender, preview); a receipt stays for the 410.
    Under the file's lock: a publish of the same file in flight commits first (and is deleted here)
    or finds the receipt (and publishes nothing)."""
    await lock_files(conn, event.file_id)
    await conn.execute("DELETE FROM messages WHERE file_id = %s", (event.file_id,))
    await conn.execute(
        "INSERT INTO deleted_files (file_id, account_id, reason) VALUES (%s, %s, %s) ON CONFLICT (file_id) DO NOTHING",
        (event.file_id, event.account_id, event.reason),
    )


def rejected_as_deleted(event: ev.FileResized, deletion: Deletion) -> list[Outgoing]:
    """A file forgotten or expired before its message: never published."""
    if deletion.reason == "gdpr":
        return [reject(event, STAGE, "consumer_forgotten", "the consumer's files were erased")]
    return [reject(event, STAGE, "processing_failed", f"the file was deleted ({deletion.reason}) first")]


async def publish_resized(event: ev.FileResized, deps: DeliveryDeps) -> list[Outgoing]:
    async with deps.db.pool.connection() as conn:
        deletion = await find_deletion(conn, event.file_id)
        published = deletion is None and await find_message(conn, event.file_id) is not None
    if deletion is not None:
        return rejected_as_deleted(event, deletion)
    if published:
        log.info("duplicate file.resized: message already published", **file_ctx(event))
        if deps.metrics is not None:
            deps.metrics.duplicates.inc()
        return []
    async with deps.db.pool.connection() as conn:
        conversation = await get_conversation(conn, event.conversation_id)
    if conversation is not None and not conversation.open:
        return [reject(event, STAGE, "conversation_closed", "the conversation closed before the photo was published")]
    files = deps.files.scoped()  # the final's header, the preview and the caption share one key fetch
    try:
        # Proves the final blob is there, under a live consumer key and bound to its object key, before
        # anyone is told about it: its header is enough, nobody needs its pixels here (a download decrypts).
        await check_variant(event, files)
        preview = await open_for_file(event, files, companion_of(event.object_key, "preview"), event.preview_sealed)
        caption = await open_caption(event, files)
    except StageRejection as r:
        return [reject(event, STAGE, r.reason, r.detail)]

    message = ev.MessagePublished(
        message_id=message_id_for(event.file_id),
        **carry(event),
        caption=caption,
        content=ev.HostedFileContent(
            content_type=event.content_type,
            width=event.width,
            height=event.height,
            size_bytes=event.size_bytes,
            caption=caption,
            download_path=f"/v1/files/{event.file_id}/content",
            preview=base64.b64encode(preview).decode(),
        ),
    )
    async with deps.db.transaction() as conn:
        await lock_files(conn, event.file_id)  # against record_deletion of the same file
        deletion = await find_deletion(conn, event.file_id)
        if deletion is not None:  # deleted while we opened it
            return rejected_as_deleted(event, deletion)
        claimed = await (
            await conn.execute(
                "INSERT INTO messages (file_id, account_id, conversation_id, consumer_id, content_type, size_bytes, message, "
                "traceparent, tracestate) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (file_id) DO NOTHING RETURNING file_id",
                (
                    event.file_id,
                    event.account_id,
                    event.conversation_id,
                    event.consumer_id,
                    event.content_type,
                    event.size_bytes,
                    Jsonb(message.model_dump(mode="json", exclude={"schema_version"})),
                    *current_traceparent(),
                ),
            )
        ).fetchone()
        if claimed is None:  # another handler of this file committed its message while we worked
            if deps.metrics is not None:
                deps.metrics.duplicates.inc()
            return []
        log.info("publishing message %s", message.message_id, **file_ctx(event))
        landed = await deps.publisher.send([Outgoing(MESSAGE_PUBLISHED, event.conversation_id, message)])
        await note_landed(conn, landed)  # how a lost log is seen (services.delivery.republish)
    if deps.metrics is not None:
        deps.metrics.published.inc()
        if event.uploaded_at:
            deps.metrics.upload_to_publish.observe((message.occurred_at - event.uploaded_at).total_seconds())
    return []


Denied = Refused  # what a delivery access rule answers (shared.rules.access)


def authorize_file_access(principal: Principal, message: StoredMessage) -> None:
    """Raises the contract's refusal unless the principal may see the published file."""
    enforce(access.file_content(principal, access.Owner(message.account_id, message.consumer_id)))


def authorize_conversation(principal: Principal, account_id: str, consumer_id: str) -> None:
    enforce(access.transcript(principal, access.Owner(account_id, consumer_id)))
