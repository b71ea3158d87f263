"""A PDF's first page as a JPEG of at most 30 KB, rendered by PDFium.

PDFium is not thread-safe: render in the worker pool's processes, never in threads.
"""

from __future__ import annotations

import pypdfium2

from shared.images.encoding import encode_preview

from .errors import DocumentRejected, wrapped_errors

# A page is read by its layout, not its pixels: larger than a photo's 64 px preview, and still
# a few kB as JPEG.
DOCUMENT_PREVIEW_DIMENSION = 256


def render_pdf_preview(data: bytes, dimension: int = DOCUMENT_PREVIEW_DIMENSION) -> bytes:
    """`data` is a disarmed PDF (disarm_pdf output)."""
    with wrapped_errors("corrupt_file", "PDFium cannot render the first page"):
        document = pypdfium2.PdfDocument(data)
        try:
            if len(document) == 0:
                raise DocumentRejected("corrupt_file", "the PDF has no pages")
            page = document[0]
            width, height = page.get_size()  # points; the scale is fixed before any pixel exists
            if min(width, height) <= 0:
                raise DocumentRejected("corrupt_file", f"the first page measures {width}x{height}")
            bitmap = page.render(scale=dimension / max(width, height))
            image = bitmap.to_pil().convert("RGB")
        finally:
            document.close()
    with wrapped_errors("processing_failed", "cannot encode the preview"):
        return encode_preview(image, dimension)
