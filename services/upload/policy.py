"""The product's rules at the door, as plain functions (no I/O): who may send what, where.

Order of checks is the contract's: 401 (done by the caller), 403 feature_disabled,
403 file_sharing_disabled, 403 permission_denied (403 consumer_uploads_disabled for a
consumer), 404 conversation, 409 conversation state/channel, then the file itself (413, 415
for content of a type the account does not list, 422).

A consumer holds no permission profile: the account's `consumer_uploads_enabled` decides, and
only their own conversation exists for them (any other is 404, so a consumer cannot probe
which conversations exist). Their uploads have source `consumer`, whatever the form says.

Entry points ("via"): `http` (agent workspace, custom widget, bot SDK over HTTP) and
`topic` (bot records on file.share.requested). The topic is the bots' interface: a
record carrying a token of another role is refused with permission_denied.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import cast

from shared.contract.auth import Principal
from shared.contract.events import PROFILES, SOURCES, AccountSettingsDocument, SenderRole, Source
from shared.images.formats import ACCEPTED_TYPES as IMAGE_TYPES
from shared.projections.conversations import Conversation
from shared.rules import Refused

PERMISSION_FOR_SOURCE = {"local": "send_files_local", "widget": "send_files_widget"}
# Bidirectional overrides/isolates can disguise a caption's text ("Trojan Source"): refused like control characters.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_account_gates(principal: Principal, account_id: str, settings: AccountSettingsDocument) -> None:
    """Checks that need neither the body nor the conversation."""
    if principal.account_id != account_id:
        # Says nothing about the other account's settings.
        raise Refused(403, "permission_denied", "the token belongs to another account")
    if not settings.feature_enabled:
        raise Refused(403, "feature_disabled", "file sharing is not enabled for this account by the account team")
    if not settings.file_sharing_enabled:
        raise Refused(403, "file_sharing_disabled", "file sharing is turned off in the account settings")


def held_permissions(principal: Principal, settings: AccountSettingsDocument) -> list[str]:
    if principal.role not in PROFILES:
        return []
    return list(settings.permissions.get(cast(SenderRole, principal.role), []))


def is_consumer(principal: Principal) -> bool:
    return principal.role == "consumer"


def check_consumer_uploads(settings: AccountSettingsDocument) -> None:
    if not settings.consumer_uploads_enabled:
        raise Refused(403, "consumer_uploads_disabled", "this account does not let consumers send files")


def check_permission(principal: Principal, settings: AccountSettingsDocument, source: str, via: str = "http") -> None:
    if is_consumer(principal) and via == "http":
        check_consumer_uploads(settings)
        return
    if principal.role not in PROFILES:
        raise Refused(403, "permission_denied", f"role {principal.role!r} cannot send files")
    if via == "topic" and principal.role != "bot":
        raise Refused(403, "permission_denied", "file.share.requested is for bots; use the HTTP API")
    needed = PERMISSION_FOR_SOURCE[source]
    if needed not in held_permissions(principal, settings):
        raise Refused(403, "permission_denied", f"the {principal.role} profile lacks {needed!r}")


def check_may_send_at_all(principal: Principal, account_id: str, settings: AccountSettingsDocument) -> None:
    """Everything decidable before the body is read (the source is a multipart field):
    the account gates, and a role holding no send permission at all."""
    check_account_gates(principal, account_id, settings)
    if is_consumer(principal):
        check_consumer_uploads(settings)
    elif not held_permissions(principal, settings):
        check_permission(principal, settings, "local")  # raises permission_denied with the precise message


def check_source(source: object, principal: Principal | None = None) -> Source:
    """The form field or query parameter `source`, one of the contract's; a consumer's is `consumer`."""
    if principal is not None and is_consumer(principal) and source in (*SOURCES, "consumer"):
        return "consumer"
    if source not in SOURCES:
        raise Refused(422, "invalid_request", "source must be 'local' or 'widget'")
    return cast(Source, source)


def check_conversation(
    account_id: str,
    conversation: Conversation | None,
    file_channels: frozenset[str],
    principal: Principal | None = None,
) -> Conversation:
    # A conversation of another account, or of another consumer, is reported exactly like an unknown one.
    theirs = (
        principal is None
        or not is_consumer(principal)
        or (conversation is not None and conversation.consumer_id == principal.sub)
    )
    if conversation is None or conversation.account_id != account_id or not theirs:
        raise Refused(404, "conversation_not_found", "no such conversation")
    if not conversation.open:
        # A photo never resumes a closed conversation (agents, bots and custom widgets alike).
        raise Refused(409, "conversation_closed", "the conversation is closed; sending a photo cannot resume it")
    if conversation.channel not in file_channels:
        channel = repr(conversation.channel) if conversation.channel else "(not named by the platform)"
        raise Refused(409, "channel_not_supported", f"channel {channel} cannot receive files")
    return conversation


def check_caption(caption: str | None, max_chars: int) -> str | None:
    """Optional; at most `max_chars` characters; line breaks and tabs allowed, no other control characters.
    Line breaks are stored as LF: browsers send every line break of a form field as CRLF, which
    must neither be refused nor count twice."""
    if caption is None or caption == "":
        return None
    caption = caption.replace("\r\n", "\n")  # a lone CR is still refused (it rewrites a log or terminal line)
    if len(caption) > max_chars:
        raise Refused(422, "invalid_request", f"caption is longer than {max_chars} characters ({len(caption)})")
    if any((unicodedata.category(ch) == "Cc" and ch not in "\n\t") or ch in _BIDI_CONTROLS for ch in caption):
        raise Refused(422, "invalid_request", "caption contains control characters")
    return caption


def check_sender(
    principal: Principal,
    account_id: str,
    settings: AccountSettingsDocument,
    source: str,
    conversation: Conversation | None,
    file_channels: frozenset[str],
    via: str = "http",
) -> Conversation:
    """Every rule about who sends where, in contract order; returns the conversation or raises Refused."""
    source = check_source(source, principal)
    check_account_gates(principal, account_id, settings)
    check_permission(principal, settings, source, via)
    return check_conversation(account_id, conversation, file_channels, principal)


def check_type(content_type: str | None, settings: AccountSettingsDocument) -> str:
    """The type detected from the content must be one the account lists (`accepted_types`)."""
    listed = settings.accepted_types
    if content_type is None:
        raise Refused(
            415,
            "unsupported_type",
            f"the content is none of the types this account accepts "
            f"({', '.join(listed) or 'none'}); decided by content, not by name",
        )
    if content_type not in listed:
        raise Refused(
            415,
            "unsupported_type",
            f"the content is {content_type}, which this account does not accept ({', '.join(listed) or 'none'})",
        )
    return content_type


@dataclass(frozen=True)
class Capabilities:
    visible: bool
    enabled: bool
    reason: str | None


def capabilities(
    principal: Principal,
    account_id: str,
    settings: AccountSettingsDocument,
    conversation: Conversation | None,
    file_channels: frozenset[str],
    source: str | None = None,
) -> Capabilities:
    """What the agent UI shows for the attachment icon.

    visible: the caller's profile holds the permission (for `source`, or any when None) and
    the account team enabled the feature. enabled: an upload would pass every rule but the
    file's own checks. reason: the code of the first failing rule, in upload order.
    For the conversation's consumer, visible means the feature and `consumer_uploads_enabled` are on."""
    if is_consumer(principal):
        return _consumer_capabilities(principal, account_id, settings, conversation, file_channels)
    held = held_permissions(principal, settings)
    wanted = [PERMISSION_FOR_SOURCE[source]] if source else list(PERMISSION_FOR_SOURCE.values())
    holds = principal.account_id == account_id and any(p in held for p in wanted)
    visible = holds and settings.feature_enabled
    candidates = [source] if source else [s for s, p in PERMISSION_FOR_SOURCE.items() if p in held] or ["local"]
    reason = None
    for candidate in candidates:  # enabled when any wanted source would be accepted
        try:
            check_sender(principal, account_id, settings, candidate, conversation, file_channels)
            reason = None
            break
        except Refused as r:
            reason = reason or r.code
    return Capabilities(visible, reason is None, reason)


def _consumer_capabilities(
    principal: Principal,
    account_id: str,
    settings: AccountSettingsDocument,
    conversation: Conversation | None,
    file_channels: frozenset[str],
) -> Capabilities:
    visible = principal.account_id == account_id and settings.feature_enabled and settings.consumer_uploads_enabled
    try:
        check_sender(principal, account_id, settings, "consumer", conversation, file_channels)
    except Refused as r:
        return Capabilities(visible, False, r.code)
    return Capabilities(visible, True, None)


def sendable_types(principal: Principal, account_id: str, settings: AccountSettingsDocument) -> list[str]:
    """The types capabilities offer: the account's that upload can take today (documents are not
    sent yet), and none to a token of another account (another account's settings stay private)."""
    if principal.account_id != account_id:
        return []
    return [t for t in settings.accepted_types if t in IMAGE_TYPES]
