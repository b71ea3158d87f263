"""The pure parts of master-key rotation (shared.adapters.key_rotation); the rotation itself runs against the
real object store and database in tests/integration/test_key_rotation*.py."""

from __future__ import annotations

import asyncio
import os

import pytest

from shared.adapters.crypto import ConsumerKeyStore, MasterKeyRing, UnknownMasterKey
from shared.adapters.key_rotation import Progress, batches, census, stale
from tests.memory_store import MemoryStore


def test_batches_cover_every_name_once_in_order():
    names = [f"a/c/{i}" for i in range(7)]
    assert list(batches(names, 3)) == [names[0:3], names[3:6], names[6:7]]
    assert list(batches([], 3)) == []
    with pytest.raises(ValueError):
        list(batches(names, 0))


def test_only_records_under_another_master_key_are_stale():
    records = {"a/c/1": {"master_key_id": "old"}, "a/c/2": {"master_key_id": "new"}, "a/c/3": None}
    assert stale(records, "new") == {"a/c/1": {"master_key_id": "old"}}


def test_census_counts_keys_per_master_key_id_and_skips_deleted_ones():
    assert census([{"master_key_id": "a"}, {"master_key_id": "b"}, {"master_key_id": "a"}, None]) == {"a": 2, "b": 1}


def test_progress_line_and_completion():
    p = Progress(started=0.0, listed=10, checked=4, rewrapped=3, current=1)
    assert p.line(now=2.0) == (
        "4/10 keys checked: 3 re-wrapped, 1 already under the current master key, 0 gone, "
        "0 left to a forget (2.0 keys/s)"
    )
    assert p.complete
    assert not Progress(stopped_early=True).complete
    assert not Progress(skipped=1).complete
    unknown = Progress(started=0.0)
    unknown.unknown["abc"] += 2
    assert not unknown.complete and "under master keys not configured: abc (2)" in unknown.line(now=1.0)


def test_a_rewrapped_record_opens_to_the_same_secret_under_the_new_master_key_alone():
    old, new = os.urandom(32), os.urandom(32)
    store = MemoryStore()

    async def scenario():
        key_id, secret = await ConsumerKeyStore(store, MasterKeyRing(old)).get_or_create("acct", "consumer")
        rotating = ConsumerKeyStore(store, MasterKeyRing(new, [old]))
        [name] = await rotating.names()
        assert rotating.owner_of(name) == ("acct", "consumer")
        record = await rotating.record(name)
        await rotating.replace(name, rotating.rewrapped(name, record))
        assert (await rotating.record(name))["master_key_id"] == rotating.current_master_key_id
        assert await ConsumerKeyStore(store, MasterKeyRing(new)).load("acct", "consumer", key_id) == secret
        with pytest.raises(UnknownMasterKey):
            await ConsumerKeyStore(store, MasterKeyRing(old)).load("acct", "consumer", key_id)
        # A record bound to one name does not re-wrap under another (the name is its associated data).
        with pytest.raises(Exception):
            rotating.rewrapped("acct/consumer/other", record)
        assert await rotating.record("acct/consumer/missing") is None

    asyncio.run(scenario())


def test_make_run_hands_the_former_master_key_from_secrets_env_to_the_services(tmp_path, monkeypatch):
    """The operator of `make run` puts FS_PREVIOUS_MASTER_KEYS in secrets.env during a rotation."""
    from shared.devstack.embedded import load_or_create_secrets

    for name in [k for k in os.environ if k.startswith("FS_")]:
        monkeypatch.delenv(name)
    assert "FS_PREVIOUS_MASTER_KEYS" not in load_or_create_secrets(tmp_path)  # never generated
    with open(tmp_path / "secrets.env", "a") as f:
        f.write("FS_PREVIOUS_MASTER_KEYS=old-key\n")
    assert load_or_create_secrets(tmp_path)["FS_PREVIOUS_MASTER_KEYS"] == "old-key"
    monkeypatch.setenv("FS_PREVIOUS_MASTER_KEYS", "from-env")
    assert load_or_create_secrets(tmp_path)["FS_PREVIOUS_MASTER_KEYS"] == "from-env"
