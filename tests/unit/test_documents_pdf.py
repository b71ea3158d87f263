"""PDF content disarm: active content and personal metadata removed, pages and https links kept,
bombs and encryption refused, all in the worker pool's killable workers."""

import io
import zlib

import pikepdf
import pytest
from PIL import Image

from shared.documents import (
    PDF,
    DocumentLimits,
    DocumentRejected,
    detect_document_type,
    disarm_document,
    disarm_pdf,
    render_pdf_preview,
    run_document_work,
)
from shared.documents.pdf_actions import is_kept_uri
from tests import documentcorpus as corpus

REMOVED_KEYS = {"/OpenAction", "/AA", "/JS", "/JavaScript", "/EmbeddedFiles", "/EF", "/Metadata", "/XFA", "/Info"}
REMOVED_ACTIONS = {"/JavaScript", "/Launch", "/SubmitForm", "/ImportData", "/GoToR", "/GoToE", "/Rendition"}


async def disarmed(pool, data: bytes) -> bytes:
    result = await run_document_work(pool, disarm_document, data, PDF, DocumentLimits())
    assert result.content_type == PDF
    return result.data


def every_text_in(pdf: pikepdf.Pdf) -> bytes:
    """Strings, names and decoded stream data of every object: where an author or a script could hide."""
    found = []
    for obj in corpus.all_objects(pdf):
        if isinstance(obj, (pikepdf.String, pikepdf.Name)):
            found.append(bytes(obj) if isinstance(obj, pikepdf.String) else str(obj).encode())
        elif isinstance(obj, pikepdf.Stream):
            found.append(obj.read_bytes())
    return b"\n".join(found)


async def test_hostile_pdf_keeps_pages_and_https_link_and_nothing_active(document_pool):
    clean = await disarmed(document_pool, corpus.hostile_pdf())
    with pikepdf.open(io.BytesIO(clean)) as pdf:
        objects = list(corpus.all_objects(pdf))
        dictionaries = [o for o in objects if isinstance(o, (pikepdf.Dictionary, pikepdf.Stream))]
        keys = set().union(*(set(d.keys()) for d in dictionaries))
        actions = {str(d["/S"]) for d in dictionaries if "/S" in d}
        uris = [str(d["/URI"]) for d in dictionaries if "/URI" in d]
        subtypes = {str(d["/Subtype"]) for d in dictionaries if "/Subtype" in d}
        text = every_text_in(pdf)
        assert len(pdf.pages) == 3
        assert "/Info" not in pdf.trailer
    assert not keys & REMOVED_KEYS, keys & REMOVED_KEYS
    assert not actions & REMOVED_ACTIONS and actions == {"/URI"}
    assert uris == [corpus.SAFE_LINK]
    assert "/FileAttachment" not in subtypes and "/EmbeddedFile" not in {str(d.get("/Type")) for d in dictionaries}
    for marker in (*corpus.SCRIPT_MARKERS, "javascript", corpus.AUTHOR, "Personal Laptop", "setup.exe"):
        assert marker.encode() not in text, marker
        assert marker.encode() not in clean, marker
    assert corpus.EXECUTABLE[:40] not in clean


async def test_disarmed_pdf_keeps_what_its_pages_show(document_pool):
    original = corpus.hostile_pdf()
    clean = await disarmed(document_pool, original)
    with pikepdf.open(io.BytesIO(original)) as before, pikepdf.open(io.BytesIO(clean)) as after:
        assert [p.Contents.read_bytes() for p in after.pages] == [p.Contents.read_bytes() for p in before.pages]
        assert [list(p.MediaBox) for p in after.pages] == [list(p.MediaBox) for p in before.pages]


async def test_disarm_gives_the_same_bytes_for_the_same_file(document_pool):
    original = corpus.hostile_pdf()
    assert await disarmed(document_pool, original) == await disarmed(document_pool, original)


