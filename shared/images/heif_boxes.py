"""The picture sizes a HEIF file declares, read from its boxes before libheif decodes anything.

The size Pillow reports for a HEIF is the primary picture after its crop (`clap`) and rotation:
a file may declare a small crop of a huge coded picture, which libheif would decode whole. Every
image-spatial-extents (`ispe`) property (ISO/IEC 23008-12) counts, tiles and grids alike.
"""

from __future__ import annotations

from collections.abc import Iterator

_FULL_BOXES = frozenset((b"meta", b"ispe"))  # a version byte and 24 flag bits before the payload
_CONTAINERS = (b"meta", b"iprp", b"ipco")  # the path from the file to the properties


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box in data[start:end]; stops at a malformed one."""
    at = start
    while at + 8 <= end:
        size, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        header = 8
        if size == 1 and at + 16 <= end:  # a 64-bit size follows the type
            size, header = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        elif size == 0:  # the box runs to the end of its parent
            size = end - at
        if size < header or at + size > end:
            return
        payload = at + header + (4 if kind in _FULL_BOXES else 0)
        yield kind, payload, at + size
        at += size


def declared_sizes(data: bytes) -> list[tuple[int, int]]:
    """(width, height) of every `ispe` property in the file's meta/iprp/ipco boxes."""
    regions = [(0, len(data))]
    for container in _CONTAINERS:
        regions = [
            (payload, box_end)
            for start, end in regions
            for kind, payload, box_end in _boxes(data, start, end)
            if kind == container
        ]
    sizes = []
    for start, end in regions:
        for kind, payload, box_end in _boxes(data, start, end):
            if kind == b"ispe" and payload + 8 <= box_end:
                sizes.append(
                    (
                        int.from_bytes(data[payload : payload + 4], "big"),
                        int.from_bytes(data[payload + 4 : payload + 8], "big"),
                    )
                )
    return sizes
