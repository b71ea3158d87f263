"""The sanitizer or resizer service with its image functions swapped for pyvips equivalents.

    python -m bench.vips_stage sanitizer|resizer

Used by bench.pipeline to run the same end-to-end pipeline (upload, clamd scan, AES-GCM
storage in S3, Kafka, delivery) a second time with pyvips doing the pixel work, so
"pipeline throughput >= 0.8x pyvips on the same cores" compares two pipelines, not a
pipeline against a bare thumbnail loop. Bench code only: production never imports it.

The handlers call `sanitize_image` / `resize_image` through their module globals
(services.sanitizer.handlers / services.resizer.handlers) and hand them to the
ImageWorkerPool, which pickles the function *by reference* to a forkserver worker. So
the replacements are top-level functions of this module (importable as
bench.vips_stage in the worker) and are patched into the handler modules before the
service's normal main runs.

Same contract as ours, so the comparison is like for like:
  * sanitize: only the allowed loaders (jpeg/png/gif, checked by the loader libvips picks
    against the expected type), header limits checked before decoding, truncated files
    refused (fail=True), EXIF orientation applied, every metadata item dropped
    (keep=none), re-encoded in the same format. With the account's dimension as a hint
    (what our sanitizer gets), it shrinks on load to that size, never upscaling, exactly as
    ours does; without it, full size at intermediate quality.
  * resize: thumbnail_buffer to the account's max dimension (size=down: never upscaled),
    re-encoded, plus the 64 px JPEG preview. (Ours keeps the sanitizer's bytes when they are
    already final and only decodes for the preview; this one always re-encodes, ~10 ms more
    CPU per 800 px photo on this machine.)
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("VIPS_CONCURRENCY", "1")  # one thread per worker, like Pillow; the pool gives one worker per core

from shared.images import ImageLimits, ImageRejected, ImageResult, ResizeResult  # noqa: E402

_LOADERS = {
    "image/jpeg": ("jpegload_buffer",),
    "image/png": ("pngload_buffer", "spngload_buffer"),
    "image/gif": ("gifload_buffer",),
}
_FINAL = {
    "image/jpeg": ".jpg[Q=85,interlace,keep=none]",
    "image/png": ".png[compression=1,keep=none]",
    "image/gif": ".gif[keep=none]",
}
_INTERMEDIATE = {**_FINAL, "image/jpeg": ".jpg[Q=92,keep=none]"}
_PREVIEW = ".jpg[Q=75,keep=none]"
PREVIEW_DIMENSION = 64


def _vips():
    import pyvips

    pyvips.cache_set_max(0)  # every photo does the full work, as ours does
    return pyvips


def _checked_header(pyvips, data: bytes, content_type: str, limits: ImageLimits):
    """Open lazily (header only) and refuse what ours refuses before any pixel is decoded."""
    if content_type not in _LOADERS:
        raise ImageRejected("unsupported_type", content_type)
    try:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential", fail=True)
        loader = image.get("vips-loader")
    except pyvips.Error as e:
        raise ImageRejected("corrupt_image", str(e).splitlines()[0]) from None
    if loader not in _LOADERS[content_type]:
        raise ImageRejected("unsupported_type", f"{loader} for {content_type}")
    pages = image.get("n-pages") if image.get_typeof("n-pages") else 1
    if image.width * image.height > limits.max_pixels or pages > limits.max_frames:
        raise ImageRejected("image_too_large", f"{image.width}x{image.height}x{pages}")
    return image


def vips_sanitize_image(
    data: bytes, expected_type: str, limits: ImageLimits = ImageLimits(), target_max_dimension: int | None = None
) -> ImageResult:
    pyvips = _vips()
    _checked_header(pyvips, data, expected_type, limits)
    try:
        if target_max_dimension is not None:
            image = pyvips.Image.thumbnail_buffer(
                data, target_max_dimension, height=target_max_dimension, size="down", option_string="fail=true"
            )
            out = image.write_to_buffer(_FINAL[expected_type])
        else:
            image = pyvips.Image.new_from_buffer(data, "", fail=True).autorot()
            out = image.write_to_buffer(_INTERMEDIATE[expected_type])
    except pyvips.Error as e:
        raise ImageRejected("corrupt_image", str(e).splitlines()[0]) from None
    return ImageResult(out, expected_type, image.width, image.height)


def vips_resize_image(
    data: bytes, content_type: str, max_dimension: int, limits: ImageLimits = ImageLimits()
) -> ResizeResult:
    pyvips = _vips()
    _checked_header(pyvips, data, content_type, limits)
    try:
        image = pyvips.Image.thumbnail_buffer(
            data, max_dimension, height=max_dimension, size="down", option_string="fail=true"
        )
        final = image.write_to_buffer(_FINAL[content_type])
        preview = pyvips.Image.thumbnail_buffer(
            final, PREVIEW_DIMENSION, height=PREVIEW_DIMENSION, size="down"
        ).write_to_buffer(_PREVIEW)
    except pyvips.Error as e:
        raise ImageRejected("processing_failed", str(e).splitlines()[0]) from None
    return ResizeResult(final, content_type, image.width, image.height, preview)


def run(service: str) -> None:
    from shared.runtime.service import run_service

    if service == "sanitizer":
        import services.sanitizer.handlers as handlers

        handlers.sanitize_image = vips_sanitize_image
        from services.sanitizer.app import bootstrap
    elif service == "resizer":
        import services.resizer.handlers as handlers

        handlers.resize_image = vips_resize_image
        from services.resizer.app import bootstrap
    else:
        raise SystemExit(f"usage: python -m bench.vips_stage sanitizer|resizer (got {service!r})")
    run_service(service, bootstrap)


if __name__ == "__main__":
    import bench.vips_stage as stage  # the functions handed to the pool must pickle as bench.vips_stage.*

    stage.run(sys.argv[1] if len(sys.argv) > 1 else "")
