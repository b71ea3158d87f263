"""Sanitizer: scan the original for malware, then disarm it (re-encode from pixels only).

file.uploaded → file.sanitized | file.rejected. Idempotent: the sanitized variant has a
deterministic key, so a redelivered record rewrites the same object.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.adapters.crypto import EncryptedFileStore
from shared.adapters.kafka import Outgoing
from shared.adapters.scanner import Scanner
from shared.contract import events as ev
from shared.contract.topics import FILE_SANITIZED
from shared.images import ImageLimits, ImageRejected, ImageWorkerPool, sanitize_image
from shared.pipeline import StageRejection, carry, read_variant, reject, write_variant
from shared.projections.account_settings import SettingsOf
from shared.runtime.logs import file_ctx
from shared.runtime.metrics import ServiceMetrics
from shared.runtime.tracing import step_span

log = logging.getLogger(__name__)
STAGE = "sanitizer"


@dataclass
class SanitizerDeps:
    files: EncryptedFileStore
    scanner: Scanner
    pool: ImageWorkerPool
    settings_of: SettingsOf
    limits: ImageLimits
    metrics: ServiceMetrics | None = None


async def sanitize_uploaded(event: ev.FileUploaded, deps: SanitizerDeps) -> list[Outgoing]:
    files = deps.files.scoped()  # the read and the write share one key fetch
    try:
        original, key_id = await read_variant(event, files)
        with step_span("scan"):
            verdict = await deps.scanner.scan(original)  # ScannerUnavailable is transient: retried, never "clean"
        if not verdict.clean:
            log.warning("malware detected: %s", verdict.signature, **file_ctx(event))
            raise StageRejection("malware_detected", verdict.signature or "malware")
        target = (await deps.settings_of(event.account_id)).max_image_dimension
        with step_span("disarm"):
            result = await deps.pool.run(sanitize_image, original, event.content_type, deps.limits, target)
        sanitized_key = await write_variant(event, files, "sanitized", result.data, key_id)
    except (StageRejection, ImageRejected) as r:
        return [reject(event, STAGE, r.reason, r.detail)]
    if deps.metrics is not None:
        deps.metrics.bytes.labels("sanitized").inc(len(result.data))
    log.info("sanitized %dx%d %s", result.width, result.height, result.content_type, **file_ctx(event))
    return [
        Outgoing(
            FILE_SANITIZED,
            event.conversation_id,
            ev.FileSanitized(
                **carry(event),
                object_key=str(sanitized_key),
                content_type=result.content_type,
                size_bytes=len(result.data),
                width=result.width,
                height=result.height,
                uploaded_at=event.occurred_at,
            ),
        )
    ]
