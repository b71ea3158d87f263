"""Counting the scans of a JPEG before any decoder sees it.

A progressive JPEG repeats its picture in scans (SOS segments, marker 0xFFDA); a normal one has
about 10. A crafted file with thousands of tiny scans makes libjpeg walk every block of the
picture once per scan: a 330 KB file holds a decoder for minutes. Counting the SOS markers is a
walk over the marker segments that needs no pixels and no decoder:

* SOI (FFD8), RSTn (FFD0-FFD7) and TEM (FF01) stand alone; EOI (FFD9) ends the picture (the
  further pictures of an MPO file are never decoded);
* every other marker is followed by a 2-byte big-endian length that covers itself and the payload;
* an SOS segment is followed by entropy-coded data, in which FF00 is a stuffed FF byte and FFD0-FFD7
  are restart markers: the scan ends at the first FF followed by any other byte (fill bytes FF may
  precede a marker).

Pure and cheap (a C-level search over the entropy-coded data): it runs before the decoder, in
`open_trusted`.
"""

from __future__ import annotations

import re

SOI, EOI, SOS, TEM = 0xD8, 0xD9, 0xDA, 0x01
RST = range(0xD0, 0xD8)
# The first byte pair that ends entropy-coded data: FF then neither 00 (stuffing), RSTn nor FF (fill).
_END_OF_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def count_jpeg_scans(data: bytes, stop_after: int | None = None) -> int:
    """The number of SOS segments of the first picture in `data` (a JPEG starting with SOI).

    Stops counting once the count passes `stop_after` (the answer is then stop_after + 1), so a
    file with 60,000 scans costs no more than one at the limit. Malformed structure (a truncated
    segment, a length below 2, bytes where a marker should be) ends the walk: what was counted so
    far is returned, and the decoder rejects the file as corrupt.
    """
    if data[:2] != b"\xff\xd8":
        return 0
    size, pos, scans = len(data), 2, 0
    while pos + 1 < size:
        if data[pos] != 0xFF:
            return scans  # not at a marker: corrupt
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        pos += 2
        if marker == EOI:
            return scans
        if marker == SOI or marker == TEM or marker in RST:
            continue
        if pos + 2 > size:
            return scans
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            return scans
        pos += length
        if marker != SOS:
            continue
        scans += 1
        if stop_after is not None and scans > stop_after:
            return scans
        end = _END_OF_SCAN.search(data, pos)
        if end is None:
            return scans  # entropy-coded data runs to the end of the file (truncated)
        pos = end.start()
    return scans
