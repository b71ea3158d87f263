"""Wiring of the resizer."""
from __future__ import annotations

from shared import events as ev
from shared.images import ImageWorkerPool
from shared.kafka import StreamProcessor, TopicView
from shared.metrics import ServiceMetrics
from shared.pipeline import parse_file_event, poison_to_rejection
from shared.runtime import build_storage
from shared.state import AccountSettingsState, decode
from shared.streamservice import StreamService
from shared.topics import ACCOUNT_SETTINGS, FILE_SANITIZED

from services.resizer.handlers import STAGE, ResizerDeps, resize_sanitized


def bootstrap(settings) -> StreamService:
    metrics = ServiceMetrics("resizer")
    storage = build_storage(settings)
    pool = ImageWorkerPool.from_settings(settings)
    accounts = AccountSettingsState()
    deps = ResizerDeps(files=storage.files, pool=pool, accounts=accounts, metrics=metrics)

    async def handle(record):
        return await resize_sanitized(parse_file_event(record, ev.FileSanitized), deps)

    processor = StreamProcessor(settings, "resizer", "fileshare-resizer", [FILE_SANITIZED], handle,
                                poison_to_rejection(STAGE), metrics)
    view = TopicView(settings, [ACCOUNT_SETTINGS], lambda r: accounts.apply(decode(r.value)), "account-settings")
    return StreamService("resizer", settings, metrics, storage, views=[view], processors=[processor],
                         on_start=[pool.start], on_stop=[pool.close])
