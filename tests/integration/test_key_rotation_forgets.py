"""Master-key rotation racing a forget, on a real PostgreSQL (retention's forget_requests) and the
real forget handler: a key the forget deleted is never brought back by the rotation's write."""

from __future__ import annotations

import os

import pytest

from services.retention.forgets import ForgetLedger
from services.retention.handlers import RetentionDeps, forget_consumer
from shared.adapters.crypto import ConsumerForgotten, ConsumerKeyStore, EncryptedFileStore, MasterKeyRing
from shared.adapters.key_rotation import rotate
from shared.adapters.storage import ObjectKey
from shared.contract import events as ev
from tests.memory_store import MemoryStore


class KeyBucket(MemoryStore):
    """The key bucket; `before_write[name]` runs just before the next PUT of that object (the
    moment between the rotation's last check and its write)."""

    def __init__(self):
        super().__init__()
        self.before_write = {}

    async def put(self, key, data):
        if key in self.before_write:
            await self.before_write.pop(key)()
        await super().put(key, data)


class World:
    def __init__(self, db):
        self.db, self.old, self.new = db, os.urandom(32), os.urandom(32)
        self.blobs, self.key_bucket = MemoryStore(), KeyBucket()
        self.keys = ConsumerKeyStore(self.key_bucket, MasterKeyRing(self.old))
        self.files = EncryptedFileStore(self.blobs, self.keys)
        self.rotating = ConsumerKeyStore(self.key_bucket, MasterKeyRing(self.new, [self.old]))
        self.only_new = EncryptedFileStore(self.blobs, ConsumerKeyStore(self.key_bucket, MasterKeyRing(self.new)))

        async def no_receipts(outgoing):
            pass

        self.deps = RetentionDeps(db, self.blobs, self.keys, no_receipts)

    async def photo(self, consumer: str) -> ObjectKey:
        key = ObjectKey("acct", consumer, "conv", f"file-{consumer}", "original")
        await self.files.put(key, b"photo of " + consumer.encode())
        return key

    async def forget(self, consumer: str, request_id: str = "req-1"):
        return await forget_consumer(
            ev.GdprForget(request_id=request_id, account_id="acct", consumer_id=consumer), self.deps
        )

    async def name_of(self, consumer: str) -> str:
        [name] = [n for n in await self.rotating.names() if n.startswith(f"acct/{consumer}/")]
        return name

    async def rotate(self, **kw):
        async with ForgetLedger(self.db.url) as forgets:
            return await rotate(self.rotating, forgets, report=lambda line: None, **kw)


@pytest.fixture
async def w(open_database) -> World:
    return World(await open_database("retention", fresh=True))


async def test_a_forget_between_the_rotations_check_and_its_write_is_not_undone(w):
    kept, forgotten = await w.photo("kept"), await w.photo("forgotten")
    victim = await w.name_of("forgotten")
    backup = await w.blobs.get(str(forgotten))
    w.key_bucket.before_write[victim] = lambda: w.forget("forgotten")

    progress = await w.rotate(batch_size=10)

    assert "forgotten" not in str(await w.rotating.names()), "the forgotten consumer's key came back"
    assert (progress.rewrapped, progress.undone) == (1, 1) and progress.complete
    await w.blobs.put(str(forgotten), backup)  # a backup restored: it must stay unreadable
    with pytest.raises(ConsumerForgotten):
        await w.only_new.get(forgotten)
    assert (await w.only_new.get(kept))[0] == b"photo of kept"


async def test_a_key_of_a_consumer_being_forgotten_is_left_to_the_forget(w):
    await w.photo("leaving")
    async with w.db.transaction() as conn:  # the forget has recorded its request and not yet shredded
        await conn.execute(
            "INSERT INTO forget_requests (request_id, account_id, consumer_id) VALUES ('req-1', 'acct', 'leaving')"
        )
    first = await w.rotate()
    assert (first.skipped, first.rewrapped, first.complete) == (1, 0, False)

    await w.forget("leaving")  # the same request carries on: the keys go
    second = await w.rotate()
    assert await w.rotating.names() == [] and second.complete


async def test_a_consumer_forgotten_before_the_rotation_who_came_back_keeps_their_new_key(w):
    await w.photo("back")
    await w.forget("back")
    again = await w.photo("back")  # a new conversation after the forget: a new consumer key

    progress = await w.rotate()

    assert (progress.rewrapped, progress.undone, progress.complete) == (1, 0, True)
    assert (await w.only_new.get(again))[0] == b"photo of back"
