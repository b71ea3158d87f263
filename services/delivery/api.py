"""The delivery HTTP API: downloads (bearer token or signed link), signed links, transcripts."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from services.delivery.handlers import DeliveryDeps, StoredMessage, find_deletion, find_message, transcript_of
from services.delivery.pages import mount_consumer_pages
from shared.adapters.crypto import BlobIntegrityError, ConsumerForgotten, UnknownMasterKey
from shared.adapters.storage import ObjectKey
from shared.adapters.storage.objectstore import StorageUnavailable
from shared.contract.auth import AuthError, Principal, bearer_token, verify_token
from shared.contract.links import MAX_LINK_TTL, LinkError, audience_of, parse_audience, sign_link, verify_link
from shared.images.formats import EXTENSIONS
from shared.projections.conversations import get_conversation
from shared.rules import access, enforce
from shared.runtime.health import add_health_routes
from shared.runtime.httpapi import (
    ApiError,
    authenticate_service,
    contract_openapi,
    count_responses,
    error_responses,
    install_body_limit,
    install_error_handlers,
    lookup_id,
    query_int,
    write_id,
)
from shared.runtime.logs import file_ctx
from shared.runtime.tracing import answered, describe, now_ns, server_span
from shared.settings import Settings

log = logging.getLogger(__name__)
DOWNLOAD_ROUTE = "/v1/files/{file_id}/content"
PUBLICATION_ROUTE = "/internal/v1/files/{file_id}/publication"


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison: `*`, or any listed tag equal to ours with or without W/."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def _principal_from(request: Request, settings: Settings, file_id: str | None, exp, aud, sig) -> Principal:
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


def build_api(settings: Settings, deps: DeliveryDeps, ready) -> FastAPI:
    app = FastAPI(
        title="fileshare delivery",
        version="3",
        description="Download published photos, signed links, conversation transcripts.",
    )
    install_error_handlers(app)
    install_body_limit(app)  # no route takes a body: 64 KiB of anything
    assert deps.metrics is not None  # the API counts every answer
    count_responses(app, deps.metrics.http_responses)
    add_health_routes(app, ready, deps.metrics.registry)
    mount_consumer_pages(app, settings)
    add_file_routes(app, settings, deps)
    add_conversation_routes(app, settings, deps)
    add_internal_routes(app, settings, deps)
    contract_openapi(app)
    return app


async def find_file(deps: DeliveryDeps, file_id: str, principal: Principal) -> StoredMessage:
    """The published file, if the principal may see it; 410 for a deleted one (to its account's users)."""
    async with deps.db.pool.connection() as conn:
        message = await find_message(conn, file_id)
        deletion = None if message is not None else await find_deletion(conn, file_id)
    published = access.Owner(message.account_id, message.consumer_id) if message is not None else None
    enforce(access.file_content(principal, published, deletion.account_id if deletion is not None else None))
    assert message is not None  # the rule refuses a file that is not published
    return message


def content_headers(message: StoredMessage) -> dict[str, str]:
    etag = '"' + hashlib.sha256(f"{message.file_id}:{message.size_bytes}".encode()).hexdigest()[:32] + '"'
    extension = EXTENSIONS.get(message.content_type, "bin")
    return {
        "ETag": etag,
        "Cache-Control": "private, max-age=300",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'inline; filename="{message.file_id}.{extension}"',
    }


async def open_final(deps: DeliveryDeps, message: StoredMessage, head: bool) -> bytes | None:
    """The final image's bytes, decrypted; for a HEAD only its header is checked (None): it answers
    like a GET (410 once forgotten or deleted, 500 for a forged header) without a whole decrypt.
    Every failure is the contract's error, counted by outcome."""
    metrics = deps.metrics
    assert metrics is not None  # the API counts every answer
    key = ObjectKey(message.account_id, message.consumer_id, message.conversation_id, message.file_id, "final")
    try:
        if head:
            await deps.files.check(key)
            return None
        data, _ = await deps.files.get(key)
        return data
    except (ConsumerForgotten, FileNotFoundError):
        metrics.downloads.labels("gone").inc()
        raise ApiError(410, "gone", "the file was deleted") from None
    except StorageUnavailable:
        metrics.downloads.labels("unavailable").inc()
        raise ApiError(503, "unavailable", "the file store did not answer; try again", {"Retry-After": "1"}) from None
    except UnknownMasterKey as e:
        metrics.downloads.labels("unavailable").inc()
        log.error(
            "cannot open the consumer key: %s (set FS_PREVIOUS_MASTER_KEYS after a rotation)", e, **file_ctx(message)
        )
        raise ApiError(503, "unavailable", "the file cannot be opened right now") from None
    except BlobIntegrityError:
        metrics.integrity_failures.inc()
        metrics.downloads.labels("integrity_error").inc()
        log.error("stored final image failed authentication: refusing to serve it", **file_ctx(message))
        raise ApiError(500, "integrity_error", "the stored file failed its integrity check") from None


async def serve_content(deps: DeliveryDeps, message: StoredMessage, request: Request) -> Response:
    """The download's answer once the principal may see the file: 304, a HEAD's headers, or the bytes."""
    metrics = deps.metrics
    assert metrics is not None  # the API counts every answer
    headers = content_headers(message)
    if etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
        metrics.downloads.labels("not_modified").inc()
        return Response(status_code=304, headers=headers)
    data = await open_final(deps, message, head=request.method == "HEAD")
    if data is None:
        metrics.downloads.labels("head").inc()
        return Response(
            status_code=200,
            media_type=message.content_type,
            headers={**headers, "Content-Length": str(message.size_bytes)},
        )
    metrics.downloads.labels("ok").inc()
    metrics.served.inc(len(data))
    return Response(data, media_type=message.content_type, headers=headers)


def add_file_routes(app: FastAPI, settings: Settings, deps: DeliveryDeps) -> None:
    metrics = deps.metrics
    assert metrics is not None  # the API counts every answer

    content, refusals = (
        DOWNLOAD_ROUTE,
        error_responses(
            (401, "unauthenticated"),
            (403, "forbidden"),
            (403, "invalid_link"),
            (404, "not_found"),
            (410, "gone"),
            (500, "integrity_error"),
            (503, "unavailable"),
        ),
    )

    # Two routes, not one api_route for both methods: OpenAPI needs an operationId of its own per method.
    @app.head(content, responses=refusals, operation_id="head_file_content")
    @app.get(content, responses=refusals)
    async def download(
        file_id: str, request: Request, exp: str | None = None, aud: str | None = None, sig: str | None = None
    ):
        """The final image bytes, decrypted. Bearer token or signed link (`exp`, `aud`, `sig`)."""
        started = now_ns()
        try:
            principal = _principal_from(request, settings, file_id, exp, aud, sig)
            lookup_id(file_id, "file_id", file_id=True)
            message = await find_file(deps, file_id, principal)
        except ApiError as e:
            metrics.downloads.labels(e.code).inc()
            with server_span(request.method, DOWNLOAD_ROUTE, request.headers, start_time=started) as span:
                answered(span, e.status)  # in the caller's trace: which file it was is not known
            raise
        # A later request of its own, in the file's trace: a child of the publish's span.
        with server_span(
            request.method,
            DOWNLOAD_ROUTE,
            request.headers,
            parent=(message.traceparent, message.tracestate),
            start_time=started,
        ) as span:
            describe(message)
            response = await serve_content(deps, message, request)
            answered(span, response.status_code)
            return response

    @app.post(
        "/v1/files/{file_id}/link",
        responses=error_responses(
            (401, "unauthenticated"), (403, "forbidden"), (404, "not_found"), (410, "gone"), (422, "invalid_request")
        ),
    )
    async def make_link(
        file_id: str,
        request: Request,
        ttl_seconds: str | None = Query(
            None, description=f"whole seconds, 1 to {MAX_LINK_TTL}; default {settings.link_ttl_seconds}"
        ),
    ):
        """A signed link to the content, usable without headers (e.g. `<img src>`); default 5 minutes, max 1 hour."""
        principal = _principal_from(request, settings, None, None, None, None)
        write_id(file_id, "file_id", file_id=True)
        ttl = query_int(ttl_seconds, "ttl_seconds", settings.link_ttl_seconds, 1, MAX_LINK_TTL)
        message = await find_file(deps, file_id, principal)
        query, expires = sign_link(
            settings.auth_secret, file_id, audience_of(message.account_id, principal.role, principal.sub), ttl
        )
        return {
            "url": f"/v1/files/{file_id}/content?{query}",
            "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
        }


def add_internal_routes(app: FastAPI, settings: Settings, deps: DeliveryDeps) -> None:
    @app.get(
        PUBLICATION_ROUTE, tags=["internal"], responses=error_responses((401, "unauthenticated"), (404, "not_found"))
    )
    async def publication(file_id: str, request: Request):
        """Whether delivery published the file: upload's re-drive asks before it sends a file again
        after the broker lost its log. A service token only (`aud` fileshare-internal)."""
        authenticate_service(request, settings.auth_secret)
        lookup_id(file_id, "file_id", file_id=True)
        async with deps.db.pool.connection() as conn:
            message = await find_message(conn, file_id)
        if message is None:
            raise ApiError(404, "not_found", "delivery has not published this file")
        return {"file_id": file_id, "published": True}


def add_conversation_routes(app: FastAPI, settings: Settings, deps: DeliveryDeps) -> None:
    @app.get(
        "/v1/conversations/{conversation_id}/messages",
        responses=error_responses((401, "unauthenticated"), (403, "forbidden"), (404, "not_found")),
    )
    async def transcript(conversation_id: str, request: Request):
        """The conversation's published file messages, oldest first."""
        principal = _principal_from(request, settings, None, None, None, None)
        lookup_id(conversation_id, "conversation_id")
        async with deps.db.pool.connection() as conn:
            items = await transcript_of(conn, conversation_id)
            conversation = await get_conversation(conn, conversation_id)
        owner = (
            access.Owner(conversation.account_id, conversation.consumer_id)
            if conversation
            else (access.Owner(items[0]["account_id"], items[0]["consumer_id"]) if items else None)
        )
        enforce(access.transcript(principal, owner))
        return {"conversation_id": conversation_id, "messages": items}
