"""Content disarm: untrusted upload -> a fresh image made of decoded pixels only.

What the sanitized variant is guaranteed to be:
  * the same type family as the upload (JPEG stays JPEG, PNG stays PNG, GIF stays GIF); the
    phone formats HEIC/HEIF and WebP become a JPEG, or a PNG when some pixel is transparent
    (not every browser shows them; a sequence or an animation keeps its first picture);
  * re-encoded by Pillow from decoded pixels: nothing of the original file is copied, so
    metadata (EXIF incl. GPS and thumbnail, XMP, IPTC, comments, PNG text chunks, ICC)
    and any bytes after the image end (polyglot payloads) are gone;
  * upright (EXIF orientation applied), sRGB, 8-bit (L/LA/RGB/RGBA/P/1), one frame;
  * without a target: the full decoded size, encoded with INTERMEDIATE settings;
  * with target_max_dimension: the longer side is min(original, target), already
    LANCZOS-downscaled and encoded with FINAL settings, so the resizer can keep it as is
    (the full-size pixels are never decoded for JPEG, never encoded for any type).
It is an internal variant; users only ever see the resizer's output.

Pure and CPU-bound: run it in an ImageWorkerPool worker (time and memory limits).
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from .decoding import decode_first_frame, open_trusted, wrapped_errors
from .encoding import FINAL, INTERMEDIATE, encode
from .formats import CONVERTED_TYPES
from .limits import ImageLimits
from .pixels import exif_orientation, normalise, upright, uses_transparency
from .sizing import downscale


@dataclass(frozen=True)
class ImageResult:
    data: bytes
    content_type: str
    width: int
    height: int


def sanitize_image(
    data: bytes,
    expected_type: str,
    limits: ImageLimits = ImageLimits(),
    target_max_dimension: int | None = None,
) -> ImageResult:
    image = open_trusted(data, expected_type, limits)
    # Downscaling commutes with the orientation transpose: the longer side is the same.
    image = decode_first_frame(image, at_least=target_max_dimension)
    with wrapped_errors("processing_failed", "cannot re-encode image"):
        # Read after load: a PNG eXIf chunk may follow IDAT. (A HEIF's orientation is its irot/imir
        # boxes, applied by libheif, which also resets the EXIF tag: never rotated twice.)
        orientation = exif_orientation(image)
        content_type = output_type(image, expected_type)
        image = upright(normalise(image, content_type), orientation)
        if target_max_dimension is not None:
            image = downscale(image, target_max_dimension)
        clean = encode(image, content_type, FINAL if target_max_dimension is not None else INTERMEDIATE)
    return ImageResult(clean, content_type, image.width, image.height)


def output_type(image: Image.Image, expected_type: str) -> str:
    """The type the sanitized variant is written as (decoded pixels in hand)."""
    if expected_type not in CONVERTED_TYPES:
        return expected_type
    return "image/png" if uses_transparency(image) else "image/jpeg"