async def test_first_page_preview_is_a_small_jpeg_showing_the_page(document_pool):
    clean = await disarmed(document_pool, corpus.hostile_pdf())
    preview = await run_document_work(document_pool, render_pdf_preview, clean)
    assert len(preview) <= 30 * 1024
    image = Image.open(io.BytesIO(preview), formats=["JPEG"])
    width, height = image.size
    assert max(width, height) == 256 and height > width  # a portrait Letter page
    red, green, blue = image.convert("RGB").getpixel((width // 2, height // 5))  # inside the dark block
    assert blue > 100 and red < 80 and green < 100
    assert image.convert("RGB").getpixel((width // 2, height - 5)) > (240, 240, 240)  # white margin


@pytest.mark.parametrize("user_password", ["secret", ""], ids=["user-password", "owner-password-only"])
async def test_encrypted_pdf_is_refused(document_pool, user_password):
    with pytest.raises(DocumentRejected) as refused:
        await disarmed(document_pool, corpus.encrypted_pdf(user_password))
    assert refused.value.reason == "encrypted_file"


async def test_pdf_over_the_page_limit_is_refused(document_pool):
    with pytest.raises(DocumentRejected) as refused:
        await disarmed(document_pool, corpus.long_pdf(600))
    assert refused.value.reason == "file_too_complex" and "600 pages, limit 500" in refused.value.detail


async def test_pdf_at_the_page_limit_is_accepted(document_pool):
    result = await run_document_work(document_pool, disarm_document, corpus.long_pdf(500), PDF, DocumentLimits())
    assert result.pages == 500


def test_page_limit_comes_from_the_limits():
    with pytest.raises(DocumentRejected, match="3 pages, limit 2"):
        disarm_pdf(corpus.long_pdf(3), DocumentLimits(max_pages=2))


async def test_flate_bomb_is_refused_while_inflating(document_pool):
    bomb = corpus.flate_bomb_pdf(300_000_000)  # 300 MB of zeros in a few hundred kB
    assert len(bomb) < 1_000_000
    with pytest.raises(DocumentRejected) as refused:
        await disarmed(document_pool, bomb)
    assert refused.value.reason == "file_too_complex" and "decompression bomb" in refused.value.detail


async def test_image_declaring_too_many_pixels_is_refused(document_pool):
    pdf = corpus.plain_pdf(1)
    image = pdf.make_stream(zlib.compress(b"\0" * 1000))
    image.Type, image.Subtype, image.Width, image.Height = pikepdf.Name.XObject, pikepdf.Name.Image, 100_000, 100_000
    image.ColorSpace, image.BitsPerComponent = pikepdf.Name.DeviceGray, 8
    pdf.pages[0].Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image))
    with pytest.raises(DocumentRejected) as refused:
        await disarmed(document_pool, corpus.pdf_bytes(pdf))
    assert refused.value.reason == "file_too_complex"


@pytest.mark.parametrize(
    "data", [b"%PDF-1.7\n" + b"\x00garbage" * 100, corpus.long_pdf(2)[:200]], ids=["garbage", "truncated"]
)
async def test_broken_pdf_is_corrupt_file(document_pool, data):
    with pytest.raises(DocumentRejected) as refused:
        await disarmed(document_pool, data)
    assert refused.value.reason == "corrupt_file"


@pytest.mark.parametrize(
    "uri, kept",
    [
        ("https://example.com/a", True),
        ("HTTP://example.com", True),
        ("mailto:agent@example.com", True),
        ("javascript:alert(1)", False),
        ("java\tscript:alert(1)", False),
        (" javascript:alert(1)", False),
        ("file:///etc/passwd", False),
        ("smb://host/share", False),
        ("data:text/html,<script>", False),
        ("//example.com/relative", False),
        ("relative/path", False),
    ],
)
def test_uri_actions_keep_only_http_https_and_mailto(uri, kept):
    assert is_kept_uri(pikepdf.String(uri)) is kept


def test_pdf_is_detected_by_its_signature_within_the_first_kilobyte():
    assert detect_document_type(b"%PDF-1.7\n") == PDF
    assert detect_document_type(b"\0" * 1000 + b"%PDF-1.4\n") == PDF
    assert detect_document_type(b"\0" * 1024 + b"%PDF-1.4\n") is None


def test_page_limit_is_read_from_fs_max_document_pages(monkeypatch):
    from shared.settings import Settings

    monkeypatch.setenv("FS_MAX_DOCUMENT_PAGES", "2")
    limits = DocumentLimits.from_settings(Settings())
    with pytest.raises(DocumentRejected, match="3 pages, limit 2"):
        disarm_pdf(corpus.long_pdf(3), limits)


async def test_bytes_riding_after_the_pdf_are_not_passed_on(document_pool):
    polyglot = corpus.long_pdf(1) + corpus.zip_bytes({"payload.exe": corpus.EXECUTABLE})
    assert detect_document_type(polyglot) == PDF
    clean = await disarmed(document_pool, polyglot)
    assert b"PK\x03\x04" not in clean and b"payload.exe" not in clean
