"""OOXML content disarm: the package rebuilt from an allowlist, person fields cleared, pictures
disarmed as photos, the standard reader's check, and bombs, macros and broken packages refused."""

import io

import docx
import openpyxl
import pptx
import pytest
from PIL import Image

from shared.documents import (
    DOCX,
    PPTX,
    XLSX,
    DocumentLimits,
    DocumentRejected,
    detect_document_type,
    disarm_document,
    run_document_work,
)
from tests import documentcorpus as corpus

R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


async def disarmed(pool, data: bytes, content_type: str):
    return await run_document_work(pool, disarm_document, data, content_type, DocumentLimits())


async def refusal(pool, data: bytes, content_type: str = DOCX) -> DocumentRejected:
    with pytest.raises(DocumentRejected) as refused:
        await disarmed(pool, data, content_type)
    return refused.value


async def test_hostile_docx_loses_macros_objects_template_and_author(document_pool):
    original = corpus.hostile_docx()
    assert detect_document_type(original) == DOCX
    result = await disarmed(document_pool, original, DOCX)
    parts = corpus.zip_parts(result.data)
    assert not [name for name in parts if "vbaProject" in name or "embeddings" in name or "customXml" in name]
    everything = b"\n".join(parts.values())
    for marker in (
        corpus.VBA_PAYLOAD[:30],
        corpus.OLE_PAYLOAD[:30],
        corpus.REMOTE_TEMPLATE.encode(),
        b'TargetMode="External"',
        b"attachedTemplate",
        b"OLEObject",
        b"vbaProject",
        b"oleObject",
        corpus.AUTHOR.encode(),
        corpus.COMPANY.encode(),
        corpus.PICTURE_SECRET,
    ):
        assert marker not in everything, marker
    document = docx.Document(io.BytesIO(result.data))
    assert [p.text for p in document.paragraphs][:3] == [f"Paragraph {n} of a plain document." for n in range(3)]
    assert document.core_properties.author == "" and document.core_properties.last_modified_by == ""
    assert len(document.inline_shapes) == 1  # the picture stays, as a fresh PNG
    picture = Image.open(io.BytesIO(parts["word/media/image1.png"]), formats=["PNG"])
    assert picture.size == (320, 240) and not picture.text
    assert result.pages == 1  # as docProps/app.xml states it


async def test_original_docx_did_carry_what_the_disarm_removes():
    # The corpus itself: the markers the test above looks for are really there before.
    everything = b"\n".join(corpus.zip_parts(corpus.hostile_docx()).values())
    for marker in (
        corpus.VBA_PAYLOAD[:30],
        corpus.OLE_PAYLOAD[:30],
        corpus.REMOTE_TEMPLATE.encode(),
        corpus.AUTHOR.encode(),
        corpus.COMPANY.encode(),
        corpus.PICTURE_SECRET,
    ):
        assert marker in everything, marker


async def test_docx_disarm_gives_the_same_bytes_for_the_same_file(document_pool):
    original = corpus.hostile_docx()
    first = await disarmed(document_pool, original, DOCX)
    second = await disarmed(document_pool, original, DOCX)
    assert first.data == second.data


async def test_xlsx_reports_its_sheets_and_loses_its_author(document_pool):
    result = await disarmed(document_pool, corpus.xlsx(3), XLSX)
    assert result.pages == 3
    workbook = openpyxl.load_workbook(io.BytesIO(result.data))
    assert workbook.sheetnames == ["Sheet0", "Sheet1", "Sheet2"] and workbook["Sheet2"]["B1"].value == 42
    assert corpus.AUTHOR.encode() not in b"".join(corpus.zip_parts(result.data).values())


async def test_pptx_reports_its_slides_and_loses_its_author(document_pool):
    result = await disarmed(document_pool, corpus.pptx_file(4), PPTX)
    assert result.pages == 4
    presentation = pptx.Presentation(io.BytesIO(result.data))
    assert [s.shapes.title.text for s in presentation.slides] == [f"Slide {n}" for n in range(4)]
    assert corpus.AUTHOR.encode() not in b"".join(corpus.zip_parts(result.data).values())


