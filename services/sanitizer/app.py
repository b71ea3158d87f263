"""Wiring of the sanitizer: real adapters in, a StreamService out."""
from __future__ import annotations

from shared import events as ev
from shared.images import ImageLimits, ImageWorkerPool
from shared.kafka import DEFAULT_TRANSIENT, StreamProcessor, TopicView
from shared.metrics import ServiceMetrics
from shared.pipeline import parse_file_event, poison_to_rejection
from shared.runtime import build_storage
from shared.scanner import ScannerUnavailable, expose_scanner, scanner_from_settings
from shared.state import AccountSettingsState, decode
from shared.streamservice import StreamService
from shared.topics import ACCOUNT_SETTINGS, FILE_UPLOADED

from services.sanitizer.handlers import STAGE, SanitizerDeps, sanitize_uploaded


def bootstrap(settings, scanner=None) -> StreamService:
    metrics = ServiceMetrics("sanitizer")
    storage = build_storage(settings)
    pool = ImageWorkerPool.from_settings(settings)
    accounts = AccountSettingsState()
    scanner = scanner or scanner_from_settings(settings)  # FS_CLAMD unset: ScannerNotConfigured, no start
    deps = SanitizerDeps(files=storage.files, scanner=scanner, pool=pool,
                         accounts=accounts, metrics=metrics,
                         limits=ImageLimits.from_settings(settings))

    async def handle(record):
        return await sanitize_uploaded(parse_file_event(record, ev.FileUploaded), deps)

    processor = StreamProcessor(settings, "sanitizer", "fileshare-sanitizer", [FILE_UPLOADED], handle,
                                poison_to_rejection(STAGE), metrics,
                                transient=DEFAULT_TRANSIENT + (ScannerUnavailable,))
    view = TopicView(settings, [ACCOUNT_SETTINGS], lambda r: accounts.apply(decode(r.value)), "account-settings")
    return StreamService("sanitizer", settings, metrics, storage, views=[view], processors=[processor],
                         on_start=[pool.start], on_stop=[pool.close],
                         readiness_detail=expose_scanner(scanner, metrics.registry))
