"""Retention: delete files when their account's retention ends, and forget consumers on request.

Index: retention.files, one row per stored file (from file.uploaded) with its expiry time
(created + the account's current retention; a changed retention moves the expiry of the
account's files). The sweep is an indexed range scan, `FOR UPDATE SKIP LOCKED`, so several
instances share it and never handle one file twice.

Erasing a file (`erase_files`, inside the caller's transaction, the file's index row locked):
delete every object of the file (every version), then the receipt, then the index row. A receipt
is produced only for a file that has none (the primary key of retention.receipts: one receipt per
file, ever, across instances), and the transaction commits after the broker acknowledged it. A
crash anywhere before the commit leaves the index row, so the next sweep or the redelivered forget
does it again: objects already gone, the receipt then given once.

Forget (gdpr.forget): destroy the consumer's keys first (crypto-shredding: every blob, backup and
sealed caption or preview unreadable at once), then erase every file of the consumer: those in the
index and those only in the store (in the pipeline, or whose upload never finished), then ONE
summary log line with counts. A request carried out before (same request id, account, consumer)
does nothing new: the consumer may have come back since, with new files it never covered.

In-flight race: once the keys are destroyed, a stage that reads or writes such a file rejects it
as consumer_forgotten; retention consumes those rejections and erases what the stage wrote after
the forget's listing, with the consumer's latest forget request id.

The statements on retention's tables are in services.retention.repository; object paths come from
shared.adapters.storage.keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.retention import repository as files_db
from services.retention.metrics import RetentionMetrics
from shared.adapters.crypto import HEADER_MAX, BlobIntegrityError, ConsumerKeyStore, parse_header
from shared.adapters.db import Connection, Database, lock_files
from shared.adapters.kafka import Outgoing, Send, TransientError
from shared.adapters.storage import ObjectInfo, ObjectStore, consumer_prefix
from shared.adapters.storage.keys import file_of, file_prefix
from shared.contract import events as ev
from shared.contract.durations import parse_duration
from shared.contract.topics import FILE_DELETED
from shared.projections.account_settings import all_documents, get_document
from shared.runtime.logs import file_ctx, log_ctx

log = logging.getLogger(__name__)

DEFAULT_RETENTION = ev.AccountSettingsDocument().retention
SWEEP_BATCH = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class StoredFile:
    account_id: str
    consumer_id: str
    conversation_id: str
    file_id: str
    objects: list[ObjectInfo] = field(default_factory=list)

    @property
    def ctx(self) -> dict:
        return file_ctx(self)

    @property
    def ids(self) -> dict:
        return {
            "file_id": self.file_id,
            "account_id": self.account_id,
            "consumer_id": self.consumer_id,
            "conversation_id": self.conversation_id,
        }


def group_files(objects: list[ObjectInfo]) -> list[StoredFile]:
    files: dict[tuple[str, str, str, str], StoredFile] = {}
    for o in objects:
        ident = file_of(o.key)
        if ident is None:
            log.warning("object outside the storage layout: %s", o.key)
            continue
        files.setdefault(ident, StoredFile(*ident)).objects.append(o)
    return list(files.values())


@dataclass
class RetentionDeps:
    db: Database
    blobs: ObjectStore
    keys: ConsumerKeyStore
    send: Send  # produce and wait for the broker's acknowledgement
    metrics: RetentionMetrics | None = None
    clock: Callable[[], datetime] = utcnow


def receipt(f: StoredFile, reason: ev.DeletionReason, request_id: str | None = None) -> Outgoing:
    return Outgoing(
        FILE_DELETED,
        f.conversation_id,
        ev.FileDeleted(
            file_id=f.file_id,
            account_id=f.account_id,
            conversation_id=f.conversation_id,
            consumer_id=f.consumer_id,
            reason=reason,
            request_id=request_id,
        ),
    )


@dataclass
class Erased:
    receipted: list[StoredFile]  # files that got their receipt now
    objects: int
    bytes: int


# --- the index ---------------------------------------------------------------------------------

IndexedEvent = ev.FileUploaded | ev.FileSanitized | ev.FileResized  # the events of the retention index


async def index_file(conn: Connection, event: IndexedEvent) -> None:
    """A pipeline stage event: the file enters the index with its expiry time (a receipted file never
    does). Every stage indexes, not only file.uploaded: after a broker lost its log, re-drive emits a
    file's latest stage event, which may be the first this index sees of it."""
    await lock_files(conn, event.file_id)  # an erasure of this file in flight commits first (receipt seen)
    # The account's row locked (created with the defaults if none yet): a new retention being applied
    # by the settings follower (another consumer, its own transaction) commits first and is read here.
    # Read without the lock, the old retention would be stored, and that transaction's update of the
    # account's files, blind to this uncommitted row, would leave the file with it for good.
    retention = (await get_document(conn, event.account_id, for_update=True)).retention
    created = getattr(event, "uploaded_at", None) or event.occurred_at
    await files_db.index(
        conn,
        {
            "file_id": event.file_id,
            "account_id": event.account_id,
            "consumer_id": event.consumer_id,
            "conversation_id": event.conversation_id,
        },
        event.size_bytes,
        created,
        retention,
    )


