"""Wiring of retention: gdpr.forget and file.rejected consumer, the periodic expiry sweep, the
bucket lifecycle safety net. Domain logic lives in handlers.py."""
from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import TopicPartition
from prometheus_client import Counter, Histogram

from shared import events as ev
from shared.kafka import StreamProcessor, TopicView, TransientError, send_all
from shared.metrics import LATENCY_BUCKETS, ServiceMetrics
from shared.runtime import build_storage
from shared.state import AccountSettingsState, decode
from shared.storage import consumer_prefix
from shared.streamservice import StreamService
from shared.topics import ACCOUNT_SETTINGS, FILE_DELETED, FILE_REJECTED, GDPR_FORGET

from services.retention.handlers import (ReceiptLedger, RetentionDeps, clean_forgotten_file, forget_consumer,
                                         safety_net_days, sweep)

log = logging.getLogger(__name__)

FORGET_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class RetentionMetrics(ServiceMetrics):
    def __init__(self):
        super().__init__("retention")
        r = self.registry
        self.deleted = Counter("fileshare_files_deleted_total", "Files deleted (one receipt each), by reason",
                               ["reason"], registry=r)
        self.freed = Counter("fileshare_freed_bytes", "Bytes of stored objects deleted", registry=r)
        self.sweep_seconds = Histogram("fileshare_sweep_seconds", "Duration of one expiry sweep",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.forget_seconds = Histogram("fileshare_forget_seconds",
                                        "From gdpr.forget occurred_at until every file is receipted and deleted",
                                        buckets=FORGET_BUCKETS, registry=r)
        self.shred_seconds = Histogram("fileshare_forget_shred_seconds",
                                       "From gdpr.forget occurred_at until the consumer's keys are destroyed "
                                       "(every file unreadable)", buckets=FORGET_BUCKETS, registry=r)
        self.forget_requests = Counter("fileshare_forget_requests_total",
                                       "Forget requests handled, by outcome (erased | nothing_left | repeated | invalid)",
                                       ["outcome"], registry=r)


def bootstrap(settings) -> StreamService:
    metrics = RetentionMetrics()
    storage = build_storage(settings)
    accounts = AccountSettingsState()
    ledger = ReceiptLedger()
    receipts_view = TopicView(settings, [FILE_DELETED, GDPR_FORGET],
                              lambda r: ledger.apply(decode(r.value), (r.partition, r.offset)), "receipts")
    processor: StreamProcessor

    async def send(outgoing):
        await send_all(processor.producer, outgoing)

    deps = RetentionDeps(blobs=storage.blobs, keys=storage.keys, accounts=accounts, ledger=ledger, send=send,
                         metrics=metrics)

    async def handle(record):
        if record.topic == GDPR_FORGET:
            request = ev.GdprForget.model_validate_json(record.value)  # unusable → poison (logged, skipped)
            try:
                consumer_prefix(request.account_id, request.consumer_id)
            except ValueError as e:
                # No object can be stored under ids the storage layout refuses, so there is nothing
                # to erase; retrying would block the partition behind it forever.
                log.error("forget request %s names ids no file can have (%s); nothing to erase, skipped",
                          request.request_id, e)
                metrics.forget_requests.labels("invalid").inc()
                return []
            # The receipts view has read this partition up to this record: an earlier copy is known.
            await receipts_view.wait_caught_up([TopicPartition(GDPR_FORGET, record.partition)])
            if ledger.is_repeat(request, (record.partition, record.offset)):
                log.info("forget request %s repeated: carried out before, nothing new is erased (the consumer "
                         "%s/%s may have come back since)", request.request_id, request.account_id,
                         request.consumer_id)
                metrics.forget_requests.labels("repeated").inc()
                return []
            try:
                await forget_consumer(request, deps)
            except Exception as e:
                # An erasure request is never dropped: any failure after validation is retried
                # with backoff (and counted in fileshare_transient_retries_total) until it succeeds.
                raise TransientError(f"forget {request.request_id}: {type(e).__name__}: {e}") from e
        else:
            event = decode(record.value)
            if isinstance(event, ev.FileRejected):
                await clean_forgotten_file(event, deps)
        return []  # receipts were produced (and acknowledged) before the objects were deleted

    def on_poison(record, exc):
        log.error("skipping unusable %s record @%d: %s", record.topic, record.offset, exc)
        return []

    processor = StreamProcessor(settings, "retention", "fileshare-retention", [GDPR_FORGET, FILE_REJECTED], handle,
                                on_poison, metrics)

    safety_net = {"days": None}

    async def apply_safety_net():
        """Lifecycle rule at the longest retention in use (MinIO/S3); a no-op on rclone."""
        days = safety_net_days(accounts, deps.clock())
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

    views = [
        TopicView(settings, [ACCOUNT_SETTINGS], lambda r: accounts.apply(decode(r.value)), "account-settings"),
        receipts_view,
    ]
    return StreamService("retention", settings, metrics, storage, views=views, processors=[processor],
                         background=[sweep_forever])
