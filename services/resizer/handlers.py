"""Resizer: longer side to the account's max_image_dimension (never upscaled) plus a preview.

file.sanitized → file.resized | file.rejected. Idempotent (deterministic `final` key).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.adapters.crypto import EncryptedFileStore
from shared.adapters.kafka import Outgoing
from shared.contract import events as ev
from shared.contract.topics import FILE_RESIZED
from shared.images import ImageRejected, ImageWorkerPool, resize_image
from shared.pipeline import StageRejection, carry, companion_of, read_variant, reject, seal_for_file, write_variant
from shared.projections.account_settings import SettingsOf
from shared.runtime.logs import file_ctx
from shared.runtime.metrics import ServiceMetrics

log = logging.getLogger(__name__)
STAGE = "resizer"


@dataclass
class ResizerDeps:
    files: EncryptedFileStore
    pool: ImageWorkerPool
    settings_of: SettingsOf
    metrics: ServiceMetrics | None = None


async def resize_sanitized(event: ev.FileSanitized, deps: ResizerDeps) -> list[Outgoing]:
    max_dimension = (await deps.settings_of(event.account_id)).max_image_dimension
    files = deps.files.scoped()  # the read, the write and the preview's seal share one key fetch
    try:
        data, key_id = await read_variant(event, files)
        result = await deps.pool.run(resize_image, data, event.content_type, max_dimension)
        final_key = await write_variant(event, files, "final", result.data, key_id)
        preview_sealed = await seal_for_file(event, files, companion_of(final_key, "preview"), result.preview, key_id)
    except (StageRejection, ImageRejected) as r:
        return [reject(event, STAGE, r.reason, r.detail)]
    if deps.metrics is not None:
        deps.metrics.bytes.labels("final").inc(len(result.data))
    log.info("resized to %dx%d (max %d)", result.width, result.height, max_dimension, **file_ctx(event))
    return [
        Outgoing(
            FILE_RESIZED,
            event.conversation_id,
            ev.FileResized(
                **carry(event),
                object_key=str(final_key),
                content_type=result.content_type,
                size_bytes=len(result.data),
                width=result.width,
                height=result.height,
                preview_sealed=preview_sealed,
                uploaded_at=event.uploaded_at,
            ),
        )
    ]
