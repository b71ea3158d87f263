"""The object-store port against the real embedded S3 (rclone), and the encrypted file store on it.

Any other implementation of ObjectStore (MinIO in production) must pass the same contract.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os

import pytest

from services.retention.forgets import ForgetLedger
from shared.adapters.crypto import (
    ConsumerForgotten,
    ConsumerKeyStore,
    EncryptedFileStore,
    MasterKeyRing,
    UnknownMasterKey,
    decode_master_key,
    master_key_id,
)
from shared.adapters.key_rotation import rotate
from shared.adapters.storage import ObjectKey, S3ObjectStore, StorageUnavailable
from shared.runtime.wiring import build_storage
from shared.settings import Settings
from tests.storage_contract import check_object_store_contract
from tests.support import unique


def store_for(stack, bucket="fileshare"):
    e = stack.env
    return S3ObjectStore(e["FS_S3_ENDPOINT"], e["FS_S3_ACCESS_KEY"], e["FS_S3_SECRET_KEY"], bucket)


def run(coro):
    return asyncio.run(coro)


def test_object_store_contract(stack):
    asyncio.run(check_object_store_contract(store_for(stack), unique("contract") + "/"))


def test_unreachable_store_is_a_transient_error():
    from shared.devstack.embedded import free_port

    store = S3ObjectStore(f"127.0.0.1:{free_port()}", "fileshareaccess", "secretsecret", "fileshare")
    with pytest.raises(StorageUnavailable):
        run(store.get("x"))


def test_encrypted_store_round_trip_and_crypto_shredding(stack):
    master = MasterKeyRing(decode_master_key(stack.env["FS_MASTER_KEY"]))
    keys = ConsumerKeyStore(store_for(stack, "fileshare-keys"), master)
    files = EncryptedFileStore(store_for(stack), keys)
    account, consumer = unique("acct"), unique("consumer")
    key = ObjectKey(account, consumer, unique("conv"), unique("file"), "original")

    async def scenario():
        await files.put(key, b"photo bytes")
        raw = await files.store.get(str(key))
        assert b"photo bytes" not in raw
        plain, key_id = await files.get(key)
        assert plain == b"photo bytes"
        # Later variants reuse the original's consumer key.
        final = ObjectKey(key.account_id, key.consumer_id, key.conversation_id, key.file_id, "final")
        await files.put_existing_key(final, b"final bytes", key_id)
        assert (await files.get(final))[0] == b"final bytes"

        assert await keys.destroy(account, consumer) == 1
        with pytest.raises(ConsumerForgotten):
            await files.get(key)  # the blob is still there, but unreadable forever
        with pytest.raises(ConsumerForgotten):
            await files.put_existing_key(final, b"again", key_id)
        # A new file for the same consumer id gets a new key.
        await files.put(key, b"new life")
        plain, new_key_id = await files.get(key)
        assert plain == b"new life" and new_key_id != key_id

    run(scenario())


def settings_for(stack_env: dict[str, str], **overrides) -> Settings:
    env = {k[3:].lower(): v for k, v in stack_env.items() if k.startswith("FS_")}
    return Settings(**{**env, **overrides})


def test_master_key_rotation_end_to_end(own_object_store):
    """A blob written under master key A; the services restarted with FS_MASTER_KEY=B and
    FS_PREVIOUS_MASTER_KEYS=A still read it; after the rotation the keys are under B and A alone is useless."""
    stack_env = own_object_store  # the rotation re-wraps every key of its bucket: not the stack's
    key_a = stack_env["FS_MASTER_KEY"]
    key_b = base64.b64encode(os.urandom(32)).decode()
    before = build_storage(settings_for(stack_env))
    rotated = build_storage(settings_for(stack_env, master_key=key_b, previous_master_keys=key_a))
    only_b = build_storage(settings_for(stack_env, master_key=key_b, previous_master_keys=""))
    account, consumer = unique("acct"), unique("consumer")
    key = ObjectKey(account, consumer, unique("conv"), unique("file"), "original")

    async def key_records():
        prefix = f"{account}/{consumer}/"
        return [json.loads(await rotated.key_blobs.get(o.key)) for o in await rotated.key_blobs.list(prefix)]

    async def scenario():
        await before.files.put(key, b"written under A")
        blob = await before.blobs.get(str(key))
        [record] = await key_records()
        assert record["master_key_id"] == master_key_id(decode_master_key(key_a))

        assert (await rotated.files.get(key))[0] == b"written under A"
        with pytest.raises(UnknownMasterKey):
            await only_b.files.get(key)

        async with ForgetLedger(stack_env["FS_DATABASE_URL"]) as forgets:
            assert (await rotate(rotated.keys, forgets, report=lambda line: None)).rewrapped == 1
        [record] = await key_records()
        assert record["master_key_id"] == master_key_id(decode_master_key(key_b))
        assert await rotated.blobs.get(str(key)) == blob, "rotation re-wraps keys, never rewrites blobs"
        assert (await only_b.files.get(key))[0] == b"written under A"
        assert (await rotated.files.get(key))[0] == b"written under A"
        with pytest.raises(UnknownMasterKey):
            await before.files.get(key)

    run(scenario())
