"""Envelope encryption at rest.

master key (FS_MASTER_KEY, by key id) ─wraps→ consumer key ─wraps→ data key ─encrypts→ blob

Blob layout, nothing in object metadata:
    b"FSB" | version (1) | len(key_id) (1) | consumer key id | len(wrapped) (1) | wrapped data key | nonce (12) | ciphertext+tag
The associated data of the ciphertext is the object key (that of the wrapped data key is
the object key and the key id), so a blob copied to another key, or a header edited to name
another consumer key, fails to decrypt. Forgetting a consumer deletes the
consumer's keys: every blob of that consumer, and any backup of it, is unreadable at once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.adapters.storage.keys import consumer_key_name, consumer_key_owner, consumer_prefix
from shared.adapters.storage.objectstore import ObjectStore
from shared.settings import Settings

MAGIC = b"FSB"
FORMAT_VERSION = 1
NONCE_BYTES = 12
KEY_BYTES = 32
# The longest header parse_header accepts: magic, version, two length bytes, key id, wrapped key, nonce.
HEADER_MAX = len(MAGIC) + 1 + 1 + 255 + 1 + 255 + NONCE_BYTES


class BlobIntegrityError(Exception):
    """The blob is not ours, was tampered with, or was moved to another object key."""


class ConsumerForgotten(Exception):
    """The consumer's key is gone (right to be forgotten): their files can never be read again."""


class UnknownMasterKey(Exception):
    """A consumer key is wrapped by a master key this process was not given (a rotation without
    FS_PREVIOUS_MASTER_KEYS). A configuration fault, not a property of the file: stages retry
    (shared.adapters.kafka.DEFAULT_TRANSIENT) instead of rejecting every file in flight; downloads are 503."""


def master_key_id(key: bytes) -> str:
    return hashlib.sha256(b"fileshare-master-key-id" + key).hexdigest()[:16]


def decode_master_key(b64: str) -> bytes:
    key = base64.b64decode(b64, validate=True)
    if len(key) != KEY_BYTES:
        raise ValueError("FS_MASTER_KEY must be base64 of exactly 32 bytes")
    return key


class MasterKeyRing:
    """The current master key plus former ones, so keys wrapped before a rotation still open."""

    def __init__(self, current: bytes, previous: Sequence[bytes] = ()):
        self.current_id = master_key_id(current)
        self._keys = {master_key_id(k): k for k in [*previous, current]}

    @classmethod
    def from_settings(cls, settings: Settings) -> MasterKeyRing:
        if not settings.master_key:
            raise ValueError("FS_MASTER_KEY is not set (base64 of 32 random bytes)")
        previous = [decode_master_key(k.strip()) for k in settings.previous_master_keys.split(",") if k.strip()]
        return cls(decode_master_key(settings.master_key), previous)

    def wrap(self, secret: bytes, aad: bytes) -> dict:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._keys[self.current_id]).encrypt(nonce, secret, aad)
        return {
            "v": 1,
            "master_key_id": self.current_id,
            "nonce": base64.b64encode(nonce).decode(),
            "wrapped": base64.b64encode(sealed).decode(),
        }

    def unwrap(self, record: dict, aad: bytes) -> bytes:
        key = self._keys.get(record["master_key_id"])
        if key is None:
            raise UnknownMasterKey(f"master key {record['master_key_id']} is not configured")
        try:
            return AESGCM(key).decrypt(base64.b64decode(record["nonce"]), base64.b64decode(record["wrapped"]), aad)
        except InvalidTag as e:
            raise BlobIntegrityError("consumer key record failed authentication") from e


def _wrap_aad(object_key: str, key_id: str) -> bytes:
    # The key id is bound too, so a header edited to name another consumer key fails.
    return f"{object_key}\n{key_id}".encode()


def wrap_data_key(consumer_key: bytes, data_key: bytes, object_key: str, key_id: str = "") -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(consumer_key).encrypt(nonce, data_key, _wrap_aad(object_key, key_id))


