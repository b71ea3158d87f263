"""Structural checks on encoded images: which segments/chunks a file carries, what follows its end."""
from __future__ import annotations

import io
import struct

from PIL import Image


def jpeg_markers(data: bytes) -> list[int]:
    """Markers of the segments before the first scan (SOS), e.g. 0xE0 for APP0."""
    assert data[:2] == b"\xff\xd8"
    markers, pos = [], 2
    while pos < len(data):
        assert data[pos] == 0xFF, f"bad segment at {pos}"
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:
            return markers
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return markers


def png_chunk_types(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    kinds, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
        if kinds[-1] == b"IEND":
            assert pos == len(data), "bytes after IEND"
            break
    return kinds


PIXEL_ONLY_PNG_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
METADATA_INFO_KEYS = {"exif", "icc_profile", "xmp", "comment", "photoshop", "iptc", "dpi", "adobe"}


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def close(actual, expected, tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))
