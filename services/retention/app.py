"""Wiring of retention: gdpr.forget and file.rejected consumer, the file index (file.uploaded), the
account settings it follows, the periodic expiry sweep, the bucket lifecycle safety net. Domain
logic lives in handlers.py."""
from __future__ import annotations

import asyncio
import logging
import time

from shared import events as ev
from shared.account_settings import all_documents, settings_follower
from shared.db import Database
from shared.kafka import BACKGROUND_FETCH_WAIT_MS, Publisher, StreamProcessor, TransientError
from shared.projection import projection
from shared.runtime import build_storage
from shared.service import Service
from shared.storage import consumer_prefix
from shared.topics import FILE_REJECTED, FILE_RESIZED, FILE_SANITIZED, FILE_UPLOADED, GDPR_FORGET

from services.retention.handlers import (RetentionDeps, clean_forgotten_file, forget_consumer, index_file,
                                         retention_changed, safety_net_days, sweep)
from services.retention.metrics import RetentionMetrics

log = logging.getLogger(__name__)


def bootstrap(settings) -> Service:
    metrics = RetentionMetrics()
    storage = build_storage(settings, metrics)
    db = Database(settings.database_url, "retention", settings.database_pool_size)
    publisher = Publisher(settings, "retention")
    deps = RetentionDeps(db=db, blobs=storage.blobs, keys=storage.keys, send=publisher.send, metrics=metrics)

    async def handle(record):
        if record.topic == GDPR_FORGET:
            request = ev.GdprForget.model_validate_json(record.value)  # unusable → poison (logged, skipped)
            try:
                consumer_prefix(request.account_id, request.consumer_id)
            except ValueError as e:
                # No object can be stored under ids the storage layout refuses, so there is nothing
                # to erase; retrying would block the partition behind it forever.
                log.error("forget request %r names ids no file can have (%s); nothing to erase, skipped",
                          request.request_id, e)
                metrics.forget_requests.labels("invalid").inc()
                return []
            try:
                await forget_consumer(request, deps)
            except Exception as e:
                # An erasure request is never dropped: any failure after validation is retried
                # with backoff (and counted in fileshare_transient_retries_total) until it succeeds.
                raise TransientError(f"forget {request.request_id!r}: {type(e).__name__}: {e}") from e
        else:
            event = ev.parse_event(record.value)
            if isinstance(event, ev.FileRejected):
                await clean_forgotten_file(event, deps)
        return []  # receipts were produced (and acknowledged) by the handlers themselves

    def on_poison(record, exc):
        log.error("skipping unusable %s record @%d: %s", record.topic, record.offset, type(exc).__name__)
        return []

    # A forget is waited on (every file unreadable within ~0.1 s); the index and the settings copy are
    # not (an expiry is days away; a forget also lists the store, and index_file waits for a settings
    # change in flight), so those two poll the broker less often.
    background = BACKGROUND_FETCH_WAIT_MS
    processors = [
        StreamProcessor(settings, "retention", "fileshare-retention", [GDPR_FORGET, FILE_REJECTED], handle,
                        on_poison, metrics),
        projection(settings, "retention", "index", [FILE_UPLOADED, FILE_SANITIZED, FILE_RESIZED], ev.parse_event,
                   index_file, db, metrics, fetch_wait_ms=background),
        settings_follower(settings, "retention", db, metrics, on_change=retention_changed, fetch_wait_ms=background),
    ]
    safety_net = {"days": None}

    async def apply_safety_net():
        """Lifecycle rule at the longest retention in use (MinIO/S3); a no-op on rclone."""
        async with db.pool.connection() as conn:
            days = safety_net_days(await all_documents(conn), deps.clock())
        if days == safety_net["days"]:
            return
        if await storage.blobs.set_expiry_days(days):
            log.info("bucket %s: lifecycle safety net set to expire objects after %d days", storage.blobs.bucket, days)
        safety_net["days"] = days  # not supported (rclone): logged once, not retried every sweep

    async def sweep_forever(stop: asyncio.Event):
        while not stop.is_set():
            started = time.perf_counter()
            try:
                await sweep(deps)
            except Exception:
                log.exception("expiry sweep failed; the next sweep retries")
            try:
                await apply_safety_net()
            except Exception:
                log.exception("lifecycle safety net not applied; the next sweep retries")
            metrics.sweep_seconds.observe(time.perf_counter() - started)
            try:
                await asyncio.wait_for(stop.wait(), settings.retention_sweep_seconds)
            except asyncio.TimeoutError:
                pass

    return Service("retention", settings, metrics, storage, db, processors=processors, background=[sweep_forever],
                   on_start=[publisher.start], on_stop=[publisher.stop])
