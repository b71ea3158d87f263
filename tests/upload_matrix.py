"""The upload rules matrix, written from the contract, independent of
services/upload/policy.py: axes, cells, and the oracle giving each cell's status and code.

Axes: role × the role profile's permission set × feature flag (account team) × account setting
× conversation state × channel × source. Sources are the ways a file arrives:
  local     HTTP, multipart source=local (agent workspace's local file browser)
  widget    HTTP, multipart source=widget (a custom widget)
  bot_http  HTTP without a source field (what the bot SDK sends: the default, local)
  bot_topic a record on file.share.requested (source local; the topic is for bots)
The accounts of this matrix keep `consumer_uploads_enabled` off (the default): a consumer is
refused with consumer_uploads_disabled over HTTP. What a consumer may do with it on is the
consumer matrix below.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

ROLES = ("agent", "agent_manager", "bot", "consumer", "admin", "platform")
PERMISSION_SETS = ((), ("send_files_local",), ("send_files_widget",), ("send_files_local", "send_files_widget"))
FLAGS = (False, True)
STATES = ("open", "closed", "resumed", "unknown", "other_account")
CHANNELS = ("web", "sms")
SOURCES = ("local", "widget", "bot_http", "bot_topic")

# Rows of the contract's table, first match wins (the contract's order of checks).
OK = (202, None)


@dataclass(frozen=True)
class Cell:
    role: str
    permissions: tuple[str, ...]
    feature_enabled: bool
    file_sharing_enabled: bool
    state: str
    channel: str
    source: str

    def label(self) -> str:
        perms = "+".join(p.removeprefix("send_files_") for p in self.permissions) or "none"
        return (
            f"{self.role}/{perms}/feature={int(self.feature_enabled)}/setting={int(self.file_sharing_enabled)}"
            f"/{self.state}/{self.channel}/{self.source}"
        )


def all_cells() -> list[Cell]:
    return [
        Cell(*values) for values in itertools.product(ROLES, PERMISSION_SETS, FLAGS, FLAGS, STATES, CHANNELS, SOURCES)
    ]


def expected(cell: Cell, file_channels=("web",)) -> tuple[int, str | None]:
    """(HTTP status, error code) the contract gives for the cell; (202, None) = accepted."""
    if not cell.feature_enabled:
        return 403, "feature_disabled"
    if not cell.file_sharing_enabled:
        return 403, "file_sharing_disabled"
    if cell.role == "consumer" and cell.source != "bot_topic":
        return 403, "consumer_uploads_disabled"
    needed = "send_files_widget" if cell.source == "widget" else "send_files_local"
    senders = ("bot",) if cell.source == "bot_topic" else ("agent", "agent_manager", "bot")
    if cell.role not in senders or needed not in cell.permissions:
        return 403, "permission_denied"
    if cell.state in ("unknown", "other_account"):
        return 404, "conversation_not_found"
    if cell.state == "closed":
        return 409, "conversation_closed"
    if cell.channel not in file_channels:
        return 409, "channel_not_supported"
    return OK


# A consumer's upload into a conversation (the contract's "Consumer uploads"): feature flag × account
# setting × consumer_uploads_enabled × the conversation as the consumer sees it × channel × what
# the form names as source (absent, or any value: a consumer's upload is always `consumer`).
CONSUMER_STATES = ("open", "closed", "resumed", "unknown", "other_account", "other_consumer")
CONSUMER_FORM_SOURCES = (None, "local", "widget", "consumer")


@dataclass(frozen=True)
class ConsumerCell:
    feature_enabled: bool
    file_sharing_enabled: bool
    consumer_uploads_enabled: bool
    state: str
    channel: str
    form_source: str | None

    def label(self) -> str:
        return (
            f"consumer/feature={int(self.feature_enabled)}/setting={int(self.file_sharing_enabled)}"
            f"/consumer_uploads={int(self.consumer_uploads_enabled)}/{self.state}/{self.channel}"
            f"/source={self.form_source}"
        )


def consumer_cells() -> list[ConsumerCell]:
    return [
        ConsumerCell(*values)
        for values in itertools.product(FLAGS, FLAGS, FLAGS, CONSUMER_STATES, CHANNELS, CONSUMER_FORM_SOURCES)
    ]


def expected_for_consumer(cell: ConsumerCell, file_channels=("web",)) -> tuple[int, str | None]:
    if not cell.feature_enabled:
        return 403, "feature_disabled"
    if not cell.file_sharing_enabled:
        return 403, "file_sharing_disabled"
    if not cell.consumer_uploads_enabled:
        return 403, "consumer_uploads_disabled"
    if cell.state in ("unknown", "other_account", "other_consumer"):  # existence is not revealed
        return 404, "conversation_not_found"
    if cell.state == "closed":
        return 409, "conversation_closed"
    if cell.channel not in file_channels:
        return 409, "channel_not_supported"
    return OK


# The file's own type against the account's `accepted_types` (its settings document, and
# 415 unsupported_type): content kinds × lists an account may hold. A kind's type is what its
# content is, whatever the file is called; svg and bmp are no type an account can accept.
PHOTO_TYPES = ("image/jpeg", "image/png", "image/gif")
PHONE_TYPES = ("image/heic", "image/webp")
CONTENT_TYPE_OF = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "heic": "image/heic",
    "webp": "image/webp",
    "svg": None,
    "bmp": None,
}
ACCEPTED_LISTS = (
    PHOTO_TYPES,
    (*PHOTO_TYPES, *PHONE_TYPES),
    ("image/heic",),
    ("image/webp", "application/pdf"),
    ("image/png",),
    (),
)


def type_cells() -> list[tuple[str, tuple[str, ...]]]:
    return list(itertools.product(CONTENT_TYPE_OF, ACCEPTED_LISTS))


def expected_for_type(kind: str, accepted: tuple[str, ...]) -> tuple[int, str | None]:
    return OK if CONTENT_TYPE_OF[kind] in accepted else (415, "unsupported_type")
