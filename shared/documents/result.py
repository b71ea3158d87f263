from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DocumentResult:
    """A disarmed document: fresh bytes that a standard reader opened, and its `pages`
    (PDF pages, DOCX pages as the document states them or None, XLSX sheets, PPTX slides)."""

    data: bytes
    content_type: str
    pages: int | None
