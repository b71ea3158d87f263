"""The product's rules at the door, as plain functions (no I/O): who may send what, where.

Order of checks is the contract's: 401 (done by the caller), 403 feature_disabled,
403 file_sharing_disabled, 403 permission_denied, 404 conversation, 409 conversation
state/channel, then the file itself (413/415/422).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from shared.auth import SENDER_ROLES, Principal
from shared.events import AccountSettingsDocument
from shared.state import Conversation

PERMISSION_FOR_SOURCE = {"local": "send_files_local", "widget": "send_files_widget"}


class Refused(Exception):
    """A rule said no: the contract's HTTP status and error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def check_account_gates(principal: Principal, account_id: str, settings: AccountSettingsDocument) -> None:
    """Checks that need neither the body nor the conversation."""
    if principal.account_id != account_id:
        raise Refused(403, "permission_denied", "the token belongs to another account")
    if not settings.feature_enabled:
        raise Refused(403, "feature_disabled", "file sharing is not enabled for this account by the account team")
    if not settings.file_sharing_enabled:
        raise Refused(403, "file_sharing_disabled", "file sharing is turned off in the account settings")


def check_permission(principal: Principal, settings: AccountSettingsDocument, source: str) -> None:
    if principal.role not in SENDER_ROLES:
        raise Refused(403, "permission_denied", f"role {principal.role!r} cannot send files")
    needed = PERMISSION_FOR_SOURCE[source]
    if needed not in settings.permissions.get(principal.role, []):
        raise Refused(403, "permission_denied", f"the {principal.role} profile lacks {needed!r}")


def check_conversation(account_id: str, conversation: Conversation | None, file_channels: frozenset[str]) -> Conversation:
    # A conversation of another account is reported exactly like an unknown one.
    if conversation is None or conversation.account_id != account_id:
        raise Refused(404, "conversation_not_found", "no such conversation")
    if not conversation.open:
        # A photo never resumes a closed conversation (agents and custom widgets alike).
        raise Refused(409, "conversation_closed", "the conversation is closed; sending a photo cannot resume it")
    if conversation.channel not in file_channels:
        raise Refused(409, "channel_not_supported", f"channel {conversation.channel!r} cannot receive files")
    return conversation


def check_caption(caption: str | None, max_chars: int) -> str | None:
    if caption is None or caption == "":
        return None
    if len(caption) > max_chars:
        raise Refused(422, "invalid_request", f"caption is longer than {max_chars} characters")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in caption):
        raise Refused(422, "invalid_request", "caption contains control characters")
    return caption


def check_sender(principal: Principal, account_id: str, settings: AccountSettingsDocument, source: str,
                 conversation: Conversation | None, file_channels: frozenset[str]) -> Conversation:
    check_account_gates(principal, account_id, settings)
    check_permission(principal, settings, source)
    return check_conversation(account_id, conversation, file_channels)


@dataclass(frozen=True)
class Capabilities:
    visible: bool
    enabled: bool
    reason: str | None


def capabilities(principal: Principal, account_id: str, settings: AccountSettingsDocument,
                 conversation: Conversation | None, file_channels: frozenset[str]) -> Capabilities:
    """What the agent UI shows: the attachment icon is visible with a permission once the
    account team enabled the feature; it is clickable only when sending would be allowed."""
    held = settings.permissions.get(principal.role, []) if principal.role in SENDER_ROLES else []
    if principal.account_id != account_id:
        return Capabilities(False, False, "permission_denied")
    if not settings.feature_enabled:
        return Capabilities(False, False, "feature_disabled")
    if not held:
        return Capabilities(False, False, "permission_denied")
    try:
        check_account_gates(principal, account_id, settings)
        check_conversation(account_id, conversation, file_channels)
    except Refused as r:
        return Capabilities(True, False, r.code)
    return Capabilities(True, True, None)
