"""Wiring of delivery: the publish worker, the projections it needs (conversations, deletions) and
the download API, in one process over one schema."""

from __future__ import annotations

from services.delivery.api import build_api
from services.delivery.handlers import STAGE, DeliveryDeps, publish_resized, record_deletion
from services.delivery.metrics import DeliveryMetrics
from services.delivery.republish import republish_job
from shared.adapters.db import Database
from shared.adapters.kafka import Publisher, StreamProcessor
from shared.contract import events as ev
from shared.contract.topics import FILE_DELETED, FILE_RESIZED
from shared.pipeline import parse_file_event, poison_to_rejection
from shared.projections.conversations import conversation_follower
from shared.projections.projection import projection
from shared.runtime.service import Service
from shared.runtime.wiring import build_storage
from shared.settings import Settings


def bootstrap(settings: Settings) -> Service:
    metrics = DeliveryMetrics()
    storage = build_storage(settings, metrics)
    db = Database(settings.database_url, "delivery", settings.database_pool_size)
    publisher = Publisher(settings, "delivery")
    deps = DeliveryDeps(db=db, files=storage.files, publisher=publisher, metrics=metrics)
    conversations = conversation_follower(settings, "delivery", db, metrics)

    async def handle(record):
        return await publish_resized(parse_file_event(record, ev.FileResized), deps)

    async def conversations_caught_up(_tp):
        # A close that the platform sent before this photo's publish must be known first.
        await conversations.wait_caught_up()

    processor = StreamProcessor(
        settings,
        "delivery",
        "fileshare-delivery",
        [FILE_RESIZED],
        handle,
        poison_to_rejection(STAGE),
        metrics,
        before_partition=conversations_caught_up,
        trace_as="deliver file.resized",
    )
    deletions = projection(
        settings,
        "delivery",
        "deletions",
        [FILE_DELETED],
        ev.FileDeleted.model_validate_json,
        record_deletion,
        db,
        metrics,
    )
    service = Service(
        "delivery",
        settings,
        metrics,
        storage,
        db,
        processors=[processor, conversations, deletions],
        background=[republish_job(settings, db, publisher, metrics)],
        on_start=[publisher.start],
        on_stop=[publisher.stop],
        http_port=settings.delivery_port,
    )
    service.http = build_api(settings, deps, service.ready)
    return service