async def retention_changed(conn: Connection, event: ev.AccountSettings) -> None:
    """A changed retention applies to the account's existing files."""
    await files_db.set_retention(conn, event.account_id, event.retention)


# --- erasing -------------------------------------------------------------------------------------


async def erase_files(
    conn: Connection, files: list[StoredFile], reason: ev.DeletionReason, request_id: str | None, deps: RetentionDeps
) -> Erased:
    """Under the files' locks: the index rows, the objects (listed now when not given), then receipts
    for files without one (acknowledged); the caller's transaction commits. Everything that can wait
    on another transaction (a sweep, a forget, an in-flight rejection of the same file) comes before
    the receipts are sent, so a deadlock retried never sends a receipt twice."""
    ids = sorted({f.file_id for f in files})
    # Rows first, in one order, then the files' locks: a sweep holds its batch's rows before it asks for
    # their locks, so taking the locks first here could close a cycle with it.
    await files_db.lock_indexed(conn, ids)
    await lock_files(conn, *ids)
    await files_db.unindex(conn, ids)
    objects = freed = 0
    for f in files:
        for o in f.objects or await deps.blobs.list(
            file_prefix(f.account_id, f.consumer_id, f.conversation_id, f.file_id)
        ):
            await deps.blobs.delete(o.key)  # every version on versioned buckets
            objects += 1
            freed += o.size
    new = [f for f in files if await files_db.add_receipt(conn, f.file_id, f.account_id, reason, request_id)]
    if new:
        await deps.send([receipt(f, reason, request_id) for f in new])
    if deps.metrics is not None:
        if new:
            deps.metrics.deleted.labels(reason).inc(len(new))
        deps.metrics.freed.inc(freed)
    return Erased(new, objects, freed)


async def remember(deps: RetentionDeps, files: list[StoredFile]) -> None:
    """Files found in the store but not (yet) in the index join it, committed before their objects are
    deleted: if the erasure that follows fails after the deletion, its retry still knows them (and
    gives their receipt) although the store no longer lists them."""
    if not files:
        return
    async with deps.db.transaction() as conn:
        for f in files:
            await files_db.index_found(conn, f.ids)


def _indexed(rows: list[dict]) -> list[StoredFile]:
    return [StoredFile(r["account_id"], r["consumer_id"], r["conversation_id"], r["file_id"]) for r in rows]


async def sweep(deps: RetentionDeps) -> int:
    """Erase every file whose expiry time has passed, a batch per transaction; returns how many."""
    total = 0
    while True:
        async with deps.db.transaction() as conn:
            rows = await files_db.lock_expired(conn, deps.clock(), SWEEP_BATCH)
            if not rows:
                return total
            files = _indexed(rows)
            await erase_files(conn, files, "expired", None, deps)
        for f in files:
            log.info("expired file deleted", **f.ctx)
        total += len(files)


