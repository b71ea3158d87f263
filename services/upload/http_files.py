"""HTTP: send a photo (POST …/files) and follow it (GET /v1/files/{id})."""

from __future__ import annotations

import time

from fastapi import FastAPI, Header, Path, Request
from starlette.datastructures import UploadFile

from services.upload import status as file_status
from services.upload.forms import BodyTooLarge, MalformedForm, read_form_limited
from services.upload.handlers import (
    Replayed,
    StorageFailed,
    UploadDeps,
    UploadRequest,
    accept_file,
    already_accepted,
    file_id_for,
)
from services.upload.policy import check_conversation, check_may_send_at_all, check_source
from shared.contract.events import SOURCES
from shared.projections.account_settings import get_document
from shared.projections.conversations import get_conversation
from shared.rules import access, enforce, limits
from shared.runtime.httpapi import ApiError, authenticate, error_responses, lookup_id, write_id
from shared.runtime.tracing import answered, server_span

UPLOAD_ERRORS = (
    (401, "unauthenticated"),
    (403, "feature_disabled"),
    (403, "file_sharing_disabled"),
    (403, "permission_denied"),
    (403, "consumer_uploads_disabled"),
    (404, "conversation_not_found"),
    (409, "conversation_closed"),
    (409, "channel_not_supported"),
    (413, "file_too_large"),
    (415, "unsupported_type"),
    (422, "invalid_request"),
    (429, "rate_limited"),
    (503, "unavailable"),
)
MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "exactly one jpeg, png or gif photo (type decided by content), at most 5 MB",
                        },
                        "caption": {
                            "type": "string",
                            "maxLength": 2000,
                            "description": "optional; no control characters",
                        },
                        "source": {
                            "type": "string",
                            "enum": list(SOURCES),
                            "default": "local",
                            "description": "local file browser (agents, bots) or a custom widget; a consumer's "
                            "upload is `consumer` whatever is sent",
                        },
                    },
                }
            }
        },
    }
}
# Request parts that could fail validation are read as plain strings / raw bytes and validated
# in the handler AFTER authentication: an unauthenticated request is always 401, never 422
# (FastAPI would otherwise validate declared parameters and bodies before the handler runs).
MAX_IDEMPOTENCY_KEY = 200
UPLOAD_ROUTE = "/v1/accounts/{account_id}/conversations/{conversation_id}/files"


def accepted_body(file_id: str) -> dict:
    return {"file_id": file_id, "status": "uploaded", "status_url": f"/v1/files/{file_id}"}


async def receive_upload(
    request: Request, deps: UploadDeps, account_id: str, conversation_id: str, idempotency_key: str | None
) -> dict:
    """The upload's rules in contract order, then the body read within its limit and the file
    accepted; the 202 body, or the contract's error (ApiError)."""
    settings, metrics = deps.settings, deps.metrics
    assert metrics is not None  # the HTTP API counts every answer
    principal = authenticate(request, settings.auth_secret)
    write_id(account_id, "account_id")
    write_id(conversation_id, "conversation_id")
    if idempotency_key is not None and len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(422, "invalid_request", f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} characters")
    file_id = file_id_for(principal, idempotency_key)
    # A replay answers first (the original answer, even if a setting changed since), but only on
    # the caller's own account: another account's path is 403 in contract order, not a key clash.
    if (
        idempotency_key
        and principal.account_id == account_id
        and await already_accepted(deps, file_id, account_id, conversation_id)
    ):
        metrics.uploads.labels("http", "replayed").inc()
        return accepted_body(file_id)
    # Everything that does not need the body, before reading it.
    async with deps.db.transaction() as conn:
        check_may_send_at_all(principal, account_id, await get_document(conn, account_id))
        conversation = await get_conversation(conn, conversation_id)
    try:
        form = await read_form_limited(request, limits.multipart_cap(settings.max_upload_bytes))
    except BodyTooLarge:
        # The conversation's state outranks the size (contract order) and needs no body; the
        # source-specific permission would need the unread `source` field, so it is not checked here.
        check_conversation(account_id, conversation, settings.file_channel_set, principal)
        raise limits.too_large(settings.max_upload_bytes) from None
    except MalformedForm as e:  # malformed multipart, or not multipart at all
        raise ApiError(422, "invalid_request", f"expected a multipart/form-data body: {e}") from None
    try:
        files = [v for v in form.getlist("file") if isinstance(v, UploadFile)]
        if len(files) != 1 or any(isinstance(v, UploadFile) for k, v in form.multi_items() if k != "file"):
            raise ApiError(422, "invalid_request", f"send exactly one file in the `file` field (got {len(files)})")
        source, caption = check_source(form.get("source") or "local", principal), form.get("caption")
        caption = caption if isinstance(caption, str) else None  # (a file in any other field was refused above)
        data = await files[0].read(settings.max_upload_bytes + 1)
    finally:
        await form.close()
    try:
        event = await accept_file(
            UploadRequest(principal, account_id, conversation_id, data, caption, source, file_id), deps
        )
    except Replayed as r:  # a concurrent request with the same key won
        metrics.uploads.labels("http", "replayed").inc()
        return accepted_body(r.file_id)
    except StorageFailed as e:
        raise ApiError(503, "unavailable", f"{e}; retry with the same Idempotency-Key") from None
    metrics.record_accepted("http", event.size_bytes)
    return accepted_body(event.file_id)


