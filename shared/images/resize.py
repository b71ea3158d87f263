"""Final variant: longer side to the account's max_image_dimension, never upscaled, plus a preview."""
from __future__ import annotations

from dataclasses import dataclass

from .decoding import decode_first_frame, open_trusted, wrapped_errors
from .encoding import FINAL, PREVIEW_DIMENSION, encode, encode_preview
from .limits import ImageLimits
from .pixels import normalise
from .sizing import downscale


@dataclass(frozen=True)
class ResizeResult:
    data: bytes
    content_type: str
    width: int
    height: int
    preview: bytes  # JPEG, longer side 64 px, <= 30 KB


def resize_image(
    data: bytes, content_type: str, max_dimension: int, limits: ImageLimits = ImageLimits()
) -> ResizeResult:
    """`data` is a sanitized variant (sanitize_image output), still opened with the allowlist and limits."""
    image = open_trusted(data, content_type, limits)
    if max(image.size) <= max_dimension:
        # Already final: the sanitizer wrote these pixels itself (it got the same target as
        # a hint), or the photo is small. Re-encoding would only cost CPU and quality, so the
        # bytes are kept; the preview decode (JPEG at 1/8 scale) still checks every scan.
        width, height = image.size  # before the preview decode shrinks it
        image = decode_first_frame(image, at_least=PREVIEW_DIMENSION)
        with wrapped_errors("processing_failed", "cannot make preview"):
            preview = encode_preview(image)
        return ResizeResult(data, content_type, width, height, preview)

    image = decode_first_frame(image, at_least=max_dimension)
    with wrapped_errors("processing_failed", "cannot resize image"):
        image = downscale(normalise(image, content_type), max_dimension)
        final = encode(image, content_type, FINAL)
        preview = encode_preview(image)
    return ResizeResult(final, content_type, image.width, image.height, preview)

