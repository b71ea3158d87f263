"""Envelope encryption: round trip, binding to the object key,
tamper evidence, and master-key rotation."""

from __future__ import annotations

import base64
import os

import pytest

from shared.adapters.crypto import (
    BlobIntegrityError,
    MasterKeyRing,
    decrypt_blob,
    encrypt_blob,
    parse_header,
    unwrap_data_key,
    wrap_data_key,
)

KEY = "acct-1/consumer-1/conv-1/file-1/original"
PHOTO = b"\xff\xd8\xff\xe0" + os.urandom(4096)


def consumer_key() -> bytes:
    return os.urandom(32)


def test_round_trip():
    ck = consumer_key()
    blob = encrypt_blob(PHOTO, KEY, "kid-1", ck)
    assert decrypt_blob(blob, KEY, ck) == PHOTO


def test_blob_holds_no_plaintext_and_names_its_key():
    ck = consumer_key()
    blob = encrypt_blob(PHOTO, KEY, "kid-1", ck)
    assert PHOTO[:64] not in blob and not blob.startswith(b"\xff\xd8")
    header = parse_header(blob)
    assert header.version == 1 and header.key_id == "kid-1" and len(header.nonce) == 12


def test_same_photo_twice_gives_different_blobs():
    ck = consumer_key()
    assert encrypt_blob(PHOTO, KEY, "k", ck) != encrypt_blob(PHOTO, KEY, "k", ck)


def test_blob_moved_to_another_object_key_fails():
    ck = consumer_key()
    blob = encrypt_blob(PHOTO, KEY, "kid-1", ck)
    with pytest.raises(BlobIntegrityError):
        decrypt_blob(blob, KEY.replace("consumer-1", "consumer-2"), ck)


@pytest.mark.parametrize("position", [0, 5, 30, -1, -20])
def test_flipped_byte_fails(position):
    ck = consumer_key()
    blob = bytearray(encrypt_blob(PHOTO, KEY, "kid-1", ck))
    blob[position] ^= 0x01
    with pytest.raises(BlobIntegrityError):
        decrypt_blob(bytes(blob), KEY, ck)


def test_wrong_consumer_key_fails():
    blob = encrypt_blob(PHOTO, KEY, "kid-1", consumer_key())
    with pytest.raises(BlobIntegrityError):
        decrypt_blob(blob, KEY, consumer_key())


def test_truncated_blob_fails():
    ck = consumer_key()
    blob = encrypt_blob(PHOTO, KEY, "kid-1", ck)
    for cut in (2, 10, 60, len(blob) - 1):
        with pytest.raises(BlobIntegrityError):
            decrypt_blob(blob[:cut], KEY, ck)


def test_data_key_wrap_is_bound_to_object_key():
    ck, dk = consumer_key(), os.urandom(32)
    wrapped = wrap_data_key(ck, dk, KEY)
    assert unwrap_data_key(ck, wrapped, KEY) == dk
    with pytest.raises(BlobIntegrityError):
        unwrap_data_key(ck, wrapped, KEY + "x")


def test_consumer_key_wrapped_under_old_master_still_opens_after_rotation():
    old, new = os.urandom(32), os.urandom(32)
    before = MasterKeyRing(old)
    ck = consumer_key()
    record = before.wrap(ck, b"acct-1/consumer-1/kid")
    blob = encrypt_blob(PHOTO, KEY, "kid", ck)

    rotated = MasterKeyRing(new, previous=[old])
    assert rotated.current_id != before.current_id
    assert record["master_key_id"] == before.current_id
    unwrapped = rotated.unwrap(record, b"acct-1/consumer-1/kid")
    assert decrypt_blob(blob, KEY, unwrapped) == PHOTO
    # New keys are wrapped under the new master key.
    assert rotated.wrap(ck, b"x")["master_key_id"] == rotated.current_id


def test_master_key_removed_from_ring_cannot_open():
    from shared.adapters.crypto import UnknownMasterKey

    old = os.urandom(32)
    record = MasterKeyRing(old).wrap(consumer_key(), b"aad")
    with pytest.raises(UnknownMasterKey):
        MasterKeyRing(os.urandom(32)).unwrap(record, b"aad")


def test_master_key_must_be_32_bytes():
    from shared.adapters.crypto import decode_master_key

    with pytest.raises(ValueError):
        decode_master_key(base64.b64encode(b"short").decode())


