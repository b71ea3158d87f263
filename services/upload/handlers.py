"""Accepting a file: the same path for HTTP uploads and bot records on file.share.requested.

The rules first, then the rate limit (services.upload.rate_limits, a short transaction of its
own), then one transaction per acceptance: claim the file id (the row's primary key), encrypt and store the
original, publish file.uploaded and wait for the broker's ack, then commit. The client gets its 202
only after that. Two requests with one Idempotency-Key, on one instance or several, meet at the
claim: the later one waits until the first commits and then answers the same 202 (or, if the first
failed and rolled back, does the work itself). Storing or publishing failed: 503 (a bot record is
retried), the row is rolled back. A publish of unknown outcome (a timeout after the broker stored
the event) leaves the encrypted original behind: if the event was stored, the pipeline uses it and
the status projection records the file; if not, the client's retry with the same key writes the
same object again, and one never retried is removed by the bucket's lifecycle rule.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from services.upload import rate_limits
from services.upload import status as file_status
from services.upload.metrics import UploadMetrics
from services.upload.policy import Refused, check_caption, check_sender, check_type
from shared.adapters.crypto import EncryptedFileStore
from shared.adapters.db import Connection, Database
from shared.adapters.kafka import GroupOffsets, Outgoing, Publisher
from shared.adapters.storage import ObjectKey
from shared.contract import events as ev
from shared.contract.auth import Principal
from shared.contract.topics import FILE_UPLOADED
from shared.images.formats import SNIFF_BYTES, sniff_content_type
from shared.pipeline import caption_binding, seal_for_file
from shared.projections.account_settings import get_document
from shared.projections.conversations import get_conversation
from shared.rules import enforce, limits
from shared.runtime.logs import file_ctx, log_ctx
from shared.runtime.tracing import describe
from shared.settings import Settings

log = logging.getLogger(__name__)
IDEMPOTENCY_NAMESPACE = uuid.UUID("0f6f9a43-2f7c-4c8e-bb0e-3a3c52f1c7d2")


def file_id_for(principal: Principal, idempotency_key: str | None) -> str:
    """A repeated Idempotency-Key from the same user maps to the same file id, so the files table's
    primary key is the idempotency store."""
    if not idempotency_key:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{principal.account_id}\n{principal.sub}\n{idempotency_key}"))


def file_id_for_request(account_id: str, sender: str, request_id: str) -> str:
    """The file id of a bot record on file.share.requested: its request_id is its idempotency key
    (per sender, like an Idempotency-Key per user), so a redelivered record names the same file."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"file.share.requested\n{account_id}\n{sender}\n{request_id}"))


@dataclass
class UploadDeps:
    settings: Settings
    db: Database
    files: EncryptedFileStore
    publisher: Publisher
    metrics: UploadMetrics | None = None
    offsets: GroupOffsets | None = None  # to answer a settings change once the image stages hold it


@dataclass
class UploadRequest:
    principal: Principal
    account_id: str
    conversation_id: str
    data: bytes
    caption: str | None = None
    source: ev.Source = "local"
    file_id: str | None = None
    request_id: str | None = None


class StorageFailed(Exception):
    """Storing or publishing failed: HTTP 503, the client may retry with the same Idempotency-Key."""


class Replayed(Exception):
    """The file id was accepted before (a repeated Idempotency-Key or a redelivered bot record)."""

    def __init__(self, file_id: str):
        super().__init__(file_id)
        self.file_id = file_id


async def check_request(conn: Connection, req: UploadRequest, deps: UploadDeps, via: str = "http"):
    """Every rule in contract order; returns (conversation, content_type, caption) or raises Refused."""
    account = await get_document(conn, req.account_id)
    conversation = check_sender(
        req.principal,
        req.account_id,
        account,
        req.source,
        await get_conversation(conn, req.conversation_id),
        deps.settings.file_channel_set,
        via,
    )
    enforce(limits.file_size(len(req.data), deps.settings.max_upload_bytes))
    content_type = check_type(sniff_content_type(req.data[:SNIFF_BYTES]), account)
    caption = check_caption(req.caption, deps.settings.max_caption_chars)
    return conversation, content_type, caption


def check_replay(known: file_status.FileStatus | None, account_id: str, conversation_id: str) -> bool:
    """True for a file accepted before under this id (an idempotent replay). The same key reused for
    another conversation is a client error, not a replay."""
    if known is None:
        return False
    if known.account_id != account_id or (known.conversation_id not in (None, conversation_id)):
        raise Refused(422, "invalid_request", "this Idempotency-Key was already used for another conversation")
    return True


