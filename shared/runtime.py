"""Wiring shared by the services: storage adapters, readiness, signal handling."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass
from typing import Awaitable, Callable

from shared.kafka import retry_transient
from shared.topics import ensure_topics
from shared.crypto import ConsumerKeyStore, EncryptedFileStore, MasterKeyRing
from shared.logs import setup_logging
from shared.settings import ConfigurationError, Settings, get_settings
from shared.storage import S3ObjectStore

log = logging.getLogger(__name__)


@dataclass
class Storage:
    blobs: S3ObjectStore
    key_blobs: S3ObjectStore
    keys: ConsumerKeyStore
    files: EncryptedFileStore

    async def ready(self) -> bool:
        return await self.blobs.ping() and await self.key_blobs.ping()


def build_storage(settings: Settings) -> Storage:
    blobs = S3ObjectStore.from_settings(settings, settings.s3_bucket)
    key_blobs = S3ObjectStore.from_settings(settings, settings.s3_key_bucket)
    keys = ConsumerKeyStore(key_blobs, MasterKeyRing.from_settings(settings))
    return Storage(blobs, key_blobs, keys, EncryptedFileStore(blobs, keys))


async def wait_for_dependencies(settings: Settings, storage: Storage, stop: asyncio.Event | None = None) -> None:
    """Buckets and topics, created idempotently, retrying until the object store and Kafka answer
    (a service may start before them)."""
    async def ensure_buckets():
        await storage.blobs.ensure_bucket()
        await storage.key_blobs.ensure_bucket()

    await retry_transient(ensure_buckets, "object store", (Exception,), stop, max_delay=10)
    await retry_transient(lambda: ensure_topics(settings.kafka_bootstrap, settings.topic_partitions),
                          "create topics", (Exception,), stop, max_delay=10)


def run_service(name: str, main: Callable[[Settings, asyncio.Event], Awaitable[None]]) -> None:
    """Entry point of a service process: logging, SIGINT/SIGTERM → graceful stop."""
    settings = get_settings()
    setup_logging(name, settings.log_level)

    async def runner():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(settings, stop)

    try:
        asyncio.run(runner())
    except ConfigurationError as e:
        log.critical("%s refuses to start: %s", name, e)
        sys.exit(2)
    log.info("%s stopped", name)
