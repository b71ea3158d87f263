"""Accepting a file: the same path for HTTP uploads and bot records on file.share.requested.

The original is encrypted and stored, then file.uploaded is published; the client gets its
202 only once the broker acknowledged the event. If storing or publishing fails the client
gets 503 (a bot record is retried) and nothing half-done remains:
  - storing failed: nothing was published, so whatever the put may have written is deleted
    at once (or, if the store is unreachable, by the settling below).
  - publishing failed: the outcome is UNKNOWN. A timeout or a dropped connection can follow
    the broker storing the event, and then file.uploaded names this original and the pipeline
    will read it: deleting it now would leave an event pointing at nothing (the file would be
    rejected later although the client retries and is told 202 for it). So the original is
    kept and remembered in `UploadDeps.kept_originals`; `settle_kept_originals` decides once
    the log is readable again: after the status view has read every record up to the log's
    current end, no event for the file id means it was never stored, and the original is
    deleted; otherwise it belongs to the pipeline. This runs under the file id's lock, so a
    retry with the same Idempotency-Key (or a redelivered bot record) never races with it.
  - the process dies before settling: the original has no event, no status and no message;
    the retention sweep lists the store itself and deletes it when the account's retention ends.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

from aiokafka import AIOKafkaProducer

from shared import events as ev
from shared.auth import Principal
from shared.crypto import EncryptedFileStore
from shared.images.formats import sniff_content_type
from shared.kafka import Outgoing, send_all
from shared.state import AccountSettingsState, ConversationState, FileStatusState
from shared.storage import ObjectKey
from shared.topics import FILE_UPLOADED

from services.upload.policy import Refused, check_caption, check_sender

log = logging.getLogger(__name__)
IDEMPOTENCY_NAMESPACE = uuid.UUID("0f6f9a43-2f7c-4c8e-bb0e-3a3c52f1c7d2")


def file_id_for(principal: Principal, idempotency_key: str | None) -> str:
    """A repeated Idempotency-Key from the same user maps to the same file id: the log of
    file.uploaded is then the idempotency store (it survives restarts, needs nothing else)."""
    if not idempotency_key:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{principal.account_id}\n{principal.sub}\n{idempotency_key}"))


def file_id_for_request(account_id: str, sender: str, request_id: str) -> str:
    """The file id of a bot record on file.share.requested: its request_id is its idempotency key
    (per sender, like an Idempotency-Key per user), so a redelivered record (at-least-once) names
    the same file and is recognised."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"file.share.requested\n{account_id}\n{sender}\n{request_id}"))


@dataclass
class UploadDeps:
    settings: object  # shared.settings.Settings
    files: EncryptedFileStore
    producer: AIOKafkaProducer
    accounts: AccountSettingsState
    conversations: ConversationState
    statuses: FileStatusState
    metrics: object = None
    # One in-flight acceptance per file id: two concurrent requests with one Idempotency-Key create one file.
    locks: dict[str, list] = field(default_factory=dict)  # file id → [lock, waiters]
    # Originals stored for a file whose file.uploaded may or may not be in the log (module docstring).
    kept_originals: dict[str, ObjectKey] = field(default_factory=dict)  # file id → key of the original
    # Returns once `statuses` holds every event in the log up to its current end (the status view).
    log_caught_up: Callable[[], Awaitable[None]] | None = None


@dataclass
class UploadRequest:
    principal: Principal
    account_id: str
    conversation_id: str
    data: bytes
    caption: str | None = None
    source: str = "local"
    file_id: str | None = None
    request_id: str | None = None


class StorageFailed(Exception):
    """Storing or publishing failed: HTTP 503, the client may retry with the same Idempotency-Key."""


def check_request(req: UploadRequest, deps: UploadDeps, via: str = "http"):
    """Every rule in contract order; returns (conversation, content_type, caption) or raises Refused."""
    account_settings = deps.accounts.get(req.account_id)
    conversation = check_sender(req.principal, req.account_id, account_settings, req.source,
                                deps.conversations.get(req.conversation_id), deps.settings.file_channel_set, via)
    if len(req.data) > deps.settings.max_upload_bytes:
        raise Refused(413, "file_too_large", f"the file is larger than {deps.settings.max_upload_bytes} bytes")
    content_type = sniff_content_type(req.data[:64])
    if content_type is None:
        raise Refused(415, "unsupported_type", "only jpeg, png and gif photos can be sent (decided by content)")
    caption = check_caption(req.caption, deps.settings.max_caption_chars)
    return conversation, content_type, caption


def already_accepted(deps: UploadDeps, file_id: str, account_id: str, conversation_id: str):
    """The status of a file accepted before under this id (idempotent replay), else None.
    The same key reused for another conversation is a client error, not a replay."""
    known = deps.statuses.get(file_id)
    if known is None:
        return None
    if (known.account_id, known.conversation_id) != (account_id, conversation_id):
        raise Refused(422, "invalid_request", "this Idempotency-Key was already used for another conversation")
    return known


