"""Helpers every pipeline stage uses: carry the file's fields forward, read and write the file's
variants, reject, poison records."""

from __future__ import annotations

import base64
import json
import logging
from contextlib import contextmanager
from typing import TypeVar

from aiokafka import ConsumerRecord

from shared.adapters.crypto import BlobIntegrityError, ConsumerForgotten, EncryptedFileStore
from shared.adapters.kafka import Outgoing
from shared.adapters.storage import ObjectKey
from shared.contract import events as ev
from shared.contract.topics import FILE_REJECTED
from shared.runtime.logs import file_ctx
from shared.runtime.tracing import describe

_E = TypeVar("_E", bound=ev.FileEvent)

log = logging.getLogger(__name__)

_CARRIED = tuple(n for n in ev.FileEvent.model_fields if n not in ev.Event.model_fields)


def carry(event: ev.FileEvent) -> dict:
    """The fields of the file that every later event repeats (ids, sender, caption, source)."""
    return {name: getattr(event, name) for name in _CARRIED}


class StageRejection(Exception):
    """The file cannot go on: becomes a file.rejected with this reason (like ImageRejected)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


async def read_variant(event: ev.FileEvent, files: EncryptedFileStore) -> tuple[bytes, str]:
    """Decrypt the blob the event names; returns (plaintext, consumer key id).

    A destroyed key is consumer_forgotten even if the consumer has a newer key (a conversation
    after the forget): the file belongs to the forgotten past. Forget destroys keys first, then
    blobs, so a missing blob with no key left is a forget too."""
    return await _open_variant(event, files, files.get)


async def check_variant(event: ev.FileEvent, files: EncryptedFileStore) -> str:
    """Like read_variant, from the blob's header alone (EncryptedFileStore.check): the blob is there,
    under a live consumer key, bound to its object key. Returns the consumer key id."""
    return await _open_variant(event, files, files.check)


async def _open_variant(event: ev.FileEvent, files: EncryptedFileStore, open_):
    key = ObjectKey.parse(event.object_key)
    with _stage_errors(event, key.variant):
        try:
            return await open_(key)
        except FileNotFoundError:
            if not await files.keys.has_any(event.account_id, event.consumer_id):
                raise StageRejection("consumer_forgotten", "the consumer's files were erased") from None
            raise StageRejection("processing_failed", f"{key.variant} object is missing") from None


def companion_of(key: ObjectKey | str, name: str) -> str:
    """What a sealed companion of a blob (its preview) is bound to: `{object_key}#{name}`."""
    return f"{key}#{name}"


def caption_binding(file_id: str) -> str:
    """What a sealed caption is bound to (contract: associated data `{file_id}#caption`)."""
    return f"{file_id}#caption"


async def seal_for_file(
    event: ev.FileEvent, files: EncryptedFileStore, bound_to: str, plaintext: bytes, key_id: str
) -> str:
    """Base64 of `plaintext` encrypted under the file's consumer key (see EncryptedFileStore.seal)."""
    with _stage_errors(event, bound_to):
        return base64.b64encode(
            await files.seal(event.account_id, event.consumer_id, bound_to, plaintext, key_id)
        ).decode()


async def open_for_file(event: ev.FileEvent, files: EncryptedFileStore, bound_to: str, sealed_b64: str | None) -> bytes:
    """The plaintext of seal_for_file(); b"" when nothing was sealed."""
    if not sealed_b64:
        return b""
    with _stage_errors(event, bound_to):
        try:
            sealed = base64.b64decode(sealed_b64, validate=True)
        except ValueError:
            raise BlobIntegrityError(f"sealed {bound_to} is not base64") from None
        return await files.open_sealed(event.account_id, event.consumer_id, bound_to, sealed)


async def open_caption(event: ev.FileEvent, files: EncryptedFileStore) -> str | None:
    if not event.caption_sealed:
        return None
    return (await open_for_file(event, files, caption_binding(event.file_id), event.caption_sealed)).decode()


@contextmanager
def _stage_errors(event: ev.FileEvent, what: str):
    """Crypto errors of a stage's read or write, as the rejection the file's status shows."""
    try:
        yield
    except ConsumerForgotten:
        raise StageRejection("consumer_forgotten", "the consumer's key was destroyed") from None
    except BlobIntegrityError as e:
        log.error("stored %s failed authentication: %s", what, e, **file_ctx(event))
        raise StageRejection("processing_failed", f"stored {what} failed authentication") from None


async def write_variant(
    event: ev.FileEvent, files: EncryptedFileStore, variant: str, data: bytes, key_id: str
) -> ObjectKey:
    """Store the file's next variant under the same consumer key as its input; a stage never
    creates a key, so a forgotten consumer's file cannot come back."""
    key = ObjectKey.parse(event.object_key).with_variant(variant)
    with _stage_errors(event, variant):
        await files.put_existing_key(key, data, key_id)
    return key


def reject(event: ev.FileEvent, stage: str, reason: str, detail: str = "") -> Outgoing:
    log.info("rejected at %s: %s %s", stage, reason, detail, **file_ctx(event))
    return Outgoing(
        FILE_REJECTED,
        event.conversation_id,
        ev.FileRejected(**{**carry(event), "caption_sealed": None}, stage=stage, reason=reason, detail=detail[:500]),
    )


def poison_to_rejection(stage: str):
    """A record the stage cannot handle becomes file.rejected (processing_failed) when it
    names a file; one without usable ids is logged and skipped. Never a stuck partition."""

    def on_poison(record: ConsumerRecord, exc: BaseException) -> list[Outgoing]:
        try:
            data = json.loads(record.value)
            rejected = ev.FileRejected(
                file_id=data["file_id"],
                account_id=data["account_id"],
                conversation_id=data["conversation_id"],
                consumer_id=data["consumer_id"],
                sender=data.get("sender") or {"id": "unknown", "role": "bot"},
                source=data.get("source") or "local",
                request_id=data.get("request_id"),
                stage=stage,
                reason="processing_failed",
                detail=f"{type(exc).__name__}: {exc}"[:500],
            )
        except Exception:
            log.error(
                "%s: skipping unusable record %s[%d]@%d (%s)",
                stage,
                record.topic,
                record.partition,
                record.offset,
                type(exc).__name__,
            )
            return []
        return [Outgoing(FILE_REJECTED, rejected.conversation_id, rejected)]

    return on_poison


def parse_file_event(record: ConsumerRecord, model: type[_E]) -> _E:
    event = model.model_validate_json(record.value)
    describe(event)  # the stage's span names the file
    return event
