"""Retention: delete files when their account's retention ends, and forget consumers on request.

Index: the object store itself, listed by prefix ({account}/{consumer}/{conversation}/{file}/{variant}).
It sees every object any stage wrote, including files still in the pipeline and objects whose event
was never produced (a crash between write and produce), it survives restarts with no extra state,
and there is nothing to rebuild (so no `rebuild-index` command). The price is a full listing per
sweep: fine up to millions of objects at the default hourly sweep; beyond that, list per account.
A file's age is the oldest last-modified time of its objects (the original is written first).

Receipts exactly once (one file.deleted per deleted file, also across crashes): the receipt is
produced, and acknowledged by the broker, BEFORE the file's objects are deleted, and a receipt is
only produced for a file that has none yet. "Has none yet" comes from the ReceiptLedger, a view
of file.deleted read from the beginning at start plus what this process produced since.
  - crash after the receipt, before the delete: the objects are still listed; the redelivered
    gdpr.forget (never committed) or the next sweep deletes them and finds the receipt: no second one.
  - crash before the receipt: nothing was deleted; the retry produces the receipt then deletes.
The opposite order (delete, then receipt) would lose the receipt on a crash in between: the file
is gone from the listing, so nothing would ever find it again. A receipt a moment before the bytes
go is harmless for GDPR: the key is destroyed before anything else, so the file is unreadable already.
One retention process runs at a time (the ledger lock serialises its forget handler and its sweep);
more processes would need the ledger in a shared store.

Forget (gdpr.forget): destroy the consumer's keys (crypto-shredding), list the consumer prefix,
receipts, delete, then ONE summary log line with counts. Idempotent: a repeated request destroys
no key, finds no object, produces no receipt, and still answers with its summary line
("nothing left") and a `fileshare_forget_requests_total{outcome="nothing_left"}` count.

In-flight race: every blob names the consumer key id it was encrypted with. Once the keys are
destroyed, a stage that reads or writes such a blob gets ConsumerForgotten and rejects the file
with consumer_forgotten; a file whose upload created a NEW key after the destruction belongs to
the consumer's life after the forget. An object written by an in-flight stage after the forget's
listing (the stage loaded the old key just before it was destroyed) is caught when that file is
rejected: retention consumes file.rejected with reason consumer_forgotten, deletes whatever is left
of that file and, if the file has no receipt yet, produces one (reason gdpr, the consumer's latest
forget request_id).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Awaitable, Callable

from shared import events as ev
from shared.crypto import BlobIntegrityError, ConsumerKeyStore, parse_header
from shared.durations import expires_at, parse_duration
from shared.kafka import Outgoing
from shared.state import AccountSettingsState
from shared.storage import ObjectInfo, ObjectStore, consumer_prefix
from shared.storage.keys import file_prefix
from shared.topics import FILE_DELETED

log = logging.getLogger(__name__)

DEFAULT_RETENTION = ev.AccountSettingsDocument().retention


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class StoredFile:
    account_id: str
    consumer_id: str
    conversation_id: str
    file_id: str
    objects: list[ObjectInfo] = field(default_factory=list)

    def created(self, now: datetime) -> datetime:
        """The oldest object's time; an object without one counts as new (never expired by mistake)."""
        return min((o.last_modified or now) for o in self.objects)

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def ctx(self) -> dict:
        return {"extra": {"ctx": {"file_id": self.file_id, "conversation_id": self.conversation_id,
                                  "account_id": self.account_id}}}


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


