"""Wiring of delivery: the publish worker and the download API share one process and one view
of message.published (the transcript the API serves is the dedupe state of the worker)."""
from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import datetime, timezone

import uvicorn
from aiokafka import TopicPartition
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from prometheus_client import Counter, Histogram

from shared import events as ev
from shared.auth import AuthError, Principal, bearer_token, verify_token
from shared.crypto import BlobIntegrityError, ConsumerForgotten, UnknownMasterKey
from shared.httpapi import ApiError, add_health_routes, error_responses, install_error_handlers
from shared.images.formats import EXTENSIONS
from shared.kafka import StreamProcessor, TopicView
from shared.links import LinkError, audience_of, parse_audience, sign_link, verify_link
from shared.metrics import LATENCY_BUCKETS, ServiceMetrics
from shared.pipeline import parse_file_event, poison_to_rejection
from shared.runtime import build_storage
from shared.state import ConversationState, MessageState, decode
from shared.storage import ObjectKey
from shared.storage.objectstore import StorageUnavailable
from shared.streamservice import StreamService
from shared.topics import CONVERSATION_EVENTS, FILE_DELETED, FILE_RESIZED, MESSAGE_PUBLISHED

from services.delivery.handlers import (DeliveryDeps, Denied, STAGE, authorize_conversation, authorize_file_access,
                                       publish_resized, record_published)
from services.delivery.pages import mount_consumer_pages

log = logging.getLogger(__name__)


class DeliveryMetrics(ServiceMetrics):
    def __init__(self):
        super().__init__("delivery")
        self.published = Counter("fileshare_messages_published_total", "Messages published", registry=self.registry)
        self.duplicates = Counter("fileshare_duplicates_suppressed_total", "Redelivered files not published again",
                                  registry=self.registry)
        self.downloads = Counter("fileshare_downloads_total", "Downloads by result", ["result"], registry=self.registry)
        self.served = Counter("fileshare_served_bytes", "Image bytes served", registry=self.registry)
        self.upload_to_publish = Histogram("fileshare_upload_to_publish_seconds",
                                           "From file.uploaded to message.published (event timestamps)",
                                           buckets=LATENCY_BUCKETS, registry=self.registry)
        self.integrity_failures = Counter("fileshare_integrity_failures_total",
                                          "Stored blobs that failed authentication", registry=self.registry)


def bootstrap(settings):
    metrics = DeliveryMetrics()
    storage = build_storage(settings)
    messages, conversations = MessageState(), ConversationState()
    deps = DeliveryDeps(files=storage.files, messages=messages, conversations=conversations, metrics=metrics)
    message_view = TopicView(settings, [MESSAGE_PUBLISHED, FILE_DELETED], lambda r: messages.apply(decode(r.value)),
                             "messages")
    conversation_view = TopicView(settings, [CONVERSATION_EVENTS], lambda r: conversations.apply(decode(r.value)),
                                  "conversations")

    async def catch_up(tp: TopicPartition):
        await message_view.wait_caught_up([TopicPartition(MESSAGE_PUBLISHED, tp.partition)])
        # Every partition: conversation.events comes from the messaging platform, whose
        # partitioner need not place a conversation where ours places its file.resized.
        await conversation_view.wait_caught_up()

    async def handle(record):
        event = parse_file_event(record, ev.FileResized)
        out = await publish_resized(event, deps)
        if out and out[0].topic == MESSAGE_PUBLISHED:
            if event.uploaded_at:
                metrics.upload_to_publish.observe((out[0].event.occurred_at - event.uploaded_at).total_seconds())
        return out

    processor = StreamProcessor(settings, "delivery", "fileshare-delivery", [FILE_RESIZED], handle,
                                poison_to_rejection(STAGE), metrics, before_partition=catch_up,
                                on_produced=lambda outputs: record_published(outputs, deps))
    service = StreamService("delivery", settings, metrics, storage, views=[message_view, conversation_view],
                            processors=[processor])
    api = build_api(settings, service, deps, metrics)
    service.background.append(lambda stop: serve_api(api, settings, stop))
    return service, api


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison: `*`, or any listed tag equal to ours with or without W/."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def _principal_from(request: Request, settings, file_id: str | None, exp, aud, sig) -> Principal:
    if sig is not None and file_id is not None:
        try:
            kind, account, sub = parse_audience(verify_link(settings.auth_secret, file_id, exp, aud, sig))
        except LinkError as e:
            raise ApiError(403, "invalid_link", str(e)) from None
        if kind == "consumer":
            return Principal(sub=sub, account_id=account, role="consumer")
        return Principal(sub="signed-link", account_id=account, role="agent")
    try:
        return verify_token(settings.auth_secret, bearer_token(request.headers.get("authorization")))
    except AuthError as e:
        raise ApiError(401, "unauthenticated", str(e), {"WWW-Authenticate": "Bearer"}) from None


