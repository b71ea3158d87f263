"""Wiring of the upload service: FastAPI + an aiokafka producer + views of the topics it needs
+ the bot processor on file.share.requested (consumer group fileshare-upload-bots)."""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Header, Path, Query, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from shared import events as ev
from shared.durations import parse_duration
from shared.httpapi import ApiError, add_health_routes, authenticate, error_responses, install_error_handlers
from shared.kafka import Outgoing, StreamProcessor, TopicView, make_producer, send_all, start_with_retry
from shared.metrics import serve_metrics
from shared.runtime import build_storage, wait_for_dependencies
from shared.state import AccountSettingsState, ConversationState, FileStatusState, decode
from shared.topics import ACCOUNT_SETTINGS, CONVERSATION_EVENTS, FILE_SHARE_REQUESTED, FILE_TOPICS

from services.upload import bots
from services.upload.forms import MULTIPART_SLACK, BodyTooLarge, read_form_limited
from services.upload.handlers import (Replayed, StorageFailed, UploadDeps, UploadRequest, accept_file,
                                      already_accepted, file_id_for, settle_kept_originals)
from services.upload.metrics import UploadMetrics
from services.upload.pages import mount_agent_pages
from services.upload.policy import Refused, capabilities, check_conversation, check_may_send_at_all

log = logging.getLogger(__name__)

UPLOAD_ERRORS = ((401, "unauthenticated"), (403, "feature_disabled"), (403, "file_sharing_disabled"),
                 (403, "permission_denied"), (404, "conversation_not_found"), (409, "conversation_closed"),
                 (409, "channel_not_supported"), (413, "file_too_large"), (415, "unsupported_type"),
                 (422, "invalid_request"), (503, "unavailable"))
MULTIPART_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "exactly one jpeg, png or gif photo (type decided by content), at most 5 MB"},
        "caption": {"type": "string", "maxLength": 2000, "description": "optional; no control characters"},
        "source": {"type": "string", "enum": ["local", "widget"], "default": "local",
                   "description": "local file browser (agents, bots) or a custom widget"}}}}}}}
# Request parts that could fail validation are read as plain strings / raw bytes and validated
# in the handler AFTER authentication: an unauthenticated request is always 401, never 422
# (FastAPI would otherwise validate declared parameters and bodies before the handler runs).
# The OpenAPI page still documents their constraints (json_schema_extra / openapi_extra).
MAX_IDEMPOTENCY_KEY = 200
SOURCES = ("local", "widget")
SETTINGS_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/AccountSettingsDocument"}}}}}


def accepted_body(file_id: str) -> dict:
    return {"file_id": file_id, "status": "uploaded", "status_url": f"/v1/files/{file_id}"}