def unwrap_data_key(consumer_key: bytes, wrapped: bytes, object_key: str, key_id: str = "") -> bytes:
    try:
        return AESGCM(consumer_key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(object_key, key_id))
    except InvalidTag as e:
        raise BlobIntegrityError(f"data key of {object_key} failed authentication") from e


@dataclass(frozen=True)
class BlobHeader:
    version: int
    key_id: str
    wrapped_data_key: bytes
    nonce: bytes
    body_offset: int


def parse_header(blob: bytes) -> BlobHeader:
    try:
        if blob[:3] != MAGIC:
            raise BlobIntegrityError("not an encrypted blob")
        version = blob[3]
        if version != FORMAT_VERSION:
            raise BlobIntegrityError(f"unknown blob format version {version}")
        pos = 4
        klen = blob[pos]
        pos += 1
        key_id = blob[pos : pos + klen].decode("ascii")
        pos += klen
        wlen = blob[pos]
        pos += 1
        wrapped = blob[pos : pos + wlen]
        pos += wlen
        nonce = blob[pos : pos + NONCE_BYTES]
        pos += NONCE_BYTES
    except (IndexError, UnicodeDecodeError) as e:
        raise BlobIntegrityError("truncated blob header") from e
    if len(nonce) != NONCE_BYTES or len(wrapped) != wlen:
        raise BlobIntegrityError("truncated blob header")
    return BlobHeader(version, key_id, wrapped, nonce, pos)


def encrypt_blob(plaintext: bytes, object_key: str, key_id: str, consumer_key: bytes) -> bytes:
    data_key = AESGCM.generate_key(bit_length=256)
    wrapped = wrap_data_key(consumer_key, data_key, object_key, key_id)
    nonce = os.urandom(NONCE_BYTES)
    kid = key_id.encode("ascii")
    header = MAGIC + bytes([FORMAT_VERSION, len(kid)]) + kid + bytes([len(wrapped)]) + wrapped + nonce
    return header + AESGCM(data_key).encrypt(nonce, plaintext, object_key.encode())


def data_key_of(header: BlobHeader, object_key: str, consumer_key: bytes) -> bytes:
    """The blob's data key; BlobIntegrityError unless it was wrapped for this object key and key id."""
    return unwrap_data_key(consumer_key, header.wrapped_data_key, object_key, header.key_id)


def decrypt_blob(blob: bytes, object_key: str, consumer_key: bytes, header: BlobHeader | None = None) -> bytes:
    """header: the blob's, when the caller parsed it already (to learn its key id)."""
    header = header or parse_header(blob)
    data_key = data_key_of(header, object_key, consumer_key)
    try:
        # memoryview: one pass over the ciphertext without copying the 5 MB body first.
        return AESGCM(data_key).decrypt(header.nonce, memoryview(blob)[header.body_offset :], object_key.encode())
    except InvalidTag as e:
        raise BlobIntegrityError(f"blob {object_key} failed authentication") from e


