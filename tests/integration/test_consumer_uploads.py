"""A consumer sends a photo to the agents of their own conversation, on the session stack.

With `consumer_uploads_enabled` the conversation's consumer uploads with their own token; the
file goes through the same scan, sanitizing and resizing as an agent's, reaches the platform as
a message from the consumer, shows in the agent's transcript, and is erased by a forget of the
consumer like the files agents sent them.
"""

from __future__ import annotations

import asyncio
import io

import httpx
from PIL import Image

from shared.contract.topics import FILE_DELETED, MESSAGE_PUBLISHED
from tests.integration.test_privacy import RECEIPTS, rows_mentioning
from tests.integration.test_retention import small_photo, stored_objects_of
from tests.integration.test_upload_matrix import EVENTS, KNOWN_REASON, gather_limited
from tests.integration.test_walking_skeleton import camera_photo
from tests.support import conversation_record, unique, wait_until
from tests.upload_matrix import CHANNELS, consumer_cells, expected_for_consumer
from tests.uploadsupport import png_bytes, publish_many


def consumer_account(client, **overrides) -> str:
    account = unique("acct")
    client.enable_account(account, **{"consumer_uploads_enabled": True, **overrides})
    return account


def open_for(client, account: str) -> tuple[str, str]:
    conversation, consumer = unique("conv"), unique("consumer")
    client.open_conversation(account, conversation, consumer)
    return conversation, consumer


def consumer_upload(client, account: str, conversation: str, consumer: str, data: bytes | None = None, **kw):
    return client.upload(account, conversation, data or small_photo(), role="consumer", sub=consumer, **kw)


def error_code(r) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def test_with_the_setting_off_a_consumer_is_told_consumer_uploads_disabled(client):
    account = unique("acct")
    client.enable_account(account)  # feature and file sharing on, consumer uploads left at the default
    conversation, consumer = open_for(client, account)
    assert error_code(consumer_upload(client, account, conversation, consumer)) == (403, "consumer_uploads_disabled")
    caps = client.capabilities(account, conversation, role="consumer", sub=consumer)
    assert (caps["visible"], caps["enabled"], caps["reason"]) == (False, False, "consumer_uploads_disabled")
    # Agents are not affected by the consumers' setting.
    assert client.upload(account, conversation, small_photo()).status_code == 202


def test_another_consumers_conversation_does_not_exist_for_a_consumer(client):
    account = consumer_account(client)
    conversation, _ = open_for(client, account)
    stranger = unique("consumer")
    unknown = consumer_upload(client, account, unique("conv"), stranger)
    someone_elses = consumer_upload(client, account, conversation, stranger)
    assert error_code(someone_elses) == error_code(unknown) == (404, "conversation_not_found")
    caps = client.capabilities(account, conversation, role="consumer", sub=stranger)
    assert (caps["enabled"], caps["reason"]) == (False, "conversation_not_found")
    # A consumer token of another account is refused before any conversation is looked at.
    r = client.upload(account, conversation, small_photo(), headers=client.auth(unique("acct"), "consumer", stranger))
    assert error_code(r) == (403, "permission_denied")


def test_a_consumer_cannot_send_into_their_closed_conversation(client):
    account = consumer_account(client)
    conversation, consumer = open_for(client, account)
    client.conversation(account, conversation, consumer, kind="conversation.closed")
    wait_until(
        lambda: client.capabilities(account, conversation).get("reason") == "conversation_closed",
        what="the upload service to learn the conversation closed",
    )
    assert error_code(consumer_upload(client, account, conversation, consumer)) == (409, "conversation_closed")
    caps = client.capabilities(account, conversation, role="consumer", sub=consumer)
    assert (caps["visible"], caps["enabled"], caps["reason"]) == (True, False, "conversation_closed")


def test_a_consumers_photo_reaches_the_agent_as_a_message_from_the_consumer(client):
    account = consumer_account(client)
    conversation, consumer = open_for(client, account)
    caps = client.capabilities(account, conversation, role="consumer", sub=consumer)
    assert (caps["visible"], caps["enabled"], caps["reason"]) == (True, True, None)
    assert caps["accepted_types"] == ["image/jpeg", "image/png", "image/gif"]

    agents = client.upload(account, conversation, small_photo(1), caption="what does it look like?")
    assert agents.status_code == 202, agents.text
    # The form's source is no claim a consumer can make: their upload is `consumer`.
    r = consumer_upload(
        client, account, conversation, consumer, camera_photo(), caption="the broken part", source="widget"
    )
    assert r.status_code == 202, r.text
    agent_file, consumer_file = agents.json()["file_id"], r.json()["file_id"]
    client.wait_published(account, [agent_file, consumer_file])

    [message] = client.read_topic(MESSAGE_PUBLISHED, lambda e: e.file_id == consumer_file)
    assert (message.sender.id, message.sender.role, message.source) == (consumer, "consumer", "consumer")
    assert message.consumer_id == consumer and message.content.caption == "the broken part"
    assert client.transcript_ids(account, conversation) == [agent_file, consumer_file], "in send order"
    status = client.http.get(
        f"{client.upload_url}/v1/files/{consumer_file}", headers=client.auth(account, "consumer", consumer)
    ).json()
    assert status["status"] == "published", status

    download = client.download(consumer_file, account)  # the agent
    assert download.status_code == 200 and download.headers["content-type"] == "image/jpeg"
    photo = Image.open(io.BytesIO(download.content))
    assert photo.size == (533, 800), "resized like an agent's photo, orientation applied"
    assert not photo.getexif(), "no EXIF (GPS, camera) reaches the agent"
    # The consumer sees their own photo in their window too.
    assert client.download(consumer_file, account, role="consumer", sub=consumer).status_code == 200


