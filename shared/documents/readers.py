"""The standard readers a disarmed package must open with before it is accepted,
and what each reports as `pages`."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, cast

import docx
import openpyxl
import pptx

from .errors import wrapped_errors
from .formats import DOCX, PPTX, XLSX
from .ooxml_policy import EXTENDED_PROPERTIES_NS
from .xml import parse_defused

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

_READERS = {DOCX: "python-docx", XLSX: "openpyxl", PPTX: "python-pptx"}


def reopen_ooxml(data: bytes, content_type: str) -> int | None:
    """Open `data` with the reader of its type; returns the sheets (XLSX) or slides (PPTX), None for DOCX."""
    with wrapped_errors("corrupt_file", f"{_READERS[content_type]} cannot open the disarmed document"):
        if content_type == DOCX:
            docx.Document(io.BytesIO(data))
            return None
        if content_type == XLSX:
            # Read-only: the workbook, its styles and shared strings are parsed; sheet rows stream.
            workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, keep_links=False)
            try:
                return len(workbook.sheetnames)
            finally:
                workbook.close()
        return len(pptx.Presentation(io.BytesIO(data)).slides)


def stated_pages(app_properties: bytes | None) -> int | None:
    """A word processor's page count as docProps/app.xml states it (its last layout), if it does."""
    if app_properties is None:
        return None
    root = cast("Element", parse_defused(app_properties, "docProps/app.xml"))  # keep=True: never None
    element = root.find(f"{{{EXTENDED_PROPERTIES_NS}}}Pages")
    try:
        pages = int((element.text or "").strip()) if element is not None else None
    except ValueError:
        return None
    return pages if pages is not None and pages >= 0 else None
