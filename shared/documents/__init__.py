"""Document domain code (PDF, DOCX, XLSX, PPTX): detection by content, content disarm, limits,
the reader check and the PDF preview. CPU work runs in shared.images' worker pool."""

from .disarm import disarm_document
from .errors import REJECTION_REASONS, DocumentRejected
from .formats import DOCUMENT_TYPES, DOCX, EXTENSIONS, PDF, PPTX, XLSX, detect_document_type
from .limits import DocumentLimits
from .ooxml import disarm_ooxml
from .pdf import disarm_pdf
from .preview import render_pdf_preview
from .result import DocumentResult
from .work import run_document_work

__all__ = [
    "DOCUMENT_TYPES",
    "DOCX",
    "EXTENSIONS",
    "PDF",
    "PPTX",
    "REJECTION_REASONS",
    "XLSX",
    "DocumentLimits",
    "DocumentRejected",
    "DocumentResult",
    "detect_document_type",
    "disarm_document",
    "disarm_ooxml",
    "disarm_pdf",
    "render_pdf_preview",
    "run_document_work",
]