def test_a_forget_of_the_consumer_erases_their_own_uploads(client):
    account = consumer_account(client)
    conversation, consumer = open_for(client, account)
    caption = unique("a receipt photo")
    r = consumer_upload(client, account, conversation, consumer, caption=caption)
    assert r.status_code == 202, r.text
    file_id = r.json()["file_id"]
    client.wait_published(account, [file_id])
    assert stored_objects_of(client, account, consumer) != []

    request_id = client.forget(account, consumer)
    wait_until(
        lambda: client.status(file_id, account).get("status") == "deleted",
        timeout=60,
        what="the consumer's upload to be deleted",
    )
    receipts = client.read_topic(FILE_DELETED, lambda e: e.request_id == request_id)
    assert [(d.file_id, d.reason) for d in receipts] == [(file_id, "gdpr")]
    assert stored_objects_of(client, account, consumer) == [], "blobs and keys are gone"
    assert client.download(file_id, account).status_code in (404, 410)
    r = client.http.get(
        f"{client.delivery_url}/v1/conversations/{conversation}/messages", headers=client.auth(account, "agent")
    )
    assert r.status_code == 404 or r.json()["messages"] == [], r.text

    url = client.env["FS_DATABASE_URL"]
    wait_until(lambda: not rows_mentioning(url, caption), timeout=60, what="every service to erase its rows")
    for table, row in rows_mentioning(url, file_id):
        assert table in RECEIPTS, (table, row)
        described = {k for k, v in row.items() if v not in (None, [], {})}
        assert not {"caption", "sender_id", "consumer_id", "conversation_id", "size_bytes", "width"} & described, (
            table,
            row,
        )
    assert client.status(file_id, account) == {"file_id": file_id, "status": "deleted", "reason": "gdpr"}


def test_consumer_matrix_end_to_end(client):
    """Every cell of tests.upload_matrix.consumer_cells through the running service (the same cells
    are checked against the policy function in tests/unit/test_upload_policy.py)."""
    cells = consumer_cells()
    configs = sorted({(c.feature_enabled, c.file_sharing_enabled, c.consumer_uploads_enabled) for c in cells})
    accounts = {cfg: unique("cacct") for cfg in configs}
    other_account, consumer, stranger = unique("cother"), unique("cconsumer"), unique("cconsumer")
    conversations = {
        (acct, state, channel): unique("cconv")
        for acct in [*accounts.values(), other_account]
        for state in EVENTS
        for channel in CHANNELS
    }
    strangers = {acct: unique("cconv") for acct in accounts.values()}  # open, web, another consumer's
    publish_many(
        client,
        [
            conversation_record(acct, conv, consumer, kind, channel)
            for (acct, state, channel), conv in conversations.items()
            for kind in EVENTS[state]
        ]
        + [conversation_record(acct, conv, stranger, "conversation.opened") for acct, conv in strangers.items()],
    )
    for acct in [*accounts.values(), other_account]:
        client.enable_account(acct)
    wait_until(
        lambda: (
            all(
                client.capabilities(acct, conv).get("reason") == KNOWN_REASON[(state, channel)]
                for (acct, state, channel), conv in conversations.items()
            )
            and all(client.capabilities(acct, conv).get("reason") is None for acct, conv in strangers.items())
        ),
        timeout=60,
        interval=0.3,
        what="the upload service to learn every conversation",
    )
    for (feature, setting, consumers), acct in accounts.items():
        client.enable_account(
            acct, feature_enabled=feature, file_sharing_enabled=setting, consumer_uploads_enabled=consumers
        )

    def target(cell) -> tuple[str, str]:
        acct = accounts[(cell.feature_enabled, cell.file_sharing_enabled, cell.consumer_uploads_enabled)]
        if cell.state == "unknown":
            return acct, unique("cnone")
        if cell.state == "other_consumer":
            return acct, strangers[acct]
        owner = other_account if cell.state == "other_account" else acct
        return acct, conversations[(owner, "open" if cell.state == "other_account" else cell.state, cell.channel)]

    async def send(http: httpx.AsyncClient, cell):
        acct, conv = target(cell)
        r = await http.post(
            f"{client.upload_url}/v1/accounts/{acct}/conversations/{conv}/files",
            files={"file": ("photo.png", png_bytes(), "image/png")},
            data={"source": cell.form_source} if cell.form_source else {},
            headers=client.auth(acct, "consumer", consumer),
        )
        return r.status_code, (r.json().get("error") or {}).get("code")

    async def send_all():
        async with httpx.AsyncClient(timeout=60) as http:
            return await gather_limited([send(http, c) for c in cells])

    answers = asyncio.run(send_all())
    wrong = [
        (c.label(), got, expected_for_consumer(c)) for c, got in zip(cells, answers) if got != expected_for_consumer(c)
    ]
    assert not wrong, f"{len(wrong)} of {len(cells)} cells differ: {wrong[:8]}"
