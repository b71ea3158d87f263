"""Retention: delete files when their account's retention ends, and forget consumers on request.

The index is the object store itself, listed by prefix ({account}/{consumer}/{conversation}/{file}/…):
it survives restarts with no extra state, sees every variant any stage wrote (also files
still in the pipeline), and needs no rebuild step.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from shared import events as ev
from shared.crypto import ConsumerKeyStore
from shared.durations import expires_at
from shared.kafka import Outgoing
from shared.state import AccountSettingsState
from shared.storage import ObjectInfo, ObjectStore, consumer_prefix
from shared.topics import FILE_DELETED

log = logging.getLogger(__name__)


@dataclass
class StoredFile:
    account_id: str
    consumer_id: str
    conversation_id: str
    file_id: str
    objects: list[ObjectInfo] = field(default_factory=list)

    @property
    def created(self) -> datetime:
        return min(o.last_modified for o in self.objects if o.last_modified)

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)


def group_files(objects: list[ObjectInfo]) -> list[StoredFile]:
    files: dict[tuple, StoredFile] = {}
    for o in objects:
        parts = o.key.split("/")
        if len(parts) != 5:
            log.warning("object outside the storage layout: %s", o.key)
            continue
        ident = tuple(parts[:4])
        files.setdefault(ident, StoredFile(*ident)).objects.append(o)
    return list(files.values())


@dataclass
class RetentionDeps:
    blobs: ObjectStore
    keys: ConsumerKeyStore
    accounts: AccountSettingsState
    metrics: object = None


async def delete_file(f: StoredFile, deps: RetentionDeps, reason: str) -> None:
    for o in f.objects:
        await deps.blobs.delete(o.key)
    if deps.metrics is not None:
        deps.metrics.deleted.labels(reason).inc()
        deps.metrics.freed.inc(f.size)


def receipt(f: StoredFile, reason: str, request_id: str | None = None) -> Outgoing:
    return Outgoing(FILE_DELETED, f.conversation_id, ev.FileDeleted(
        file_id=f.file_id, account_id=f.account_id, conversation_id=f.conversation_id,
        consumer_id=f.consumer_id, reason=reason, request_id=request_id))


async def forget_consumer(request: ev.GdprForget, deps: RetentionDeps) -> list[Outgoing]:
    """Crypto-shred first (every blob and backup unreadable at once), then delete, then receipts.
    Idempotent: a repeated request finds no keys and no objects and answers with no receipts."""
    prefix = consumer_prefix(request.account_id, request.consumer_id)
    shredded = await deps.keys.destroy(request.account_id, request.consumer_id)
    files = group_files(await deps.blobs.list(prefix))
    for f in files:
        await delete_file(f, deps, "gdpr")
    log.info("forget %s: destroyed %d key(s), deleted %d file(s) of consumer %s/%s", request.request_id, shredded,
             len(files), request.account_id, request.consumer_id)
    return [receipt(f, "gdpr", request.request_id) for f in files]


async def expired_files(deps: RetentionDeps, now: datetime | None = None) -> list[StoredFile]:
    now = now or datetime.now(timezone.utc)
    out = []
    for f in group_files(await deps.blobs.list("")):
        retention = deps.accounts.get(f.account_id).retention
        if expires_at(f.created, retention) <= now:
            out.append(f)
    return out