class ConsumerKeyStore:
    """Consumer keys, each wrapped by the master key, at {account}/{consumer}/{key_id} in the key bucket.

    A consumer may hold several keys: creating one never overwrites another, so two
    uploads racing to create the first key both stay readable (each blob names its key id).
    """

    def __init__(self, store: ObjectStore, master: MasterKeyRing):
        self._store = store
        self._master = master

    def scoped(self) -> ConsumerKeyStore:
        """A view for ONE record or request that fetches each consumer key at most once (a stage reads
        its input, writes its output and seals a preview under the same key: one GET, not three).
        Never kept longer: the next record must see a forget. Within the record, a forget between the
        read and the write no longer stops the write; the blob written is under a destroyed key, so
        the next stage (at the latest delivery, see EncryptedFileStore.check) rejects the file as
        consumer_forgotten and retention removes it, as for a forget landing between a load and a put."""
        return _KeysOfOneRecord(self._store, self._master)

    async def get_or_create(self, account_id: str, consumer_id: str) -> tuple[str, bytes]:
        prefix = consumer_prefix(account_id, consumer_id)
        existing = sorted(o.key for o in await self._store.list(prefix))
        for key in existing:
            key_id = key[len(prefix) :]
            try:
                return key_id, await self.load(account_id, consumer_id, key_id)
            except ConsumerForgotten:
                continue  # deleted between list and get
        if existing:
            # Every key we listed vanished: a forget is destroying them right now. A key created
            # here would let this upload slip past the forget's listing and be published after it.
            raise ConsumerForgotten(f"consumer {account_id}/{consumer_id} is being forgotten")
        key_id = uuid.uuid4().hex
        secret = AESGCM.generate_key(bit_length=256)
        record = self._master.wrap(secret, (prefix + key_id).encode())
        await self._store.put(prefix + key_id, json.dumps(record).encode())
        return key_id, secret

    async def load(self, account_id: str, consumer_id: str, key_id: str) -> bytes:
        name = consumer_key_name(account_id, consumer_id, key_id)
        try:
            record = json.loads(await self._store.get(name))
        except FileNotFoundError:
            raise ConsumerForgotten(f"consumer {account_id}/{consumer_id} has no key {key_id}") from None
        return self._master.unwrap(record, name.encode())

    async def has_any(self, account_id: str, consumer_id: str) -> bool:
        return bool(await self._store.list(consumer_prefix(account_id, consumer_id)))

    async def has_key(self, account_id: str, consumer_id: str, key_id: str) -> bool:
        return await self._store.exists(consumer_key_name(account_id, consumer_id, key_id))

    async def destroy(self, account_id: str, consumer_id: str) -> int:
        """Crypto-shred: delete every key of the consumer. Returns how many were deleted."""
        keys = await self._store.list(consumer_prefix(account_id, consumer_id))
        for o in keys:
            await self._store.delete(o.key)
        return len(keys)

    # --- master-key rotation (shared.adapters.key_rotation): each consumer key's object, by its name ---

    @property
    def current_master_key_id(self) -> str:
        return self._master.current_id

    async def names(self) -> list[str]:
        """The object name of every consumer key in the key bucket (every account and consumer)."""
        return [o.key for o in await self._store.list("")]

    owner_of = staticmethod(consumer_key_owner)

    async def record(self, name: str) -> dict | None:
        """The stored record of a consumer key (its master_key_id says what wraps it); None once deleted."""
        try:
            return json.loads(await self._store.get(name))
        except FileNotFoundError:
            return None

    def rewrapped(self, name: str, record: dict) -> dict:
        """The same consumer key wrapped under the current master key. UnknownMasterKey, BlobIntegrityError."""
        return self._master.wrap(self._master.unwrap(record, name.encode()), name.encode())

    async def exists(self, name: str) -> bool:
        return await self._store.exists(name)

    async def replace(self, name: str, record: dict) -> None:
        """Store the re-wrapped record over the old one (one atomic PUT: a reader sees either, and both
        open to the same secret). On a versioned bucket the versions under the old wrapping go too."""
        await self._store.put(name, json.dumps(record).encode())
        await self._store.delete_older_versions(name)

    async def delete(self, name: str) -> None:
        await self._store.delete(name)


class _KeysOfOneRecord(ConsumerKeyStore):
    """ConsumerKeyStore.scoped(): each key fetched (or created) at most once."""

    def __init__(self, store: ObjectStore, master: MasterKeyRing):
        super().__init__(store, master)
        self._known: dict[str, bytes] = {}

    async def get_or_create(self, account_id: str, consumer_id: str) -> tuple[str, bytes]:
        key_id, secret = await super().get_or_create(account_id, consumer_id)
        self._known[consumer_key_name(account_id, consumer_id, key_id)] = secret
        return key_id, secret

    async def load(self, account_id: str, consumer_id: str, key_id: str) -> bytes:
        name = consumer_key_name(account_id, consumer_id, key_id)
        if name not in self._known:
            self._known[name] = await super().load(account_id, consumer_id, key_id)
        return self._known[name]


