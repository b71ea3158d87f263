"""Bot records on file.share.requested: the token first (as over HTTP), request ids that only the
bot itself can spend, and rejections that stay small. Refusals need no storage or broker."""

from __future__ import annotations

import json

import pytest
from aiokafka import ConsumerRecord

from services.upload import bots
from services.upload.handlers import UploadDeps
from shared.contract import events as ev
from shared.contract.auth import mint_token
from shared.settings import Settings
from tests.dbsupport import RecordingPublisher, announce
from tests.support import unique

SECRET = "unit-test-secret-unit-test-secret"


@pytest.fixture
async def deps(open_database) -> UploadDeps:
    # No settings stored for the account: file sharing is off, so a valid bot is refused 403.
    d = UploadDeps(
        settings=Settings(auth_secret=SECRET),
        db=await open_database("upload"),
        files=None,
        publisher=RecordingPublisher(),
    )
    d.account, d.conversation = unique("acct"), unique("conv")
    await announce(d.db, d.account, d.conversation, "cons")
    return d


def record(d: UploadDeps, **fields) -> ConsumerRecord:
    body = {
        "event_id": "e",
        "event_type": "file.share.requested",
        "occurred_at": "2026-01-01T00:00:00Z",
        "schema_version": 1,
        "request_id": "req-1",
        "account_id": d.account,
        "conversation_id": d.conversation,
        "filename": "a.png",
        "caption": "hi",
        "content_b64": "iVBORw0KGgo=",
        "token": mint_token(SECRET, d.account, "bot", "bot-1"),
        **fields,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return ConsumerRecord("file.share.requested", 0, 0, 0, 0, b"conv", json.dumps(body).encode(), None, 4, 0, [])


async def outcome(d: UploadDeps, rec: ConsumerRecord) -> ev.FileRejected | None:
    outputs = await bots.handle_share_request(rec, d)
    await bots.record_outcomes(outputs, d)  # what the processor does once the broker acknowledged them
    return outputs[0].event if outputs else None


async def test_a_record_without_token_is_unauthenticated_even_when_it_is_also_malformed(deps):
    rejected = await outcome(deps, record(deps, token=None, content_b64=None))
    assert (rejected.reason, rejected.request_id) == ("unauthenticated", "req-1")
    rejected = await outcome(deps, record(deps, token="forged", filename=12, request_id="req-2"))
    assert rejected.reason == "unauthenticated"


async def test_a_forged_record_cannot_spend_a_bots_request_id(deps):
    d = deps
    forged = await outcome(d, record(d, token="forged"))
    other_account_bot = await outcome(d, record(d, token=mint_token(SECRET, "other", "bot", "bot-1")))
    assert (forged.reason, other_account_bot.reason) == ("unauthenticated", "permission_denied")
    # The bot's own record with the same request id still gets its own answer.
    real = await outcome(d, record(d))
    assert real is not None and real.reason == "feature_disabled" and real.sender.id == "bot-1"
    assert len({forged.file_id, other_account_bot.file_id, real.file_id}) == 3


async def test_a_redelivered_record_gets_no_second_outcome_once_the_first_was_published(deps):
    first = await outcome(deps, record(deps))
    assert first.reason == "feature_disabled"
    assert await outcome(deps, record(deps)) is None


async def test_an_outcome_that_was_never_published_does_not_swallow_the_redelivery(deps):
    assert len(await bots.handle_share_request(record(deps), deps)) == 1  # produce failed: not recorded
    assert (await outcome(deps, record(deps))).reason == "feature_disabled"


async def test_a_rejection_carries_no_caption_at_all(deps):
    rejected = await outcome(deps, record(deps, caption="x" * 5000, request_id="req-long"))
    assert "caption" not in rejected.model_dump() and rejected.caption_sealed is None