@pytest.mark.parametrize("make, content_type", [(corpus.xlsx, XLSX), (corpus.pptx_file, PPTX)], ids=["xlsx", "pptx"])
async def test_external_relationships_go_and_the_file_still_opens(document_pool, make, content_type):
    link = "https://tracker.attacker.example/pixel"
    original = make(2, link=link)
    assert b'TargetMode="External"' in b"".join(corpus.zip_parts(original).values())
    result = await disarmed(document_pool, original, content_type)
    everything = b"".join(corpus.zip_parts(result.data).values())
    assert b'TargetMode="External"' not in everything and link.encode() not in everything
    assert result.pages == 2
    if content_type == XLSX:
        workbook = openpyxl.load_workbook(io.BytesIO(result.data))
        cell = workbook["Sheet1"]["A2"]
        assert cell.value == "see" and cell.hyperlink.target is None  # the text stays, the link goes
    else:
        slides = pptx.Presentation(io.BytesIO(result.data)).slides
        assert [s.shapes.title.text for s in slides] == ["Slide 0", "Slide 1"]
        assert all(s.shapes.title.click_action.hyperlink.address is None for s in slides)


async def test_docm_is_refused_as_unsupported(document_pool):
    docm = corpus.macro_enabled_docx()
    with pytest.raises(DocumentRejected) as at_the_door:
        detect_document_type(docm)
    assert at_the_door.value.reason == "unsupported_type"
    assert (await refusal(document_pool, docm)).reason == "unsupported_type"


async def test_docx_with_150_mb_xml_part_is_refused_before_inflating(document_pool):
    bomb = corpus.docx_with_huge_part(150_000_000)
    assert len(bomb) < 2_000_000
    refused = await refusal(document_pool, bomb)
    assert refused.reason == "file_too_complex" and "word/document.xml" in refused.detail


async def test_part_that_understates_its_size_is_stopped_at_the_declared_size(document_pool):
    lying = corpus.with_understated_size(corpus.docx_with_huge_part(50_000_000), "word/document.xml", 4096)
    refused = await refusal(document_pool, lying)
    assert refused.reason == "corrupt_file" and "word/document.xml" in refused.detail


async def test_package_over_the_part_limit_is_refused(document_pool):
    refused = await refusal(document_pool, corpus.docx_with_parts(2001))
    assert refused.reason == "file_too_complex" and "2001 parts" in refused.detail


async def test_deeply_nested_xml_is_refused(document_pool):
    refused = await refusal(document_pool, corpus.docx_with_document_xml(corpus.nested_document_xml(200)))
    assert refused.reason == "file_too_complex" and "deeper" in refused.detail


async def test_xml_with_a_dtd_is_corrupt(document_pool):
    refused = await refusal(document_pool, corpus.docx_with_document_xml(corpus.document_xml_with_dtd()))
    assert refused.reason == "corrupt_file" and "DTD" in refused.detail


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04" + b"\0" * 200,
        corpus.plain_docx()[:3000],
        corpus.docx_with_document_xml(b"<w:document><unclosed>"),
    ],
    ids=["not-a-zip", "truncated", "broken-xml"],
)
async def test_broken_package_is_corrupt(document_pool, data):
    assert (await refusal(document_pool, data)).reason == "corrupt_file"


async def test_package_of_another_type_is_corrupt(document_pool):
    refused = await refusal(document_pool, corpus.xlsx(1), DOCX)
    assert refused.reason == "corrupt_file"


async def test_password_protected_office_file_is_encrypted():
    with pytest.raises(DocumentRejected) as refused:
        detect_document_type(corpus.encrypted_office_file())
    assert refused.value.reason == "encrypted_file"


def test_ooxml_types_are_detected_by_their_main_part():
    assert detect_document_type(corpus.plain_docx()) == DOCX
    assert detect_document_type(corpus.xlsx(1)) == XLSX
    assert detect_document_type(corpus.pptx_file(1)) == PPTX
    assert detect_document_type(corpus.zip_bytes({"readme.txt": b"just a zip"})) is None


async def test_a_worker_over_its_memory_limit_is_a_bomb():
    # With the package limits set aside, the pool's own limits still hold for documents:
    # a 300 MB part cannot be held by a worker of 512 MiB.
    from shared.images import ImageWorkerPool

    limits = DocumentLimits(max_expanded_bytes=2_000_000_000, max_part_expansion=100_000)
    async with ImageWorkerPool(workers=1, timeout_seconds=30, memory_bytes=512 * 1024 * 1024) as small:
        with pytest.raises(DocumentRejected) as refused:
            await run_document_work(small, disarm_document, corpus.docx_with_huge_part(300_000_000), DOCX, limits)
    assert refused.value.reason == "file_too_complex" and "memory" in refused.value.detail
