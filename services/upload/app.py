"""Wiring of the upload service: FastAPI + an aiokafka producer + views of the topics it needs."""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Header, Path, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from starlette.datastructures import UploadFile

from shared import events as ev
from shared.httpapi import ApiError, add_health_routes, authenticate, error_responses, install_error_handlers
from shared.kafka import TopicView, make_producer, send_all, start_with_retry, Outgoing
from shared.metrics import LATENCY_BUCKETS, SIZE_BUCKETS, ServiceMetrics, serve_metrics
from shared.runtime import build_storage, wait_for_storage
from shared.state import AccountSettingsState, ConversationState, FileStatusState, decode
from shared.topics import ACCOUNT_SETTINGS, CONVERSATION_EVENTS, FILE_TOPICS, ensure_topics

from services.upload.handlers import StorageFailed, UploadDeps, UploadRequest, accept_file, file_id_for
from services.upload.policy import Refused, capabilities, check_account_gates

log = logging.getLogger(__name__)
MULTIPART_SLACK = 64 * 1024  # boundaries, headers and a 2000-character caption around the file


class UploadMetrics(ServiceMetrics):
    def __init__(self):
        super().__init__("upload")
        self.uploads = Counter("fileshare_uploads_total", "Upload requests by outcome (accepted or error code)",
                               ["outcome"], registry=self.registry)
        self.upload_bytes = Histogram("fileshare_upload_bytes", "Size of accepted files", buckets=SIZE_BUCKETS,
                                      registry=self.registry)
        self.request_seconds = Histogram("fileshare_upload_request_seconds", "Upload request latency",
                                         buckets=LATENCY_BUCKETS, registry=self.registry)


class BodyTooLarge(Exception):
    pass


