"""Reading the XML of untrusted documents: defusedxml (no DTD, no entities, no external
references: a DTD is corrupt_file) with a nesting limit, and lxml for the few parts we edit.

The edits go through lxml, parsed only after defusedxml accepted the same bytes, because it keeps
namespace prefixes as written: Office readers resolve prefixes named inside attribute values
(`mc:Ignorable="w14"`, `xsi:type="dcterms:W3CDTF"`), which ElementTree would rename to ns0, ns1.
"""

from __future__ import annotations

import io
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as DefusedTree
from lxml import etree

from .errors import DocumentRejected, wrapped_errors

DEFAULT_MAX_DEPTH = 128

# No DTD is loaded, no entity resolved, nothing fetched: the bytes were already checked by
# defusedxml, this is the second line.
_EDIT_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse_defused(data: bytes, what: str, max_depth: int = DEFAULT_MAX_DEPTH, keep: bool = True) -> Element | None:
    """Parse `data` safely and return its root (None with keep=False: a check that frees as it goes)."""
    depth = 0
    with wrapped_errors("corrupt_file", f"{what} is not well-formed XML without a DTD"):
        events = DefusedTree.iterparse(io.BytesIO(data), events=("start", "end"), forbid_dtd=True)
        for event, element in events:
            if event == "start":
                depth += 1
                if depth > max_depth:
                    raise DocumentRejected("file_too_complex", f"{what} nests XML deeper than {max_depth} elements")
                continue
            depth -= 1
            if not keep:
                element.clear()
        return events.root if keep else None


def parse_for_edit(data: bytes, what: str, max_depth: int = DEFAULT_MAX_DEPTH) -> etree._Element:
    parse_defused(data, what, max_depth, keep=False)
    with wrapped_errors("corrupt_file", f"cannot parse {what}"):
        return etree.fromstring(data, _EDIT_PARSER)


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)
