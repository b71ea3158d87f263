"""Pixel normalisation: upright orientation, sRGB colours, 8-bit modes our encoders write."""

from __future__ import annotations

import io
from functools import lru_cache
from typing import cast

from PIL import Image, ImageCms

EXIF_ORIENTATION_TAG = 0x0112

# EXIF orientation -> the transpose that makes the stored pixels upright (EXIF 2.32, tag 274).
_UPRIGHT_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Modes our encoders write as-is (PNG may keep them all; JPEG only L and RGB; GIF only P and L).
_PNG_MODES = frozenset(("1", "L", "LA", "RGB", "RGBA", "P"))
_SIXTEEN_BIT_GRAY = frozenset(("I;16", "I;16B", "I;16L", "I;16N", "I"))


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8); a missing or unreadable EXIF block counts as upright (1)."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # broken EXIF is dropped anyway; it must not reject the photo
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def uses_transparency(image: Image.Image) -> bool:
    """Some pixel is not fully opaque: an alpha channel that is all 255 (many encoders write one
    anyway) does not count, so such a photo can still be a JPEG."""
    if "A" in image.getbands():
        lowest = image.getchannel("A").getextrema()[0]  # one band: (min, max)
        return cast(int, lowest) < 255
    return "transparency" in image.info


def upright(image: Image.Image, orientation: int) -> Image.Image:
    method = _UPRIGHT_TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


@lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def to_srgb(image: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile (Display P3, Adobe RGB, a CMYK press profile...) so the
    colours survive when the profile is dropped. Unusable profiles are ignored, like browsers do."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        # Without inPlace it returns the new image, never None.
        return cast(
            Image.Image,
            ImageCms.profileToProfile(
                image, source, _srgb_profile(), renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode=output_mode
            ),
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    # convert("L") would clip every value above 255 to white: scale 0..65535 to 0..255 instead.
    return image.convert("I").point(lambda v: v * (1 / 257)).convert("L")


def normalise(image: Image.Image, content_type: str) -> Image.Image:
    """sRGB colours in an 8-bit mode the output encoder writes faithfully, transparency preserved."""
    if image.mode in ("L", "RGB") and "transparency" in image.info:
        # A tRNS colour key becomes a real alpha channel first (convert applies the key),
        # so the colour transform below cannot shift the key colour.
        image = image.convert("LA" if image.mode == "L" else "RGBA")
    image = to_srgb(image)
    mode = image.mode
    if mode in _SIXTEEN_BIT_GRAY:
        image = _sixteen_bit_to_l(image)
    elif mode == "CMYK":  # no usable ICC profile: Pillow's plain CMYK -> RGB formula
        image = image.convert("RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode not in _PNG_MODES:
        image = image.convert("RGBA" if "A" in mode else "RGB")

    if content_type == "image/jpeg" and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return image