async def read_form_limited(request: Request, limit: int):
    """Parse the multipart body while counting bytes: past `limit` it stops reading, so a
    1 GB body is refused after ~limit bytes and never held in memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    received = 0
    original_receive = request._receive

    async def counting_receive():
        nonlocal received
        message = await original_receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise BodyTooLarge()
        return message

    request._receive = counting_receive
    return await request.form(max_files=2, max_fields=8)


def build_app(settings) -> FastAPI:
    metrics = UploadMetrics()
    storage = build_storage(settings)
    accounts, conversations, statuses = AccountSettingsState(), ConversationState(), FileStatusState()
    views = [
        TopicView(settings, [ACCOUNT_SETTINGS], lambda r: accounts.apply(decode(r.value)), "account-settings"),
        TopicView(settings, [CONVERSATION_EVENTS], lambda r: conversations.apply(decode(r.value)), "conversations"),
        TopicView(settings, list(FILE_TOPICS), lambda r: statuses.apply(decode(r.value)), "file-status"),
    ]
    deps = UploadDeps(settings=settings, files=storage.files, producer=None, accounts=accounts,
                      conversations=conversations, statuses=statuses, metrics=metrics)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        metrics_server = await serve_metrics(metrics, settings.metrics_port("upload"), ready, settings.bind_host)
        await wait_for_storage(storage)
        await ensure_topics(settings.kafka_bootstrap, settings.topic_partitions)
        deps.producer = make_producer(settings)  # bound to the server's event loop
        await start_with_retry(deps.producer, "upload producer")
        for view in views:
            await view.start()
        state["ready"] = True
        log.info("upload ready")
        try:
            yield
        finally:
            state["ready"] = False
            for view in views:
                await view.stop()
            await deps.producer.stop()
            metrics_server.close()

    async def ready() -> bool:
        return state["ready"] and all(v.healthy for v in views) and await storage.ready()

    app = FastAPI(title="fileshare upload", version="1", lifespan=lifespan,
                  description="Send photos to consumers in conversations; account settings; file status.")
    install_error_handlers(app)
    add_health_routes(app, ready, metrics.exposition)
    app.state.deps = deps

    def refused(r: Refused) -> ApiError:
        metrics.uploads.labels(r.code).inc()
        return ApiError(r.status, r.code, r.message)

    @app.post("/v1/accounts/{account_id}/conversations/{conversation_id}/files", status_code=202,
              responses=error_responses(
                  (401, "unauthenticated"), (403, "feature_disabled"), (403, "file_sharing_disabled"),
                  (403, "permission_denied"), (404, "conversation_not_found"), (409, "conversation_closed"),
                  (409, "channel_not_supported"), (413, "file_too_large"), (415, "unsupported_type"),
                  (422, "invalid_request"), (503, "unavailable")))
    async def upload_file(request: Request, account_id: str = Path(...), conversation_id: str = Path(...),
                          idempotency_key: str | None = Header(None, max_length=200)):
        """Multipart: `file` (jpeg/png/gif, ≤ 5 MB), optional `caption` (≤ 2000 chars),
        optional `source` = `local` | `widget`. Answers 202 at once; processing continues."""
        started = time.perf_counter()
        principal = authenticate(request, settings.auth_secret)
        try:
            check_account_gates(principal, account_id, accounts.get(account_id))
        except Refused as r:
            raise refused(r) from None
        file_id = file_id_for(principal, idempotency_key)
        known = statuses.get(file_id)
        if known is not None:
            metrics.uploads.labels("idempotent_replay").inc()
            return JSONResponse({"file_id": file_id, "status": "uploaded", "status_url": f"/v1/files/{file_id}"},
                                status_code=202)
        try:
            form = await read_form_limited(request, settings.max_upload_bytes + MULTIPART_SLACK)
        except BodyTooLarge:
            raise refused(Refused(413, "file_too_large", f"the file is larger than {settings.max_upload_bytes} bytes")) from None
        except Exception as e:  # malformed multipart
            raise refused(Refused(422, "invalid_request", f"cannot parse the multipart body: {e}")) from None
        files = [v for v in form.getlist("file") if isinstance(v, UploadFile)]
        if len(files) != 1 or any(isinstance(v, UploadFile) for k, v in form.multi_items() if k != "file"):
            raise refused(Refused(422, "invalid_request", "send exactly one file in the `file` field"))
        source = form.get("source") or "local"
        caption = form.get("caption")
        if source not in ("local", "widget") or not isinstance(caption, (str, type(None))):
            raise refused(Refused(422, "invalid_request", "source must be 'local' or 'widget'"))
        data = await files[0].read(settings.max_upload_bytes + 1)
        await form.close()
        try:
            event = await accept_file(UploadRequest(principal, account_id, conversation_id, data, caption, source,
                                                    file_id), deps)
        except Refused as r:
            raise refused(r) from None
        except StorageFailed as e:
            metrics.uploads.labels("unavailable").inc()
            raise ApiError(503, "unavailable", f"{e}; retry with the same Idempotency-Key") from None
        metrics.uploads.labels("accepted").inc()
        metrics.upload_bytes.observe(event.size_bytes)
        metrics.request_seconds.observe(time.perf_counter() - started)
        return {"file_id": event.file_id, "status": "uploaded", "status_url": f"/v1/files/{event.file_id}"}

    @app.get("/v1/files/{file_id}", responses=error_responses((401, "unauthenticated"), (404, "not_found")))
    async def file_status(file_id: str, request: Request):
        """The file's current stage: uploaded, sanitized, resized, published, rejected (with reason) or deleted."""
        principal = authenticate(request, settings.auth_secret)
        status = statuses.get(file_id)
        if status is None or principal.account_id != status.account_id or (
                principal.role == "consumer" and principal.sub != status.consumer_id):
            raise ApiError(404, "not_found", "no such file")
        return status.public()

    @app.get("/v1/accounts/{account_id}/settings", responses=error_responses((401, "unauthenticated"), (403, "permission_denied")))
    async def get_settings(account_id: str, request: Request):
        principal = authenticate(request, settings.auth_secret)
        if principal.account_id != account_id or principal.role == "consumer":
            raise ApiError(403, "permission_denied", "only users of the account can read its settings")
        return accounts.get(account_id).model_dump()

    @app.put("/v1/accounts/{account_id}/settings",
             responses=error_responses((401, "unauthenticated"), (403, "permission_denied"), (422, "invalid_request")))
    async def put_settings(account_id: str, document: ev.AccountSettingsDocument, request: Request):
        """`platform` (the account team) may set everything; the account `admin` all but `feature_enabled`."""
        principal = authenticate(request, settings.auth_secret)
        if principal.account_id != account_id or principal.role not in ("platform", "admin"):
            raise ApiError(403, "permission_denied", "only the account team or an account admin can change settings")
        current = accounts.get(account_id)
        if principal.role == "admin" and document.feature_enabled != current.feature_enabled:
            raise ApiError(403, "permission_denied", "only the account team can change feature_enabled")
        from shared.durations import parse_duration
        try:
            parse_duration(document.retention)
        except ValueError as e:
            raise ApiError(422, "invalid_request", f"retention: {e}") from None
        event = ev.AccountSettings(account_id=account_id, **document.model_dump())
        try:
            await send_all(deps.producer, [Outgoing(ACCOUNT_SETTINGS, account_id, event)])
        except Exception as e:
            raise ApiError(503, "unavailable", f"cannot publish the settings: {e}") from None
        accounts.apply(event)
        return document.model_dump()

    @app.get("/v1/accounts/{account_id}/conversations/{conversation_id}/capabilities",
             responses=error_responses((401, "unauthenticated")))
    async def get_capabilities(account_id: str, conversation_id: str, request: Request):
        """Whether the attachment icon is shown (`visible`) and clickable (`enabled`) for the caller."""
        principal = authenticate(request, settings.auth_secret)
        caps = capabilities(principal, account_id, accounts.get(account_id), conversations.get(conversation_id),
                            settings.file_channel_set)
        return {"visible": caps.visible, "enabled": caps.enabled, "reason": caps.reason,
                "accepted_types": ["image/jpeg", "image/png", "image/gif"], "max_bytes": settings.max_upload_bytes}

    return app
