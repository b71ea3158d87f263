"""Which image types we accept, decided by content (magic bytes), never by file name.

Each decoder is part of our trusted computing base: Pillow may only use the
decoders in PILLOW_FORMATS, so a file that merely claims to be a JPEG can never
reach, say, the EPS or TIFF plugin.
"""
from __future__ import annotations

# The single trusted-decoder allowlist, passed to every Image.open(..., formats=...).
PILLOW_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF")

# What Pillow reports in Image.format for each accepted content type. A JPEG that
# carries a multi-picture (MPF) index, as many phone cameras write, is opened by
# the JPEG plugin as "MPO"; its first picture is an ordinary baseline JPEG.
FORMAT_CONTENT_TYPES: dict[str, str] = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
}

EXTENSIONS: dict[str, str] = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}
ACCEPTED_TYPES: tuple[str, ...] = tuple(EXTENSIONS)

# Length of the longest signature below: how many leading bytes sniffing needs.
SNIFF_BYTES = 8

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_content_type(head: bytes) -> str | None:
    """The accepted content type whose signature `head` starts with, else None (svg, html, webp, ...)."""
    for signature, content_type in _SIGNATURES:
        if head.startswith(signature):
            return content_type
    return None
