"""Wiring of the resizer."""

from __future__ import annotations

from services.resizer.handlers import STAGE, ResizerDeps, resize_sanitized
from shared.adapters.db import Database
from shared.adapters.kafka import StreamProcessor
from shared.contract import events as ev
from shared.contract.topics import FILE_SANITIZED
from shared.images import ImageWorkerPool
from shared.pipeline import parse_file_event, poison_to_rejection
from shared.projections.account_settings import settings_follower, settings_reader
from shared.runtime.metrics import ServiceMetrics
from shared.runtime.service import Service
from shared.runtime.wiring import build_storage
from shared.settings import Settings


def bootstrap(settings: Settings) -> Service:
    metrics = ServiceMetrics("resizer")
    storage = build_storage(settings, metrics)
    db = Database(settings.database_url, "resizer", settings.database_pool_size)
    pool = ImageWorkerPool.from_settings(settings)
    deps = ResizerDeps(files=storage.files, pool=pool, settings_of=settings_reader(db), metrics=metrics)

    async def handle(record):
        return await resize_sanitized(parse_file_event(record, ev.FileSanitized), deps)

    processor = StreamProcessor(
        settings,
        "resizer",
        "fileshare-resizer",
        [FILE_SANITIZED],
        handle,
        poison_to_rejection(STAGE),
        metrics,
        concurrency=settings.records_in_flight,
        trace_as="resize file.sanitized",
    )
    return Service(
        "resizer",
        settings,
        metrics,
        storage,
        db,
        processors=[processor, settings_follower(settings, "resizer", db, metrics)],
        on_start=[pool.start],
        on_stop=[pool.close],
    )
