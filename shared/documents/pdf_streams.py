"""Decompression bombs in a PDF, measured while streaming (qpdf reads lazily).

Nothing of a stream is decoded to check it: a Flate stream (the usual filter, and the one that
expands 1000x) is inflated chunk by chunk and only counted, against a budget for the whole file;
an image declares its pixels, checked against the photo limit before any reader decodes them.
The rarer generalized filters (LZW, RunLength, ASCII) are decoded by qpdf: their expansion is
bounded (at most a few thousand times) and the worker's memory limit is the backstop.
"""

from __future__ import annotations

import zlib

import pikepdf

from .errors import DocumentRejected
from .limits import DocumentLimits

_FLATE = frozenset(("/FlateDecode", "/Fl"))
_IMAGE_CODECS = frozenset(("/DCTDecode", "/DCT", "/JPXDecode", "/JBIG2Decode", "/CCITTFaxDecode", "/CCF"))
_CHUNK = 1024 * 1024


class ExpansionBudget:
    def __init__(self, limits: DocumentLimits) -> None:
        self.limits = limits
        self.used = 0

    def check(self, stream: pikepdf.Stream) -> None:
        """Count what `stream` expands to; DocumentRejected(file_too_complex) past the budget."""
        if str(stream.get("/Subtype", "")) == "/Image":
            _check_pixels(stream, self.limits.images.max_pixels)
        filters = _filters(stream)
        if not filters or filters[0] in _IMAGE_CODECS:
            return  # raw bytes are part of the file already; codecs are bounded by the pixel check
        remaining = self.limits.max_expanded_bytes - self.used
        if filters[0] in _FLATE:
            self.used += inflated_size(stream.read_raw_bytes(), remaining)
        else:
            self.used += len(stream.read_bytes(pikepdf.StreamDecodeLevel.generalized))
        if self.used > self.limits.max_expanded_bytes:
            raise DocumentRejected(
                "file_too_complex", f"streams expand past {self.limits.max_expanded_bytes} bytes (decompression bomb)"
            )


def inflated_size(raw: bytes, limit: int) -> int:
    """The inflated size of zlib data, stopping as soon as it passes `limit` (then limit + 1).
    A damaged stream counts up to the damage: readers stop there too."""
    inflater, pending, size = zlib.decompressobj(), raw, 0
    try:
        while not inflater.eof:
            out = inflater.decompress(pending, _CHUNK)
            size += len(out)
            if size > limit:
                return limit + 1
            pending = inflater.unconsumed_tail
            if not out and not pending:
                break
    except zlib.error:
        pass
    return size


def _filters(stream: pikepdf.Stream) -> list[str]:
    value = stream.get("/Filter")
    if isinstance(value, pikepdf.Array):
        return [str(item) for item in value]
    return [str(value)] if value is not None else []


def _check_pixels(stream: pikepdf.Stream, max_pixels: int) -> None:
    try:
        width, height = int(stream.get("/Width", 0)), int(stream.get("/Height", 0))
    except (TypeError, ValueError):
        raise DocumentRejected("corrupt_file", "an image declares a size that is not a number") from None
    if width * height > max_pixels:
        raise DocumentRejected("file_too_complex", f"an image declares {width}x{height} pixels, limit {max_pixels}")
