"""Bot records on file.share.requested: the same checks and answers as HTTP, as events.

Outcome of every record: file.uploaded, or file.rejected (stage `upload`) carrying the
record's request_id and the HTTP error code as reason. A record without a valid request_id
(an id not of the contract's shape, or no JSON object at all) has nobody to answer: it is dropped, logged
and counted like an invalid input event. An account or conversation id of the wrong shape
(or none) is `invalid_request`, as over HTTP; the rejection carries `unknown` in its place, as
it carries consumer_id `unknown` for a conversation the service does not know (or one of
another account): FileRejected requires them, and a hostile id must not travel on.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from services.upload import status as file_status
from services.upload.handlers import (
    Replayed,
    StorageFailed,
    UploadDeps,
    UploadRequest,
    accept_file,
    file_id_for_request,
)
from services.upload.policy import Refused, check_sender
from shared.adapters.kafka import Outgoing, TransientError
from shared.contract import events as ev
from shared.contract.auth import AuthError, Principal, verify_token
from shared.contract.ids import InvalidId, check_id, is_valid_id, shown
from shared.contract.inputs import drop_invalid
from shared.contract.topics import FILE_REJECTED
from shared.projections.account_settings import get_document
from shared.projections.conversations import get_conversation
from shared.rules import enforce, limits
from shared.rules.limits import max_b64_chars  # noqa: F401 - part of this module's interface (tests)
from shared.runtime.logs import file_ctx, log_ctx

log = logging.getLogger(__name__)
GROUP_ID = "fileshare-upload-bots"
UNKNOWN = "unknown"  # in a rejection, for an id the record lacks or holds in the wrong shape


class BotStorageUnavailable(TransientError):
    """Storage or the event log failed: retried, never turned into a rejection."""


@dataclass(frozen=True)
class RecordIds:
    """The ids a file.rejected for the record can carry."""

    request_id: str
    account_id: str
    conversation_id: str
    invalid: str | None = None  # why the record's account or conversation id could not be used


def record_ids(raw) -> RecordIds | None:
    """None without a valid request_id (no answer can name the record); an account or conversation
    id of the wrong shape becomes `unknown`, and `invalid` says why."""
    if not isinstance(raw, dict) or not is_valid_id(raw.get("request_id")):
        return None
    ids, problems = {}, []
    for name in ("account_id", "conversation_id"):
        try:
            ids[name] = check_id(raw.get(name), name)
        except InvalidId as e:
            ids[name] = UNKNOWN
            problems.append(str(e))
    return RecordIds(raw["request_id"], ids["account_id"], ids["conversation_id"], "; ".join(problems) or None)


def drop_unanswerable(record: ConsumerRecord, raw, deps: UploadDeps) -> list[Outgoing]:
    what = f"request_id {shown(raw.get('request_id'))}" if isinstance(raw, dict) else "no JSON object"
    drop_invalid(record, f"{what}: no file.rejected can name it", deps.metrics, "upload-bots")
    return []


async def rejection(
    deps: UploadDeps, ids: RecordIds, reason: str, detail: str, principal: Principal | None = None
) -> Outgoing:
    account_id, conversation_id = ids.account_id, ids.conversation_id
    async with deps.db.transaction() as conn:
        conversation = await get_conversation(conn, conversation_id)
    consumer_id = conversation.consumer_id if conversation and conversation.account_id == account_id else UNKNOWN
    sender = ev.Sender(id=principal.sub, role=principal.role) if principal else ev.Sender(id=UNKNOWN, role="bot")
    event = ev.FileRejected(
        file_id=bot_file_id(account_id, principal, ids.request_id),
        account_id=account_id,
        conversation_id=conversation_id,
        consumer_id=consumer_id,
        sender=sender,
        source="local",
        request_id=ids.request_id,
        stage="upload",
        reason=reason,
        detail=detail[:500],
    )
    log.info("bot request %s rejected: %s (%s)", ids.request_id, reason, detail, **file_ctx(event))
    if deps.metrics is not None:
        deps.metrics.record_refusal("topic", reason)
    return Outgoing(FILE_REJECTED, conversation_id, event)


def bot_file_id(account_id: str, principal: Principal | None, request_id: str) -> str:
    """The request_id is the bot's idempotency key, scoped like HTTP's to who sent it: a record
    without a valid token (or another bot's) can never take a request id of this bot."""
    sender = f"{principal.account_id}/{principal.role}/{principal.sub}" if principal else ""
    return file_id_for_request(account_id, sender, request_id)


def verify_record_token(token, deps: UploadDeps) -> Principal:
    """The record's token, verified like a bearer token: before anything else, as over HTTP."""
    if not isinstance(token, str) or not token:
        raise Refused(401, "unauthenticated", "the record has no token")
    try:
        return verify_token(deps.settings.auth_secret, token)
    except AuthError as e:
        raise Refused(401, "unauthenticated", str(e)) from None


def decode_content(content_b64: str, max_bytes: int) -> bytes:
    enforce(limits.base64_size(len(content_b64), max_bytes))
    try:
        # MIME encoders wrap lines: whitespace is dropped, anything else outside the alphabet is an error.
        data = base64.b64decode("".join(content_b64.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise Refused(422, "invalid_request", f"content_b64 is not base64: {e}") from None
    enforce(limits.file_size(len(data), max_bytes))
    return data


async def handle_share_request(record: ConsumerRecord, deps: UploadDeps) -> list[Outgoing]:
    try:
        raw = json.loads(record.value) if record.value is not None else None
    except (ValueError, UnicodeDecodeError):
        raw = None
    ids = record_ids(raw)
    if ids is None:
        return drop_unanswerable(record, raw, deps)
    request_id, account_id, conversation_id = ids.request_id, ids.account_id, ids.conversation_id
    refused: Refused | None
    try:
        principal = verify_record_token(raw.get("token"), deps)
    except Refused as r:
        principal, refused = None, r
    else:
        refused = None
    file_id = bot_file_id(account_id, principal, request_id)
    async with deps.db.transaction() as conn:
        handled = await file_status.load(conn, file_id) is not None
    if handled:
        log.info(
            "bot request %s already handled; redelivery ignored",
            request_id,
            **log_ctx(file_id=file_id, conversation_id=conversation_id),
        )
        return []
    if refused is not None:
        return [await rejection(deps, ids, refused.code, refused.message)]
    if ids.invalid:
        return [await rejection(deps, ids, "invalid_request", ids.invalid, principal)]
    try:
        request = ev.FileShareRequested.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        return [
            await rejection(
                deps, ids, "invalid_request", f"{'.'.join(map(str, first['loc']))}: {first['msg']}", principal
            )
        ]
    try:
        # Same functions as HTTP, in the same order: who/where first, then the file.
        async with deps.db.transaction() as conn:
            check_sender(
                principal,
                account_id,
                await get_document(conn, account_id),
                "local",
                await get_conversation(conn, conversation_id),
                deps.settings.file_channel_set,
                via="topic",
            )
        data = decode_content(request.content_b64, deps.settings.max_upload_bytes)
        event = await accept_file(
            UploadRequest(principal, account_id, conversation_id, data, request.caption, "local", file_id, request_id),
            deps,
            via="topic",
        )
    except Refused as r:
        return [await rejection(deps, ids, r.code, r.message, principal)]
    except Replayed:
        return []
    except StorageFailed as e:
        raise BotStorageUnavailable(str(e)) from e
    if deps.metrics is not None:
        deps.metrics.record_accepted("topic", event.size_bytes)
    return []  # accept_file published file.uploaded and waited for the broker's ack


async def record_outcomes(outputs: list[Outgoing], deps: UploadDeps) -> None:
    """Once the broker acknowledged a rejection, a redelivery of its record is recognised even
    before the status projection reads it back (never earlier: an outcome that was not published
    must not stop the record from being redone)."""
    async with deps.db.transaction() as conn:
        for out in outputs:
            await file_status.record_event(conn, out.event)


def on_poison(deps: UploadDeps):
    """An unexpected failure on a record: file.rejected (processing_failed) when ids are usable."""

    async def handle(record: ConsumerRecord, exc: BaseException) -> list[Outgoing]:
        try:
            raw = json.loads(record.value)
        except Exception:
            raw = None
        ids = record_ids(raw)
        if ids is None:
            return drop_unanswerable(record, raw, deps)
        try:
            principal = verify_record_token(raw.get("token"), deps)  # the same file id as the request's
        except Refused:
            principal = None
        return [await rejection(deps, ids, "processing_failed", f"{type(exc).__name__}: {exc}", principal)]

    return handle