# --- forget --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForgetSummary:
    request_id: str
    keys_destroyed: int
    files_found: int
    receipts: int
    objects_deleted: int
    bytes_deleted: int
    repeated: bool = False

    @property
    def outcome(self) -> str:
        if self.repeated:
            return "repeated"
        return "erased" if self.keys_destroyed or self.files_found else "nothing_left"


async def _start_request(deps: RetentionDeps, request: ev.GdprForget) -> bool:
    """Record the request; False when it was carried out before (a repeat: nothing new is erased)."""
    async with deps.db.transaction() as conn:
        return await files_db.start_forget(conn, request.request_id, request.account_id, request.consumer_id)


async def forget_consumer(request: ev.GdprForget, deps: RetentionDeps) -> ForgetSummary:
    """Crypto-shred first (every blob and backup unreadable at once), then erase every file."""
    if not await _start_request(deps, request):
        log.info(
            "forget request %s repeated: carried out before, nothing new is erased (the consumer may have "
            "come back since)",
            request.request_id,
            **log_ctx(request_id=request.request_id, account_id=request.account_id),
        )
        if deps.metrics is not None:
            deps.metrics.forget_requests.labels("repeated").inc()
        return ForgetSummary(request.request_id, 0, 0, 0, 0, 0, repeated=True)
    prefix = consumer_prefix(request.account_id, request.consumer_id)
    shredded = await deps.keys.destroy(request.account_id, request.consumer_id)
    shredded_at = deps.clock()
    await remember(deps, group_files(await deps.blobs.list(prefix)))
    async with deps.db.pool.connection() as conn:
        files = _indexed(await files_db.indexed_of_consumer(conn, request.account_id, request.consumer_id))
    # A batch per transaction, like the sweep: a consumer with years of photos does not hold thousands of
    # rows locked while their objects are deleted one by one (the keys are gone already: nothing opens).
    erased = Erased([], 0, 0)
    for start in range(0, len(files), SWEEP_BATCH):
        async with deps.db.transaction() as conn:
            batch = await erase_files(conn, files[start : start + SWEEP_BATCH], "gdpr", request.request_id, deps)
        erased = Erased(erased.receipted + batch.receipted, erased.objects + batch.objects, erased.bytes + batch.bytes)
    async with deps.db.transaction() as conn:
        await files_db.finish_forget(conn, request.request_id, request.account_id, request.consumer_id)
    done_at = deps.clock()
    summary = ForgetSummary(
        request.request_id, shredded, len(files), len(erased.receipted), erased.objects, erased.bytes
    )
    if deps.metrics is not None:
        deps.metrics.forget_requests.labels(summary.outcome).inc()
        deps.metrics.shred_seconds.observe(max(0.0, (shredded_at - request.occurred_at).total_seconds()))
        deps.metrics.forget_seconds.observe(max(0.0, (done_at - request.occurred_at).total_seconds()))
    log.info(
        "forget request %s %s: keys destroyed=%d, files=%d, receipts=%d, objects deleted=%d, bytes=%d, "
        "%.3fs after the request",
        request.request_id,
        summary.outcome,
        shredded,
        len(files),
        summary.receipts,
        erased.objects,
        erased.bytes,
        (done_at - request.occurred_at).total_seconds(),
        **log_ctx(request_id=request.request_id, account_id=request.account_id),
    )
    return summary


async def handle_forget_request(request: ev.GdprForget, deps: RetentionDeps) -> ForgetSummary:
    """A gdpr.forget record (its ids of the contract's shape: shared.contract.events, one that is not was dropped
    and counted when it was read). It is never dropped: any failure is a TransientError, retried with
    backoff (counted in fileshare_transient_retries_total) until the erasure is done."""
    try:
        return await forget_consumer(request, deps)
    except Exception as e:
        raise TransientError(f"forget {request.request_id!r}: {type(e).__name__}: {e}") from e


