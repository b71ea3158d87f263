"""What a disarmed OOXML package may hold: an allowlist of part types.

Left out because they are not on it: VBA projects and their data, ActiveX controls, embedded OLE
objects and packages (often whole executables or further Office files), custom UI (ribbon
callbacks into macros), custom XML data and properties, printer settings, embedded fonts,
external data connections and links. Relationships of the types below go even if someone
declared their target with an allowed type; every relationship with TargetMode="External"
(remote templates, linked images, frames, hyperlinks) goes too.
"""

from __future__ import annotations

_WORD = "application/vnd.openxmlformats-officedocument.wordprocessingml."
_EXCEL = "application/vnd.openxmlformats-officedocument.spreadsheetml."
_POWERPOINT = "application/vnd.openxmlformats-officedocument.presentationml."
_DRAWING = "application/vnd.openxmlformats-officedocument.drawingml."

CORE_PROPERTIES = "application/vnd.openxmlformats-package.core-properties+xml"
EXTENDED_PROPERTIES = "application/vnd.openxmlformats-officedocument.extended-properties+xml"
# Embedded pictures, disarmed as photos (shared.images); other picture formats (EMF, WMF, TIFF,
# SVG: parsers with a history) are left out.
IMAGE_TYPES: frozenset[str] = frozenset(("image/jpeg", "image/png", "image/gif"))

XML_PART_TYPES: frozenset[str] = frozenset(
    (
        CORE_PROPERTIES,
        EXTENDED_PROPERTIES,
        "application/vnd.openxmlformats-officedocument.theme+xml",
        "application/vnd.openxmlformats-officedocument.themeOverride+xml",
        "application/vnd.openxmlformats-officedocument.drawing+xml",
        "application/vnd.openxmlformats-officedocument.vmlDrawing",
        *(
            _DRAWING + name
            for name in (
                "chart+xml",
                "chartshapes+xml",
                "diagramData+xml",
                "diagramLayout+xml",
                "diagramStyle+xml",
                "diagramColors+xml",
            )
        ),
        "application/vnd.ms-office.chartstyle+xml",
        "application/vnd.ms-office.chartcolorstyle+xml",
        "application/vnd.ms-office.drawingml.diagramDrawing+xml",
        *(
            _WORD + name
            for name in (
                "document.main+xml",
                "styles+xml",
                "stylesWithEffects+xml",
                "settings+xml",
                "webSettings+xml",
                "fontTable+xml",
                "numbering+xml",
                "footnotes+xml",
                "endnotes+xml",
                "comments+xml",
                "commentsExtended+xml",
                "commentsIds+xml",
                "commentsExtensible+xml",
                "header+xml",
                "footer+xml",
            )
        ),
        "application/vnd.ms-word.stylesWithEffects+xml",
        *(
            _EXCEL + name
            for name in (
                "sheet.main+xml",
                "worksheet+xml",
                "chartsheet+xml",
                "styles+xml",
                "sharedStrings+xml",
                "calcChain+xml",
                "table+xml",
                "comments+xml",
                "pivotTable+xml",
                "pivotCacheDefinition+xml",
                "pivotCacheRecords+xml",
            )
        ),
        *(
            _POWERPOINT + name
            for name in (
                "presentation.main+xml",
                "slide+xml",
                "slideLayout+xml",
                "slideMaster+xml",
                "notesSlide+xml",
                "notesMaster+xml",
                "handoutMaster+xml",
                "presProps+xml",
                "viewProps+xml",
                "tableStyles+xml",
                "commentAuthors+xml",
                "comments+xml",
                "tags+xml",
            )
        ),
    )
)
ALLOWED_PART_TYPES: frozenset[str] = XML_PART_TYPES | IMAGE_TYPES

# The last segment of relationship types that always go (transitional and strict spellings end alike).
DENIED_RELATIONSHIPS: frozenset[str] = frozenset(
    (
        "vbaProject",
        "wordVbaData",
        "attachedTemplate",
        "oleObject",
        "package",
        "control",
        "activeXControlBinary",
        "extensibility",
        "subDocument",
        "frame",
        "externalLink",
        "externalLinkPath",
        "mailMergeSource",
        "mailMergeHeaderSource",
        "recipientData",
        "connections",
        "customXml",
        "customProperties",
        "printerSettings",
        "font",
    )
)

# Person fields of docProps: (namespace, element) removed outright.
_DC = "http://purl.org/dc/elements/1.1/"
_CP = "http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
_EP = "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties"
PERSON_FIELDS: dict[str, tuple[str, ...]] = {
    CORE_PROPERTIES: (f"{{{_DC}}}creator", f"{{{_CP}}}lastModifiedBy"),
    # Template and HyperlinkBase may name a user's folder or an internal server.
    EXTENDED_PROPERTIES: (f"{{{_EP}}}Company", f"{{{_EP}}}Manager", f"{{{_EP}}}Template", f"{{{_EP}}}HyperlinkBase"),
}
EXTENDED_PROPERTIES_NS = _EP