class ReceiptLedger:
    """Which files already have their file.deleted receipt, and each consumer's latest forget request.

    Folded from file.deleted and gdpr.forget (a TopicView from the beginning) plus what this process
    produced. Memory grows with the number of deleted files (a set of ids)."""

    def __init__(self):
        self.receipted: set[str] = set()
        self.forget_requests: dict[tuple[str, str], str] = {}
        # (request_id, account, consumer) -> (partition, offset) of its first gdpr.forget record
        self.first_requests: dict[tuple[str, str, str], tuple[int, int]] = {}
        self.lock = asyncio.Lock()

    def apply(self, event: ev.Event | None, position: tuple[int, int] | None = None) -> None:
        """position: (partition, offset) of the record, which orders gdpr.forget requests."""
        if isinstance(event, ev.FileDeleted):
            self.receipted.add(event.file_id)
        elif isinstance(event, ev.GdprForget):
            self.forget_requests[(event.account_id, event.consumer_id)] = event.request_id
            if position is not None:
                self.first_requests.setdefault((event.request_id, event.account_id, event.consumer_id), position)

    def is_repeat(self, request: ev.GdprForget, position: tuple[int, int]) -> bool:
        """True when the same request (id, account, consumer) came earlier in the same partition:
        it was carried out before this record (records of a partition are handled in order). A
        repeat must do nothing new: the consumer may have come back since, with new files that
        this old request never covered. A redelivery of the same record is not a repeat (redone)."""
        first = self.first_requests.get((request.request_id, request.account_id, request.consumer_id))
        return first is not None and first[0] == position[0] and first[1] < position[1]

    def has_receipt(self, file_id: str) -> bool:
        return file_id in self.receipted

    def request_for(self, account_id: str, consumer_id: str) -> str | None:
        return self.forget_requests.get((account_id, consumer_id))


Send = Callable[[list[Outgoing]], Awaitable[None]]


@dataclass
class RetentionDeps:
    blobs: ObjectStore
    keys: ConsumerKeyStore
    accounts: AccountSettingsState
    ledger: ReceiptLedger
    send: Send  # produce and wait for the broker's acknowledgement
    metrics: object = None
    clock: Callable[[], datetime] = utcnow


def receipt(f: StoredFile, reason: str, request_id: str | None = None) -> Outgoing:
    return Outgoing(FILE_DELETED, f.conversation_id, ev.FileDeleted(
        file_id=f.file_id, account_id=f.account_id, conversation_id=f.conversation_id,
        consumer_id=f.consumer_id, reason=reason, request_id=request_id))


@dataclass
class Erased:
    receipted: list[StoredFile]  # files that got their receipt now
    objects: int
    bytes: int


async def receipt_then_delete(files: list[StoredFile], reason: str, request_id: str | None,
                              deps: RetentionDeps) -> Erased:
    """Receipts for files without one (acknowledged), then every object of every file."""
    async with deps.ledger.lock:
        new = [f for f in files if not deps.ledger.has_receipt(f.file_id)]
        if new:
            await deps.send([receipt(f, reason, request_id) for f in new])
            for f in new:
                deps.ledger.receipted.add(f.file_id)
    objects = freed = 0
    for f in files:
        for o in f.objects:
            await deps.blobs.delete(o.key)  # every version on versioned buckets
            objects += 1
            freed += o.size
    if deps.metrics is not None:
        if new:
            deps.metrics.deleted.labels(reason).inc(len(new))
        deps.metrics.freed.inc(freed)
    return Erased(new, objects, freed)


@dataclass(frozen=True)
class ForgetSummary:
    request_id: str
    keys_destroyed: int
    files_found: int
    receipts: int
    objects_deleted: int
    bytes_deleted: int

    @property
    def outcome(self) -> str:
        return "erased" if self.keys_destroyed or self.files_found else "nothing_left"


