"""Wiring shared by the services: storage adapters, buckets and topics."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from shared.adapters.crypto import ConsumerKeyStore, EncryptedFileStore, MasterKeyRing
from shared.adapters.storage import S3ObjectStore
from shared.contract.topics import ensure_topics
from shared.runtime.metrics import ServiceMetrics
from shared.runtime.retry import retry_transient
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Storage:
    blobs: S3ObjectStore
    key_blobs: S3ObjectStore
    keys: ConsumerKeyStore
    files: EncryptedFileStore

    async def ready(self) -> bool:
        return await self.blobs.ping() and await self.key_blobs.ping()


def build_storage(settings: Settings, metrics: ServiceMetrics | None = None) -> Storage:
    """metrics: where the storage requests and decrypts are counted."""
    requests = metrics.storage_requests if metrics is not None else None
    blobs = S3ObjectStore.from_settings(settings, settings.s3_bucket, requests)
    key_blobs = S3ObjectStore.from_settings(settings, settings.s3_key_bucket, requests)
    keys = ConsumerKeyStore(key_blobs, MasterKeyRing.from_settings(settings))
    return Storage(blobs, key_blobs, keys, EncryptedFileStore(blobs, keys, metrics))


async def wait_for_dependencies(settings: Settings, storage: Storage, stop: asyncio.Event | None = None) -> None:
    """Buckets and topics, created idempotently, retrying until the object store and Kafka answer
    (a service may start before them)."""

    async def ensure_buckets():
        await storage.blobs.ensure_bucket()
        await storage.key_blobs.ensure_bucket()

    await retry_transient(ensure_buckets, "object store", (Exception,), stop, max_delay=10)
    await retry_transient(
        lambda: ensure_topics(settings.kafka_bootstrap, settings.topic_partitions, settings.topic_retention_hours),
        "create topics",
        (Exception,),
        stop,
        max_delay=10,
    )
