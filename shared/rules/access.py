"""Who may read what, as plain functions (no I/O): each answers None (allowed) or the contract's
Refused, which the caller raises. Sending is services.upload.policy.

The caller is a Principal (account, role, subject). A file or conversation is known by its Owner:
its account and the conversation's consumer. The users of an account are its roles but
`consumer`; a consumer sees only their own conversations. Another account never learns that a
file or conversation exists (404); another consumer of the same account is told no (403) where
the contract says so (content, links, transcripts), while a file's status is 404 to them too.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.contract.auth import Principal
from shared.rules import Refused

# Who may change an account's settings; only the account team may turn the feature on or off.
SETTINGS_WRITERS = ("platform", "admin")
FEATURE_SETTERS = ("platform",)


@dataclass(frozen=True)
class Owner:
    """Whose file or conversation it is: the account, and the consumer of the conversation
    (None when not known, e.g. a bot record refused before it named a conversation)."""

    account_id: str
    consumer_id: str | None


def _is_theirs(caller: Principal, owner: Owner) -> bool:
    return caller.role != "consumer" or caller.sub == owner.consumer_id


def file_status(caller: Principal, owner: Owner | None) -> Refused | None:
    """GET /v1/files/{id} (upload): users of the file's account and the conversation's consumer;
    everyone else, and an unknown file, 404."""
    if owner is None or caller.account_id != owner.account_id or not _is_theirs(caller, owner):
        return Refused(404, "not_found", "no such file")
    return None


def file_content(caller: Principal, published: Owner | None, deleted_in: str | None = None) -> Refused | None:
    """The content and signed links of a published file (delivery). `deleted_in` is the account
    of a file that was published and then deleted: its account's users learn it is gone (410)."""
    if published is None:
        if deleted_in is not None and deleted_in == caller.account_id and caller.role != "consumer":
            return Refused(410, "gone", "the file was deleted")
        return Refused(404, "not_found", "no such file")
    if caller.account_id != published.account_id:
        return Refused(404, "not_found", "no such file")
    if not _is_theirs(caller, published):
        return Refused(403, "forbidden", "this file belongs to another consumer's conversation")
    return None


def transcript(caller: Principal, owner: Owner | None) -> Refused | None:
    """A conversation's published messages (delivery): its account's users and its consumer."""
    if owner is None or caller.account_id != owner.account_id:
        return Refused(404, "not_found", "no such conversation")
    if not _is_theirs(caller, owner):
        return Refused(403, "forbidden", "not your conversation")
    return None


def read_settings(caller: Principal, account_id: str) -> Refused | None:
    """GET an account's settings: every user of the account, no consumer."""
    if caller.account_id != account_id or caller.role == "consumer":
        return Refused(403, "permission_denied", "only users of the account can read its settings")
    return None


def write_settings(caller: Principal, account_id: str) -> Refused | None:
    """PUT an account's settings: the account team (`platform`) or an account `admin`."""
    if caller.account_id != account_id or caller.role not in SETTINGS_WRITERS:
        return Refused(403, "permission_denied", "only the account team or an account admin can change settings")
    return None


def set_feature_enabled(caller: Principal) -> Refused | None:
    """Changing `feature_enabled` (one of the settings writers): the account team only."""
    if caller.role not in FEATURE_SETTERS:
        return Refused(403, "permission_denied", "only the account team can change feature_enabled")
    return None


def read_capabilities(caller: Principal, account_id: str) -> Refused | None:
    """GET …/capabilities: any authenticated caller; the answer is about the caller, and shows
    nothing to a token of another account (services.upload.policy.capabilities)."""
    return None
