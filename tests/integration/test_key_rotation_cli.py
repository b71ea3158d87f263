"""`fileshare keys rotate` and `fileshare keys status` as an operator runs them, against a real
object store of their own (the stack's keys stay as they are) and the test stack's database."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys

from shared.adapters.crypto import ConsumerKeyStore, MasterKeyRing, decode_master_key, master_key_id
from shared.adapters.storage import S3ObjectStore
from tests.support import unique


def key_bucket(env: dict[str, str]) -> S3ObjectStore:
    return S3ObjectStore(env["FS_S3_ENDPOINT"], env["FS_S3_ACCESS_KEY"], env["FS_S3_SECRET_KEY"], "fileshare-keys")


def fileshare(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        (sys.executable, "-m", "services.cli", *args), env=env, capture_output=True, text=True, timeout=120
    )


def status(env) -> tuple[int, dict]:
    done = fileshare(env, "keys", "status")
    return done.returncode, json.loads(done.stdout)


def test_rotate_stopped_after_its_first_batch_finishes_when_run_again(own_object_store):
    key_a = own_object_store["FS_MASTER_KEY"]
    key_b = base64.b64encode(os.urandom(32)).decode()
    id_a, id_b = (master_key_id(decode_master_key(k)) for k in (key_a, key_b))
    store = key_bucket(own_object_store)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FS_")},
        **own_object_store,
        "FS_MASTER_KEY": key_b,
        "FS_PREVIOUS_MASTER_KEYS": key_a,
    }
    consumers = [unique("consumer") for _ in range(5)]

    async def create_keys():
        keys = ConsumerKeyStore(store, MasterKeyRing(decode_master_key(key_a)))
        return {c: await keys.get_or_create("acct", c) for c in consumers}

    secrets = asyncio.run(create_keys())

    assert status(env) == (
        1,
        {
            "current_master_key_id": id_b,
            "consumer_keys": 5,
            "by_master_key_id": {id_a: 5},
            "under_other_master_keys": 5,
        },
    )
    first = fileshare(env, "keys", "rotate", "--batch-size", "2", "--max-batches", "1")
    assert first.returncode == 1, first.stderr
    assert "2/5 keys checked: 2 re-wrapped" in first.stdout and "run `fileshare keys rotate` again" in first.stdout
    assert status(env)[1]["by_master_key_id"] == {id_a: 3, id_b: 2}

    second = fileshare(env, "keys", "rotate", "--batch-size", "2")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "5/5 keys checked: 3 re-wrapped, 2 already under the current master key" in second.stdout
    assert status(env) == (
        0,
        {
            "current_master_key_id": id_b,
            "consumer_keys": 5,
            "by_master_key_id": {id_b: 5},
            "under_other_master_keys": 0,
        },
    )

    async def reopened_with_b_alone():
        keys = ConsumerKeyStore(store, MasterKeyRing(decode_master_key(key_b)))
        return {c: (key_id, await keys.load("acct", c, key_id)) for c, (key_id, _) in secrets.items()}

    assert asyncio.run(reopened_with_b_alone()) == secrets


def test_rotate_without_the_former_key_says_which_is_missing_and_fails(own_object_store):
    key_a = own_object_store["FS_MASTER_KEY"]
    store = key_bucket(own_object_store)

    async def create_key():
        await ConsumerKeyStore(store, MasterKeyRing(decode_master_key(key_a))).get_or_create("acct", "c1")

    asyncio.run(create_key())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FS_")},
        **own_object_store,
        "FS_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "FS_PREVIOUS_MASTER_KEYS": "",
    }
    done = fileshare(env, "keys", "rotate")
    assert done.returncode == 1
    assert f"under master keys not configured: {master_key_id(decode_master_key(key_a))} (1)" in done.stdout
    assert "add it to FS_PREVIOUS_MASTER_KEYS" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
