"""Final variant: longer side to the account's max_image_dimension, never upscaled, plus a preview."""

from __future__ import annotations

from dataclasses import dataclass

from .decoding import decode_first_frame, open_trusted, wrapped_errors
from .encoding import FINAL, PREVIEW_DIMENSION, encode, encode_preview
from .limits import ImageLimits
from .pixels import exif_orientation, normalise, upright
from .sizing import downscale

# Everything Pillow reports in `info` for files our own encoder wrote (encoding.py). A file
# showing anything else (EXIF, ICC, XMP, comments, PNG text...) did not come from the
# sanitizer, so it is never passed through, whatever size it has.
_OWN_ENCODER_INFO = frozenset(
    (
        "jfif",
        "jfif_version",
        "jfif_unit",
        "jfif_density",
        "progressive",
        "progression",
        "transparency",
        "background",
        "version",
        "duration",
    )
)


def _is_own_encoding(image) -> bool:
    return set(image.info) <= _OWN_ENCODER_INFO and getattr(image, "n_frames", 1) == 1


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
    if max(image.size) <= max_dimension and _is_own_encoding(image):
        # Already final: the sanitizer wrote these pixels itself (it got the same target as
        # a hint), or the photo is small. Re-encoding would only cost CPU and quality, so the
        # bytes are kept; the preview decode (JPEG at 1/8 scale) still checks every scan.
        # (Bytes after the image end are not visible here: the pipeline guarantees the input
        # is the sanitizer's output, stored AES-GCM-authenticated under its object key.)
        width, height = image.size  # before the preview decode shrinks it
        image = decode_first_frame(image, at_least=PREVIEW_DIMENSION)
        with wrapped_errors("processing_failed", "cannot make preview"):
            preview = encode_preview(image)
        return ResizeResult(data, content_type, width, height, preview)

    image = decode_first_frame(image, at_least=max_dimension)
    with wrapped_errors("processing_failed", "cannot resize image"):
        # Orientation is a no-op for sanitized input (no EXIF left); applied anyway so the
        # resizer never shows a sideways photo, whatever it was given.
        image = upright(normalise(image, content_type), exif_orientation(image))
        image = downscale(image, max_dimension)
        final = encode(image, content_type, FINAL)
        preview = encode_preview(image)
    return ResizeResult(final, content_type, image.width, image.height, preview)
