"""The status an agent sees (GET /v1/files/{id}) from the pipeline's events, in any reading order."""
from __future__ import annotations

import itertools

import pytest

from shared import events as ev
from shared.state import FileStatusState

FILE = dict(file_id="f-1", account_id="acct-1", conversation_id="conv-1", consumer_id="consumer-1",
            sender=ev.Sender(id="agent-1", role="agent"))
KEY = "acct-1/consumer-1/conv-1/f-1/"


def uploaded():
    return ev.FileUploaded(**FILE, object_key=KEY + "original", content_type="image/jpeg", size_bytes=4000)


def sanitized():
    return ev.FileSanitized(**FILE, object_key=KEY + "sanitized", content_type="image/jpeg", size_bytes=3000,
                            width=3000, height=2000)


def resized():
    return ev.FileResized(**FILE, object_key=KEY + "final", content_type="image/jpeg", size_bytes=2000,
                          width=800, height=533)


def published():
    return ev.MessagePublished(**FILE, message_id="m-1", content=ev.HostedFileContent(
        content_type="image/jpeg", width=800, height=533, size_bytes=2000, download_path="/v1/files/f-1/content"))


def rejected(reason: str, stage: str = "resizer"):
    return ev.FileRejected(**FILE, stage=stage, reason=reason, detail=f"{reason} detail")


def deleted(reason: str):
    return ev.FileDeleted(file_id="f-1", account_id="acct-1", conversation_id="conv-1", consumer_id="consumer-1",
                          reason=reason, request_id="req-1" if reason == "gdpr" else None)


def status_after(events) -> dict:
    state = FileStatusState()
    for e in events:
        state.apply(e)
    return state.get("f-1").public()


def every_order(events):
    return list(itertools.permutations(events))


def test_stages_advance_and_describe_the_final_image():
    s = status_after([uploaded(), sanitized(), resized(), published()])
    assert (s["status"], s["reason"], s["width"], s["height"], s["size_bytes"]) == ("published", None, 800, 533, 2000)


@pytest.mark.parametrize("order", every_order([uploaded(), sanitized(), resized(), published()]))
def test_a_later_stage_never_goes_back_whatever_the_reading_order(order):
    s = status_after(order)
    assert (s["status"], s["width"]) == ("published", 800)


@pytest.mark.parametrize("order", every_order([uploaded(), sanitized(), rejected("consumer_forgotten"),
                                               deleted("gdpr")]))
def test_a_file_caught_in_flight_by_a_forget_is_rejected_as_consumer_forgotten(order):
    s = status_after(order)
    assert (s["status"], s["reason"]) == ("rejected", "consumer_forgotten")


def test_the_forget_receipt_alone_already_tells_the_sender_why_the_file_never_arrived():
    s = status_after([uploaded(), sanitized(), deleted("gdpr")])
    assert (s["status"], s["reason"]) == ("rejected", "consumer_forgotten")


@pytest.mark.parametrize("order", every_order([uploaded(), resized(), published(), deleted("gdpr")]))
def test_a_delivered_file_erased_later_is_deleted(order):
    s = status_after(order)
    assert (s["status"], s["reason"]) == ("deleted", "gdpr")


def test_an_expired_file_is_deleted_with_its_reason():
    s = status_after([uploaded(), resized(), published(), deleted("expired")])
    assert (s["status"], s["reason"]) == ("deleted", "expired")


def test_a_rejected_file_keeps_its_reason_until_it_is_deleted():
    assert status_after([uploaded(), rejected("malware_detected", "sanitizer")])["reason"] == "malware_detected"
    s = status_after([uploaded(), rejected("malware_detected", "sanitizer"), deleted("gdpr")])
    assert (s["status"], s["reason"]) == ("deleted", "gdpr")


def conversation_event(kind: str, channel: str | None):
    fields = dict(event_type=kind, account_id="acct-1", conversation_id="conv-1", consumer_id="consumer-1")
    return ev.ConversationEvent(**fields, **({"channel": channel} if channel is not None else {}))


def test_a_conversation_whose_channel_was_never_named_cannot_receive_files():
    from services.upload.policy import Refused, check_conversation
    from shared.state import ConversationState
    state = ConversationState()
    state.apply(ev.parse_event({"event_type": "conversation.opened", "account_id": "acct-1",
                                "conversation_id": "conv-1", "consumer_id": "consumer-1"}))
    with pytest.raises(Refused) as refused:
        check_conversation("acct-1", state.get("conv-1"), frozenset({"web"}))
    assert refused.value.code == "channel_not_supported"


def test_a_close_that_repeats_only_the_ids_keeps_the_known_channel():
    from shared.state import ConversationState
    state = ConversationState()
    state.apply(conversation_event("conversation.opened", "web"))
    state.apply(conversation_event("conversation.closed", None))
    conversation = state.get("conv-1")
    assert (conversation.channel, conversation.open) == ("web", False)
