"""What a disarmed PDF may keep of the active content a PDF can hold.

Actions: an allowlist. Links inside the document (GoTo), viewer commands (Named), article threads
and layer switches stay, and URI actions whose scheme is http, https or mailto; every other action
(JavaScript, Launch, SubmitForm, ImportData, GoToR, GoToE, Rendition, Sound, Movie, RichMedia...)
goes, with `OpenAction` and every additional action (`AA`). Keys that carry scripts, files or
personal data go wherever they appear; annotations that are containers for files or players go.
"""

from __future__ import annotations

import re

import pikepdf

REMOVED_KEYS: frozenset[str] = frozenset(
    (
        "/AA",  # additional actions: page open/close, field keystroke/format/calculate scripts, ...
        "/OpenAction",
        "/JavaScript",
        "/JS",  # the document-level names tree, and the script of an action
        "/EmbeddedFiles",
        "/EF",
        "/RF",
        "/AF",  # embedded and associated files
        "/XFA",
        "/NeedsRendering",  # XML forms and their scripts
        "/RichMediaContent",
        "/RichMediaSettings",
        "/3DD",  # Flash, video and 3D content
        "/Collection",  # portfolios: a folder of embedded files
        "/Metadata",
        "/PieceInfo",  # XMP (author, tool) on the catalog, pages and images; app-private data
    )
)

REMOVED_ANNOTATIONS: frozenset[str] = frozenset(("/FileAttachment", "/RichMedia", "/3D", "/Movie", "/Sound", "/Screen"))

ACTION_TYPES: frozenset[str] = frozenset(
    (
        "/GoTo",
        "/GoToR",
        "/GoToE",
        "/GoToDp",
        "/Launch",
        "/Thread",
        "/URI",
        "/Sound",
        "/Movie",
        "/Hide",
        "/Named",
        "/SubmitForm",
        "/ResetForm",
        "/ImportData",
        "/JavaScript",
        "/SetOCGState",
        "/Rendition",
        "/Trans",
        "/GoTo3DView",
        "/RichMediaExecute",
    )
)
KEPT_ACTION_TYPES: frozenset[str] = frozenset(("/GoTo", "/Named", "/Thread", "/SetOCGState", "/URI"))
KEPT_URI_SCHEMES: frozenset[str] = frozenset(("http", "https", "mailto"))

_ACTION_KEYS = ("/A", "/Next", "/PA")
# Readers drop controls and whitespace before reading a scheme: "java\tscript:" is javascript:.
_IGNORED_IN_URI = re.compile(r"[\x00-\x20\x7f]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def is_dictionary(obj) -> bool:
    return isinstance(obj, (pikepdf.Dictionary, pikepdf.Stream))


def is_action(obj) -> bool:
    return is_dictionary(obj) and str(obj.get("/S", "")) in ACTION_TYPES


def is_kept_action(action) -> bool:
    kind = str(action.get("/S", ""))
    if kind not in KEPT_ACTION_TYPES:
        return False
    return kind != "/URI" or is_kept_uri(action.get("/URI"))


def is_kept_uri(value) -> bool:
    """Only an absolute http, https or mailto URI: a relative one resolves against a base we drop."""
    if not isinstance(value, pikepdf.String):
        return False
    match = _SCHEME.match(_IGNORED_IN_URI.sub("", str(value)))
    return match is not None and match.group(1).lower() in KEPT_URI_SCHEMES


def disarm_dictionary(obj) -> None:
    """Remove from one dictionary (or stream dictionary) what REMOVED_KEYS and the action rules say."""
    for key in REMOVED_KEYS.intersection(obj.keys()):
        del obj[key]
    for key in _ACTION_KEYS:
        if key in obj:
            _keep_kept_actions(obj, key)
    if is_action(obj) and not is_kept_action(obj):
        # An action reached another way (a name tree, an odd key): left empty, it does nothing.
        for key in list(obj.keys()):
            del obj[key]
    annotations = obj.get("/Annots")
    if isinstance(annotations, pikepdf.Array):
        obj["/Annots"] = pikepdf.Array(a for a in annotations if not _is_removed_annotation(a))


def _keep_kept_actions(obj, key: str) -> None:
    value = obj[key]
    if isinstance(value, pikepdf.Array):  # /Next may list several actions
        obj[key] = pikepdf.Array(a for a in value if is_action(a) and is_kept_action(a))
    elif not (is_action(value) and is_kept_action(value)):
        del obj[key]


def _is_removed_annotation(annotation) -> bool:
    return is_dictionary(annotation) and str(annotation.get("/Subtype", "")) in REMOVED_ANNOTATIONS
