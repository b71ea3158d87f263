"""Wiring of the upload service: the HTTP API, the bot processor on file.share.requested, the
projections of the topics it follows into its schema, and recovery (re-drive, settings re-seed)."""

from __future__ import annotations

from typing import cast

from fastapi import FastAPI

from services.upload import bots
from services.upload.forms import install_upload_body_limits
from services.upload.handlers import UploadDeps
from services.upload.http_accounts import add_account_routes
from services.upload.http_files import add_file_routes
from services.upload.metrics import UploadMetrics
from services.upload.pages import mount_agent_pages
from services.upload.redrive import recovery_job
from services.upload.status import record_event
from shared.adapters.db import Database
from shared.adapters.kafka import GroupOffsets, Publisher, StreamProcessor
from shared.contract.events import parse_event
from shared.contract.topics import FILE_SHARE_REQUESTED, FILE_TOPICS
from shared.projections.conversations import conversation_follower
from shared.projections.projection import projection
from shared.runtime.health import add_health_routes
from shared.runtime.httpapi import contract_openapi, count_responses, install_error_handlers
from shared.runtime.service import Service
from shared.runtime.wiring import build_storage
from shared.settings import Settings


def bootstrap(settings: Settings) -> Service:
    metrics = UploadMetrics()
    storage = build_storage(settings, metrics)
    db = Database(settings.database_url, "upload", settings.database_pool_size)
    publisher, offsets = Publisher(settings, "upload"), GroupOffsets(settings)
    deps = UploadDeps(
        settings=settings, db=db, files=storage.files, publisher=publisher, metrics=metrics, offsets=offsets
    )
    processors = [
        StreamProcessor(
            settings,
            "upload-bots",
            bots.GROUP_ID,
            [FILE_SHARE_REQUESTED],
            lambda record: bots.handle_share_request(record, deps),
            bots.on_poison(deps),
            metrics,
            on_produced=lambda outputs: bots.record_outcomes(outputs, deps),
            trace_as="accept file.share.requested",
        ),
        conversation_follower(settings, "upload", db, metrics),
        projection(settings, "upload", "status", list(FILE_TOPICS), parse_event, record_event, db, metrics),
    ]
    service = Service(
        "upload",
        settings,
        metrics,
        storage,
        db,
        processors=processors,
        background=[recovery_job(settings, db, publisher, metrics)],
        on_start=[publisher.start],
        on_stop=[publisher.stop, offsets.stop],
        http_port=settings.upload_port,
    )
    service.http = build_api(deps, service.ready)
    return service


def build_api(deps: UploadDeps, ready) -> FastAPI:
    app = FastAPI(
        title="fileshare upload",
        version="3",
        description="Send photos to consumers in conversations; account settings; capabilities for the "
        'agent UI; file status. Errors are always `{"error": {"code", "message"}}`. '
        "Bots may also publish records on the Kafka topic `file.share.requested`.",
    )
    install_error_handlers(app)
    install_upload_body_limits(app, deps.settings)
    metrics = cast(UploadMetrics, deps.metrics)  # the API is only built with metrics (None only in handler tests)
    count_responses(app, metrics.http_responses)
    add_health_routes(app, ready, metrics.registry)
    mount_agent_pages(app, deps.settings)
    add_file_routes(app, deps)
    add_account_routes(app, deps)
    contract_openapi(app)
    return app
