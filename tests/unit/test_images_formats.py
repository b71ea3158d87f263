import pytest

from shared.images import EXTENSIONS, PILLOW_FORMATS, sniff_content_type
from tests import imagecorpus as corpus


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (corpus.to_jpeg(corpus.photo(8, 8)), "image/jpeg"),
        (corpus.to_png(corpus.photo(8, 8)), "image/png"),
        (corpus.to_gif(corpus.photo(8, 8)), "image/gif"),
        (b"GIF87a" + b"\x00" * 10, "image/gif"),
    ],
)
def test_accepted_types_are_recognised_by_content(data, expected):
    assert sniff_content_type(data[:16]) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\xff\xd8",  # too short to be a JPEG
        b'<svg xmlns="http://www.w3.org/2000/svg">',
        b"<!DOCTYPE html><html>",
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",
        b"\x00\x00\x00\x18ftypheic",
        b"%PDF-1.7",
        b"BM\x00\x00",  # BMP: Pillow could decode it, we never let it
        b"II*\x00",  # TIFF
    ],
)
def test_everything_else_is_not_an_accepted_type(head):
    assert sniff_content_type(head) is None


def test_extensions_and_decoder_allowlist():
    assert EXTENSIONS == {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}
    assert list(PILLOW_FORMATS) == ["JPEG", "PNG", "GIF"]
