"""The object-store port on a versioned S3 bucket (what docker-compose sets up on MinIO).

rclone serve s3 has no versioning, and no MinIO server can be installed here, so these tests run
moto's S3 server (a real HTTP S3 endpoint from PyPI) with bucket versioning on: the same
contract as every store, plus what only a versioned bucket can get wrong, data kept behind a
delete marker after a plain delete.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from minio import Minio
from minio.versioningconfig import ENABLED, VersioningConfig

from shared.adapters.crypto import ConsumerForgotten, ConsumerKeyStore, EncryptedFileStore, MasterKeyRing
from shared.adapters.storage import ObjectKey, S3ObjectStore
from shared.devstack.embedded import free_port
from tests.storage_contract import check_object_store_contract
from tests.support import unique

ACCESS, SECRET = "versionedaccess", "versionedsecret"


@pytest.fixture(scope="module")
def versioned_s3():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"127.0.0.1:{port}"
        admin = Minio(endpoint, access_key=ACCESS, secret_key=SECRET, secure=False)
        for bucket in ("fileshare", "fileshare-keys"):
            admin.make_bucket(bucket)
            admin.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
            assert admin.get_bucket_versioning(bucket).status == ENABLED
        yield endpoint, admin
    finally:
        server.stop()


def versions_of(admin: Minio, bucket: str, key: str) -> list:
    """Every version and delete marker the bucket still keeps for the key."""
    return [o for o in admin.list_objects(bucket, prefix=key, include_version=True) if o.object_name == key]


def test_object_store_contract_on_a_versioned_bucket(versioned_s3):
    endpoint, _ = versioned_s3
    store = S3ObjectStore(endpoint, ACCESS, SECRET, "fileshare")
    asyncio.run(check_object_store_contract(store, unique("contract") + "/"))


def test_delete_removes_every_version_not_just_the_latest(versioned_s3):
    endpoint, admin = versioned_s3
    store = S3ObjectStore(endpoint, ACCESS, SECRET, "fileshare")
    key = unique("acct") + "/consumer/conv/file/original"

    async def scenario():
        await store.put(key, b"first version")
        await store.put(key, b"second version")
        assert len(versions_of(admin, "fileshare", key)) == 2
        await store.delete(key)

    asyncio.run(scenario())

    assert versions_of(admin, "fileshare", key) == [], "no version or delete marker keeps the data"


def test_forgetting_a_consumer_leaves_no_version_of_its_key_or_blobs(versioned_s3):
    """Crypto-shredding on a versioned key bucket: the wrapped consumer key must not survive as an
    old version, or a restored version would make every backup readable again."""
    endpoint, admin = versioned_s3
    blobs = S3ObjectStore(endpoint, ACCESS, SECRET, "fileshare")
    key_bucket = S3ObjectStore(endpoint, ACCESS, SECRET, "fileshare-keys")
    keys = ConsumerKeyStore(key_bucket, MasterKeyRing(bytes(range(32))))
    files = EncryptedFileStore(blobs, keys)
    account, consumer = unique("acct"), unique("consumer")
    original = ObjectKey(account, consumer, unique("conv"), unique("file"), "original")

    async def scenario():
        await files.put(original, b"photo bytes")
        assert await keys.destroy(account, consumer) == 1
        with pytest.raises(ConsumerForgotten):
            await files.get(original)
        await blobs.delete(str(original))

    asyncio.run(scenario())

    kept_keys = [
        o
        for o in admin.list_objects(
            "fileshare-keys", prefix=f"{account}/{consumer}/", include_version=True, recursive=True
        )
    ]
    assert kept_keys == [], "the destroyed consumer key survives as a version"
    assert versions_of(admin, "fileshare", str(original)) == []


def test_lifecycle_safety_net_is_set_where_the_server_supports_it(versioned_s3):
    endpoint, admin = versioned_s3
    store = S3ObjectStore(endpoint, ACCESS, SECRET, "fileshare")
    assert asyncio.run(store.set_expiry_days(397)) is True
    [rule] = admin.get_bucket_lifecycle("fileshare").rules
    assert (rule.expiration.days, rule.noncurrent_version_expiration.noncurrent_days) == (397, 1)


def test_a_rewrapped_consumer_key_keeps_no_version_under_the_former_master_key(versioned_s3):
    """A rotation after a leak: the overwritten record, wrapped by the leaked key, must not stay behind
    as an older version."""
    endpoint, admin = versioned_s3
    key_bucket = S3ObjectStore(endpoint, ACCESS, SECRET, "fileshare-keys")
    old, new = bytes(range(32)), bytes(range(1, 33))
    rotating = ConsumerKeyStore(key_bucket, MasterKeyRing(new, [old]))
    account, consumer = unique("acct"), unique("consumer")

    async def scenario():
        key_id, secret = await ConsumerKeyStore(key_bucket, MasterKeyRing(old)).get_or_create(account, consumer)
        name = f"{account}/{consumer}/{key_id}"
        await rotating.replace(name, rotating.rewrapped(name, await rotating.record(name)))
        assert await ConsumerKeyStore(key_bucket, MasterKeyRing(new)).load(account, consumer, key_id) == secret
        return name

    name = asyncio.run(scenario())

    [kept] = versions_of(admin, "fileshare-keys", name)
    record = json.loads(admin.get_object("fileshare-keys", name, version_id=kept.version_id).read())
    assert record["master_key_id"] == rotating.current_master_key_id