def test_rotation_through_settings_keeps_blobs_written_under_the_old_master_readable(monkeypatch):
    """The production path: the ring is built from FS_MASTER_KEY and FS_PREVIOUS_MASTER_KEYS."""
    from shared.adapters.crypto import UnknownMasterKey, master_key_id
    from shared.settings import Settings

    for name in [k for k in os.environ if k.startswith("FS_")]:
        monkeypatch.delenv(name)
    a, b, c = (base64.b64encode(os.urandom(32)).decode() for _ in range(3))
    aad = b"acct-1/consumer-1/kid"

    monkeypatch.setenv("FS_MASTER_KEY", a)
    ring_a = MasterKeyRing.from_settings(Settings())
    ck = consumer_key()
    record = ring_a.wrap(ck, aad)
    blob = encrypt_blob(PHOTO, KEY, "kid", ck)

    monkeypatch.setenv("FS_MASTER_KEY", b)
    monkeypatch.setenv("FS_PREVIOUS_MASTER_KEYS", f"{c}, {a}")
    rotated = MasterKeyRing.from_settings(Settings())
    assert rotated.current_id == master_key_id(base64.b64decode(b)) != ring_a.current_id
    assert decrypt_blob(blob, KEY, rotated.unwrap(record, aad)) == PHOTO

    # Re-wrapped under B (what ConsumerKeyStore.rewrapped makes), A alone can no longer open it.
    rewrapped = rotated.wrap(rotated.unwrap(record, aad), aad)
    assert rewrapped["master_key_id"] == rotated.current_id
    with pytest.raises(UnknownMasterKey):
        ring_a.unwrap(rewrapped, aad)
    monkeypatch.delenv("FS_PREVIOUS_MASTER_KEYS")
    assert decrypt_blob(blob, KEY, MasterKeyRing.from_settings(Settings()).unwrap(rewrapped, aad)) == PHOTO
    # Without the previous key configured, the old record does not open.
    with pytest.raises(UnknownMasterKey):
        MasterKeyRing.from_settings(Settings()).unwrap(record, aad)


def test_an_upload_racing_a_forget_gets_no_fresh_key():
    """The upload listed the consumer's key, then the forget destroyed it: creating a new key now
    would let the upload slip past the forget. Once the forget is over, a new key is made."""
    import asyncio

    from shared.adapters.crypto import ConsumerForgotten, ConsumerKeyStore
    from tests.memory_store import MemoryStore

    class ForgetBetweenListAndGet(MemoryStore):
        async def list(self, prefix=""):
            listed = await super().list(prefix)
            self.objects.clear()  # the forget destroys the keys right after the upload listed them
            return listed

    store = ForgetBetweenListAndGet()
    keys = ConsumerKeyStore(store, MasterKeyRing(os.urandom(32)))
    asyncio.run(keys.get_or_create("acct", "cons"))
    with pytest.raises(ConsumerForgotten):
        asyncio.run(keys.get_or_create("acct", "cons"))
    assert store.objects == {}, "no key was created for the upload in the forget's way"
    key_id, _ = asyncio.run(keys.get_or_create("acct", "cons"))  # after the forget: a new key
    assert store.objects == {f"acct/cons/{key_id}": store.objects[f"acct/cons/{key_id}"]}


class CountingStore:
    """A MemoryStore that counts its gets (the round trips a real store would make)."""

    def __init__(self):
        from tests.memory_store import MemoryStore

        self.inner, self.gets = MemoryStore(), 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def get(self, key):
        self.gets += 1
        return await self.inner.get(key)

    async def get_head(self, key, length):
        self.gets += 1
        return await self.inner.get_head(key, length)


def file_store():
    from shared.adapters.crypto import ConsumerKeyStore, EncryptedFileStore

    key_blobs = CountingStore()
    return EncryptedFileStore(CountingStore(), ConsumerKeyStore(key_blobs, MasterKeyRing(os.urandom(32)))), key_blobs


async def test_a_scoped_store_fetches_each_consumer_key_once_and_only_for_its_own_lifetime():
    from shared.adapters.storage import ObjectKey

    files, key_blobs = file_store()
    key = ObjectKey.parse(KEY)
    key_id = await files.put(key, PHOTO)
    key_blobs.gets = 0

    record = files.scoped()
    assert (await record.get(key))[0] == PHOTO
    await record.put_existing_key(key.with_variant("sanitized"), PHOTO, key_id)
    await record.seal("acct-1", "consumer-1", KEY + "#preview", b"preview", key_id)
    assert key_blobs.gets == 1, "one record: one fetch of its consumer key"

    assert (await files.scoped().get(key))[0] == PHOTO
    assert key_blobs.gets == 2, "the next record fetches the key again (it may have been destroyed since)"


async def test_check_proves_a_blob_from_its_header_without_decrypting_it():
    from shared.adapters.crypto import ConsumerForgotten
    from shared.adapters.storage import ObjectKey

    files, _ = file_store()
    key = ObjectKey.parse(KEY)
    key_id = await files.put(key, PHOTO)
    assert await files.check(key) == key_id

    with pytest.raises(FileNotFoundError):
        await files.check(key.with_variant("final"))
    moved = key.with_variant("final")  # the blob copied to another object key: its data key is bound to the first
    await files.store.put(str(moved), await files.store.get(str(key)))
    with pytest.raises(BlobIntegrityError):
        await files.check(moved)
    await files.keys.destroy("acct-1", "consumer-1")
    with pytest.raises(ConsumerForgotten):
        await files.check(key)
