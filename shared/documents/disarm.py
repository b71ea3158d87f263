"""One entry point for the sanitizer: the disarm of each document type."""

from __future__ import annotations

from .errors import DocumentRejected
from .formats import OOXML_TYPES, PDF
from .limits import DocumentLimits
from .ooxml import disarm_ooxml
from .pdf import disarm_pdf
from .result import DocumentResult


def disarm_document(data: bytes, content_type: str, limits: DocumentLimits = DocumentLimits()) -> DocumentResult:
    """`content_type` is what detect_document_type found at the door; a fresh, disarmed file comes back."""
    if content_type == PDF:
        return disarm_pdf(data, limits)
    if content_type in OOXML_TYPES:
        return disarm_ooxml(data, content_type, limits)
    raise DocumentRejected("unsupported_type", f"{content_type} is not a document type")
