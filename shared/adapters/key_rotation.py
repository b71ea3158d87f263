"""Master-key rotation: re-wrap every consumer key under the current FS_MASTER_KEY, online.

Only consumer keys are wrapped by the master key (blobs, sealed captions and previews are under
consumer keys), so a rotation rewrites the small key records and never a blob. It runs beside
services that hold the new key as current and the old one in FS_PREVIOUS_MASTER_KEYS: they read
either wrapping of a key (both open to the same secret) and create new keys under the new one.

Each batch: take the database's time T, read the records, drop those already under the current
key id (a rerun skips them: the rotation resumes), re-wrap the others and write them back.
A forget deleting a key between our read and our write would be undone by that write (the key
resurrected, the forgotten consumer's backups readable again), and the key bucket has no
conditional PUT (rclone ignores them). So:
  - before writing, consumers with a forget running or finished since T are skipped
    (services.retention.forgets), and each key is checked to still exist;
  - after writing, the same question is asked again, and a key of such a consumer is deleted.
The second check closes the race: a forget commits its row before it deletes any key, so a forget
whose delete came between our read and our write is visible to the check that follows the write
(retried through outages, and run for every record written); a delete after our write removes
the re-wrapped record itself. What remains: such a key exists again for the milliseconds between
our write and the check's delete (a stage of that consumer's file in flight could open it then; its
file is rejected as consumer_forgotten further on, as for any forget racing a stage); a consumer
whose key was created while a forget ran loses that key, which errs toward the forget, as the
forget's own retry would; and a rotation killed (SIGKILL; SIGTERM and Ctrl-C stop after the batch)
between a batch's writes and its check, while a forget deleted a key of that very batch, leaves that
key: `fileshare forget` of the consumer again removes it.
Keys created while the rotation runs are listed by the next round; the rotation ends with a round
that finds nothing new to re-wrap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared.adapters.crypto import ConsumerKeyStore, UnknownMasterKey
from shared.adapters.db import DB_TRANSIENT
from shared.runtime.retry import retry_transient

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 100
# Key records read or written at once within a batch.
CONCURRENT_REQUESTS = 8
# Outages the recheck after a write waits out (StorageUnavailable is a ConnectionError).
RETRIED = (ConnectionError,) + DB_TRANSIENT


class Forgets(Protocol):
    async def now(self) -> datetime: ...
    async def forgotten_since(self, consumers: set[tuple[str, str]], since: datetime) -> set[tuple[str, str]]: ...


@dataclass
class Progress:
    """What a rotation has done so far (one line per batch)."""

    started: float = field(default_factory=time.monotonic)
    listed: int = 0
    checked: int = 0
    rewrapped: int = 0
    current: int = 0
    gone: int = 0
    skipped: int = 0  # keys of consumers being forgotten: the forget deletes them
    undone: int = 0  # re-wrapped, then deleted again because a forget had run meanwhile
    unknown: Counter = field(default_factory=Counter)  # keys under master key ids not configured, by id
    batches: int = 0
    stopped_early: bool = False

    def line(self, now: float | None = None) -> str:
        elapsed = max((now if now is not None else time.monotonic()) - self.started, 1e-9)
        return (
            f"{self.checked}/{self.listed} keys checked: {self.rewrapped} re-wrapped, {self.current} already "
            f"under the current master key, {self.gone} gone, {self.skipped + self.undone} left to a forget "
            f"{self._unknown()}({self.checked / elapsed:.1f} keys/s)"
        )

    def _unknown(self) -> str:
        if not self.unknown:
            return ""
        ids = ", ".join(f"{kid} ({n})" for kid, n in sorted(self.unknown.items()))
        return f"; under master keys not configured: {ids} "

    @property
    def complete(self) -> bool:
        """Every key seen is under the current master key or deleted."""
        return not self.stopped_early and not self.skipped and not self.unknown


def batches(names: list[str], size: int) -> Iterable[list[str]]:
    if size < 1:
        raise ValueError("batch size must be at least 1")
    for start in range(0, len(names), size):
        yield names[start : start + size]


def stale(records: dict[str, dict | None], current_id: str) -> dict[str, dict]:
    """The records still wrapped by another master key than the current one (deleted ones dropped)."""
    return {n: r for n, r in records.items() if r is not None and r["master_key_id"] != current_id}


def census(records: Iterable[dict | None]) -> Counter:
    """How many consumer keys each master key id wraps."""
    return Counter(r["master_key_id"] for r in records if r is not None)


async def _each(names: Iterable[str], fn: Callable[[str], Awaitable]) -> dict:
    limit = asyncio.Semaphore(CONCURRENT_REQUESTS)

    async def one(name):
        async with limit:
            return name, await fn(name)

    return dict(await asyncio.gather(*(one(n) for n in names)))


async def read_records(keys: ConsumerKeyStore, names: Iterable[str]) -> dict[str, dict | None]:
    return await _each(names, keys.record)


def _rewrap_all(keys: ConsumerKeyStore, todo: dict[str, dict], progress: Progress) -> dict[str, dict]:
    """The new records, all made before any is written; a key under a master key this process was
    not given (a former key missing from FS_PREVIOUS_MASTER_KEYS) is counted and left as it is."""
    out = {}
    for name, record in todo.items():
        try:
            out[name] = keys.rewrapped(name, record)
        except UnknownMasterKey:
            progress.unknown[record["master_key_id"]] += 1
    return out


async def _write_then_recheck(
    keys: ConsumerKeyStore, forgets: Forgets, new: dict[str, dict], since: datetime, progress: Progress
) -> None:
    """Write the re-wrapped records, then delete those of consumers a forget reached meanwhile. The
    recheck runs for every record written even when some writes failed, and is retried through a
    storage or database outage: a written record must never skip it."""

    async def write(name):
        try:
            await keys.replace(name, new[name])
            return None
        except Exception as e:
            return e

    failures = await _each(new, write)
    written = [n for n in new if failures[n] is None]
    late = await retry_transient(
        lambda: forgets.forgotten_since({keys.owner_of(n) for n in written}, since), "rotation: forget check", RETRIED
    )
    undo = [n for n in written if keys.owner_of(n) in late]
    await _each(undo, lambda n: retry_transient(lambda: keys.delete(n), "rotation: undo", RETRIED))
    for name in undo:
        log.warning("consumer key %s re-wrapped while its consumer was being forgotten: deleted again", name)
    progress.rewrapped += len(written) - len(undo)
    progress.undone += len(undo)
    error = next((e for e in failures.values() if e is not None), None)
    if error is not None:
        raise error


async def rotate_batch(keys: ConsumerKeyStore, forgets: Forgets, names: list[str], progress: Progress) -> None:
    since = await forgets.now()  # before any read: a forget that deletes a key after our read ends after this
    records = await read_records(keys, names)
    todo = stale(records, keys.current_master_key_id)
    gone = sum(r is None for r in records.values())
    progress.checked += len(names)
    progress.gone += gone
    progress.current += len(records) - len(todo) - gone
    forgetting = await forgets.forgotten_since({keys.owner_of(n) for n in todo}, since)
    skipped = [n for n in todo if keys.owner_of(n) in forgetting]
    progress.skipped += len(skipped)
    todo = {n: r for n, r in todo.items() if n not in skipped}
    still_there = await _each(todo, keys.exists)
    todo = {n: r for n, r in todo.items() if still_there[n]}
    progress.gone += len(still_there) - len(todo)
    await _write_then_recheck(keys, forgets, _rewrap_all(keys, todo, progress), since, progress)
    progress.batches += 1


async def rotate(
    keys: ConsumerKeyStore,
    forgets: Forgets,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batches: int | None = None,
    report: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> Progress:
    """Re-wrap every consumer key not under the current master key; `report` gets a line per batch.
    Rounds over the key bucket until one finds no key it had not seen (keys created meanwhile).
    Stops between batches after max_batches or once `stop` is set (progress.stopped_early)."""
    progress, seen = Progress(), set[str]()
    while True:
        fresh = sorted(set(await keys.names()) - seen)
        if not fresh:
            return progress
        seen.update(fresh)
        progress.listed += len(fresh)
        for batch in batches(fresh, batch_size):
            if (max_batches is not None and progress.batches >= max_batches) or (stop is not None and stop.is_set()):
                progress.stopped_early = True
                return progress
            await rotate_batch(keys, forgets, batch, progress)
            report(progress.line())


async def key_status(keys: ConsumerKeyStore) -> dict:
    """How many consumer keys each master key id wraps, and how many are under another than the current."""
    counts: Counter[str] = Counter()
    for batch in batches(await keys.names(), 10 * DEFAULT_BATCH_SIZE):  # a bounded number of reads at once
        counts += census((await read_records(keys, batch)).values())
    current = keys.current_master_key_id
    return {
        "current_master_key_id": current,
        "consumer_keys": sum(counts.values()),
        "by_master_key_id": dict(sorted(counts.items())),
        "under_other_master_keys": sum(n for kid, n in counts.items() if kid != current),
    }
