"""Which document types we accept, decided by content, never by file name.

PDF: `%PDF-` within the first 1,024 bytes (qpdf opens it in the disarm). OOXML: a ZIP whose
`[Content_Types].xml` declares the main part of that type; a macro-enabled main part is refused.
"""

from __future__ import annotations

import io
import zipfile
from typing import TYPE_CHECKING, cast

from .errors import DocumentRejected, wrapped_errors
from .xml import parse_defused

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"

EXTENSIONS: dict[str, str] = {PDF: "pdf", DOCX: "docx", XLSX: "xlsx", PPTX: "pptx"}
DOCUMENT_TYPES: tuple[str, ...] = tuple(EXTENSIONS)
OOXML_TYPES: frozenset[str] = frozenset((DOCX, XLSX, PPTX))

# The content type of each package's main part, as [Content_Types].xml declares it.
MAIN_PART_TYPES: dict[str, str] = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": DOCX,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": XLSX,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": PPTX,
}
MACRO_MAIN_PART_TYPES: frozenset[str] = frozenset(
    (
        "application/vnd.ms-word.document.macroEnabled.main+xml",
        "application/vnd.ms-word.template.macroEnabledTemplate.main+xml",
        "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
        "application/vnd.ms-excel.template.macroEnabled.main+xml",
        "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml",
        "application/vnd.ms-powerpoint.slideshow.macroEnabled.main+xml",
        "application/vnd.ms-powerpoint.template.macroEnabled.main+xml",
    )
)

PDF_SIGNATURE_WITHIN = 1024
CONTENT_TYPES_PART = "[Content_Types].xml"
# The declarations of a package are a few kB; more is not a document we want to read at the door.
MAX_CONTENT_TYPES_BYTES = 1024 * 1024
_ZIP_SIGNATURE = b"PK\x03\x04"
# An encrypted Office file is not a ZIP but an OLE compound file holding an "EncryptedPackage" stream.
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_CONTENT_TYPES_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"


def detect_document_type(data: bytes) -> str | None:
    """The document content type of `data`, or None when it is no document we know.

    Raises DocumentRejected for a macro-enabled package (unsupported_type), a password-protected
    Office file (encrypted_file), or a package whose declarations cannot be read (corrupt_file)."""
    if b"%PDF-" in data[:PDF_SIGNATURE_WITHIN]:
        return PDF
    if data.startswith(_OLE_SIGNATURE) and _ENCRYPTED_PACKAGE in data:
        raise DocumentRejected("encrypted_file", "a password-protected Office document cannot be scanned")
    if not data.startswith(_ZIP_SIGNATURE):
        return None
    with wrapped_errors("corrupt_file", "cannot read the ZIP directory"):
        archive = zipfile.ZipFile(io.BytesIO(data))
    declared = declared_main_types(archive)
    if declared & MACRO_MAIN_PART_TYPES:
        raise DocumentRejected("unsupported_type", "macro-enabled Office documents (docm, xlsm, pptm) are not accepted")
    found = {MAIN_PART_TYPES[t] for t in declared if t in MAIN_PART_TYPES}
    if len(found) > 1:
        raise DocumentRejected("corrupt_file", "the package declares more than one kind of main part")
    return found.pop() if found else None  # another ZIP: not a document


def declared_main_types(archive: zipfile.ZipFile) -> set[str]:
    """The main-part content types (known or macro-enabled) that [Content_Types].xml overrides name."""
    try:
        info = archive.getinfo(CONTENT_TYPES_PART)
    except KeyError:
        return set()
    if info.file_size > MAX_CONTENT_TYPES_BYTES:
        raise DocumentRejected("file_too_complex", f"{CONTENT_TYPES_PART} declares {info.file_size} bytes")
    with wrapped_errors("corrupt_file", f"cannot read {CONTENT_TYPES_PART}"):
        root = cast("Element", parse_defused(archive.read(info), what=CONTENT_TYPES_PART))  # keep=True: never None
    wanted = MAIN_PART_TYPES.keys() | MACRO_MAIN_PART_TYPES
    return {
        element.get("ContentType", "")
        for element in root.iter(f"{_CONTENT_TYPES_NS}Override")
        if element.get("ContentType", "") in wanted
    }
