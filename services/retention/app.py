"""Wiring of retention: gdpr.forget consumer plus the periodic expiry sweep."""
from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Counter, Histogram

from shared import events as ev
from shared.kafka import StreamProcessor, TopicView, send_all
from shared.metrics import LATENCY_BUCKETS, ServiceMetrics
from shared.runtime import build_storage
from shared.state import AccountSettingsState, decode
from shared.streamservice import StreamService
from shared.topics import ACCOUNT_SETTINGS, GDPR_FORGET

from services.retention.handlers import RetentionDeps, delete_file, expired_files, forget_consumer, receipt

log = logging.getLogger(__name__)


class RetentionMetrics(ServiceMetrics):
    def __init__(self):
        super().__init__("retention")
        self.deleted = Counter("fileshare_files_deleted_total", "Files deleted, by reason", ["reason"],
                               registry=self.registry)
        self.freed = Counter("fileshare_freed_bytes", "Bytes of stored objects deleted", registry=self.registry)
        self.sweep_seconds = Histogram("fileshare_sweep_seconds", "Duration of one expiry sweep",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.forget_seconds = Histogram("fileshare_forget_seconds", "From gdpr.forget to its last receipt",
                                        buckets=LATENCY_BUCKETS, registry=self.registry)


def bootstrap(settings) -> StreamService:
    metrics = RetentionMetrics()
    storage = build_storage(settings)
    accounts = AccountSettingsState()
    deps = RetentionDeps(blobs=storage.blobs, keys=storage.keys, accounts=accounts, metrics=metrics)

    async def handle(record):
        request = ev.GdprForget.model_validate_json(record.value)
        return await forget_consumer(request, deps)

    def on_poison(record, exc):
        log.error("skipping unusable gdpr.forget record @%d: %s", record.offset, exc)
        return []

    processor = StreamProcessor(settings, "retention", "fileshare-retention", [GDPR_FORGET], handle, on_poison,
                                metrics)

    async def sweep_forever(stop: asyncio.Event):
        while not stop.is_set():
            started = time.perf_counter()
            try:
                for f in await expired_files(deps):
                    await delete_file(f, deps, "expired")
                    await send_all(processor.producer, [receipt(f, "expired")])
                    log.info("expired file deleted", extra={"ctx": {"file_id": f.file_id,
                                                                    "conversation_id": f.conversation_id}})
            except Exception:
                log.exception("expiry sweep failed; next sweep will retry")
            metrics.sweep_seconds.observe(time.perf_counter() - started)
            try:
                await asyncio.wait_for(stop.wait(), settings.retention_sweep_seconds)
            except asyncio.TimeoutError:
                pass

    view = TopicView(settings, [ACCOUNT_SETTINGS], lambda r: accounts.apply(decode(r.value)), "account-settings")
    return StreamService("retention", settings, metrics, storage, views=[view], processors=[processor],
                         background=[sweep_forever])
