"""If storing or publishing fails the client gets 503 and nothing half-done remains.

Stops one server of the session stack (the S3 server, then the broker) and always restarts it,
waiting until every service is ready again, so the tests after this one find the stack whole.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from services.upload.handlers import file_id_for
from shared.contract.auth import Principal
from shared.contract.topics import FILE_UPLOADED
from shared.devstack.embedded import SERVICES
from tests.support import sample, scrape, unique, wait_until
from tests.uploadsupport import png_bytes

# With the broker down the producer gives up after its request timeout (30 s), then answers 503.
SLOW = 120


def stored_under(stack, account: str, consumer: str, conversation: str) -> list[Path]:
    """Objects under the conversation's prefix, storage layout {account}/{consumer}/{conversation}/{file}/{variant}."""
    root = Path(stack.data_dir) / "s3" / stack.env.get("FS_S3_BUCKET", "fileshare") / account / consumer / conversation
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def uploaded_events(client, conversation: str) -> list:
    return client.read_topic(FILE_UPLOADED, lambda e: e.conversation_id == conversation)


def post(client, account, conversation, key: str) -> httpx.Response:
    return httpx.post(
        f"{client.upload_url}/v1/accounts/{account}/conversations/{conversation}/files",
        files={"file": ("p.png", png_bytes(), "image/png")},
        headers={**client.auth(account, "agent", "agent-1"), "Idempotency-Key": key},
        timeout=SLOW,
    )


def restore(stack) -> None:
    """Restart whichever server is down, then wait until every service answers /readyz."""
    for name in ("s3", "kafka"):
        proc = stack.procs.get(name)
        if proc is None or proc.poll() is not None:
            stack.procs.pop(name, None)
            getattr(stack, f"start_{name}")()
    for name in SERVICES:
        stack.wait_ready(name, timeout=120)


def test_storage_or_broker_down_gives_503_and_leaves_nothing_half_done(stack, client):
    account, conversation, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account)
    client.open_conversation(account, conversation, consumer)

    # --- the object store is down: nothing can be stored, nothing is published ---
    before = scrape(client.env, "upload")
    stack.stop_process("s3")
    try:
        r = post(client, account, conversation, unique("key"))
        assert (r.status_code, r.json()["error"]["code"]) == (503, "unavailable"), r.text
        # Counted as the service's failure, apart from the clients' refusals (what the alerts watch).
        after = scrape(client.env, "upload")
        for name, labels in (
            ("fileshare_upload_request_seconds_count", {"outcome": "failed"}),
            ("fileshare_http_responses_total", {"code": "5xx"}),
        ):
            assert sample(after, name, **labels) == sample(before, name, **labels) + 1, name
        assert sample(after, "fileshare_dependency_errors_total", dependency="s3") > sample(
            before, "fileshare_dependency_errors_total", dependency="s3"
        )
    finally:
        restore(stack)
    assert uploaded_events(client, conversation) == []
    assert stored_under(stack, account, consumer, conversation) == []

    # --- the broker is down: the original was stored, but file.uploaded cannot be published ---
    key = unique("key")
    stack.stop_process("kafka")
    try:
        r = post(client, account, conversation, key)
        assert (r.status_code, r.json()["error"]["code"]) == (503, "unavailable"), r.text
    finally:
        restore(stack)
    # Nothing was accepted: no status, no event (the encrypted original may stay until the retry
    # below writes the same object again: docs/decisions.md, decision 14).
    assert (
        client.status(file_id_for(Principal("agent-1", account, "agent"), key), account)["error"]["code"] == "not_found"
    )
    assert uploaded_events(client, conversation) == []

    # --- the same Idempotency-Key once everything is back: accepted and published ---
    r = wait_until(
        lambda: (r := post(client, account, conversation, key)).status_code == 202 and r,
        timeout=60,
        what="the retried upload to be accepted",
    )
    file_id = r.json()["file_id"]
    assert client.wait_status(file_id, account, timeout=90)["status"] == "published"
    assert [e.file_id for e in uploaded_events(client, conversation)] == [file_id]
    assert {p.parent.name for p in stored_under(stack, account, consumer, conversation)} == {file_id}