class EncryptedFileStore:
    """Reads and writes file variants; plaintext never leaves the process."""

    def __init__(self, store: ObjectStore, keys: ConsumerKeyStore, metrics=None):
        """metrics: a ServiceMetrics (decrypts counted), or None."""
        self.store = store
        self.keys = keys
        self._metrics = metrics

    def scoped(self) -> EncryptedFileStore:
        """The same store for one record or request: each consumer key fetched once (ConsumerKeyStore.scoped)."""
        return EncryptedFileStore(self.store, self.keys.scoped(), self._metrics)

    async def _decrypt(self, what: str, blob: bytes, header: BlobHeader, bound_to: str, consumer_key: bytes) -> bytes:
        if self._metrics is not None:
            self._metrics.decrypts.labels(what).inc()
            self._metrics.decrypted_bytes.labels(what).inc(len(blob))
        return await asyncio.to_thread(decrypt_blob, blob, bound_to, consumer_key, header)

    async def put(self, key, plaintext: bytes) -> str:
        """key: an ObjectKey; returns the consumer key id it was encrypted under (creates a key if needed)."""
        key_id, consumer_key = await self.keys.get_or_create(key.account_id, key.consumer_id)
        blob = await asyncio.to_thread(encrypt_blob, plaintext, str(key), key_id, consumer_key)
        await self.store.put(str(key), blob)
        return key_id

    async def put_existing_key(self, key, plaintext: bytes, key_id: str) -> None:
        """Write a later variant under the same consumer key as the original; a forgotten
        consumer raises ConsumerForgotten (a stage must not resurrect their files)."""
        consumer_key = await self.keys.load(key.account_id, key.consumer_id, key_id)
        blob = await asyncio.to_thread(encrypt_blob, plaintext, str(key), key_id, consumer_key)
        await self.store.put(str(key), blob)

    async def seal(self, account_id: str, consumer_id: str, bound_to: str, plaintext: bytes, key_id: str) -> bytes:
        """Encrypt a small value that travels inline on an internal topic (the preview of a final
        image, a caption) under the file's consumer key, bound to `bound_to` (associated data), so
        no plaintext rides the topic and a forget shreds it with the key. ConsumerForgotten."""
        consumer_key = await self.keys.load(account_id, consumer_id, key_id)
        return await asyncio.to_thread(encrypt_blob, plaintext, bound_to, key_id, consumer_key)

    async def open_sealed(self, account_id: str, consumer_id: str, bound_to: str, sealed: bytes) -> bytes:
        """The plaintext of seal(..., bound_to, ...). ConsumerForgotten, BlobIntegrityError."""
        header = parse_header(sealed)
        consumer_key = await self.keys.load(account_id, consumer_id, header.key_id)
        return await self._decrypt("sealed", sealed, header, bound_to, consumer_key)

    async def get(self, key) -> tuple[bytes, str]:
        """Returns (plaintext, consumer key id). FileNotFoundError, ConsumerForgotten, BlobIntegrityError."""
        blob = await self.store.get(str(key))
        header = parse_header(blob)
        consumer_key = await self.keys.load(key.account_id, key.consumer_id, header.key_id)
        return await self._decrypt("file", blob, header, str(key), consumer_key), header.key_id

    async def check(self, key) -> str:
        """Proves, from the blob's header alone (one ranged GET, no decrypt of the body), that the blob
        is stored, names a live consumer key and carries a data key bound to this object key and key
        id. Returns the key id. FileNotFoundError, ConsumerForgotten, BlobIntegrityError.
        The body's own authentication is checked where it is decrypted (a download)."""
        header = parse_header(await self.store.get_head(str(key), HEADER_MAX))
        consumer_key = await self.keys.load(key.account_id, key.consumer_id, header.key_id)
        data_key_of(header, str(key), consumer_key)  # 32 bytes: inline
        return header.key_id
