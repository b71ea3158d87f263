"""Retention's handlers on a real PostgreSQL (each test in a database of its own: sweeps scan every
row): erasure order, one receipt per file, expiry by the account's current retention, forget requests."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest

from services.retention.handlers import (
    RetentionDeps,
    clean_forgotten_file,
    forget_consumer,
    index_file,
    retention_changed,
    sweep,
)
from shared.adapters.crypto import ConsumerKeyStore, EncryptedFileStore, MasterKeyRing, encrypt_blob
from shared.adapters.db import Database
from shared.adapters.storage import ObjectKey
from shared.contract import events as ev
from shared.projections.account_settings import follow_document, put_document
from tests.memory_store import MemoryStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Topic:
    """The file.deleted topic as produced; `fail` makes the next produce fail (broker down / crash)."""

    def __init__(self):
        self.events: list[ev.FileDeleted] = []
        self.fail = False
        self.before_send = None

    async def send(self, outgoing):
        if self.before_send:
            await self.before_send()
        if self.fail:
            self.fail = False
            raise ConnectionError("broker unavailable")
        self.events += [o.event for o in outgoing]


class World:
    def __init__(self, db):
        self.db = db
        self.blobs, self.key_blobs = MemoryStore(lambda: NOW), MemoryStore(lambda: NOW)
        self.keys = ConsumerKeyStore(self.key_blobs, MasterKeyRing(os.urandom(32)))
        self.files = EncryptedFileStore(self.blobs, self.keys)
        self.topic = Topic()
        self.now = NOW
        self.deps = RetentionDeps(db, self.blobs, self.keys, self.topic.send, clock=lambda: self.now)

    async def store(
        self, account, consumer, conversation, file_id, variants=("original", "sanitized", "final"), indexed=True
    ):
        for v in variants:
            await self.files.put(ObjectKey(account, consumer, conversation, file_id, v), b"photo " + v.encode())
        if indexed:
            async with self.db.transaction() as conn:
                await index_file(
                    conn,
                    ev.FileUploaded(
                        file_id=file_id,
                        account_id=account,
                        conversation_id=conversation,
                        consumer_id=consumer,
                        sender=ev.Sender(id="agent", role="agent"),
                        object_key=f"{account}/{consumer}/{conversation}/{file_id}/original",
                        content_type="image/png",
                        size_bytes=12,
                        occurred_at=NOW,
                    ),
                )

    async def forget(self, account, consumer, request_id="req-1"):
        return await forget_consumer(
            ev.GdprForget(
                request_id=request_id,
                account_id=account,
                consumer_id=consumer,
                occurred_at=NOW - timedelta(milliseconds=300),
            ),
            self.deps,
        )

    def receipts(self, file_id=None):
        return [e for e in self.topic.events if file_id is None or e.file_id == file_id]

    async def settings(self, account, retention):
        event = ev.AccountSettings(account_id=account, retention=retention)
        async with self.db.transaction() as conn:
            await put_document(conn, account, event.document())
            await retention_changed(conn, event)

    async def indexed(self) -> list[str]:
        async with self.db.pool.connection() as conn:
            return sorted(r["file_id"] for r in await (await conn.execute("SELECT file_id FROM files")).fetchall())


@pytest.fixture
async def w(open_database) -> World:
    return World(await open_database("retention", fresh=True))


async def test_forget_shreds_keys_before_anything_else_and_gives_one_receipt_per_file(w):
    await w.store("a", "c1", "conv1", "f1")
    await w.store("a", "c1", "conv1", "f2")
    await w.store("a", "c1", "conv2", "f3", variants=("original",), indexed=False)  # not indexed yet
    await w.store("a", "c2", "conv1", "other")  # another consumer, same conversation id
    await w.store("b", "c1", "conv9", "other-account")  # same consumer id in another account

    async def keys_already_gone():
        assert not await w.keys.has_any("a", "c1"), "receipts may only exist once the files are unreadable"

    w.topic.before_send = keys_already_gone

    summary = await w.forget("a", "c1")

    assert (summary.keys_destroyed, summary.files_found, summary.receipts, summary.objects_deleted) == (1, 3, 3, 7)
    assert summary.outcome == "erased"
    assert sorted(e.file_id for e in w.receipts()) == ["f1", "f2", "f3"]
    assert {(e.reason, e.request_id, e.consumer_id) for e in w.receipts()} == {("gdpr", "req-1", "c1")}
    assert not [k for k in w.blobs.objects if k.startswith("a/c1/")]
    assert not [k for k in w.key_blobs.objects if k.startswith("a/c1/")]
    assert await w.indexed() == ["other", "other-account"]
    for account, consumer, conv, fid in (("a", "c2", "conv1", "other"), ("b", "c1", "conv9", "other-account")):
        assert (await w.files.get(ObjectKey(account, consumer, conv, fid, "final")))[0] == b"photo final"


async def test_a_consumer_with_many_files_is_erased_a_batch_per_transaction(w, monkeypatch):
    """Years of photos: rows are not all held locked while every object is deleted; each batch is
    committed (and visible to others) before the next one starts."""
    monkeypatch.setattr("services.retention.handlers.SWEEP_BATCH", 2)
    for i in range(5):
        await w.store("a", "c1", "conv1", f"f{i}")
    left_at_each_receipt = []

    async def count_left():
        left_at_each_receipt.append(len(await w.indexed()))

    w.topic.before_send = count_left

    summary = await w.forget("a", "c1")

    assert (summary.files_found, summary.receipts, summary.objects_deleted) == (5, 5, 15)
    assert left_at_each_receipt == [5, 3, 1], "a batch's deletion is committed before the next batch"
    assert await w.indexed() == [] and not [k for k in w.blobs.objects if k.startswith("a/c1/")]


async def test_the_same_request_again_erases_nothing_new_but_another_request_is_carried_out(w):
    await w.store("a", "c1", "conv1", "f1")
    await w.forget("a", "c1")
    await w.store("a", "c1", "conv-new", "back")  # the consumer came back
    repeat = await w.forget("a", "c1", "req-1")
    assert repeat.outcome == "repeated" and len(w.receipts()) == 1 and await w.indexed() == ["back"]
    again = await w.forget("a", "c1", "req-2")
    assert again.outcome == "erased" and sorted(e.file_id for e in w.receipts()) == ["back", "f1"]


async def test_a_forget_that_crashed_midway_is_redone_and_gives_each_receipt_once(w):
    await w.store("a", "c1", "conv1", "f1")
    await w.store("a", "c1", "conv1", "f2")
    w.blobs.fail_delete = 1  # the process dies while deleting objects
    with pytest.raises(SystemExit):
        await w.forget("a", "c1")
    assert not w.receipts() and await w.indexed() == ["f1", "f2"]
    await w.forget("a", "c1")  # the uncommitted request is redelivered
    assert sorted(e.file_id for e in w.receipts()) == ["f1", "f2"]
    assert not w.blobs.objects and await w.indexed() == []


async def test_a_failed_receipt_keeps_the_index_row_and_the_retry_gives_it(w):
    await w.store("a", "c1", "conv1", "f1")
    w.topic.fail = True
    with pytest.raises(ConnectionError):
        await w.forget("a", "c1")
    assert not w.receipts() and await w.indexed() == ["f1"]
    await w.forget("a", "c1")
    assert [e.file_id for e in w.receipts()] == ["f1"] and not w.blobs.objects


async def test_expiry_uses_the_accounts_current_retention_and_calendar_months(w):
    await w.settings("short", "PT5S")
    await w.settings("long", "P13M")
    await w.store("short", "c", "conv", "young")
    await w.store("long", "c", "conv", "kept")
    await w.store("default", "c", "conv", "no-settings")

    w.now = NOW + timedelta(seconds=4)
    assert await sweep(w.deps) == 0
    w.now = NOW + timedelta(seconds=5)
    assert await sweep(w.deps) == 1
    assert [(e.file_id, e.reason, e.request_id) for e in w.receipts()] == [("young", "expired", None)]

    w.now = datetime(2027, 4, 1, 11, 59, tzinfo=UTC)  # 13 calendar months minus a minute
    assert await sweep(w.deps) == 0
    w.now = datetime(2027, 4, 1, 12, 0, tzinfo=UTC)
    assert await sweep(w.deps) == 2
    assert sorted(e.file_id for e in w.receipts()) == ["kept", "no-settings", "young"]
    assert not w.blobs.objects and await w.indexed() == []


async def test_a_shorter_retention_applies_to_existing_files(w):
    await w.settings("acct", "P13M")
    await w.store("acct", "c", "conv", "f")
    w.now = NOW + timedelta(days=40)
    assert await sweep(w.deps) == 0
    await w.settings("acct", "P30D")
    assert await sweep(w.deps) == 1


async def test_a_file_indexed_while_a_new_retention_is_being_applied_gets_the_new_retention(w):
    # The settings follower and the index are two consumers with transactions of their own.
    event = ev.AccountSettings(account_id="acct", retention="P30D", occurred_at=NOW)
    async with w.db.transaction() as conn:  # the follower, between its update and its commit
        await follow_document(conn, event)
        await retention_changed(conn, event)
        indexing = asyncio.create_task(w.store("acct", "c", "conv", "f"))
        await asyncio.wait_for(blocked_or_done(w.db, indexing), 30)
        assert not indexing.done(), "the file was indexed without waiting for the new retention"
    await indexing
    w.now = NOW + timedelta(days=31)
    assert await sweep(w.deps) == 1  # with the old retention (13 months) it would stay


async def blocked_or_done(db: Database, task: asyncio.Task) -> None:
    while not await waiting_for_a_lock(db) and not task.done():
        await asyncio.sleep(0.01)


async def waiting_for_a_lock(db: Database) -> bool:
    async with db.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
        ).fetchone()
    return row["n"] > 0


async def test_two_instances_sweeping_and_forgetting_at_once_give_one_receipt_per_file(w):
    for i in range(30):
        await w.store("acct", "c", "conv", f"f{i:02}")
    w.now = NOW + timedelta(days=500)
    second = Database(w.db.url, "retention", max_size=4)  # another instance: its own connections
    await second.open()
    try:
        other = RetentionDeps(second, w.blobs, w.keys, w.topic.send, clock=lambda: w.now)
        await asyncio.gather(sweep(w.deps), sweep(other), w.forget("acct", "c"))
    finally:
        await second.close()
    assert sorted(e.file_id for e in w.receipts()) == [f"f{i:02}" for i in range(30)]


async def test_leftover_of_an_in_flight_stage_is_removed_on_its_consumer_forgotten_rejection(w):
    await w.store("a", "c1", "conv1", "f1", variants=("original",))
    # A stage loaded the consumer key just before the forget and writes after the forget's listing.
    key_id, consumer_key = await w.keys.get_or_create("a", "c1")
    await w.forget("a", "c1")
    late = "a/c1/conv1/f1/sanitized"
    await w.blobs.put(late, encrypt_blob(b"late", late, key_id, consumer_key))
    late_new_file = "a/c1/conv1/f9/original"  # an upload that got the old key before the forget
    await w.blobs.put(late_new_file, encrypt_blob(b"late", late_new_file, key_id, consumer_key))
    # The consumer comes back: a new conversation gets a new key, its files must survive.
    await w.store("a", "c1", "conv-new", "fresh")

    def rejection(file_id, conversation="conv1", reason="consumer_forgotten"):
        return ev.FileRejected(
            file_id=file_id,
            account_id="a",
            conversation_id=conversation,
            consumer_id="c1",
            sender=ev.Sender(id="agent", role="agent"),
            stage="resizer",
            reason=reason,
        )

    assert (await clean_forgotten_file(rejection("f1"), w.deps)).receipted == [], "f1 already had its receipt"
    erased = await clean_forgotten_file(rejection("f9"), w.deps)
    assert [f.file_id for f in erased.receipted] == ["f9"]
    assert [(e.reason, e.request_id) for e in w.receipts("f9")] == [("gdpr", "req-1")]
    assert late not in w.blobs.objects and late_new_file not in w.blobs.objects
    assert len(w.receipts("f1")) == 1

    assert await clean_forgotten_file(rejection("fresh", "conv-new"), w.deps) is None, "live key: kept"
    assert await clean_forgotten_file(rejection("fresh", "conv-new", "corrupt_image"), w.deps) is None
    assert (await w.files.get(ObjectKey("a", "c1", "conv-new", "fresh", "final")))[0] == b"photo final"
