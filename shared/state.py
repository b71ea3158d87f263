"""Read models built from topics: account settings, conversations, file status, messages.

Plain classes: `apply(event)` folds one event in; unit tests call them without Kafka.
A TopicView feeds them in services (the topics are the only store of truth).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from shared import events as ev

log = logging.getLogger(__name__)


def decode(value: bytes | None) -> ev.Event | None:
    if value is None:
        return None  # compaction tombstone
    try:
        return ev.parse_event(value)
    except (ValidationError, ValueError) as e:
        log.warning("skipping an invalid event: %s", str(e).splitlines()[0])
        return None


class AccountSettingsState:
    def __init__(self):
        self._by_account: dict[str, ev.AccountSettingsDocument] = {}

    def apply(self, event: ev.Event | None) -> None:
        if isinstance(event, ev.AccountSettings):
            self._by_account[event.account_id] = event.document()

    def get(self, account_id: str) -> ev.AccountSettingsDocument:
        return self._by_account.get(account_id) or ev.AccountSettingsDocument()

    def known(self, account_id: str) -> bool:
        return account_id in self._by_account

    def accounts(self) -> dict[str, ev.AccountSettingsDocument]:
        return dict(self._by_account)


@dataclass
class Conversation:
    account_id: str
    conversation_id: str
    consumer_id: str
    channel: str | None  # None: the platform never named it (cannot receive files)
    authenticated: bool
    open: bool


class ConversationState:
    def __init__(self):
        self._by_id: dict[str, Conversation] = {}

    def apply(self, event: ev.Event | None) -> None:
        if not isinstance(event, ev.ConversationEvent):
            return
        known = self._by_id.get(event.conversation_id)
        if known is not None and known.account_id != event.account_id:
            log.warning("conversation %s claimed by account %s, already owned by %s; ignored",
                        event.conversation_id, event.account_id, known.account_id)
            return
        self._by_id[event.conversation_id] = Conversation(
            account_id=event.account_id, conversation_id=event.conversation_id,
            consumer_id=event.consumer_id,
            channel=event.channel if event.channel is not None else (known.channel if known else None),
            authenticated=event.authenticated,
            open=event.event_type != "conversation.closed")

    def get(self, conversation_id: str) -> Conversation | None:
        return self._by_id.get(conversation_id)


STAGE_OF_EVENT = {
    "file.uploaded": "uploaded", "file.sanitized": "sanitized", "file.resized": "resized",
    "message.published": "published", "file.rejected": "rejected", "file.deleted": "deleted",
}
# Events of one file may be read out of order across topics: a later stage never goes back.
STAGE_RANK = {"uploaded": 1, "sanitized": 2, "resized": 3, "published": 4, "rejected": 5, "deleted": 6}


@dataclass
class FileStatus:
    file_id: str
    account_id: str
    conversation_id: str
    consumer_id: str
    status: str
    reason: str | None = None
    detail: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    caption: str | None = None
    sender_id: str | None = None
    request_id: str | None = None
    updated_at: datetime | None = None
    history: list[str] = field(default_factory=list)
    rejection: tuple[str, str] | None = None   # (reason, detail) of the file.rejected, if any
    deletion: str | None = None                # reason of the file.deleted, if any
    described_by: str | None = None            # stage whose event gave content_type/size/width/height

    def public(self) -> dict:
        return {"file_id": self.file_id, "status": self.status, "reason": self.reason,
                "detail": self.detail, "account_id": self.account_id,
                "conversation_id": self.conversation_id, "content_type": self.content_type,
                "size_bytes": self.size_bytes, "width": self.width, "height": self.height,
                "caption": self.caption,
                "updated_at": self.updated_at.isoformat() if self.updated_at else None}

    def settle(self) -> None:
        """Status and reason from everything seen, whatever order the topics were read in."""
        if self.deletion == "gdpr" and "published" not in self.history and \
                (self.rejection is None or self.rejection[0] == "consumer_forgotten"):
            # A forget caught the file in flight: it was never delivered, and to its sender that is
            # the rejection consumer_forgotten, whether the receipt or the stage's rejection is read first.
            self.status, self.reason = "rejected", "consumer_forgotten"
            self.detail = self.rejection[1] if self.rejection else "the consumer's files were erased"
        elif self.deletion is not None:
            self.status, self.reason, self.detail = "deleted", self.deletion, None
        elif self.rejection is not None:
            self.status, (self.reason, self.detail) = "rejected", self.rejection
        else:
            self.status = max(self.history, key=STAGE_RANK.__getitem__)
            self.reason = self.detail = None


class FileStatusState:
    def __init__(self):
        self._by_id: dict[str, FileStatus] = {}

    def apply(self, event: ev.Event | None) -> None:
        status = STAGE_OF_EVENT.get(getattr(event, "event_type", ""))
        if status is None:
            return
        fid = event.file_id
        current = self._by_id.get(fid)
        if current is None:
            current = self._by_id[fid] = FileStatus(
                file_id=fid, account_id=event.account_id, conversation_id=event.conversation_id,
                consumer_id=event.consumer_id, status=status)
        if status not in current.history:
            current.history.append(status)
        if isinstance(event, ev.FileRejected):
            current.rejection = (event.reason, event.detail)
        elif isinstance(event, ev.FileDeleted):
            current.deletion = event.reason
        if STAGE_RANK[status] >= max(STAGE_RANK[s] for s in current.history):
            current.updated_at = event.occurred_at
        described = event.content if isinstance(event, ev.MessagePublished) else event
        for name in ("content_type", "size_bytes", "width", "height"):
            value = getattr(described, name, None)
            if value is not None and STAGE_RANK[status] >= STAGE_RANK.get(current.described_by, 0):
                setattr(current, name, value)
                current.described_by = status
        current.settle()
        if getattr(event, "caption", None) is not None:
            current.caption = event.caption
        sender = getattr(event, "sender", None)
        if sender is not None:
            current.sender_id = sender.id
        if getattr(event, "request_id", None):
            current.request_id = event.request_id

    def get(self, file_id: str) -> FileStatus | None:
        return self._by_id.get(file_id)

    def all(self) -> list[FileStatus]:
        return list(self._by_id.values())


class MessageState:
    """Published file messages: per conversation (transcripts) and per file (dedupe)."""

    def __init__(self):
        self.by_file: dict[str, ev.MessagePublished] = {}
        self.by_conversation: dict[str, list[ev.MessagePublished]] = {}
        self.deleted: set[str] = set()

    def apply(self, event: ev.Event | None) -> None:
        if isinstance(event, ev.MessagePublished):
            if event.file_id in self.by_file:
                return  # a duplicate on the topic is shown once
            self.by_file[event.file_id] = event
            self.by_conversation.setdefault(event.conversation_id, []).append(event)
        elif isinstance(event, ev.FileDeleted):
            self.deleted.add(event.file_id)

    def published(self, file_id: str) -> bool:
        return file_id in self.by_file

    def transcript(self, conversation_id: str) -> list[ev.MessagePublished]:
        return [m for m in self.by_conversation.get(conversation_id, []) if m.file_id not in self.deleted]
