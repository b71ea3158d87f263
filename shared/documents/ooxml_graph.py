"""Which parts of a package survive: those reached from the package's relationships over
relationships that are kept (internal, of an allowed type, to a part of an allowed type).
A part no kept relationship reaches is left out, whatever its type."""

from __future__ import annotations

from dataclasses import dataclass, field

from .ooxml_policy import ALLOWED_PART_TYPES, DENIED_RELATIONSHIPS
from .opc import OFFICE_DOCUMENT, ContentTypes, Relationship, read_relationships, rels_part_of
from .xml import serialize


@dataclass
class PackageGraph:
    # Kept part -> ids of its relationships that were dropped (its XML still names them).
    parts: dict[str, set[str]] = field(default_factory=dict)
    rels: dict[str, bytes] = field(default_factory=dict)  # rewritten relationship parts
    main_part: str | None = None
    main_type: str | None = None  # the declared type of the officeDocument target, kept or not


def follow_relationships(parts: dict[str, bytes], types: ContentTypes) -> PackageGraph:
    index = {name.casefold(): name for name in parts}
    graph = PackageGraph()
    queue, seen = [""], {""}
    while queue:
        source = queue.pop()
        rels_name = index.get(rels_part_of(source).casefold())
        dropped: set[str] = set()
        if rels_name is not None:
            root, relationships = read_relationships(parts[rels_name], source)
            for rel in relationships:
                target = index.get(rel.target.casefold()) if rel.target else None
                if source == "" and rel.kind == OFFICE_DOCUMENT and graph.main_type is None:
                    graph.main_type = types.of(target) if target else None
                if _is_kept(rel, target, types):
                    graph.main_part = target if source == "" and rel.kind == OFFICE_DOCUMENT else graph.main_part
                    if target is not None and target not in seen:
                        seen.add(target)
                        queue.append(target)
                else:
                    dropped.add(rel.id)
                    rel.element.getparent().remove(rel.element)
            graph.rels[rels_name] = serialize(root)
        if source:
            graph.parts[source] = dropped
    return graph


def _is_kept(rel: Relationship, target: str | None, types: ContentTypes) -> bool:
    return (
        not rel.external
        and rel.kind not in DENIED_RELATIONSHIPS
        and target is not None
        and types.of(target) in ALLOWED_PART_TYPES
    )
