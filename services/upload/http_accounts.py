"""HTTP: an account's settings (GET/PUT) and what the agent UI may show (capabilities)."""

from __future__ import annotations

import logging
import time

from aiokafka.structs import RecordMetadata
from fastapi import FastAPI, Query, Request
from pydantic import ValidationError

from services.upload.handlers import UploadDeps
from services.upload.policy import capabilities, check_source, sendable_types
from shared.adapters.kafka import Outgoing
from shared.contract import events as ev
from shared.contract.durations import parse_duration
from shared.contract.topics import ACCOUNT_SETTINGS
from shared.projections.account_settings import get_document, put_document, wait_applied
from shared.projections.conversations import get_conversation
from shared.rules import access, enforce
from shared.runtime.httpapi import ApiError, authenticate, error_responses, lookup_id, write_id

log = logging.getLogger(__name__)
SETTINGS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AccountSettingsDocument"}}},
    }
}


def parse_settings_document(body: bytes) -> ev.AccountSettingsDocument:
    try:
        document = ev.AccountSettingsDocument.model_validate_json(body)
    except ValidationError as e:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ApiError(422, "invalid_request", f"{where}: {first.get('msg', 'invalid settings document')}") from None
    try:
        parse_duration(document.retention)
    except ValueError as e:
        raise ApiError(422, "invalid_request", f"retention: {e}") from None
    return document


async def wait_until_applied(deps: UploadDeps, account_id: str, landed: RecordMetadata) -> None:
    """A photo sent once the PUT answered must be processed with the new settings: wait (after the
    commit, holding no lock) until the image stages' copies hold them, at most 2 s
    (APPLY_WAIT_SECONDS). A stage down or slow gets them when it catches up; the PUT still answers,
    and says so in the log."""
    started = time.perf_counter()
    lag = await wait_applied(deps.offsets, landed)
    waited = time.perf_counter() - started
    if deps.metrics is not None:
        deps.metrics.settings_apply_seconds.labels("timed_out" if lag.behind else "applied").observe(waited)
    if lag.behind:
        why = (
            f"their progress could not be read: {type(lag.cause).__name__}: {lag.cause}"
            if lag.cause
            else "down or behind?"
        )
        log.warning(
            "settings of account %s not yet applied by %s after %.1fs (%s): photos sent now may still be "
            "resized with the previous ones until it catches up",
            account_id,
            ", ".join(lag.behind),
            waited,
            why,
        )


def add_account_routes(router: FastAPI, deps: UploadDeps) -> None:
    settings = deps.settings

    @router.get(
        "/v1/accounts/{account_id}/settings",
        response_model=ev.AccountSettingsDocument,
        responses=error_responses((401, "unauthenticated"), (403, "permission_denied"), (404, "not_found")),
    )
    async def get_settings(account_id: str, request: Request):
        """The account's settings document (defaults, all off, until one is stored)."""
        principal = authenticate(request, settings.auth_secret)
        lookup_id(account_id, "account_id")
        enforce(access.read_settings(principal, account_id))
        async with deps.db.pool.connection() as conn:
            return (await get_document(conn, account_id)).model_dump()

    @router.put(
        "/v1/accounts/{account_id}/settings",
        response_model=ev.AccountSettingsDocument,
        responses=error_responses(
            (401, "unauthenticated"), (403, "permission_denied"), (422, "invalid_request"), (503, "unavailable")
        ),
        openapi_extra=SETTINGS_BODY,
    )
    async def put_settings(account_id: str, request: Request):
        """Replace the settings document. `platform` (the account team) may set everything; the
        account `admin` all but `feature_enabled` (omit it, or send its current value). Stored in the
        database, then published to the compacted topic `account.settings` for the other services;
        answered once the sanitizer and the resizer hold it (at most 2 s), so a photo sent after the
        answer is resized with the new settings."""
        principal = authenticate(request, settings.auth_secret)
        write_id(account_id, "account_id")
        enforce(access.write_settings(principal, account_id))
        document = parse_settings_document(await request.body())
        # The row lock orders concurrent PUTs (on any instance): the topic gets them in commit order,
        # and an admin's PUT can never write back a feature_enabled the account team changed meanwhile.
        async with deps.db.transaction() as conn:
            current = await get_document(conn, account_id, for_update=True)
            may_not_set_feature = access.set_feature_enabled(principal)
            if may_not_set_feature is not None:  # an admin: the flag stays the account team's
                if (
                    "feature_enabled" in document.model_fields_set
                    and document.feature_enabled != current.feature_enabled
                ):
                    raise may_not_set_feature
                document = document.model_copy(update={"feature_enabled": current.feature_enabled})
            written_at = await put_document(conn, account_id, document)
            event = ev.AccountSettings(account_id=account_id, occurred_at=written_at, **document.model_dump())
            try:
                [landed] = await deps.publisher.send([Outgoing(ACCOUNT_SETTINGS, account_id, event)])
            except Exception as e:
                raise ApiError(503, "unavailable", f"cannot publish the settings: {e}") from None
        if deps.offsets is not None:
            await wait_until_applied(deps, account_id, landed)
        return document.model_dump()

    add_capabilities_route(router, deps)


def add_capabilities_route(router: FastAPI, deps: UploadDeps) -> None:
    settings = deps.settings

    @router.get(
        "/v1/accounts/{account_id}/conversations/{conversation_id}/capabilities",
        responses=error_responses((401, "unauthenticated"), (404, "not_found"), (422, "invalid_request")),
    )
    async def get_capabilities(
        account_id: str,
        conversation_id: str,
        request: Request,
        source: str | None = Query(
            None,
            description="`local` or `widget`: ask for one source; default: any the caller's profile holds",
            json_schema_extra={"enum": list(ev.SOURCES)},
        ),
    ):
        """Whether the attachment icon is shown (`visible`: the caller's profile holds the permission and
        the account team enabled the feature) and clickable (`enabled`: an upload would pass every rule
        but the file's own); `reason` names the first failing rule with the upload's error code."""
        principal = authenticate(request, settings.auth_secret)
        lookup_id(account_id, "account_id")
        lookup_id(conversation_id, "conversation_id")
        enforce(access.read_capabilities(principal, account_id))
        if source is not None:
            check_source(source, principal)
        async with deps.db.pool.connection() as conn:
            account = await get_document(conn, account_id)
            caps = capabilities(
                principal,
                account_id,
                account,
                await get_conversation(conn, conversation_id),
                settings.file_channel_set,
                source,
            )
        return {
            "visible": caps.visible,
            "enabled": caps.enabled,
            "reason": caps.reason,
            "accepted_types": sendable_types(principal, account_id, account),
            "max_bytes": settings.max_upload_bytes,
        }
