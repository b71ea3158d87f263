"""Wiring of retention: gdpr.forget and file.rejected consumer, the file index (file.uploaded), the
account settings it follows, the periodic expiry sweep, the bucket lifecycle safety net. Domain
logic lives in handlers.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from services.retention.handlers import (
    IndexedEvent,
    RetentionDeps,
    SafetyNet,
    clean_forgotten_file,
    handle_forget_request,
    index_file,
    retention_changed,
    sweep_every,
)
from services.retention.metrics import RetentionMetrics
from shared.adapters.db import Database
from shared.adapters.kafka import Publisher, StreamProcessor
from shared.contract import events as ev
from shared.contract.inputs import parse_input
from shared.contract.topics import FILE_REJECTED, FILE_RESIZED, FILE_SANITIZED, FILE_UPLOADED, GDPR_FORGET
from shared.projections.account_settings import settings_follower
from shared.projections.projection import projection
from shared.runtime.service import Service
from shared.runtime.tracing import describe
from shared.runtime.wiring import build_storage
from shared.settings import Settings

log = logging.getLogger(__name__)


def bootstrap(settings: Settings) -> Service:
    metrics = RetentionMetrics()
    storage = build_storage(settings, metrics)
    db = Database(settings.database_url, "retention", settings.database_pool_size)
    publisher = Publisher(settings, "retention")
    deps = RetentionDeps(db=db, blobs=storage.blobs, keys=storage.keys, send=publisher.send, metrics=metrics)

    async def handle(record):
        if record.topic == GDPR_FORGET:
            # An input from outside: one the model refuses (an id of the wrong shape) is dropped and counted.
            if (request := parse_input(record, ev.GdprForget.model_validate_json, metrics, "retention")) is not None:
                describe(request)  # its account only: no consumer id outlives a forget in a trace backend
                await handle_forget_request(request, deps)
        elif isinstance(event := ev.parse_event(record.value), ev.FileRejected):
            await clean_forgotten_file(event, deps)
        return []  # receipts were produced (and acknowledged) by the handlers themselves

    def on_poison(record, exc):  # a record that does not parse, or fails for good
        log.error("skipping unusable %s record @%d: %s", record.topic, record.offset, type(exc).__name__)
        return []

    # A forget is waited on (every file unreadable within ~0.1 s); the index and the settings copy are
    # not (an expiry is days away; a forget also lists the store, and index_file waits for a settings
    # change in flight), so those two poll the broker less often.
    processors = [
        StreamProcessor(
            settings,
            "retention",
            "fileshare-retention",
            [GDPR_FORGET, FILE_REJECTED],
            handle,
            on_poison,
            metrics,
            trace_as={GDPR_FORGET: "forget gdpr.forget"},
        ),
        projection(
            settings,
            "retention",
            "index",
            [FILE_UPLOADED, FILE_SANITIZED, FILE_RESIZED],
            cast(Callable[[bytes], IndexedEvent], ev.parse_event),
            index_file,
            db,
            metrics,
            background=True,
        ),
        settings_follower(settings, "retention", db, metrics, on_change=retention_changed, background=True),
    ]
    safety_net = SafetyNet(db, storage.blobs.bucket, storage.blobs.set_expiry_days, deps.clock)

    async def sweep_forever(stop):
        await sweep_every(settings.retention_sweep_seconds, deps, safety_net, stop)

    return Service(
        "retention",
        settings,
        metrics,
        storage,
        db,
        processors=processors,
        background=[sweep_forever],
        on_start=[publisher.start],
        on_stop=[publisher.stop],
    )
