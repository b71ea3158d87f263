"""Disarming one kept part of a package: pictures become fresh photos, person fields go, mentions
of dropped relationships go, and every XML part is parsed (no DTD, bounded depth) before it is kept."""

from __future__ import annotations

from lxml import etree

from shared.images import ImageRejected, sanitize_image

from .errors import DocumentRejected
from .limits import DocumentLimits
from .ooxml_policy import IMAGE_TYPES, PERSON_FIELDS
from .xml import parse_defused, parse_for_edit, serialize

_RELATIONSHIP_NAMESPACES = frozenset(
    (
        "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
        "http://purl.oclc.org/ooxml/officeDocument/relationships",
    )
)
# A picture the photo code refuses: a bomb is a bomb of the document; anything else breaks it.
_IMAGE_REASONS = {"image_too_large": "file_too_complex", "processing_failed": "processing_failed"}


def disarm_part(name: str, data: bytes, content_type: str, dropped: set[str], limits: DocumentLimits) -> bytes:
    if content_type in IMAGE_TYPES:
        return disarm_picture(name, data, content_type, limits)
    if content_type not in PERSON_FIELDS and not dropped:
        parse_defused(data, name, limits.max_xml_depth, keep=False)
        return data
    root = parse_for_edit(data, name, limits.max_xml_depth)
    for tag in PERSON_FIELDS.get(content_type, ()):
        for element in list(root.iter(tag)):
            element.getparent().remove(element)
    drop_references(root, dropped)
    return serialize(root)


def disarm_picture(name: str, data: bytes, content_type: str, limits: DocumentLimits) -> bytes:
    try:
        return sanitize_image(data, content_type, limits.images).data
    except ImageRejected as exc:
        reason = _IMAGE_REASONS.get(exc.reason, "corrupt_file")
        raise DocumentRejected(reason, f"embedded picture {name!r}: {exc.detail}") from exc


def drop_references(root: etree._Element, dropped: set[str]) -> None:
    """Remove what names a dropped relationship: the element (an OLE object, a control, a remote
    template), or only the attribute where the element stands on its own (a hyperlink keeps its
    text, a picture its embedded copy when only its link went)."""
    if not dropped:
        return
    for element in list(root.iter(etree.Element)):
        for attribute, value in list(element.attrib.items()):
            qualified = etree.QName(attribute)
            if qualified.namespace not in _RELATIONSHIP_NAMESPACES or value not in dropped:
                continue
            if qualified.localname == "link" or etree.QName(element).localname == "hyperlink":
                del element.attrib[attribute]
            elif element.getparent() is not None:
                element.getparent().remove(element)
                break