def add_file_routes(router: FastAPI, deps: UploadDeps) -> None:
    settings, metrics = deps.settings, deps.metrics
    assert metrics is not None  # the HTTP API counts every answer

    @router.post(
        UPLOAD_ROUTE,
        status_code=202,
        responses={
            202: {"description": "accepted: `{file_id, status: uploaded, status_url}`"},
            **error_responses(*UPLOAD_ERRORS),
        },
        openapi_extra=MULTIPART_BODY,
    )
    async def upload_file(
        request: Request,
        account_id: str = Path(...),
        conversation_id: str = Path(...),
        idempotency_key: str | None = Header(
            None,
            description=f"at most {MAX_IDEMPOTENCY_KEY} characters",
            json_schema_extra={"maxLength": MAX_IDEMPOTENCY_KEY},
        ),
    ):
        """Send one photo to the conversation's consumer (with the consumer's own token, where the account
        has `consumer_uploads_enabled`: to the agents, source `consumer`). Multipart: `file` (jpeg/png/gif by content,
        ≤ 5 MB), optional `caption` (≤ 2000 chars), optional `source` = `local` | `widget`.
        Answers 202 at once; follow `status_url`. A repeated `Idempotency-Key` from the same user
        returns the first answer and creates nothing new (also across restarts and instances)."""
        started = time.perf_counter()
        outcome = "failed"  # a 5xx: ours to fix, not the client's (an alert, unlike a refusal)
        # The file's trace starts here (or continues the caller's traceparent): file.uploaded carries it.
        with server_span("POST", UPLOAD_ROUTE, request.headers) as span:
            try:
                body = await receive_upload(request, deps, account_id, conversation_id, idempotency_key)
                outcome = "accepted"
                answered(span, 202)
                return body
            except ApiError as e:
                outcome = "refused" if e.status < 500 else "failed"
                metrics.record_refusal("http", e.code)
                raise
            finally:
                metrics.request_seconds.labels(outcome).observe(time.perf_counter() - started)

    @router.get("/v1/files/{file_id}", responses=error_responses((401, "unauthenticated"), (404, "not_found")))
    async def get_status(file_id: str, request: Request):
        """The file's current stage: uploaded, sanitized, resized, published, rejected (with `reason`)
        or deleted. Visible to users of the file's account and to the conversation's consumer."""
        principal = authenticate(request, settings.auth_secret)
        lookup_id(file_id, "file_id", file_id=True)
        async with deps.db.pool.connection() as conn:
            status = await file_status.load(conn, file_id)
        enforce(access.file_status(principal, access.Owner(status.account_id, status.consumer_id) if status else None))
        assert status is not None  # the rule refuses an unknown file
        return status.public()
