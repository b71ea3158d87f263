"""A restarted upload service knows every setting, conversation state and
Idempotency-Key published before (the topics are its only store of truth)."""

from __future__ import annotations

from shared.contract.topics import FILE_SHARE_REQUESTED, FILE_UPLOADED
from tests.support import conversation_record, unique
from tests.uploadsupport import bot_outcomes, png_bytes, publish_many, share_request


def code(r):
    return r.status_code, (r.json().get("error") or {}).get("code")


def test_restarted_upload_service_enforces_what_was_published_before(client, stack):
    account, disabled_account, consumer = unique("acct"), unique("acct"), unique("consumer")
    conv_open, conv_closed, conv_sms, conv_closed_while_down = (unique("conv") for _ in range(4))
    client.enable_account(
        account,
        permissions={"agent": ["send_files_local"], "bot": ["send_files_local"]},
        max_image_dimension=640,
        retention="P30D",
    )
    client.enable_account(disabled_account, feature_enabled=False)
    publish_many(
        client,
        [
            conversation_record(account, conv_open, consumer, "conversation.opened"),
            conversation_record(account, conv_closed, consumer, "conversation.opened"),
            conversation_record(account, conv_closed, consumer, "conversation.closed"),
            conversation_record(account, conv_sms, consumer, "conversation.opened", channel="sms"),
            conversation_record(account, conv_closed_while_down, consumer, "conversation.opened"),
        ],
    )
    client.open_conversation(account, conv_open, consumer)  # waits until the service knows it
    key = {"Idempotency-Key": unique("key")}
    first = client.upload(account, conv_open, png_bytes(), headers=key)
    assert first.status_code == 202, first.text
    file_id = first.json()["file_id"]

    stack.stop_process("upload")
    try:
        # Published while the service is down: known after the restart too.
        publish_many(client, [conversation_record(account, conv_closed_while_down, consumer, "conversation.closed")])
        stack.start_service("upload")
        stack.wait_ready("upload")

        settings = client.http.get(
            f"{client.upload_url}/v1/accounts/{account}/settings", headers=client.auth(account, "admin", "admin-1")
        ).json()
        assert (settings["feature_enabled"], settings["max_image_dimension"], settings["retention"]) == (
            True,
            640,
            "P30D",
        )
        assert code(client.upload(account, conv_closed, png_bytes())) == (409, "conversation_closed")
        assert code(client.upload(account, conv_closed_while_down, png_bytes())) == (409, "conversation_closed")
        assert code(client.upload(account, conv_sms, png_bytes())) == (409, "channel_not_supported")
        assert code(client.upload(account, conv_open, png_bytes(), role="agent_manager")) == (403, "permission_denied")
        assert code(client.upload(disabled_account, conv_open, png_bytes())) == (403, "feature_disabled")
        # The same Idempotency-Key: the first answer, nothing new.
        again = client.upload(account, conv_open, png_bytes(), headers=key)
        assert again.status_code == 202 and again.json() == first.json()
        assert len(client.read_topic(FILE_UPLOADED, lambda e: e.file_id == file_id)) == 1
        # Bots over the topic are served again (the consumer group rejoined).
        request = share_request(client.token(account, "bot", "bot-1"), account, conv_closed, png_bytes())
        publish_many(client, [(FILE_SHARE_REQUESTED, conv_closed, request)])
        (outcome,) = bot_outcomes(client, {request.request_id})[request.request_id]
        assert (outcome.event_type, outcome.reason) == ("file.rejected", "conversation_closed")
        assert client.upload(account, conv_open, png_bytes()).status_code == 202
    finally:
        proc = stack.procs.get("upload")
        if proc is None or proc.poll() is not None:
            stack.start_service("upload")
        stack.wait_ready("upload")
