"""Encoding decoded pixels into a fresh file that carries nothing but those pixels.

No metadata argument is ever passed (no exif, icc_profile, pnginfo, comment,
xmp) and the image's `info` is emptied first, because Pillow's savers copy
some of it (JPEG comment, PNG icc_profile) from the source into the output.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from .sizing import fit_within, resampleable


@dataclass(frozen=True)
class EncoderProfile:
    jpeg_quality: int
    jpeg_progressive: bool
    # zlib level. Pillow's PNG writer already picks a row filter per line; above level 1
    # zlib costs 1.5x (level 3) to 6x (level 6) the CPU for 5-15% smaller files on photos.
    png_compress_level: int


# What users download: progressive JPEG q85 (progressive always uses optimal Huffman tables).
FINAL = EncoderProfile(jpeg_quality=85, jpeg_progressive=True, png_compress_level=1)
# A full-size variant the resizer will decode again: high fidelity, cheapest to write.
INTERMEDIATE = EncoderProfile(jpeg_quality=92, jpeg_progressive=False, png_compress_level=1)

PREVIEW_DIMENSION = 64
PREVIEW_MAX_BYTES = 30 * 1024
_PREVIEW_QUALITIES = (75, 60, 45, 30)


@contextmanager
def _without_info(image: Image.Image) -> Iterator[None]:
    """Hide the decoder's info (EXIF, ICC, comments, text chunks) from the saver, without
    mutating the caller's image for good."""
    saved, image.info = image.info, {}
    try:
        yield
    finally:
        image.info = saved


def _gif_ready(image: Image.Image) -> Image.Image:
    """GIF holds 256 palette colours and 1-bit transparency: quantise, keeping index 255 transparent."""
    if image.mode in ("P", "L"):
        return image
    if "A" in image.getbands():
        rgba = image.convert("RGBA")
        palette_image = rgba.convert("RGB").quantize(255)
        transparent = rgba.getchannel("A").point(lambda a: 255 if a < 128 else 0, mode="1")
        palette_image.paste(255, mask=transparent)
        palette_image.info["transparency"] = 255
        return palette_image
    return image.convert("RGB").quantize(256)


def encode(image: Image.Image, content_type: str, profile: EncoderProfile) -> bytes:
    if content_type == "image/gif":
        image = _gif_ready(image)
    params: dict = {}
    transparency = image.info.get("transparency")
    if image.mode == "P" and transparency is not None:
        params["transparency"] = transparency  # the one info entry that is pixel data
    out = io.BytesIO()
    with _without_info(image):
        if content_type == "image/jpeg":
            image.save(
                out, "JPEG", quality=profile.jpeg_quality, progressive=profile.jpeg_progressive, exif=b"", **params
            )
        elif content_type == "image/png":
            image.save(out, "PNG", compress_level=profile.png_compress_level, **params)
        elif content_type == "image/gif":
            image.save(out, "GIF", **params)
        else:
            raise ValueError(f"no encoder for {content_type}")
    return out.getvalue()


def _flattened_rgb(image: Image.Image) -> Image.Image:
    """A preview is a JPEG: composite transparency onto white rather than black."""
    image = resampleable(image)
    if "A" in image.getbands():
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image if image.mode in ("L", "RGB") else image.convert("RGB")


def encode_preview(image: Image.Image, dimension: int = PREVIEW_DIMENSION) -> bytes:
    """JPEG, longer side at most `dimension` px, at most PREVIEW_MAX_BYTES (the preview of message.published)."""
    image = resampleable(image)
    size = fit_within(image.size, dimension)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    image = _flattened_rgb(image)
    with _without_info(image):
        for quality in _PREVIEW_QUALITIES:
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality, exif=b"")
            if out.tell() <= PREVIEW_MAX_BYTES:
                break
    return out.getvalue()
