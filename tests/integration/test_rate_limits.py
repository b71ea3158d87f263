"""Upload rate limits: per sender and conversation, and per account, over any 60 s, counted in the
database so that they hold across upload instances; 429 rate_limited with Retry-After over HTTP,
file.rejected rate_limited for a bot record."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.contract.topics import FILE_SHARE_REQUESTED, FILE_UPLOADED
from shared.devstack.embedded import free_port, free_port_block
from shared.settings import Settings
from tests.support import Client, sample, scrape, unique, wait_until
from tests.uploadsupport import bot_outcomes, png_bytes, publish_many, share_request

DEFAULT_PER_SENDER = Settings.model_fields["uploads_per_minute"].default


def ready(client: Client) -> tuple[str, list[str]]:
    account = unique("acct")
    client.enable_account(account)
    conversations = [unique("conv") for _ in range(3)]
    for conversation in conversations:
        client.open_conversation(account, conversation, unique("consumer"))
    return account, conversations


def photo(n: int) -> bytes:
    return png_bytes(20 + n % 50, 10 + n // 50)  # a different file each time


def assert_rate_limited(answer) -> int:
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["code"] == "rate_limited"
    retry_after = int(answer.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    return retry_after


def test_a_bot_is_limited_per_conversation_not_stopped(client):
    """A bot over the limit in one conversation gets file.rejected rate_limited for the extra record,
    and its records into another conversation are accepted."""
    account, (busy, other, _) = ready(client)
    bot = client.token(account, "bot", "bot-1")
    flood = [share_request(bot, account, busy, photo(n)) for n in range(DEFAULT_PER_SENDER + 1)]
    elsewhere = share_request(bot, account, other, photo(999))
    publish_many(client, [(FILE_SHARE_REQUESTED, r.conversation_id, r) for r in [*flood, elsewhere]])
    outcomes = bot_outcomes(client, {r.request_id for r in [*flood, elsewhere]}, timeout=120)
    reasons = sorted(str(getattr(e, "reason", None)) for r in flood for e in outcomes[r.request_id])
    assert reasons == ["None"] * DEFAULT_PER_SENDER + ["rate_limited"]
    assert [e.event_type for e in outcomes[elsewhere.request_id]] == ["file.uploaded"]


@pytest.fixture(scope="module")
def strict_upload(stack) -> Client:
    """A second upload instance on the same database with small limits (3 per sender and
    conversation, 5 per account): what the first instance accepted counts on this one too."""
    env = {
        "FS_UPLOAD_PORT": str(free_port()),
        "FS_METRICS_PORT_BASE": str(free_port_block(5)),
        "FS_UPLOADS_PER_MINUTE": "3",
        "FS_ACCOUNT_UPLOADS_PER_MINUTE": "5",
    }
    stack.start_service("upload", env, instance="strict")
    stack.wait_ready("upload-strict", timeout=120)
    yield Client(env={**stack.env, **env}, data_dir=Path(stack.data_dir))
    stack.stop_process("upload-strict")


def test_a_sender_over_the_limit_gets_429_with_retry_after_across_instances(client, strict_upload):
    account, (conversation, other, _) = ready(client)
    refused_before = sample(
        scrape(strict_upload.env, "upload"), "fileshare_uploads_total", via="http", outcome="rate_limited"
    )
    for n in range(2):  # on the first instance
        assert client.upload(account, conversation, photo(n)).status_code == 202
    accepted = strict_upload.upload(account, conversation, photo(2), headers={"Idempotency-Key": "third"})
    assert accepted.status_code == 202, accepted.text
    assert_rate_limited(strict_upload.upload(account, conversation, photo(3)))
    # The same file sent again (a client's retry) is the first answer, not a fourth upload.
    replay = strict_upload.upload(account, conversation, photo(2), headers={"Idempotency-Key": "third"})
    assert (replay.status_code, replay.json()["file_id"]) == (202, accepted.json()["file_id"])
    # Another sender in that conversation, and the same sender elsewhere, still send.
    assert strict_upload.upload(account, conversation, photo(4), sub="agent-2").status_code == 202
    assert strict_upload.upload(account, other, photo(5)).status_code == 202
    # The refused upload left nothing behind, and the operator sees it counted.
    wait_until(
        lambda: len(client.read_topic(FILE_UPLOADED, lambda e: e.conversation_id == conversation)) >= 4,
        what="the accepted uploads on file.uploaded",
    )
    assert len(client.read_topic(FILE_UPLOADED, lambda e: e.conversation_id == conversation)) == 4
    assert (
        sample(scrape(strict_upload.env, "upload"), "fileshare_uploads_total", via="http", outcome="rate_limited")
        == refused_before + 1
    )


def test_an_account_over_its_limit_gets_429_in_every_conversation(client, strict_upload):
    account, conversations = ready(client)
    senders = [f"agent-{n}" for n in range(5)]  # each under its own limit
    for n, sub in enumerate(senders):
        answer = strict_upload.upload(account, conversations[n % 3], photo(n), sub=sub)
        assert answer.status_code == 202, answer.text
    for conversation in conversations:
        assert_rate_limited(strict_upload.upload(account, conversation, photo(9), sub="agent-new"))
    # Another account is not affected.
    elsewhere, (conversation, *_) = ready(client)
    assert strict_upload.upload(elsewhere, conversation, photo(10)).status_code == 202


def test_a_consumer_is_limited_per_conversation_like_any_sender(client, strict_upload):
    account, consumer, conversation = unique("acct"), unique("consumer"), unique("conv")
    client.enable_account(account, consumer_uploads_enabled=True)
    client.open_conversation(account, conversation, consumer)
    for n, instance in enumerate((client, strict_upload, client)):
        answer = instance.upload(account, conversation, photo(n), role="consumer", sub=consumer)
        assert answer.status_code == 202, answer.text
    assert_rate_limited(strict_upload.upload(account, conversation, photo(3), role="consumer", sub=consumer))
    # The agent answering in that conversation is a sender of its own.
    assert strict_upload.upload(account, conversation, photo(4)).status_code == 202
