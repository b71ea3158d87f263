"""Opening untrusted bytes: only allowlisted decoders, limits checked from the header, errors wrapped.

Everything a decoder raises becomes an ImageRejected, except MemoryError,
which is left to the worker pool (it replaces the worker whose heap hit the
memory limit).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from PIL import Image, ImageFile

from .errors import ImageRejected, RejectionReason
from .formats import FORMAT_CONTENT_TYPES, PILLOW_FORMAT_OF, SNIFF_BYTES, sniff_content_type
from .heif_boxes import declared_sizes
from .jpeg_scans import count_jpeg_scans
from .limits import ImageLimits

JPEG_FORMATS = frozenset(("JPEG", "MPO"))
# libheif's own bomb guard (image size, tiles, items) answers with this in its error message.
_LIBHEIF_LIMIT = "Security limit exceeded"


@contextmanager
def wrapped_errors(reason: RejectionReason, what: str) -> Iterator[None]:
    """Turn any exception of the block into ImageRejected(reason); bomb warnings are errors too."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (ImageRejected, MemoryError):
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected("image_too_large", f"{what}: {exc}") from exc
        except Exception as exc:  # any decoder failure is one domain error
            if _LIBHEIF_LIMIT in str(exc):
                raise ImageRejected("image_too_large", f"{what}: {exc}") from exc
            raise ImageRejected(reason, f"{what}: {type(exc).__name__}: {exc}") from exc


def _require_safe_pillow_globals() -> None:
    # Pillow's own bomb guard stays as a second line behind ImageLimits.max_pixels, and a
    # truncated file must fail rather than half-decode. Someone flipping these process-wide
    # globals (a library, a test) must not silently switch our protections off.
    if Image.MAX_IMAGE_PIXELS is None or ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("unsafe Pillow globals: MAX_IMAGE_PIXELS=None or LOAD_TRUNCATED_IMAGES=True")


@lru_cache(maxsize=1)
def _register_heif_decoder() -> None:
    """Add pillow-heif's HEIF plugin to Pillow's registry, the first time a HEIC is opened (in a
    worker), not when the module is imported. Embedded thumbnails, depth and auxiliary pictures
    are never read (we decode the primary picture only), and libheif decodes on one thread: the
    pool already runs one worker per CPU, and the time limit is per call. libheif's own security
    limits stay on, behind ImageLimits."""
    import pillow_heif

    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False, decode_threads=1)


def open_trusted(data: bytes, expected_type: str, limits: ImageLimits) -> Image.Image:
    """Parse the header only (no pixels yet) and enforce type, pixel and frame limits."""
    _require_safe_pillow_globals()
    sniffed = sniff_content_type(data[:SNIFF_BYTES])
    if sniffed is None:
        raise ImageRejected("unsupported_type", "content is not a JPEG, PNG, GIF, HEIC or WebP image")
    if sniffed != expected_type:
        raise ImageRejected("unsupported_type", f"content is {sniffed}, expected {expected_type}")
    if sniffed == "image/jpeg":
        check_jpeg_scans(data, limits.max_jpeg_scans)
    if sniffed == "image/heic":
        check_heif_sizes(data, limits.max_pixels)
        _register_heif_decoder()
    with wrapped_errors("corrupt_image", "cannot read image header"):
        image = Image.open(io.BytesIO(data), formats=(PILLOW_FORMAT_OF[expected_type],))
    if FORMAT_CONTENT_TYPES.get(image.format or "") != expected_type:
        raise ImageRejected("unsupported_type", f"decoder found {image.format}, expected {expected_type}")
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected("corrupt_image", f"image header declares {width}x{height}")
    if width * height > limits.max_pixels:
        raise ImageRejected(
            "image_too_large",
            f"image header declares {width}x{height} = {width * height} pixels, limit {limits.max_pixels}",
        )
    with wrapped_errors("corrupt_image", "cannot count frames"):
        # GIF: walks the frame headers without decoding pixels; PNG/MPO/WebP/HEIF: read from the header.
        frames = getattr(image, "n_frames", 1)
    if frames > limits.max_frames:
        raise ImageRejected("image_too_large", f"{frames} frames, limit {limits.max_frames}")
    return image


def check_jpeg_scans(data: bytes, limit: int) -> None:
    """Refuse a JPEG with more scans than `limit` before any decoder runs: each scan makes libjpeg
    walk the whole picture again, so thousands of them hold a worker for minutes (a scan bomb)."""
    scans = count_jpeg_scans(data, stop_after=limit)
    if scans > limit:
        raise ImageRejected(
            "image_too_large", f"JPEG has more than {limit} scans (progressive scan bomb); a normal photo has about 10"
        )


def check_heif_sizes(data: bytes, max_pixels: int) -> None:
    """Refuse a HEIF any of whose pictures (coded size, grid or tile) is over the pixel limit,
    whatever smaller crop of it the file says to show."""
    for width, height in declared_sizes(data):
        if width * height > max_pixels:
            raise ImageRejected(
                "image_too_large",
                f"HEIF declares a {width}x{height} picture = {width * height} pixels, limit {max_pixels}",
            )


def decode_first_frame(image: Image.Image, at_least: int | None = None) -> Image.Image:
    """Decode the pixels of the first frame (the primary picture of an MPO).

    With `at_least`, a JPEG is decoded at a reduced DCT scale (1/2, 1/4, 1/8)
    whose longer side is still >= at_least: the cheapest correct way to get a
    downscaled photo, since the full-size pixels are never materialised.
    """
    with wrapped_errors("corrupt_image", "cannot decode image"):
        # A HEIF file's picture is its primary item, where the decoder opened it (not always item 0).
        if image.tell() != 0 and image.format != "HEIF":
            image.seek(0)
        if at_least is not None and image.format in JPEG_FORMATS:
            width, height = image.size
            scale = at_least / max(width, height)
            if scale < 1:
                image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
    return image
