"""Resource limits for one document: bombs are refused as file_too_complex."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.images import ImageLimits

if TYPE_CHECKING:  # worker processes import this module: they need no settings model
    from shared.settings import Settings


@dataclass(frozen=True)
class DocumentLimits:
    max_pages: int = 500  # FS_MAX_DOCUMENT_PAGES
    max_parts: int = 2000  # entries of an OOXML package
    max_expanded_bytes: int = 100_000_000  # uncompressed: a whole package, or all of a PDF's Flate streams
    max_part_expansion: int = 100  # uncompressed / compressed of one OOXML part ...
    # ... once it is this large: a small part of repeated markup compresses well and harms nobody.
    expansion_floor_bytes: int = 1024 * 1024
    max_xml_depth: int = 128  # nested elements; lxml (python-docx, python-pptx) gives up at 256
    max_pdf_objects: int = 200_000
    max_pdf_nesting: int = 64  # arrays and dictionaries inside one another
    images: ImageLimits = field(default_factory=ImageLimits)  # embedded pictures, disarmed as photos

    @classmethod
    def from_settings(cls, settings: Settings) -> DocumentLimits:
        return cls(max_pages=settings.max_document_pages, images=ImageLimits.from_settings(settings))