async def forget_consumer(request: ev.GdprForget, deps: RetentionDeps) -> ForgetSummary:
    """Crypto-shred first (every blob and backup unreadable at once), then receipts, then delete."""
    prefix = consumer_prefix(request.account_id, request.consumer_id)
    deps.ledger.forget_requests[(request.account_id, request.consumer_id)] = request.request_id
    shredded = await deps.keys.destroy(request.account_id, request.consumer_id)
    shredded_at = deps.clock()
    files = group_files(await deps.blobs.list(prefix))
    erased = await receipt_then_delete(files, "gdpr", request.request_id, deps)
    done_at = deps.clock()
    summary = ForgetSummary(request.request_id, shredded, len(files), len(erased.receipted), erased.objects,
                            erased.bytes)
    if deps.metrics is not None:
        deps.metrics.forget_requests.labels(summary.outcome).inc()
        deps.metrics.shred_seconds.observe(max(0.0, (shredded_at - request.occurred_at).total_seconds()))
        deps.metrics.forget_seconds.observe(max(0.0, (done_at - request.occurred_at).total_seconds()))
    log.info("forget request %s %s: consumer %s/%s, keys destroyed=%d, files=%d, receipts=%d, objects deleted=%d, "
             "bytes=%d, %.3fs after the request", request.request_id, summary.outcome, request.account_id,
             request.consumer_id, shredded, len(files), summary.receipts, erased.objects, erased.bytes,
             (done_at - request.occurred_at).total_seconds(),
             extra={"ctx": {"request_id": request.request_id, "account_id": request.account_id}})
    return summary


async def _still_readable(f: StoredFile, deps: RetentionDeps) -> bool:
    """True when some object of the file opens with a live consumer key (then it was not forgotten)."""
    if not await deps.keys.has_any(f.account_id, f.consumer_id):
        return False
    for o in f.objects:
        try:
            key_id = parse_header(await deps.blobs.get(o.key)).key_id
        except (FileNotFoundError, BlobIntegrityError):
            continue
        if await deps.keys.has_key(f.account_id, f.consumer_id, key_id):
            return True
    return False


async def clean_forgotten_file(event: ev.FileRejected, deps: RetentionDeps) -> Erased | None:
    """A file rejected as consumer_forgotten: remove what an in-flight stage wrote after the forget."""
    if event.reason != "consumer_forgotten":
        return None
    files = group_files(await deps.blobs.list(file_prefix(event.account_id, event.consumer_id,
                                                           event.conversation_id, event.file_id)))
    if not files:
        return None
    f = files[0]
    if await _still_readable(f, deps):
        log.warning("file rejected as consumer_forgotten still opens with a live key; kept", **f.ctx)
        return None
    erased = await receipt_then_delete(files, "gdpr", deps.ledger.request_for(f.account_id, f.consumer_id), deps)
    log.info("removed %d object(s) left by an in-flight stage after a forget (receipt: %s)", erased.objects,
             "new" if erased.receipted else "already given", **f.ctx)
    return erased


async def expired_files(deps: RetentionDeps, now: datetime | None = None) -> list[StoredFile]:
    """Files whose account's CURRENT retention has ended (a changed retention applies to existing files)."""
    now = now or deps.clock()
    out = []
    for f in group_files(await deps.blobs.list("")):
        try:
            if expires_at(f.created(now), deps.accounts.get(f.account_id).retention) <= now:
                out.append(f)
        except ValueError as e:
            log.error("account %s has an unusable retention (%s); its files are kept", f.account_id, e)
    return out


async def sweep(deps: RetentionDeps, now: datetime | None = None) -> Erased:
    """Delete every variant of every expired file, one file.deleted (reason expired) each."""
    files = await expired_files(deps, now)
    erased = await receipt_then_delete(files, "expired", None, deps)
    for f in files:
        log.info("expired file deleted", **f.ctx)
    return erased


def safety_net_days(accounts: AccountSettingsState, now: datetime) -> int:
    """Days for the bucket lifecycle rule: whole days covering the longest retention in use
    (the default counts too: accounts without settings use it)."""
    longest = now + parse_duration(DEFAULT_RETENTION)
    for doc in accounts.accounts().values():
        try:
            longest = max(longest, now + parse_duration(doc.retention))
        except ValueError:
            continue
    seconds = (longest - now).total_seconds()
    # +1 day: the sweep (which gives the receipt) always comes first; the rule only catches what it missed.
    return max(1, -(-int(seconds) // 86400)) + 1
