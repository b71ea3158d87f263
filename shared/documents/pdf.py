"""Content disarm of a PDF: qpdf (pikepdf) opens it, the active content and personal metadata go
(pdf_actions), bombs are refused while walking it (pdf_streams), and qpdf writes a fresh file
that PDFium must open with the same pages.

Pure and CPU-bound: run it in the worker pool (time and memory limits).
"""

from __future__ import annotations

import io
from typing import Any

import pikepdf
import pypdfium2

from .errors import DocumentRejected, wrapped_errors
from .formats import PDF
from .limits import DocumentLimits
from .pdf_actions import disarm_dictionary, is_dictionary
from .pdf_streams import ExpansionBudget
from .result import DocumentResult


def disarm_pdf(data: bytes, limits: DocumentLimits = DocumentLimits()) -> DocumentResult:
    pdf = open_pdf(data, limits)
    with pdf:
        with wrapped_errors("corrupt_file", "cannot read the PDF"):
            pages = len(pdf.pages)
        if pages > limits.max_pages:
            raise DocumentRejected("file_too_complex", f"{pages} pages, limit {limits.max_pages}")
        if "/Info" in pdf.trailer:
            del pdf.trailer["/Info"]  # author, producer, creator tool: personal data, like EXIF
        with wrapped_errors("corrupt_file", "cannot walk the PDF"):
            walk_and_disarm(pdf, limits)
        out = io.BytesIO()
        with wrapped_errors("corrupt_file", "cannot write the disarmed PDF"):
            # Streams are copied as they are (decode level none): qpdf never inflates a bomb, and
            # the output is the same for the same input (deterministic /ID).
            pdf.save(
                out,
                stream_decode_level=pikepdf.StreamDecodeLevel.none,
                preserve_pdfa=False,
                fix_metadata_version=False,
                deterministic_id=True,
            )
    clean = out.getvalue()
    reopen_pdf(clean, pages)
    return DocumentResult(clean, PDF, pages)


def open_pdf(data: bytes, limits: DocumentLimits) -> pikepdf.Pdf:
    try:
        pdf = pikepdf.open(io.BytesIO(data))
    except pikepdf.PasswordError:
        raise DocumentRejected("encrypted_file", "the PDF is password-protected") from None
    except (pikepdf.PdfError, ValueError, OSError) as exc:
        raise DocumentRejected("corrupt_file", f"qpdf cannot open the PDF: {exc}") from exc
    if pdf.is_encrypted:  # an owner password only: readable, but we do not pass encrypted files on
        pdf.close()
        raise DocumentRejected("encrypted_file", "the PDF is encrypted")
    return pdf


def walk_and_disarm(pdf: pikepdf.Pdf, limits: DocumentLimits) -> None:
    """Visit every object reachable from the trailer once (what qpdf will write), disarming each
    dictionary and measuring each stream. Iterative: a deep page tree cannot exhaust the stack."""
    budget = ExpansionBudget(limits)
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Any, int]] = [(pdf.trailer, 0)]  # pikepdf objects
    while stack:
        obj, depth = stack.pop()
        if depth > limits.max_pdf_nesting:
            raise DocumentRejected("file_too_complex", f"objects nest deeper than {limits.max_pdf_nesting}")
        if obj.is_indirect:
            if obj.objgen in seen:
                continue
            seen.add(obj.objgen)
            if len(seen) > limits.max_pdf_objects:
                raise DocumentRejected("file_too_complex", f"more than {limits.max_pdf_objects} objects")
        if is_dictionary(obj):
            disarm_dictionary(obj)
            if isinstance(obj, pikepdf.Stream):
                budget.check(obj)
            children = list(obj.values())
        elif isinstance(obj, pikepdf.Array):
            children = list(obj)
        else:
            continue
        for child in children:
            if is_dictionary(child) or isinstance(child, pikepdf.Array):
                stack.append((child, 0 if child.is_indirect else depth + 1))


def reopen_pdf(data: bytes, pages: int) -> None:
    """PDFium, the reader behind the previews (and Chrome's viewer), must open the result as it is."""
    with wrapped_errors("corrupt_file", "PDFium cannot open the disarmed PDF"):
        document = pypdfium2.PdfDocument(data)
        try:
            opened = len(document)
            if opened:
                document[0].close()
        finally:
            document.close()
    if opened != pages:
        raise DocumentRejected("corrupt_file", f"PDFium reads {opened} pages of {pages}")
