"""The Open Packaging Conventions of OOXML: which content type a part has, and its relationships."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import unquote

from lxml import etree

from .errors import DocumentRejected
from .xml import parse_for_edit, serialize

CONTENT_TYPES_PART = "[Content_Types].xml"
_CT = "{http://schemas.openxmlformats.org/package/2006/content-types}"
_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
OFFICE_DOCUMENT = "officeDocument"


class ContentTypes:
    """[Content_Types].xml: an Override names one part, a Default an extension."""

    def __init__(self, data: bytes) -> None:
        self.root = parse_for_edit(data, CONTENT_TYPES_PART)
        self.defaults = {
            e.get("Extension", "").lower(): e.get("ContentType", "") for e in self.root.iter(f"{_CT}Default")
        }
        self.overrides = {
            _part_key(e.get("PartName", "")): e.get("ContentType", "") for e in self.root.iter(f"{_CT}Override")
        }

    def of(self, name: str) -> str | None:
        found = self.overrides.get(_part_key(name))
        if found is None:
            found = self.defaults.get(posixpath.splitext(name)[1][1:].lower())
        return found

    def written_for(self, kept: set[str]) -> bytes:
        """The declarations without the Overrides of parts that were left out."""
        kept_keys = {_part_key(name) for name in kept}
        for override in list(self.root.iter(f"{_CT}Override")):
            if _part_key(override.get("PartName", "")) not in kept_keys:
                self.root.remove(override)
        return serialize(self.root)


@dataclass(frozen=True)
class Relationship:
    element: etree._Element
    id: str
    kind: str  # the last segment of the type URI: officeDocument, image, vbaProject, ...
    target: str | None  # the part it points to, None when external
    external: bool


def rels_part_of(source: str) -> str:
    """The relationships part of `source` ("" = the package itself)."""
    folder, name = posixpath.split(source)
    return posixpath.join(folder, "_rels", f"{name}.rels")


def read_relationships(data: bytes, source: str) -> tuple[etree._Element, list[Relationship]]:
    what = rels_part_of(source)
    root = parse_for_edit(data, what)
    found = []
    for element in root.iter(_REL):
        external = element.get("TargetMode", "Internal") == "External"
        target = None if external else resolve(source, element.get("Target", ""))
        found.append(
            Relationship(element, element.get("Id", ""), element.get("Type", "").rsplit("/", 1)[-1], target, external)
        )
    return root, found


def resolve(source: str, target: str) -> str:
    """A relationship's internal target as a part name (relative to the source's folder)."""
    target = unquote(target.split("#", 1)[0])
    path = target[1:] if target.startswith("/") else posixpath.join(posixpath.dirname(source), target)
    resolved = posixpath.normpath(path)
    if resolved.startswith("../") or resolved == "..":
        raise DocumentRejected("corrupt_file", f"a relationship of {source or 'the package'} points outside it")
    return resolved


def _part_key(name: str) -> str:
    return unquote(name).lstrip("/").casefold()
