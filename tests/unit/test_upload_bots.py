"""Bot records on file.share.requested: the token first (as over HTTP), request ids that only the
bot itself can spend, and rejections that stay small. Refusals need no storage or broker."""
from __future__ import annotations

import json

from aiokafka import ConsumerRecord

from services.upload import bots
from services.upload.handlers import UploadDeps
from shared import events as ev
from shared.auth import mint_token
from shared.settings import Settings
from shared.state import AccountSettingsState, ConversationState, FileStatusState

SECRET = "unit-test-secret-unit-test-secret"


def deps() -> UploadDeps:
    conversations = ConversationState()
    conversations.apply(ev.ConversationEvent(event_type="conversation.opened", account_id="acct", conversation_id="conv",
                                             consumer_id="cons", channel="web", authenticated=True))
    # No settings published for the account: file sharing is off, so a valid bot is refused 403.
    return UploadDeps(settings=Settings(auth_secret=SECRET), files=None, producer=None,
                      accounts=AccountSettingsState(), conversations=conversations, statuses=FileStatusState())


def record(**fields) -> ConsumerRecord:
    body = {"event_id": "e", "event_type": "file.share.requested", "occurred_at": "2026-01-01T00:00:00Z",
            "schema_version": 1, "request_id": "req-1", "account_id": "acct", "conversation_id": "conv",
            "filename": "a.png", "caption": "hi", "content_b64": "iVBORw0KGgo=",
            "token": mint_token(SECRET, "acct", "bot", "bot-1"), **fields}
    body = {k: v for k, v in body.items() if v is not None}
    return ConsumerRecord("file.share.requested", 0, 0, 0, 0, b"conv", json.dumps(body).encode(), None, 4, 0, [])


async def outcome(d: UploadDeps, rec: ConsumerRecord) -> ev.FileRejected | None:
    outputs = await bots.handle_share_request(rec, d)
    bots.record_outcomes(outputs, d)  # what the processor does once the broker acknowledged them
    return outputs[0].event if outputs else None


async def test_a_record_without_token_is_unauthenticated_even_when_it_is_also_malformed():
    rejected = await outcome(deps(), record(token=None, content_b64=None))
    assert (rejected.reason, rejected.request_id) == ("unauthenticated", "req-1")
    rejected = await outcome(deps(), record(token="forged", filename=12))
    assert rejected.reason == "unauthenticated"


async def test_a_forged_record_cannot_spend_a_bots_request_id():
    d = deps()
    forged = await outcome(d, record(token="forged"))
    other_account_bot = await outcome(d, record(token=mint_token(SECRET, "other", "bot", "bot-1")))
    assert (forged.reason, other_account_bot.reason) == ("unauthenticated", "permission_denied")
    # The bot's own record with the same request id still gets its own answer.
    real = await outcome(d, record())
    assert real is not None and real.reason == "feature_disabled" and real.sender.id == "bot-1"
    assert len({forged.file_id, other_account_bot.file_id, real.file_id}) == 3


async def test_a_redelivered_record_gets_no_second_outcome_once_the_first_was_published():
    d = deps()
    first = await outcome(d, record())
    assert first.reason == "feature_disabled"
    assert await outcome(d, record()) is None


async def test_an_outcome_that_was_never_published_does_not_swallow_the_redelivery():
    d = deps()
    assert len(await bots.handle_share_request(record(), d)) == 1  # produce failed: not recorded
    assert (await outcome(d, record())).reason == "feature_disabled"


async def test_a_refused_caption_is_not_copied_into_the_rejection():
    d = deps()
    too_long = await outcome(d, record(caption="x" * 5000, request_id="req-long"))
    assert too_long.caption is None
    ok = await outcome(d, record(caption="line one\r\nline two", request_id="req-ok"))
    assert ok.caption == "line one\nline two"
