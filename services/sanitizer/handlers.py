"""Sanitizer: scan the original for malware, then disarm it (re-encode from pixels only).

file.uploaded → file.sanitized | file.rejected. Idempotent: the sanitized variant has a
deterministic key, so a redelivered record rewrites the same object.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from shared import events as ev
from shared.crypto import BlobIntegrityError, ConsumerForgotten, EncryptedFileStore
from shared.images import ImageLimits, ImageRejected, sanitize_image
from shared.kafka import Outgoing
from shared.logs import file_ctx
from shared.pipeline import carry, reject
from shared.state import AccountSettingsState
from shared.storage import ObjectKey
from shared.topics import FILE_SANITIZED

log = logging.getLogger(__name__)
STAGE = "sanitizer"


@dataclass
class SanitizerDeps:
    files: EncryptedFileStore
    scanner: object  # shared.scanner.Scanner
    pool: object     # shared.images.ImageWorkerPool
    accounts: AccountSettingsState
    limits: ImageLimits
    metrics: object = None


async def sanitize_uploaded(event: ev.FileUploaded, deps: SanitizerDeps) -> list[Outgoing]:
    original_key = ObjectKey.parse(event.object_key)
    try:
        original, key_id = await deps.files.get(original_key)
    except ConsumerForgotten:
        return [reject(event, STAGE, "consumer_forgotten", "the consumer's key was destroyed")]
    except FileNotFoundError:
        if not await deps.files.keys.has_any(event.account_id, event.consumer_id):
            return [reject(event, STAGE, "consumer_forgotten", "the consumer's files were erased")]
        return [reject(event, STAGE, "processing_failed", "original object is missing")]
    except BlobIntegrityError as e:
        log.error("original failed authentication: %s", e, **file_ctx(event))
        return [reject(event, STAGE, "processing_failed", "stored original failed authentication")]

    verdict = await deps.scanner.scan(original)  # ScannerUnavailable is transient: retried, never "clean"
    if not verdict.clean:
        log.warning("malware detected: %s", verdict.signature, **file_ctx(event))
        return [reject(event, STAGE, "malware_detected", verdict.signature or "malware")]

    target = deps.accounts.get(event.account_id).max_image_dimension
    try:
        result = await deps.pool.run(sanitize_image, original, event.content_type, deps.limits, target)
    except ImageRejected as e:
        return [reject(event, STAGE, e.reason, e.detail)]

    sanitized_key = ObjectKey(original_key.account_id, original_key.consumer_id, original_key.conversation_id,
                              original_key.file_id, "sanitized")
    try:
        await deps.files.put_existing_key(sanitized_key, result.data, key_id)
    except ConsumerForgotten:
        return [reject(event, STAGE, "consumer_forgotten", "the consumer's key was destroyed")]
    if deps.metrics is not None:
        deps.metrics.bytes.labels("sanitized").inc(len(result.data))
    log.info("sanitized %dx%d %s", result.width, result.height, result.content_type, **file_ctx(event))
    return [Outgoing(FILE_SANITIZED, event.conversation_id, ev.FileSanitized(
        **carry(event), object_key=str(sanitized_key), content_type=result.content_type,
        size_bytes=len(result.data), width=result.width, height=result.height, uploaded_at=event.occurred_at))]
