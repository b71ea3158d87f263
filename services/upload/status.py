"""The status of every file (GET /v1/files/{id}), folded from the pipeline's events into upload.files.

`FileStatus` is plain domain logic (unit tests call it without a database); `record_event` is the
projection that keeps one row per file, and `load`/`save` its repository. The row also holds the
last pipeline event of an unfinished file (`pending_event`): re-drive emits it again
(services.upload.redrive).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime

from psycopg.types.json import Jsonb

from shared.adapters.db import Connection
from shared.contract import events as ev

STAGE_OF_EVENT = {
    "file.uploaded": "uploaded",
    "file.sanitized": "sanitized",
    "file.resized": "resized",
    "message.published": "published",
    "file.rejected": "rejected",
    "file.deleted": "deleted",
}
StatusEvent = ev.FileEvent | ev.MessagePublished | ev.FileDeleted  # every event that names a file
# Events of one file may be read out of order across topics: a later stage never goes back.
STAGE_RANK = {"uploaded": 1, "sanitized": 2, "resized": 3, "published": 4, "rejected": 5, "deleted": 6}
UNFINISHED = ("uploaded", "sanitized", "resized")
# What a deleted file's row keeps: its receipt, and the stages it went through
# (events read late must still settle the status: a receipt read before the publish is `deleted`).
RECEIPT_FIELDS = ("file_id", "account_id", "status", "reason", "deletion", "updated_at", "history", "rejection_reason")


@dataclass
class FileStatus:
    file_id: str
    account_id: str
    status: str
    conversation_id: str | None = None
    consumer_id: str | None = None
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
    rejection_reason: str | None = None
    rejection_detail: str | None = None
    deletion: str | None = None  # reason of the file.deleted, if any
    described_by: str | None = None  # stage whose event gave content_type/size/width/height
    pending_event: dict | None = None  # the furthest pipeline event while unfinished (re-drive)

    def public(self) -> dict:
        if self.deletion is not None:
            return {"file_id": self.file_id, "status": self.status, "reason": self.reason}
        return {
            "file_id": self.file_id,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "account_id": self.account_id,
            "conversation_id": self.conversation_id,
            "content_type": self.content_type,
            "size_bytes": self.size_bytes,
            "width": self.width,
            "height": self.height,
            "caption": self.caption,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    def settle(self) -> None:
        """Status and reason from everything seen, whatever order the topics were read in."""
        if (
            self.deletion == "gdpr"
            and "published" not in self.history
            and self.rejection_reason in (None, "consumer_forgotten")
        ):
            # A forget caught the file in flight: it was never delivered, and to its sender that is
            # the rejection consumer_forgotten, whether the receipt or the stage's rejection is read first.
            self.status, self.reason = "rejected", "consumer_forgotten"
            self.detail = self.rejection_detail or "the consumer's files were erased"
        elif self.deletion is not None:
            self.status, self.reason, self.detail = "deleted", self.deletion, None
        elif self.rejection_reason is not None:
            self.status, self.reason, self.detail = "rejected", self.rejection_reason, self.rejection_detail
        else:
            self.status = max(self.history, key=STAGE_RANK.__getitem__)
            self.reason = self.detail = None

    def apply(self, event: ev.Event) -> bool:
        """Fold one event in; True when the file moved (its status changed). Once deleted, an event read
        late only settles the status: nothing about the file is kept again."""
        stage = STAGE_OF_EVENT.get(getattr(event, "event_type", ""))
        if stage is None:
            return False
        before = self.status
        if stage not in self.history:
            self.history.append(stage)
        if STAGE_RANK[stage] >= max(STAGE_RANK[s] for s in self.history):
            self.updated_at = event.occurred_at
        if isinstance(event, ev.FileRejected):
            self.rejection_reason, self.rejection_detail = event.reason, event.detail
        elif isinstance(event, ev.FileDeleted):
            self.deletion = event.reason
        if self.deletion is None:
            self.describe(stage, event)
        self.settle()
        if self.status in UNFINISHED:
            pending_stage = STAGE_OF_EVENT[self.pending_event["event_type"]] if self.pending_event else None
            if stage in UNFINISHED and STAGE_RANK[stage] >= STAGE_RANK.get(pending_stage or "", 0):
                self.pending_event = json.loads(event.model_dump_json())
        else:
            self.pending_event = None
        if self.deletion is not None:
            self.erase()
        return self.status != before

    def confirm_published(self) -> bool:
        """Delivery confirmed it published the file, whose message.published this service never read
        (a broker that lost its log): the file is finished. True when the status changed."""
        if self.deletion is not None or "published" in self.history:
            return False
        self.history.append("published")
        self.settle()
        self.pending_event = None
        return True

    def describe(self, stage: str, event: ev.Event) -> None:
        """What the status shows about the file: the latest stage's description, ids, sender."""
        described = event.content if isinstance(event, ev.MessagePublished) else event
        for name in ("content_type", "size_bytes", "width", "height"):
            value = getattr(described, name, None)
            if value is not None and STAGE_RANK[stage] >= STAGE_RANK.get(self.described_by or "", 0):
                setattr(self, name, value)
                self.described_by = stage
        for name in ("conversation_id", "consumer_id", "request_id"):
            if getattr(event, name, None) and getattr(self, name) is None:
                setattr(self, name, getattr(event, name))
        sender = getattr(event, "sender", None)
        if sender is not None:
            self.sender_id = sender.id

    def erase(self) -> None:
        """Forget everything about the file but its receipt: deleted, not flagged."""
        for f in fields(self):
            if f.name not in RECEIPT_FIELDS:
                setattr(self, f.name, None)


COLUMNS = tuple(f.name for f in fields(FileStatus))


async def load(conn: Connection, file_id: str, for_update: bool = False) -> FileStatus | None:
    row = await (
        await conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM files WHERE file_id = %s" + (" FOR UPDATE" if for_update else ""),
            (file_id,),
        )
    ).fetchone()
    return FileStatus(**row) if row else None


async def claim(conn: Connection, event: StatusEvent) -> FileStatus | None:
    """Create the file's row, or wait for a concurrent transaction that is creating it (on any
    instance) and return None when it committed: the primary key is the idempotency lock."""
    row = await (
        await conn.execute(
            "INSERT INTO files (file_id, account_id, conversation_id, consumer_id, status) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (file_id) DO NOTHING RETURNING file_id",
            (
                event.file_id,
                event.account_id,
                event.conversation_id,
                event.consumer_id,
                STAGE_OF_EVENT[event.event_type],
            ),
        )
    ).fetchone()
    if row is None:
        return None
    return FileStatus(file_id=event.file_id, account_id=event.account_id, status=STAGE_OF_EVENT[event.event_type])


async def save(conn: Connection, status: FileStatus, moved: bool) -> None:
    values = asdict(status)
    values["pending_event"] = Jsonb(values["pending_event"]) if values["pending_event"] is not None else None
    assignments = ", ".join(f"{c} = %({c})s" for c in COLUMNS if c != "file_id")
    await conn.execute(
        f"UPDATE files SET {assignments}" + (", moved_at = now()" if moved else "") + " WHERE file_id = %(file_id)s",
        values,
    )


async def record_event(conn: Connection, event: ev.Event) -> FileStatus | None:
    """The projection: fold one file event into its row (created if new), under the row's lock."""
    if not isinstance(event, StatusEvent) or STAGE_OF_EVENT.get(event.event_type) is None:
        return None
    await claim(conn, event)
    status = await load(conn, event.file_id, for_update=True)
    assert status is not None  # claimed above
    moved = status.apply(event)
    await save(conn, status, moved)
    return status