def build_api(settings, service: StreamService, deps: DeliveryDeps, metrics: DeliveryMetrics) -> FastAPI:
    app = FastAPI(title="fileshare delivery", version="1",
                  description="Download published photos, signed links, conversation transcripts.")
    install_error_handlers(app)
    add_health_routes(app, service.ready, metrics.exposition)
    mount_consumer_pages(app, settings)
    messages = deps.messages

    def find(file_id: str, principal: Principal) -> ev.MessagePublished:
        message = messages.by_file.get(file_id)
        if message is None:
            raise ApiError(404, "not_found", "no such file")
        try:
            authorize_file_access(principal, message)
        except Denied as d:
            raise ApiError(d.status, d.code, d.message) from None
        if file_id in messages.deleted:
            raise ApiError(410, "gone", "the file was deleted")
        return message

    @app.api_route("/v1/files/{file_id}/content", methods=["GET", "HEAD"],
                   responses=error_responses((401, "unauthenticated"), (403, "forbidden"), (403, "invalid_link"),
                                             (404, "not_found"), (410, "gone"), (500, "integrity_error"),
                                             (503, "unavailable")))
    async def download(file_id: str, request: Request, exp: str | None = None, aud: str | None = None,
                       sig: str | None = None):
        """The final image bytes, decrypted. Bearer token or signed link (`exp`, `aud`, `sig`)."""
        try:
            principal = _principal_from(request, settings, file_id, exp, aud, sig)
            message = find(file_id, principal)
        except ApiError as e:
            metrics.downloads.labels(e.code).inc()
            raise
        content = message.content
        etag = '"' + hashlib.sha256(f"{file_id}:{content.size_bytes}".encode()).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff",
                   "Content-Disposition": f'inline; filename="{file_id}.{EXTENSIONS.get(content.content_type, "bin")}"'}
        if etag_matches(request.headers.get("if-none-match"), etag):
            metrics.downloads.labels("not_modified").inc()
            return Response(status_code=304, headers=headers)
        key = ObjectKey(message.account_id, message.consumer_id, message.conversation_id, file_id, "final")
        try:
            data, _ = await deps.files.get(key)
        except (ConsumerForgotten, FileNotFoundError):
            metrics.downloads.labels("gone").inc()
            raise ApiError(410, "gone", "the file was deleted") from None
        except StorageUnavailable:
            metrics.downloads.labels("unavailable").inc()
            raise ApiError(503, "unavailable", "the file store did not answer; try again",
                           {"Retry-After": "1"}) from None
        except UnknownMasterKey as e:
            metrics.downloads.labels("unavailable").inc()
            log.error("cannot open the consumer key: %s (set FS_PREVIOUS_MASTER_KEYS after a rotation)", e,
                      extra={"ctx": {"file_id": file_id, "conversation_id": message.conversation_id}})
            raise ApiError(503, "unavailable", "the file cannot be opened right now") from None
        except BlobIntegrityError:
            metrics.integrity_failures.inc()
            metrics.downloads.labels("integrity_error").inc()
            log.error("stored final image failed authentication: refusing to serve it",
                      extra={"ctx": {"file_id": file_id, "conversation_id": message.conversation_id}})
            raise ApiError(500, "integrity_error", "the stored file failed its integrity check") from None
        if request.method == "HEAD":
            metrics.downloads.labels("head").inc()
            return Response(status_code=200, media_type=content.content_type,
                            headers={**headers, "Content-Length": str(len(data))})
        metrics.downloads.labels("ok").inc()
        metrics.served.inc(len(data))
        return Response(data, media_type=content.content_type, headers=headers)

    @app.post("/v1/files/{file_id}/link",
              responses=error_responses((401, "unauthenticated"), (403, "forbidden"), (404, "not_found"), (410, "gone")))
    async def make_link(file_id: str, request: Request, ttl_seconds: int = Query(settings.link_ttl_seconds, ge=1, le=3600)):
        """A signed link to the content, usable without headers (e.g. `<img src>`); default 5 minutes, max 1 hour."""
        principal = _principal_from(request, settings, None, None, None, None)
        message = find(file_id, principal)
        query, expires = sign_link(settings.auth_secret, file_id,
                                   audience_of(message.account_id, principal.role, principal.sub), ttl_seconds)
        return {"url": f"{message.content.download_path}?{query}",
                "expires_at": datetime.fromtimestamp(expires, timezone.utc).isoformat()}

    @app.get("/v1/conversations/{conversation_id}/messages",
             responses=error_responses((401, "unauthenticated"), (403, "forbidden"), (404, "not_found")))
    async def transcript(conversation_id: str, request: Request):
        """The conversation's published file messages, oldest first."""
        principal = _principal_from(request, settings, None, None, None, None)
        items = messages.transcript(conversation_id)
        conversation = deps.conversations.get(conversation_id)
        owner = (conversation.account_id, conversation.consumer_id) if conversation else \
            ((items[0].account_id, items[0].consumer_id) if items else None)
        if owner is None:
            raise ApiError(404, "not_found", "no such conversation")
        try:
            authorize_conversation(principal, *owner)
        except Denied as d:
            raise ApiError(d.status, d.code, d.message) from None
        return {"conversation_id": conversation_id,
                "messages": [m.model_dump(mode="json", exclude={"schema_version"}) for m in items]}

    return app


async def serve_api(app: FastAPI, settings, stop: asyncio.Event) -> None:
    config = uvicorn.Config(app, host=settings.bind_host, port=settings.delivery_port, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # the service owns SIGTERM
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
