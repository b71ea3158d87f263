"""Accepting a file: the same path for HTTP uploads and bot records on file.share.requested.

The original is encrypted and stored, then file.uploaded is published; if publishing
fails the stored original is removed again, so nothing half-done remains.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

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


def file_id_for_request(account_id: str, request_id: str) -> str:
    """The file id of a bot record on file.share.requested: its request_id is its idempotency key,
    so a redelivered record (at-least-once) names the same file and is recognised."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"file.share.requested\n{account_id}\n{request_id}"))


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


async def accept_file(req: UploadRequest, deps: UploadDeps, via: str = "http") -> ev.FileUploaded:
    """Check, encrypt and store the original, publish file.uploaded. Raises Refused or StorageFailed."""
    file_id = req.file_id or str(uuid.uuid4())
    entry = deps.locks.setdefault(file_id, [asyncio.Lock(), 0])
    entry[1] += 1
    try:
        async with entry[0]:
            return await _accept_locked(req, deps, via, file_id)
    finally:
        entry[1] -= 1
        if entry[1] == 0:
            deps.locks.pop(file_id, None)


class Replayed(Exception):
    """The file id was accepted before (a repeated Idempotency-Key or a redelivered bot record)."""

    def __init__(self, file_id: str):
        super().__init__(file_id)
        self.file_id = file_id


async def _accept_locked(req: UploadRequest, deps: UploadDeps, via: str, file_id: str) -> ev.FileUploaded:
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
        raise StorageFailed("storage is unavailable") from e
    try:
        await send_all(deps.producer, [Outgoing(FILE_UPLOADED, req.conversation_id, event)])
    except Exception as e:
        log.error("publishing file.uploaded failed: %s; removing the stored original", e,
                  extra={"ctx": {"file_id": file_id}})
        try:
            await deps.files.store.delete(str(key))
        except Exception:
            log.exception("could not remove the original %s; retention will expire it", key)
        raise StorageFailed("the event log is unavailable") from e
    deps.statuses.apply(event)  # the status endpoint knows it before the view reads it back
    log.info("accepted %s %d bytes from %s", content_type, len(req.data), req.principal.role,
             extra={"ctx": {"file_id": file_id, "conversation_id": req.conversation_id}})
    return event
