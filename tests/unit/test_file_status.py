"""The status an agent sees (GET /v1/files/{id}) from the pipeline's events, in any reading order."""

from __future__ import annotations

import itertools

import pytest

from services.upload.status import STAGE_OF_EVENT, FileStatus
from shared.contract import events as ev

FILE = dict(
    file_id="f-1",
    account_id="acct-1",
    conversation_id="conv-1",
    consumer_id="consumer-1",
    sender=ev.Sender(id="agent-1", role="agent"),
)
KEY = "acct-1/consumer-1/conv-1/f-1/"


def uploaded():
    return ev.FileUploaded(**FILE, object_key=KEY + "original", content_type="image/jpeg", size_bytes=4000)


def sanitized():
    return ev.FileSanitized(
        **FILE, object_key=KEY + "sanitized", content_type="image/jpeg", size_bytes=3000, width=3000, height=2000
    )


def resized():
    return ev.FileResized(
        **FILE, object_key=KEY + "final", content_type="image/jpeg", size_bytes=2000, width=800, height=533
    )


def published():
    return ev.MessagePublished(
        **FILE,
        message_id="m-1",
        content=ev.HostedFileContent(
            content_type="image/jpeg", width=800, height=533, size_bytes=2000, download_path="/v1/files/f-1/content"
        ),
    )


def rejected(reason: str, stage: str = "resizer"):
    return ev.FileRejected(**FILE, stage=stage, reason=reason, detail=f"{reason} detail")


def deleted(reason: str):
    return ev.FileDeleted(
        file_id="f-1",
        account_id="acct-1",
        conversation_id="conv-1",
        consumer_id="consumer-1",
        reason=reason,
        request_id="req-1" if reason == "gdpr" else None,
    )


def folded(events) -> FileStatus:
    status = FileStatus(file_id="f-1", account_id="acct-1", status=STAGE_OF_EVENT[events[0].event_type])
    for e in events:
        status.apply(e)
    return status


def status_after(events) -> dict:
    return folded(events).public()


def every_order(events):
    return list(itertools.permutations(events))


def test_stages_advance_and_describe_the_final_image():
    s = status_after([uploaded(), sanitized(), resized(), published()])
    assert (s["status"], s["reason"], s["width"], s["height"], s["size_bytes"]) == ("published", None, 800, 533, 2000)


@pytest.mark.parametrize("order", every_order([uploaded(), sanitized(), resized(), published()]))
def test_a_later_stage_never_goes_back_whatever_the_reading_order(order):
    s = status_after(order)
    assert (s["status"], s["width"]) == ("published", 800)


@pytest.mark.parametrize(
    "order", every_order([uploaded(), sanitized(), rejected("consumer_forgotten"), deleted("gdpr")])
)
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


@pytest.mark.parametrize("order", every_order([uploaded(), sanitized(), published(), deleted("gdpr")]))
def test_a_deleted_file_keeps_only_its_receipt_whatever_comes_later(order):
    status = folded([*order, rejected("consumer_forgotten"), resized()])
    assert status.public() == {"file_id": "f-1", "status": "deleted", "reason": "gdpr"}
    kept = {name for name, value in vars(status).items() if value is not None}
    assert kept <= {
        "file_id",
        "account_id",
        "status",
        "reason",
        "deletion",
        "updated_at",
        "history",
        "rejection_reason",
    }


def test_an_unfinished_file_remembers_its_furthest_stage_event_for_re_drive():
    stage_event = sanitized()
    status = folded([stage_event, uploaded()])  # read out of order
    assert ev.parse_event(status.pending_event) == stage_event  # emitted again exactly as it was
    status.apply(resized())
    assert status.pending_event["event_type"] == "file.resized"
    for finished in (published(), rejected("corrupt_image")):
        assert folded([uploaded(), finished]).pending_event is None
