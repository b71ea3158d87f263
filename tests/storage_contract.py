"""The ObjectStore contract: every implementation (rclone serve s3 here, MinIO in production, any
S3 with versioning) must pass the same scenario (Warehouse's interface/implementation split)."""

from __future__ import annotations

import pytest

from shared.adapters.storage import ObjectStore


async def check_object_store_contract(store: ObjectStore, prefix: str) -> None:
    await store.put(prefix + "a/1", b"one")
    await store.put(prefix + "a/2", b"two")
    await store.put(prefix + "b/1", b"three")
    assert await store.get(prefix + "a/1") == b"one"
    assert await store.get_head(prefix + "a/1", 2) == b"on"
    assert await store.get_head(prefix + "a/1", 100) == b"one"  # a shorter object: all of it
    assert await store.exists(prefix + "a/2")
    assert not await store.exists(prefix + "nope")
    listed = sorted(o.key for o in await store.list(prefix + "a/"))
    assert listed == [prefix + "a/1", prefix + "a/2"]
    assert all(o.size > 0 and o.last_modified for o in await store.list(prefix))
    await store.put(prefix + "a/1", b"replaced")
    assert await store.get(prefix + "a/1") == b"replaced"
    await store.delete(prefix + "a/1")
    assert not await store.exists(prefix + "a/1")
    with pytest.raises(FileNotFoundError):
        await store.get(prefix + "a/1")
    with pytest.raises(FileNotFoundError):
        await store.get_head(prefix + "a/1", 2)
    await store.delete(prefix + "a/1")  # deleting twice is fine
