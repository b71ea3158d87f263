"""Files leave on time, and a forgotten consumer is unreadable at once.

Against the session stack (Tansu, rclone, clamd, the five services; FS_RETENTION_SWEEP_SECONDS=1).
Tests that stop a service restart it in a finally.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
from PIL import Image

from shared.adapters.crypto import encrypt_blob
from shared.contract import events as ev
from shared.contract.topics import FILE_DELETED, FILE_REJECTED, FILE_UPLOADED, GDPR_FORGET, MESSAGE_PUBLISHED
from shared.runtime.wiring import build_storage
from shared.settings import Settings
from tests.support import metrics_url, unique, wait_until


def small_photo(seed: int = 0) -> bytes:
    img = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    img.putpixel((seed % 320, 0), (255, 0, 0))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


def send_photo(client, account: str, conversation: str, seed: int = 0) -> str:
    r = client.upload(account, conversation, small_photo(seed))
    assert r.status_code == 202, r.text
    return r.json()["file_id"]


def stack_settings(client) -> Settings:
    return Settings(**{k[3:].lower(): v for k, v in client.env.items() if k.startswith("FS_")})


def stored_objects_of(client, account: str, consumer: str) -> list[Path]:
    """Every object of the consumer anywhere in the object store's data folder (file blobs and keys)."""
    root = client.data_dir / "s3"
    marker = f"/{account}/{consumer}/"
    return [p for p in root.rglob("*") if p.is_file() and marker in "/" + p.relative_to(root).as_posix()]


def receipts(client, **match) -> list[ev.FileDeleted]:
    return client.read_topic(FILE_DELETED, lambda e: all(getattr(e, k) == v for k, v in match.items()))


