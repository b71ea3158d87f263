"""Scan bombs: a JPEG's scans are counted from its marker segments before any decoder runs."""

from __future__ import annotations

import pytest

from shared.images import ImageLimits, ImageRejected, sanitize_image
from shared.images.jpeg_scans import count_jpeg_scans
from tests import imagecorpus as corpus
from tests.imagecorpus import jpeg_segment


def scan_bomb(scans: int = 3000) -> bytes:
    """A progressive grey JPEG (4096x4096, under the pixel limit) whose AC scan repeats `scans`
    times: a decoder walks every block once per scan (libjpeg-turbo #284)."""
    return corpus.progressive_scan_bomb(scans=scans)


def progressive_photo(**params) -> bytes:
    return corpus.to_jpeg(corpus.photo(640, 480), progressive=True, **params)


def test_a_normal_progressive_photo_has_about_ten_scans_and_is_sanitized():
    data = progressive_photo()
    assert 2 <= count_jpeg_scans(data) <= 20
    result = sanitize_image(data, "image/jpeg", ImageLimits(), 800)
    assert (result.width, result.height) == (640, 480)


def test_a_baseline_jpeg_has_one_scan():
    assert count_jpeg_scans(corpus.to_jpeg(corpus.photo(320, 240))) == 1


def test_restart_markers_and_stuffed_bytes_inside_scans_are_not_markers():
    # Restart markers after every block and thousands of stuffed FF00 bytes in the entropy data.
    data = progressive_photo(restart_marker_blocks=1)
    assert data.count(b"\xff\xd0") > 10 and data.count(b"\xff\x00") > 0
    assert count_jpeg_scans(data) == count_jpeg_scans(progressive_photo())


def test_sos_bytes_inside_segments_and_stuffed_data_are_not_counted():
    soi, rest = b"\xff\xd8", corpus.to_jpeg(corpus.photo(64, 48))[2:]
    comment = jpeg_segment(0xFE, b"\xff\xda" * 500)  # SOS-looking bytes in a comment's payload
    assert count_jpeg_scans(soi + comment + rest) == 1
    # Entropy-coded data of one scan: a stuffed FF00 followed by DA, restart markers, fill bytes.
    sos = jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    entropy = b"\x12\xff\x00\xda\x34\xff\xd0\x56\xff\xd7\xff\x00\x00\xda" * 100
    assert count_jpeg_scans(soi + sos + entropy + b"\xff\xff\xd9") == 1
    assert count_jpeg_scans(soi + (sos + entropy) * 3 + b"\xff\xd9") == 3


def test_counting_stops_past_the_limit_and_at_the_end_of_the_picture():
    bomb = scan_bomb()
    assert count_jpeg_scans(bomb) == 3001  # the DC scan and 3000 AC scans
    assert count_jpeg_scans(bomb, stop_after=100) == 101
    # Scans after EOI (a second picture of an MPO file) are never decoded as the first picture.
    assert count_jpeg_scans(corpus.to_jpeg(corpus.photo(64, 48)) + bomb) == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8",
        b"\xff\xd8\xff",
        b"\xff\xd8\xff\xe0\x00",
        b"\xff\xd8\xff\xe0\x00\x01abc",
        b"\xff\xd8garbage",
        b"\x89PNG\r\n\x1a\n",
    ],
)
def test_truncated_or_malformed_structure_ends_the_walk(data):
    assert count_jpeg_scans(data) == 0


def test_a_scan_bomb_is_refused_as_image_too_large_before_decoding():
    # Decoding this file takes about a minute (tests/unit/test_image_pool.py): answered in-process
    # here, it can only have been refused before any decode started.
    with pytest.raises(ImageRejected) as caught:
        sanitize_image(scan_bomb(), "image/jpeg", ImageLimits(), 800)
    assert caught.value.reason == "image_too_large"
    assert "more than 100 scans" in caught.value.detail


def test_the_scan_limit_is_configurable():
    data = progressive_photo()
    scans = count_jpeg_scans(data)
    with pytest.raises(ImageRejected) as caught:
        sanitize_image(data, "image/jpeg", ImageLimits(max_jpeg_scans=scans - 1))
    assert caught.value.reason == "image_too_large"
    assert sanitize_image(data, "image/jpeg", ImageLimits(max_jpeg_scans=scans)).width == 640
