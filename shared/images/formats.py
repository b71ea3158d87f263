"""Which image types we accept, decided by content (magic bytes), never by file name.

Each decoder is part of our trusted computing base: Pillow may only use the
decoders in PILLOW_FORMATS, so a file that merely claims to be a JPEG can never
reach, say, the EPS or TIFF plugin. HEIC/HEIF (pillow-heif over libheif) and
WebP are phone formats: decoded under the same limits, but never written back
(CONVERTED_TYPES: the sanitizer re-encodes them as JPEG, or PNG with transparency).
"""

from __future__ import annotations

# The trusted-decoder allowlist: the one decoder each type is opened with (Image.open(...,
# formats=...)), so a PNG can never reach the HEIF plugin either.
PILLOW_FORMAT_OF: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/heic": "HEIF",
}
PILLOW_FORMATS: tuple[str, ...] = tuple(PILLOW_FORMAT_OF.values())

# What Pillow reports in Image.format for each accepted content type. A JPEG that
# carries a multi-picture (MPF) index, as many phone cameras write, is opened by
# the JPEG plugin as "MPO"; its first picture is an ordinary baseline JPEG.
FORMAT_CONTENT_TYPES: dict[str, str] = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "HEIF": "image/heic",
}

# The types our encoders write (and users download), with their file name extensions.
EXTENSIONS: dict[str, str] = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}
CONVERTED_TYPES: tuple[str, ...] = ("image/heic", "image/webp")
ACCEPTED_TYPES: tuple[str, ...] = (*EXTENSIONS, *CONVERTED_TYPES)

# How many leading bytes sniffing needs: the longest signature, or an ISO BMFF `ftyp` box with
# a few compatible brands (a HEIF file names its codec there).
SNIFF_BYTES = 64

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# ISO/IEC 23008-12 brands of HEVC-coded still images and sequences (iPhones write `heic`).
_HEVC_BRANDS = frozenset((b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"heif"))
# Generic HEIF brands: an AVIF (AV1) file has them too, so they count only beside an HEVC brand.
_GENERIC_HEIF_BRANDS = frozenset((b"mif1", b"msf1"))


def _ftyp_brands(head: bytes) -> tuple[bytes, list[bytes]] | None:
    """(major brand, compatible brands) of the `ftyp` box that starts an ISO BMFF file, else None."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    return head[8:12], [head[i : i + 4] for i in range(16, box_end - 3, 4)]


def _is_heif(head: bytes) -> bool:
    brands = _ftyp_brands(head)
    if brands is None:
        return False
    major, compatible = brands
    return major in _HEVC_BRANDS or (major in _GENERIC_HEIF_BRANDS and any(b in _HEVC_BRANDS for b in compatible))


def sniff_content_type(head: bytes) -> str | None:
    """The accepted content type `head` (the first SNIFF_BYTES) shows, else None (svg, html, avif, ...)."""
    for signature, content_type in _SIGNATURES:
        if head.startswith(signature):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if _is_heif(head):
        return "image/heic"
    return None