@asynccontextmanager
async def file_lock(deps: UploadDeps, file_id: str) -> AsyncIterator[None]:
    entry = deps.locks.setdefault(file_id, [asyncio.Lock(), 0])
    entry[1] += 1
    try:
        async with entry[0]:
            yield
    finally:
        entry[1] -= 1
        if entry[1] == 0:
            deps.locks.pop(file_id, None)


async def accept_file(req: UploadRequest, deps: UploadDeps, via: str = "http") -> ev.FileUploaded:
    """Check, encrypt and store the original, publish file.uploaded. Raises Refused or StorageFailed."""
    file_id = req.file_id or str(uuid.uuid4())
    async with file_lock(deps, file_id):
        return await _accept_locked(req, deps, via, file_id)


async def settle_kept_originals(deps: UploadDeps) -> int:
    """Decide every kept original (module docstring): delete it when the log, read to its current
    end, holds no event for its file. Returns how many were deleted; raises while the log or the
    store is unreachable (the caller retries later; what is not settled stays remembered)."""
    deleted = 0
    for file_id in list(deps.kept_originals):
        async with file_lock(deps, file_id):
            key = deps.kept_originals.get(file_id)
            if key is None:  # settled meanwhile (a retry with the same key published it)
                continue
            # End offsets are read now, after the failed publish: an event it stored is below them.
            await deps.log_caught_up()
            if deps.statuses.get(file_id) is None:
                await deps.files.store.delete(str(key))
                deleted += 1
                log.info("file.uploaded was never stored; deleted its original", extra={"ctx": {"file_id": file_id}})
            else:
                log.info("file.uploaded was stored after all; the original stays for the pipeline",
                         extra={"ctx": {"file_id": file_id}})
            deps.kept_originals.pop(file_id, None)
    return deleted


class Replayed(Exception):
    """The file id was accepted before (a repeated Idempotency-Key or a redelivered bot record)."""

    def __init__(self, file_id: str):
        super().__init__(file_id)
        self.file_id = file_id


async def _accept_locked(req: UploadRequest, deps: UploadDeps, via: str, file_id: str) -> ev.FileUploaded:
    if file_id in deps.kept_originals and deps.log_caught_up is not None:
        # A retry after a publish of unknown outcome: learn that outcome first (a stored event makes
        # this a replay; the kept original is then the pipeline's and must not be overwritten).
        try:
            await deps.log_caught_up()
        except Exception as e:
            raise StorageFailed("the event log is unavailable") from e
        if deps.statuses.get(file_id) is not None:
            deps.kept_originals.pop(file_id, None)
    if already_accepted(deps, file_id, req.account_id, req.conversation_id) is not None:
        raise Replayed(file_id)
    conversation, content_type, caption = check_request(req, deps, via)
    try:
        key = ObjectKey(req.account_id, conversation.consumer_id, req.conversation_id, file_id, "original")
    except ValueError as e:
        raise Refused(422, "invalid_request", str(e)) from None
    event = ev.FileUploaded(
        file_id=file_id, account_id=req.account_id, conversation_id=req.conversation_id,
        consumer_id=conversation.consumer_id, sender=ev.Sender(id=req.principal.sub, role=req.principal.role),
        caption=caption, source=req.source, request_id=req.request_id, object_key=str(key),
        content_type=content_type, size_bytes=len(req.data))
    try:
        await deps.files.put(key, req.data)
    except Exception as e:
        log.error("storing original failed: %s", e, extra={"ctx": {"file_id": file_id}})
        # Nothing was published (nor, checked above, by an earlier attempt): a put that failed late
        # (after the server wrote it) is undone now.
        try:
            await deps.files.store.delete(str(key))
        except Exception:
            deps.kept_originals[file_id] = key  # settled once the store answers again
        raise StorageFailed("storage is unavailable") from e
    try:
        await send_all(deps.producer, [Outgoing(FILE_UPLOADED, req.conversation_id, event)])
    except Exception as e:
        # Unknown outcome: the broker may have stored the event. Keep the original; settle later.
        log.error("publishing file.uploaded failed: %s; its original is kept until the log shows whether "
                  "the event was stored", e, extra={"ctx": {"file_id": file_id}})
        deps.kept_originals[file_id] = key
        raise StorageFailed("the event log is unavailable") from e
    deps.kept_originals.pop(file_id, None)  # a retry that succeeded settles an earlier failure
    deps.statuses.apply(event)  # the status endpoint knows it before the view reads it back
    log.info("accepted %s %d bytes from %s", content_type, len(req.data), req.principal.role,
             extra={"ctx": {"file_id": file_id, "conversation_id": req.conversation_id}})
    return event