async def already_accepted(deps: UploadDeps, file_id: str, account_id: str, conversation_id: str) -> bool:
    async with deps.db.transaction() as conn:
        return check_replay(await file_status.load(conn, file_id), account_id, conversation_id)


async def accept_file(req: UploadRequest, deps: UploadDeps, via: str = "http") -> ev.FileUploaded:
    """Check, encrypt and store the original, publish file.uploaded. Raises Refused, Replayed or StorageFailed."""
    file_id = req.file_id or str(uuid.uuid4())
    async with deps.db.transaction() as conn:
        if check_replay(await file_status.load(conn, file_id), req.account_id, req.conversation_id):
            raise Replayed(file_id)
        conversation, content_type, caption = await check_request(conn, req, deps, via)
    # In a transaction of its own, between the two: its lock is held for milliseconds, never while
    # the file is stored, and no request holds two connections of the pool at once.
    await rate_limits.take_slot(
        deps.db, rate_limits.limits_for(req.principal, req.account_id, req.conversation_id, deps.settings), file_id
    )
    try:
        event = await _claim_store_publish(req, deps, file_id, conversation, content_type, caption)
    except StorageFailed:
        await _give_back_slot(deps, file_id)
        raise
    log.info(
        "accepted %s %d bytes from %s",
        content_type,
        len(req.data),
        req.principal.role,
        **log_ctx(file_id=file_id, conversation_id=req.conversation_id),
    )
    return event


async def _claim_store_publish(
    req: UploadRequest, deps: UploadDeps, file_id: str, conversation, content_type: str, caption: str | None
) -> ev.FileUploaded:
    """One transaction: claim the file id, store the original, publish file.uploaded, then commit."""
    async with deps.db.transaction() as conn:
        try:
            key = ObjectKey(req.account_id, conversation.consumer_id, req.conversation_id, file_id, "original")
        except ValueError as e:
            raise Refused(422, "invalid_request", str(e)) from None
        event = ev.FileUploaded(
            file_id=file_id,
            account_id=req.account_id,
            conversation_id=req.conversation_id,
            consumer_id=conversation.consumer_id,
            sender=ev.Sender(id=req.principal.sub, role=req.principal.role),
            source=req.source,
            request_id=req.request_id,
            object_key=str(key),
            content_type=content_type,
            size_bytes=len(req.data),
        )
        describe(event)  # the request's span (or the bot record's) names the file
        status = await file_status.claim(conn, event)
        if status is None:  # a concurrent request with the same id committed first
            check_replay(await file_status.load(conn, file_id), req.account_id, req.conversation_id)
            raise Replayed(file_id)
        event = await _store_original(event, key, req.data, caption, deps)
        status.apply(event)
        status.caption = caption
        await file_status.save(conn, status, moved=True)
        try:
            await deps.publisher.send([Outgoing(FILE_UPLOADED, req.conversation_id, event)])
        except Exception as e:
            log.error("publishing file.uploaded failed: %s", e, **log_ctx(file_id=file_id))
            raise StorageFailed("the event log is unavailable") from e
    return event


async def _give_back_slot(deps: UploadDeps, file_id: str) -> None:
    try:
        await rate_limits.give_back(deps.db, file_id)
    except Exception as e:  # the database is what failed: the slot expires with its minute
        log.warning("could not give back the rate-limit slot: %s", e, **log_ctx(file_id=file_id))


async def _store_original(
    event: ev.FileUploaded, key: ObjectKey, data: bytes, caption: str | None, deps: UploadDeps
) -> ev.FileUploaded:
    """Encrypt and store the original; the event gains the caption sealed under the same consumer key."""
    files = deps.files.scoped()  # the caption is sealed under the key the original was: one key fetch
    try:
        key_id = await files.put(key, data)
        if caption is None:
            return event
        sealed = await seal_for_file(event, files, caption_binding(event.file_id), caption.encode(), key_id)
        return event.model_copy(update={"caption_sealed": sealed})
    except Exception as e:
        log.error("storing original failed: %s", e, **file_ctx(event))
        try:  # a put that failed late (after the server wrote it) is undone: nothing was published
            await deps.files.store.delete(str(key))
        except Exception:
            log.warning("could not remove a partly stored original; the lifecycle rule will", **file_ctx(event))
        raise StorageFailed("storage is unavailable") from e
