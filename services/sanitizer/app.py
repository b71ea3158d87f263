"""Wiring of the sanitizer: real adapters in, a Service out."""

from __future__ import annotations

from services.sanitizer.handlers import STAGE, SanitizerDeps, sanitize_uploaded
from shared.adapters.db import Database
from shared.adapters.kafka import DEFAULT_TRANSIENT, StreamProcessor
from shared.adapters.scanner import ScannerUnavailable, expose_scanner, scanner_from_settings
from shared.contract import events as ev
from shared.contract.topics import FILE_UPLOADED
from shared.images import ImageLimits, ImageWorkerPool
from shared.pipeline import parse_file_event, poison_to_rejection
from shared.projections.account_settings import settings_follower, settings_reader
from shared.runtime.metrics import ServiceMetrics
from shared.runtime.service import Service
from shared.runtime.wiring import build_storage
from shared.settings import Settings


def bootstrap(settings: Settings, scanner=None) -> Service:
    metrics = ServiceMetrics("sanitizer")
    storage = build_storage(settings, metrics)
    db = Database(settings.database_url, "sanitizer", settings.database_pool_size)
    pool = ImageWorkerPool.from_settings(settings)
    scanner = scanner or scanner_from_settings(settings)  # FS_CLAMD unset: ScannerNotConfigured, no start
    deps = SanitizerDeps(
        files=storage.files,
        scanner=scanner,
        pool=pool,
        settings_of=settings_reader(db),
        metrics=metrics,
        limits=ImageLimits.from_settings(settings),
    )

    async def handle(record):
        return await sanitize_uploaded(parse_file_event(record, ev.FileUploaded), deps)

    processor = StreamProcessor(
        settings,
        "sanitizer",
        "fileshare-sanitizer",
        [FILE_UPLOADED],
        handle,
        poison_to_rejection(STAGE),
        metrics,
        transient=DEFAULT_TRANSIENT + (ScannerUnavailable,),
        concurrency=settings.records_in_flight,
        trace_as="sanitize file.uploaded",
    )
    return Service(
        "sanitizer",
        settings,
        metrics,
        storage,
        db,
        processors=[processor, settings_follower(settings, "sanitizer", db, metrics)],
        on_start=[pool.start],
        on_stop=[pool.close],
        readiness_detail=expose_scanner(scanner, metrics.registry),
    )
