"""Content disarm of an OOXML package (DOCX, XLSX, PPTX): rebuilt from an allowlist of parts and
relationships (ooxml_policy, ooxml_graph), person fields cleared, pictures disarmed as photos
(ooxml_parts), written as a fresh ZIP that the standard reader of its type must open (readers).

Pure and CPU-bound: run it in the worker pool (time and memory limits).
"""

from __future__ import annotations

import io
import zipfile

from .errors import DocumentRejected, wrapped_errors
from .formats import DOCX, MACRO_MAIN_PART_TYPES, MAIN_PART_TYPES
from .limits import DocumentLimits
from .ooxml_graph import PackageGraph, follow_relationships
from .ooxml_package import read_package
from .ooxml_parts import disarm_part
from .ooxml_policy import EXTENDED_PROPERTIES
from .opc import CONTENT_TYPES_PART, ContentTypes
from .readers import reopen_ooxml, stated_pages
from .result import DocumentResult

_MAIN_TYPE_OF = {document: main for main, document in MAIN_PART_TYPES.items()}
# A fixed time for every entry: the same input gives the same bytes (redeliveries rewrite alike).
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def disarm_ooxml(data: bytes, content_type: str, limits: DocumentLimits = DocumentLimits()) -> DocumentResult:
    parts = read_package(data, limits)
    declarations = parts.pop(CONTENT_TYPES_PART, None)
    if declarations is None:
        raise DocumentRejected("corrupt_file", f"the package has no {CONTENT_TYPES_PART}")
    types = ContentTypes(declarations)
    graph = follow_relationships(parts, types)
    check_main_part(graph, content_type)
    kept: dict[str, bytes] = {}
    for name, part in parts.items():
        if name in graph.rels:
            kept[name] = graph.rels[name]
        elif name in graph.parts:
            kept[name] = disarm_part(name, part, types.of(name) or "", graph.parts[name], limits)
    clean = write_package({CONTENT_TYPES_PART: types.written_for(set(kept)), **kept})
    pages = reopen_ooxml(clean, content_type)
    if content_type == DOCX:
        pages = stated_pages(next((kept[n] for n in kept if types.of(n) == EXTENDED_PROPERTIES), None))
    return DocumentResult(clean, content_type, pages)


def check_main_part(graph: PackageGraph, content_type: str) -> None:
    if graph.main_type in MACRO_MAIN_PART_TYPES:
        raise DocumentRejected("unsupported_type", "macro-enabled Office documents (docm, xlsm, pptm) are not accepted")
    if graph.main_part is None or graph.main_type != _MAIN_TYPE_OF[content_type]:
        raise DocumentRejected(
            "corrupt_file", f"the package's main part is {graph.main_type or 'missing'}, not that of {content_type}"
        )


def write_package(parts: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with wrapped_errors("processing_failed", "cannot write the package"):
        with zipfile.ZipFile(out, "w") as archive:
            for name, data in parts.items():
                info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
    return out.getvalue()