async def _still_readable(f: StoredFile, deps: RetentionDeps) -> bool:
    """True when some object of the file opens with a live consumer key (then it was not forgotten)."""
    if not await deps.keys.has_any(f.account_id, f.consumer_id):
        return False
    for o in f.objects:
        try:
            key_id = parse_header(await deps.blobs.get_head(o.key, HEADER_MAX)).key_id
        except (FileNotFoundError, BlobIntegrityError):
            continue
        if await deps.keys.has_key(f.account_id, f.consumer_id, key_id):
            return True
    return False


async def clean_forgotten_file(event: ev.FileRejected, deps: RetentionDeps) -> Erased | None:
    """A file rejected as consumer_forgotten: remove what an in-flight stage wrote after the forget."""
    if event.reason != "consumer_forgotten":
        return None
    files = group_files(
        await deps.blobs.list(file_prefix(event.account_id, event.consumer_id, event.conversation_id, event.file_id))
    )
    if not files:
        return None
    f = files[0]
    if await _still_readable(f, deps):
        log.warning("file rejected as consumer_forgotten still opens with a live key; kept", **f.ctx)
        return None
    await remember(deps, files)
    async with deps.db.transaction() as conn:
        request_id = await files_db.latest_forget(conn, f.account_id, f.consumer_id)
        erased = await erase_files(conn, files, "gdpr", request_id, deps)
    log.info(
        "removed %d object(s) left by an in-flight stage after a forget (receipt: %s)",
        erased.objects,
        "new" if erased.receipted else "already given",
        **f.ctx,
    )
    return erased


def safety_net_days(documents: dict[str, ev.AccountSettingsDocument], now: datetime) -> int:
    """Days for the bucket lifecycle rule: whole days covering the longest retention in use
    (the default counts too: accounts without settings use it)."""
    longest = now + parse_duration(DEFAULT_RETENTION)
    for doc in documents.values():
        try:
            longest = max(longest, now + parse_duration(doc.retention))
        except ValueError:
            continue
    seconds = (longest - now).total_seconds()
    # +1 day: the sweep (which gives the receipt) always comes first; the rule only catches what it missed.
    return max(1, -(-int(seconds) // 86400)) + 1


class SafetyNet:
    """The bucket lifecycle rule at the longest retention in use (MinIO/S3), set again only when that
    changes; a store that cannot set one (rclone) says so once, not at every sweep."""

    def __init__(
        self,
        db: Database,
        bucket: str,
        set_expiry_days: Callable[[int], Awaitable[bool]],
        clock: Callable[[], datetime] = utcnow,
    ):
        self.db, self.bucket, self.set_expiry_days, self.clock = db, bucket, set_expiry_days, clock
        self.days: int | None = None

    async def apply(self) -> None:
        async with self.db.pool.connection() as conn:
            days = safety_net_days(await all_documents(conn), self.clock())
        if days != self.days:
            if await self.set_expiry_days(days):
                log.info("bucket %s: lifecycle safety net set to expire objects after %d days", self.bucket, days)
            self.days = days


async def sweep_every(seconds: float, deps: RetentionDeps, safety_net: SafetyNet, stop: asyncio.Event) -> None:
    """The expiry sweep and the safety net, now and then every `seconds` until `stop`; a failed round
    is logged and the next one tries again."""
    while not stop.is_set():
        started = time.perf_counter()
        try:
            await sweep(deps)
        except Exception:
            log.exception("expiry sweep failed; the next sweep retries")
        try:
            await safety_net.apply()
        except Exception:
            log.exception("lifecycle safety net not applied; the next sweep retries")
        if deps.metrics is not None:
            deps.metrics.sweep_seconds.observe(time.perf_counter() - started)
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass
