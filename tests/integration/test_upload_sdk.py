"""The Python bot SDK and the example bot against the running stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.contract.topics import MESSAGE_PUBLISHED
from shared.sdk import FileRejected, FileSharingClient, FileSharingError, publish_file_request
from tests.support import unique, wait_until
from tests.uploadsupport import bot_outcomes, png_bytes

ROOT = Path(__file__).resolve().parents[2]


def bot_account(client):
    account, conversation, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account, permissions={"bot": ["send_files_local"]})
    client.open_conversation(account, conversation, consumer, role="bot")
    return account, conversation, consumer


def test_sdk_sends_over_http_and_kafka(client, tmp_path):
    account, conversation, consumer = bot_account(client)
    token = client.token(account, "bot", "bot-1")
    photo = tmp_path / "store-map.png"
    photo.write_bytes(png_bytes(120, 90))
    with FileSharingClient(client.upload_url, token) as sdk:
        status = sdk.send_file(account, conversation, photo, caption="Our store map")
        assert (status["status"], status["caption"], status["width"], status["height"]) == (
            "published",
            "Our store map",
            120,
            90,
        )
        accepted = sdk.send_file(account, conversation, png_bytes(), wait=False)
        assert accepted["status"] == "uploaded" and accepted["status_url"] == f"/v1/files/{accepted['file_id']}"
        with pytest.raises(FileRejected) as rejected:  # passes the door, fails the sanitizer
            sdk.send_file(account, conversation, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
        assert rejected.value.code == "corrupt_image"
        closed = unique("conv")
        client.conversation(account, closed, consumer)
        client.conversation(account, closed, consumer, kind="conversation.closed")
        wait_until(lambda: client.capabilities(account, closed, "bot").get("reason") == "conversation_closed")
        with pytest.raises(FileSharingError) as refused:
            sdk.send_file(account, closed, png_bytes())
        assert (refused.value.status, refused.value.code) == (409, "conversation_closed")
    with pytest.raises(FileSharingError) as unauthenticated:
        FileSharingClient(client.upload_url, "not-a-token").send_file(account, conversation, png_bytes())
    assert unauthenticated.value.code == "unauthenticated"

    request_id = publish_file_request(
        client.env["FS_KAFKA_BOOTSTRAP"], token, account, conversation, png_bytes(), caption="over Kafka"
    )
    (outcome,) = bot_outcomes(client, {request_id})[request_id]
    assert outcome.event_type == "file.uploaded" and client.status(outcome.file_id, account)["caption"] == "over Kafka"


def test_example_bot_answers_a_new_conversation_with_a_photo(client, stack):
    account, _, consumer = bot_account(client)
    bot = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "file_sharing_bot.py"),
            "--account",
            account,
            "--token",
            client.token(account, "bot", "welcome-bot"),
            "--upload-url",
            client.upload_url,
            "--kafka",
            client.env["FS_KAFKA_BOOTSTRAP"],
            "--group",
            unique("example-bot"),
            "--from-beginning",
            "--caption",
            "Welcome!",
        ],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        conversation = unique("conv")
        client.conversation(account, conversation, consumer)
        messages = wait_until(
            lambda: client.read_topic(MESSAGE_PUBLISHED, lambda e: e.conversation_id == conversation),
            timeout=90,
            interval=0.5,
            what="the example bot's photo",
        )
        assert messages[0].content.caption == "Welcome!" and messages[0].sender.role == "bot"
    finally:
        bot.terminate()
        try:
            bot.wait(10)
        except subprocess.TimeoutExpired:
            bot.kill()
            bot.wait()
