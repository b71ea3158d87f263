"""Document work in the image worker pool (its killable workers, time and memory limits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.images import ImageRejected, ImageWorkerPool

from .errors import DocumentRejected

# The pool speaks of images when a worker fails: a worker that ran out of memory held a
# document bomb; a time limit or a dead worker stays processing_failed, as for photos.
_POOL_REASONS = {"image_too_large": "file_too_complex"}


async def run_document_work(pool: ImageWorkerPool, fn: Callable[..., Any], *args: Any) -> Any:
    """`await pool.run(fn, *args)` whose failures are all DocumentRejected. The document code turns
    every failure of its own (embedded pictures included) into DocumentRejected, so an
    ImageRejected here can only come from the pool."""
    try:
        return await pool.run(fn, *args)
    except ImageRejected as exc:
        raise DocumentRejected(_POOL_REASONS.get(exc.reason, "processing_failed"), exc.detail) from exc
