import io

import pytest
from PIL import Image, ImageFile, PcdImagePlugin

from shared.images import EXTENSIONS, ImageLimits, ImageRejected, resize_image, sanitize_image, sniff_content_type
from shared.images.formats import SNIFF_BYTES
from tests import imagecorpus as corpus


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (corpus.to_jpeg(corpus.photo(8, 8)), "image/jpeg"),
        (corpus.to_png(corpus.photo(8, 8)), "image/png"),
        (corpus.to_gif(corpus.photo(8, 8)), "image/gif"),
        (b"GIF87a" + b"\x00" * 10, "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "image/heic"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "image/heic"),  # generic brand, HEVC inside
        (b"\x00\x00\x00\x14ftypheix\x00\x00\x00\x00mif1", "image/heic"),
    ],
)
def test_accepted_types_are_recognised_by_content(data, expected):
    assert sniff_content_type(data[:SNIFF_BYTES]) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\xff\xd8",  # too short to be a JPEG
        b'<svg xmlns="http://www.w3.org/2000/svg">',
        b"<!DOCTYPE html><html>",
        b"RIFF\x00\x00\x00\x00WAVEfmt ",  # RIFF, but sound
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",  # AVIF: AV1, not HEVC
        b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif",  # generic HEIF brand, AV1 inside
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",  # an MP4 video
        b"\x00\x00\x00\x08ftyp",  # a box too short to name a brand
        b"%PDF-1.7",
        b"BM\x00\x00",  # BMP: Pillow could decode it, we never let it
        b"II*\x00",  # TIFF
    ],
)
def test_everything_else_is_not_an_accepted_type(head):
    assert sniff_content_type(head) is None


def test_extensions_are_those_of_the_types_we_write():
    # HEIC and WebP are read, never written: they are published as JPEG or PNG.
    assert EXTENSIONS == {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}


def photocd_in_disguise(magic: bytes) -> bytes:
    """Starts with an accepted signature, so sniffing lets it through, but is no valid JPEG,
    PNG or GIF. Pillow, asked without an allowlist, then tries every plugin in turn, and the
    PhotoCD plugin (no signature check of its own, "PCD_" at offset 2048) takes it."""
    return (magic + bytes(2048))[:2048] + b"PCD_" + bytes(2044)


@pytest.mark.parametrize(
    ("magic", "claimed"),
    [(b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF89a", "image/gif")],
)
def test_a_decoder_outside_the_allowlist_never_sees_the_bytes(monkeypatch, magic, claimed):
    data = photocd_in_disguise(magic)
    assert sniff_content_type(data[:SNIFF_BYTES]) == claimed
    assert Image.open(io.BytesIO(data)).format == "PCD"  # the threat is real: plain Pillow would decode it

    reached = []
    original_open = PcdImagePlugin.PcdImageFile._open

    def spying_open(self):
        reached.append(claimed)
        return original_open(self)

    monkeypatch.setattr(PcdImagePlugin.PcdImageFile, "_open", spying_open)
    for entry_point in (
        lambda: sanitize_image(data, claimed, ImageLimits(), 800),
        lambda: resize_image(data, claimed, 800, ImageLimits()),
    ):
        with pytest.raises(ImageRejected) as caught:
            entry_point()
        assert caught.value.reason == "corrupt_image"  # no decoder of ours could read it
    assert reached == []


def test_no_other_decoder_is_even_asked_for_valid_or_broken_uploads(monkeypatch):
    # A plugin that would claim every file, registered first in Pillow's registry.
    asked = []

    class CatchAll(ImageFile.ImageFile):
        format = "CATCHALL"

        def _open(self):
            asked.append("open")
            raise SyntaxError("not mine")  # so a wrongly-asked catch-all changes no outcome

    def accept(prefix: bytes) -> bool:
        asked.append("accept")
        return True

    Image.init()
    monkeypatch.setattr(Image, "ID", ["CATCHALL", *Image.ID])
    monkeypatch.setitem(Image.OPEN, "CATCHALL", (CatchAll, accept))
    assert Image.open(io.BytesIO(corpus.to_png(corpus.photo(8, 8)))).format == "PNG" and asked  # registered
    asked.clear()

    for data, content_type in [
        (corpus.to_jpeg(corpus.photo(32, 32)), "image/jpeg"),
        (corpus.to_png(corpus.photo(32, 32)), "image/png"),
        (corpus.animated_gif(frames=2), "image/gif"),
    ]:
        assert sanitize_image(data, content_type, ImageLimits()).content_type == content_type
    for data, content_type in [
        (corpus.truncated_jpeg(), "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png"),
    ]:
        with pytest.raises(ImageRejected):
            sanitize_image(data, content_type, ImageLimits())
    assert asked == []