def retention_metric(client, name: str, labels: str = "") -> float:
    text = httpx.get(metrics_url(client.env, "retention"), timeout=5).text
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def run_cli(client, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FS_")}
    env.update(client.env)
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result


FORGET_METRICS = [
    ("fileshare_files_deleted_total", '{reason="gdpr"}'),
    ("fileshare_freed_bytes_total", ""),
    ("fileshare_forget_seconds_count", ""),
    ("fileshare_forget_shred_seconds_count", ""),
]


def test_forget_erases_every_file_of_the_consumer_including_one_mid_pipeline(stack, client):
    account, consumer, neighbour = unique("acct"), unique("consumer"), unique("consumer")
    conv1, conv2, conv_neighbour = unique("conv"), unique("conv"), unique("conv")
    client.enable_account(account)
    client.open_conversation(account, conv1, consumer)
    client.open_conversation(account, conv2, consumer)
    client.open_conversation(account, conv_neighbour, neighbour)
    published = [
        send_photo(client, account, conv1, 1),
        send_photo(client, account, conv1, 2),
        send_photo(client, account, conv2, 3),
    ]
    neighbours_file = send_photo(client, account, conv_neighbour, 4)
    for file_id in [*published, neighbours_file]:
        assert client.wait_status(file_id, account)["status"] == "published"
    assert client.download(published[0], account).status_code == 200

    request = ev.GdprForget(request_id=unique("req"), account_id=account, consumer_id=consumer)
    before = {name: retention_metric(client, name, labels) for name, labels in FORGET_METRICS}
    stack.stop_process("resizer")  # deterministic "mid-pipeline": the 4th file stops after the sanitizer
    try:
        in_flight = send_photo(client, account, conv2, 5)
        assert client.wait_status(in_flight, account, ("sanitized", "rejected"))["status"] == "sanitized"
        client.publish(GDPR_FORGET, consumer, request)
        gdpr = wait_until(
            lambda: len(r := receipts(client, request_id=request.request_id)) >= 4 and r, what="four gdpr receipts"
        )
        # Unreadable: no key of the consumer is left, so no blob (or backup of one) can be decrypted.
        for file_id in published:
            assert client.download(file_id, account).status_code in (404, 410)
        assert stored_objects_of(client, account, consumer) == [], "blobs and keys are physically gone"
        rejections_handled = retention_metric(client, "fileshare_records_total", '{outcome="ok",topic="file.rejected"}')
    finally:
        stack.start_service("resizer")
        stack.wait_ready("resizer")

    assert sorted(r.file_id for r in gdpr) == sorted([*published, in_flight])
    assert {(r.reason, r.consumer_id, r.account_id) for r in gdpr} == {("gdpr", consumer, account)}

    # The in-flight file meets the forget at the resizer and is never published.
    rejected = wait_until(
        lambda: client.read_topic(FILE_REJECTED, lambda e: e.file_id == in_flight),
        what="the in-flight file to be rejected",
    )
    assert [(r.stage, r.reason) for r in rejected] == [("resizer", "consumer_forgotten")]
    assert client.read_topic(MESSAGE_PUBLISHED, lambda e: e.file_id == in_flight) == []
    status = client.status(in_flight, account)
    assert (status["status"], status["reason"]) == ("rejected", "consumer_forgotten"), status
    assert client.download(in_flight, account).status_code in (404, 410)
    for file_id in published:
        status = client.status(file_id, account)
        assert (status["status"], status["reason"]) == ("deleted", "gdpr"), status

    # Still exactly one receipt per file after the rejection went through retention too.
    wait_until(
        lambda: (
            retention_metric(client, "fileshare_records_total", '{outcome="ok",topic="file.rejected"}')
            > rejections_handled
        ),
        what="retention to handle the rejection",
    )
    assert sorted(r.file_id for r in receipts(client, consumer_id=consumer)) == sorted([*published, in_flight])
    assert stored_objects_of(client, account, consumer) == []

    # Another consumer of the same account is untouched.
    r = client.download(neighbours_file, account)
    assert r.status_code == 200 and r.content.startswith(b"\xff\xd8\xff")
    assert stored_objects_of(client, account, neighbour) != []
    after = {name: retention_metric(client, name, labels) for name, labels in FORGET_METRICS}
    assert after["fileshare_files_deleted_total"] - before["fileshare_files_deleted_total"] == 4
    assert after["fileshare_freed_bytes_total"] > before["fileshare_freed_bytes_total"]
    assert after["fileshare_forget_seconds_count"] > before["fileshare_forget_seconds_count"]
    assert after["fileshare_forget_shred_seconds_count"] > before["fileshare_forget_shred_seconds_count"]
    print(
        f"forget: shred latency sum={retention_metric(client, 'fileshare_forget_shred_seconds_sum')}s "
        f"count={retention_metric(client, 'fileshare_forget_shred_seconds_count')}, "
        f"complete sum={retention_metric(client, 'fileshare_forget_seconds_sum')}s"
    )


def test_repeated_forget_from_the_cli_does_nothing_new_and_still_answers(client):
    account, consumer, conversation = unique("acct"), unique("consumer"), unique("conv")
    client.enable_account(account)
    client.open_conversation(account, conversation, consumer)
    file_id = send_photo(client, account, conversation)
    assert client.wait_status(file_id, account)["status"] == "published"

    first = json.loads(run_cli(client, "forget", "--account", account, "--consumer", consumer).stdout)
    assert first["status"] == "published"
    wait_until(lambda: receipts(client, request_id=first["request_id"]), what="the receipt")
    answered = retention_metric(client, "fileshare_forget_requests_total", '{outcome="nothing_left"}')

    second = json.loads(run_cli(client, "forget", "--account", account, "--consumer", consumer).stdout)
    wait_until(
        lambda: retention_metric(client, "fileshare_forget_requests_total", '{outcome="nothing_left"}') > answered,
        what="retention to answer the repeated request",
    )
    assert receipts(client, request_id=second["request_id"]) == []
    assert [r.file_id for r in receipts(client, consumer_id=consumer)] == [file_id]
    log = (client.data_dir / "logs" / "retention.log").read_text()
    assert re.search(rf"forget request {second['request_id']} nothing_left: .*keys destroyed=0, files=0", log)


def test_an_old_forget_request_sent_again_does_not_erase_a_consumer_who_came_back(client):
    """The GDPR system resends request R after the consumer opened a new conversation and got a
    photo: R was carried out already and covers none of the new files; they stay readable."""
    account, consumer = unique("acct"), unique("consumer")
    old_conversation, new_conversation = unique("conv"), unique("conv")
    client.enable_account(account)
    client.open_conversation(account, old_conversation, consumer)
    old_file = send_photo(client, account, old_conversation)
    assert client.wait_status(old_file, account)["status"] == "published"
    request = ev.GdprForget(request_id=unique("req"), account_id=account, consumer_id=consumer)
    client.publish(GDPR_FORGET, consumer, request)
    wait_until(lambda: receipts(client, request_id=request.request_id), what="the receipt of the first request")

    client.open_conversation(account, new_conversation, consumer)
    new_file = send_photo(client, account, new_conversation, 7)
    assert client.wait_status(new_file, account)["status"] == "published"
    repeated = retention_metric(client, "fileshare_forget_requests_total", '{outcome="repeated"}')
    client.publish(GDPR_FORGET, consumer, request.model_copy(update={"event_id": ev.new_id()}))
    wait_until(
        lambda: retention_metric(client, "fileshare_forget_requests_total", '{outcome="repeated"}') > repeated,
        what="retention to recognise the repeated request",
    )
    assert client.download(new_file, account).status_code == 200
    assert [r.file_id for r in receipts(client, consumer_id=consumer)] == [old_file]


def test_late_write_of_an_in_flight_file_is_removed_and_a_new_conversation_gets_a_new_key(client):
    """An upload got the consumer key just before the forget and wrote its original after the forget's
    listing: the sanitizer rejects it (consumer_forgotten) and retention removes the leftover."""
    account, consumer, conversation = unique("acct"), unique("consumer"), unique("conv")
    client.enable_account(account)
    client.open_conversation(account, conversation, consumer)
    file_id = send_photo(client, account, conversation)
    assert client.wait_status(file_id, account)["status"] == "published"

    storage = build_storage(stack_settings(client))
    old_key_id, old_key = asyncio.run(storage.keys.get_or_create(account, consumer))  # the in-flight upload's key
    request = ev.GdprForget(request_id=unique("req"), account_id=account, consumer_id=consumer)
    client.publish(GDPR_FORGET, consumer, request)
    wait_until(lambda: receipts(client, request_id=request.request_id), what="the forget's receipt")

    late_id = unique("late")
    late_key = f"{account}/{consumer}/{conversation}/{late_id}/original"
    asyncio.run(storage.blobs.put(late_key, encrypt_blob(small_photo(9), late_key, old_key_id, old_key)))
    client.publish(
        FILE_UPLOADED,
        conversation,
        ev.FileUploaded(
            file_id=late_id,
            account_id=account,
            conversation_id=conversation,
            consumer_id=consumer,
            sender=ev.Sender(id="agent-1", role="agent"),
            object_key=late_key,
            content_type="image/jpeg",
            size_bytes=1000,
        ),
    )

    late_receipts = wait_until(lambda: receipts(client, file_id=late_id), what="a receipt for the leftover")
    assert [(r.reason, r.request_id) for r in late_receipts] == [("gdpr", request.request_id)]
    assert [r.reason for r in client.read_topic(FILE_REJECTED, lambda e: e.file_id == late_id)] == [
        "consumer_forgotten"
    ]
    assert client.read_topic(MESSAGE_PUBLISHED, lambda e: e.file_id == late_id) == []
    assert stored_objects_of(client, account, consumer) == []

    # The consumer comes back in a new conversation: a new key, a normal delivery.
    new_conversation = unique("conv")
    client.open_conversation(account, new_conversation, consumer)
    fresh = send_photo(client, account, new_conversation)
    assert client.wait_status(fresh, account)["status"] == "published"
    assert client.download(fresh, account).status_code == 200
    keys_now = [o.key.rsplit("/", 1)[1] for o in asyncio.run(storage.key_blobs.list(f"{account}/{consumer}/"))]
    assert keys_now and old_key_id not in keys_now


def test_expiry_follows_each_accounts_current_retention(client):
    short, long_ = unique("acct-short"), unique("acct-long")
    client.enable_account(short, retention="PT5S")
    client.enable_account(long_, retention="P13M")
    conv_short, conv_long = unique("conv"), unique("conv")
    client.open_conversation(short, conv_short, unique("consumer"))
    client.open_conversation(long_, conv_long, unique("consumer"))
    kept = send_photo(client, long_, conv_long, 1)  # older than the short-lived one
    brief = send_photo(client, short, conv_short, 2)
    assert client.wait_status(kept, long_)["status"] == "published"

    expired = wait_until(lambda: receipts(client, file_id=brief), what="the PT5S file's receipt")
    assert [(r.reason, r.request_id) for r in expired] == [("expired", None)]
    [uploaded] = client.read_topic(FILE_UPLOADED, lambda e: e.file_id == brief)
    assert (expired[0].occurred_at - uploaded.occurred_at).total_seconds() >= 5, "never before its retention ends"
    assert retention_metric(client, "fileshare_files_deleted_total", '{reason="expired"}') >= 1
    assert retention_metric(client, "fileshare_sweep_seconds_count") >= 1
    assert client.wait_status(brief, short, ("deleted",))["status"] == "deleted"
    assert client.download(brief, short).status_code in (404, 410)
    assert not [p for p in (client.data_dir / "s3").rglob("*") if p.is_file() and f"/{brief}/" in p.as_posix()]

    assert client.download(kept, long_).status_code == 200, "P13M keeps a file older than the expired one"
    assert receipts(client, file_id=kept) == []

    client.enable_account(long_, retention="PT5S")  # a shorter retention applies to existing files
    wait_until(lambda: receipts(client, file_id=kept), what="the existing file to expire after the change")
    assert client.download(kept, long_).status_code in (404, 410)
    assert len(receipts(client, file_id=brief)) == 1


def test_a_file_still_expires_when_retention_restarts_before_its_expiry(stack, client):
    account, conversation = unique("acct"), unique("conv")
    client.enable_account(account, retention="PT5S")
    client.open_conversation(account, conversation, unique("consumer"))
    stack.stop_process("retention")
    try:
        file_id = send_photo(client, account, conversation)
        assert client.wait_status(file_id, account)["status"] == "published"
    finally:
        stack.start_service("retention")
        stack.wait_ready("retention")
    deleted = wait_until(lambda: receipts(client, file_id=file_id), what="the receipt after the restart")
    assert [r.reason for r in deleted] == ["expired"]
    assert client.download(file_id, account).status_code in (404, 410)


def test_retention_status_cli_reports_files_per_account(client):
    account, conversation = unique("acct"), unique("conv")
    client.enable_account(account, retention="P13M")
    client.open_conversation(account, conversation, unique("consumer"))
    files = [send_photo(client, account, conversation, i) for i in range(2)]
    for file_id in files:
        assert client.wait_status(file_id, account)["status"] == "published"

    def both_indexed():  # retention's index follows the pipeline's events on its own (it may lag)
        status = json.loads(run_cli(client, "retention", "status").stdout)
        row = next((r for r in status["accounts"] if r["account_id"] == account), None)
        return row is not None and row["files"] == 2 and (status, row)

    status, row = wait_until(both_indexed, what="both files in retention's index")
    assert (row["files"], row["consumers"], row["retention"]) == (2, 1, "P13M")
    assert row["bytes"] > 0 and row["oldest_file_age_seconds"] >= 0 and not row["next_expiry_overdue"]
    assert row["next_expiry"][:4] in {
        str(int(status["generated_at"][:4]) + 1),
        str(int(status["generated_at"][:4]) + 2),
    }


def test_a_forget_request_with_unusable_ids_never_blocks_the_ones_behind_it(client):
    """Ids not of the contract's shape (none can name a stored file): the request is dropped, logged
    and counted, and the next request on the same partition is served."""
    account, consumer, conversation = unique("acct"), unique("consumer"), unique("conv")
    client.enable_account(account)
    client.open_conversation(account, conversation, consumer)
    file_id = send_photo(client, account, conversation)
    assert client.wait_status(file_id, account)["status"] == "published"
    invalid_before = retention_metric(client, "fileshare_invalid_events_total", '{topic="gdpr.forget"}')

    bad = ev.GdprForget.model_construct(request_id=unique("req"), account_id=account, consumer_id="../" + consumer)
    good = ev.GdprForget(request_id=unique("req"), account_id=account, consumer_id=consumer)
    client.publish(GDPR_FORGET, consumer, bad)  # same key: the same partition, the good one behind it
    client.publish(GDPR_FORGET, consumer, good)

    erased = wait_until(lambda: receipts(client, request_id=good.request_id), what="the valid request's receipt")
    assert [r.file_id for r in erased] == [file_id]
    assert retention_metric(client, "fileshare_invalid_events_total", '{topic="gdpr.forget"}') == invalid_before + 1
    assert receipts(client, request_id=bad.request_id) == []


def test_a_newline_in_a_forget_request_id_cannot_forge_a_line_of_the_erasure_log(client):
    """The retention log is the audit of erasure: a request_id with a newline (not an id: dropped) stays
    on its own line, escaped."""
    account, consumer = unique("acct"), unique("consumer")
    marker = unique("req")
    request_id = f"{marker}\nFORGED forget request {marker} done: consumer {account}/everyone, files=0"
    client.publish(
        GDPR_FORGET,
        consumer,
        ev.GdprForget.model_construct(request_id=request_id, account_id=account, consumer_id=consumer),
    )
    log_path = client.data_dir / "logs" / "retention.log"
    wait_until(lambda: f"{marker}\\nFORGED" in log_path.read_text(), what="retention to log the request")
    assert not [line for line in log_path.read_text().splitlines() if line.startswith("FORGED")]