def build_app(settings) -> FastAPI:
    metrics = UploadMetrics()
    storage = build_storage(settings)
    accounts, conversations, statuses = AccountSettingsState(), ConversationState(), FileStatusState()
    status_view = TopicView(settings, list(FILE_TOPICS), lambda r: statuses.apply(decode(r.value)), "file-status")
    settings_view = TopicView(settings, [ACCOUNT_SETTINGS], lambda r: accounts.apply(decode(r.value)),
                              "account-settings")
    views = [
        settings_view,
        TopicView(settings, [CONVERSATION_EVENTS], lambda r: conversations.apply(decode(r.value)), "conversations"),
        status_view,
    ]
    deps = UploadDeps(settings=settings, files=storage.files, producer=None, accounts=accounts,
                      conversations=conversations, statuses=statuses, metrics=metrics,
                      log_caught_up=status_view.wait_caught_up)

    async def before_bot_partition(_tp) -> None:
        # Redelivered records are recognised by their file id: read every outcome published so far first.
        await status_view.wait_caught_up()

    bot_processor = StreamProcessor(settings, "upload-bots", bots.GROUP_ID, [FILE_SHARE_REQUESTED],
                                    lambda record: bots.handle_share_request(record, deps), bots.on_poison(deps),
                                    metrics, before_partition=before_bot_partition,
                                    on_produced=lambda outputs: bots.record_outcomes(outputs, deps))
    state: dict = {"ready": False, "bot_task": None}

    async def settle_forever() -> None:
        """Originals kept after a publish of unknown outcome (handlers.py) are decided once the log
        answers again; until then they are retried every second."""
        while True:
            await asyncio.sleep(1)
            if not deps.kept_originals:
                continue
            try:
                deleted = await settle_kept_originals(deps)
                log.info("settled kept originals: %d deleted", deleted)
            except Exception as e:
                log.warning("kept originals not settled yet (%s: %s); retrying", type(e).__name__, e)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        metrics_server = await serve_metrics(metrics, settings.metrics_port("upload"), ready, settings.bind_host)
        await wait_for_dependencies(settings, storage)
        deps.producer = make_producer(settings)  # bound to the server's event loop
        await start_with_retry(deps.producer, "upload producer")
        for view in views:
            await view.start()  # returns once caught up: settings and conversations known before serving
        await bot_processor.start()
        state["bot_task"] = asyncio.create_task(bot_processor.run(), name="upload-bots")
        settler = asyncio.create_task(settle_forever(), name="upload-settle-originals")
        state["ready"] = True
        log.info("upload ready")
        try:
            yield
        finally:
            state["ready"] = False
            settler.cancel()
            await asyncio.gather(settler, return_exceptions=True)
            if deps.kept_originals:
                log.warning("stopping with %d unsettled originals; the retention sweep removes them at expiry",
                            len(deps.kept_originals))
            bot_processor.stopping.set()
            if state["bot_task"] is not None:
                state["bot_task"].cancel()
                await asyncio.gather(state["bot_task"], return_exceptions=True)
            await bot_processor.stop()
            for view in views:
                await view.stop()
            await deps.producer.stop()
            metrics_server.close()

    async def ready() -> bool:
        task = state["bot_task"]
        return (state["ready"] and all(v.healthy for v in views) and bot_processor.running
                and task is not None and not task.done() and await storage.ready())

    app = FastAPI(title="fileshare upload", version="1", lifespan=lifespan,
                  description="Send photos to consumers in conversations; account settings; capabilities for the "
                              "agent UI; file status. Errors are always `{\"error\": {\"code\", \"message\"}}`. "
                              "Bots may also publish records on the Kafka topic `file.share.requested`.")
    install_error_handlers(app)
    add_health_routes(app, ready, metrics.exposition)
    mount_agent_pages(app, settings)
    app.state.deps = deps

    @app.post("/v1/accounts/{account_id}/conversations/{conversation_id}/files", status_code=202,
              responses={202: {"description": "accepted: `{file_id, status: uploaded, status_url}`"},
                         **error_responses(*UPLOAD_ERRORS)},
              openapi_extra=MULTIPART_BODY)
    async def upload_file(request: Request, account_id: str = Path(...), conversation_id: str = Path(...),
                          idempotency_key: str | None = Header(
                              None, description=f"at most {MAX_IDEMPOTENCY_KEY} characters",
                              json_schema_extra={"maxLength": MAX_IDEMPOTENCY_KEY})):
        """Send one photo to the conversation's consumer. Multipart: `file` (jpeg/png/gif by content,
        ≤ 5 MB), optional `caption` (≤ 2000 chars), optional `source` = `local` | `widget`.
        Answers 202 at once; follow `status_url`. A repeated `Idempotency-Key` from the same user
        returns the first answer and creates nothing new (also across restarts)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            body = await _upload(request, account_id, conversation_id, idempotency_key)
            outcome = "accepted"
            return body
        except ApiError as e:
            outcome = e.code
            metrics.record_refusal("http", e.code)
            raise
        finally:
            metrics.request_seconds.labels("accepted" if outcome == "accepted" else "refused").observe(
                time.perf_counter() - started)

    async def _upload(request: Request, account_id: str, conversation_id: str, idempotency_key: str | None) -> dict:
        principal = authenticate(request, settings.auth_secret)
        if idempotency_key is not None and len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise ApiError(422, "invalid_request", f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} characters")
        file_id = file_id_for(principal, idempotency_key)
        try:
            # A replay answers first (the original answer, even if a setting changed since), but only on
            # the caller's own account: another account's path is 403 in contract order, not a key clash.
            if idempotency_key and principal.account_id == account_id and \
                    already_accepted(deps, file_id, account_id, conversation_id):
                metrics.uploads.labels("http", "replayed").inc()
                return accepted_body(file_id)
            # Everything that does not need the body, before reading it.
            check_may_send_at_all(principal, account_id, accounts.get(account_id))
        except Refused as r:
            raise ApiError(r.status, r.code, r.message) from None
        try:
            form = await read_form_limited(request, settings.max_upload_bytes + MULTIPART_SLACK)
        except BodyTooLarge:
            # The conversation's state outranks the size (contract order) and needs no body; the
            # source-specific permission would need the unread `source` field, so it is not checked here.
            try:
                check_conversation(account_id, conversations.get(conversation_id), settings.file_channel_set)
            except Refused as r:
                raise ApiError(r.status, r.code, r.message) from None
            raise ApiError(413, "file_too_large", f"the file is larger than {settings.max_upload_bytes} bytes") from None
        except Exception as e:  # malformed multipart, or not multipart at all
            raise ApiError(422, "invalid_request", f"expected a multipart/form-data body: {e}") from None
        try:
            files = [v for v in form.getlist("file") if isinstance(v, UploadFile)]
            if len(files) != 1 or any(isinstance(v, UploadFile) for k, v in form.multi_items() if k != "file"):
                raise ApiError(422, "invalid_request", f"send exactly one file in the `file` field (got {len(files)})")
            source, caption = form.get("source") or "local", form.get("caption")
            if source not in SOURCES:
                raise ApiError(422, "invalid_request", "source must be 'local' or 'widget'")
            data = await files[0].read(settings.max_upload_bytes + 1)
        finally:
            await form.close()
        try:
            event = await accept_file(UploadRequest(principal, account_id, conversation_id, data, caption, source,
                                                    file_id), deps)
        except Refused as r:
            raise ApiError(r.status, r.code, r.message) from None
        except Replayed as r:  # a concurrent request with the same key won
            metrics.uploads.labels("http", "replayed").inc()
            return accepted_body(r.file_id)
        except StorageFailed as e:
            raise ApiError(503, "unavailable", f"{e}; retry with the same Idempotency-Key") from None
        metrics.record_accepted("http", event.size_bytes)
        return accepted_body(event.file_id)

    @app.get("/v1/files/{file_id}", responses=error_responses((401, "unauthenticated"), (404, "not_found")))
    async def file_status(file_id: str, request: Request):
        """The file's current stage: uploaded, sanitized, resized, published, rejected (with `reason`)
        or deleted. Visible to users of the file's account and to the conversation's consumer."""
        principal = authenticate(request, settings.auth_secret)
        status = statuses.get(file_id)
        if status is None or principal.account_id != status.account_id or (
                principal.role == "consumer" and principal.sub != status.consumer_id):
            raise ApiError(404, "not_found", "no such file")
        return status.public()

    @app.get("/v1/accounts/{account_id}/settings", response_model=ev.AccountSettingsDocument,
             responses=error_responses((401, "unauthenticated"), (403, "permission_denied")))
    async def get_settings(account_id: str, request: Request):
        """The account's settings document (defaults, all off, until one is stored)."""
        principal = authenticate(request, settings.auth_secret)
        if principal.account_id != account_id or principal.role == "consumer":
            raise ApiError(403, "permission_denied", "only users of the account can read its settings")
        return accounts.get(account_id).model_dump()

    @app.put("/v1/accounts/{account_id}/settings", response_model=ev.AccountSettingsDocument,
             responses=error_responses((401, "unauthenticated"), (403, "permission_denied"),
                                       (422, "invalid_request"), (503, "unavailable")),
             openapi_extra=SETTINGS_BODY)
    async def put_settings(account_id: str, request: Request):
        """Replace the settings document. `platform` (the account team) may set everything; the
        account `admin` all but `feature_enabled` (omit it, or send its current value). Published
        to the compacted topic `account.settings`, from which every instance builds its view."""
        principal = authenticate(request, settings.auth_secret)
        if principal.account_id != account_id or principal.role not in ("platform", "admin"):
            raise ApiError(403, "permission_denied", "only the account team or an account admin can change settings")
        try:
            document = ev.AccountSettingsDocument.model_validate_json(await request.body())
        except ValidationError as e:
            first = e.errors()[0] if e.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()))
            message = f"{where}: {first.get('msg', 'invalid settings document')}"
            raise ApiError(422, "invalid_request", message) from None
        current = accounts.get(account_id)
        if principal.role == "admin":
            if "feature_enabled" in document.model_fields_set and document.feature_enabled != current.feature_enabled:
                raise ApiError(403, "permission_denied", "only the account team can change feature_enabled")
            document = document.model_copy(update={"feature_enabled": current.feature_enabled})
        try:
            parse_duration(document.retention)
        except ValueError as e:
            raise ApiError(422, "invalid_request", f"retention: {e}") from None
        event = ev.AccountSettings(account_id=account_id, **document.model_dump())
        try:
            await send_all(deps.producer, [Outgoing(ACCOUNT_SETTINGS, account_id, event)])
        except Exception as e:
            raise ApiError(503, "unavailable", f"cannot publish the settings: {e}") from None
        # Read-your-writes on this instance: wait until its view has applied the log up to this record.
        # (Applying the document directly could be undone a moment later, when the view applies an
        # earlier PUT's record that was still on its way.)
        try:
            await settings_view.wait_caught_up(timeout=10)
        except Exception as e:  # stored all the same; the view applies it when it catches up
            log.warning("settings of %s stored; this instance's view is behind (%s)", account_id, e)
        return document.model_dump()

    @app.get("/v1/accounts/{account_id}/conversations/{conversation_id}/capabilities",
             responses=error_responses((401, "unauthenticated"), (422, "invalid_request")))
    async def get_capabilities(account_id: str, conversation_id: str, request: Request,
                               source: str | None = Query(
                                   None, description="`local` or `widget`: ask for one source; default: any the "
                                                     "caller's profile holds",
                                   json_schema_extra={"enum": list(SOURCES)})):
        """Whether the attachment icon is shown (`visible`: the caller's profile holds the permission and
        the account team enabled the feature) and clickable (`enabled`: an upload would pass every rule
        but the file's own); `reason` names the first failing rule with the upload's error code."""
        principal = authenticate(request, settings.auth_secret)
        if source is not None and source not in SOURCES:
            raise ApiError(422, "invalid_request", "source must be 'local' or 'widget'")
        caps = capabilities(principal, account_id, accounts.get(account_id), conversations.get(conversation_id),
                            settings.file_channel_set, source)
        return {"visible": caps.visible, "enabled": caps.enabled, "reason": caps.reason,
                "accepted_types": ["image/jpeg", "image/png", "image/gif"], "max_bytes": settings.max_upload_bytes}

    default_openapi = app.openapi

    def contract_openapi() -> dict:
        """FastAPI adds a `422 Validation Error` to every route with parameters; ours are plain strings
        validated in the handlers (after authentication), so only the contract's codes are listed."""
        if app.openapi_schema is None:
            spec = default_openapi()
            for operations in spec["paths"].values():
                for operation in operations.values():
                    if operation["responses"].get("422", {}).get("description") == "Validation Error":
                        del operation["responses"]["422"]
            for name in ("HTTPValidationError", "ValidationError"):
                spec.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema

    app.openapi = contract_openapi
    return app
