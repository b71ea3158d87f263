"""Resizer: longer side to the account's max_image_dimension (never upscaled) plus a preview.

file.sanitized → file.resized | file.rejected. Idempotent (deterministic `final` key).
"""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass

from shared import events as ev
from shared.crypto import BlobIntegrityError, ConsumerForgotten, EncryptedFileStore
from shared.images import ImageRejected, resize_image
from shared.kafka import Outgoing
from shared.logs import file_ctx
from shared.pipeline import carry, reject
from shared.state import AccountSettingsState
from shared.storage import ObjectKey
from shared.topics import FILE_RESIZED

log = logging.getLogger(__name__)
STAGE = "resizer"


@dataclass
class ResizerDeps:
    files: EncryptedFileStore
    pool: object  # shared.images.ImageWorkerPool
    accounts: AccountSettingsState
    metrics: object = None


async def resize_sanitized(event: ev.FileSanitized, deps: ResizerDeps) -> list[Outgoing]:
    sanitized_key = ObjectKey.parse(event.object_key)
    try:
        data, key_id = await deps.files.get(sanitized_key)
    except ConsumerForgotten:
        # The key this file was encrypted with is gone, even if the consumer has a newer key
        # (a conversation after the forget): the file belongs to the forgotten past.
        return [reject(event, STAGE, "consumer_forgotten", "the consumer's key was destroyed")]
    except FileNotFoundError:
        if not await deps.files.keys.has_any(event.account_id, event.consumer_id):
            return [reject(event, STAGE, "consumer_forgotten", "the consumer's files were erased")]
        return [reject(event, STAGE, "processing_failed", "sanitized object is missing")]
    except BlobIntegrityError:
        return [reject(event, STAGE, "processing_failed", "stored sanitized image failed authentication")]

    max_dimension = deps.accounts.get(event.account_id).max_image_dimension
    try:
        result = await deps.pool.run(resize_image, data, event.content_type, max_dimension)
    except ImageRejected as e:
        return [reject(event, STAGE, e.reason, e.detail)]

    final_key = ObjectKey(sanitized_key.account_id, sanitized_key.consumer_id, sanitized_key.conversation_id,
                          sanitized_key.file_id, "final")
    try:
        await deps.files.put_existing_key(final_key, result.data, key_id)
    except ConsumerForgotten:
        return [reject(event, STAGE, "consumer_forgotten", "the consumer's key was destroyed")]
    if deps.metrics is not None:
        deps.metrics.bytes.labels("final").inc(len(result.data))
    log.info("resized to %dx%d (max %d)", result.width, result.height, max_dimension, **file_ctx(event))
    return [Outgoing(FILE_RESIZED, event.conversation_id, ev.FileResized(
        **carry(event), object_key=str(final_key), content_type=result.content_type, size_bytes=len(result.data),
        width=result.width, height=result.height, preview=base64.b64encode(result.preview).decode(),
        uploaded_at=event.uploaded_at))]
