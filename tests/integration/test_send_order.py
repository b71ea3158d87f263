"""Photos sent quickly into one conversation reach the platform and the transcript in the
order they were sent."""

from __future__ import annotations

from shared.contract.topics import MESSAGE_PUBLISHED
from tests.integration.test_walking_skeleton import camera_photo
from tests.support import unique, wait_until


def test_ten_photos_sent_quickly_to_one_conversation_arrive_in_send_order(client):
    account, conversation, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account)
    client.open_conversation(account, conversation, consumer)
    # Different sizes, so a photo that is quicker to process could overtake one sent before it.
    sizes = [
        (1600, 1200),
        (320, 240),
        (1200, 900),
        (400, 300),
        (2000, 1500),
        (640, 480),
        (800, 600),
        (300, 200),
        (1024, 768),
        (500, 400),
    ]
    sent = []
    for i, (w, h) in enumerate(sizes):
        r = client.upload(account, conversation, camera_photo(w, h, 1), caption=f"photo {i}")
        assert r.status_code == 202, r.text
        sent.append(r.json()["file_id"])
    for file_id in sent:
        assert client.wait_status(file_id, account, timeout=120)["status"] == "published"
    messages = client.read_topic(MESSAGE_PUBLISHED, lambda e: e.conversation_id == conversation)
    assert [m.file_id for m in messages] == sent
    transcript = wait_until(
        lambda: client.http.get(
            f"{client.delivery_url}/v1/conversations/{conversation}/messages", headers=client.auth(account, "agent")
        ).json()["messages"],
        what="the transcript",
    )
    assert [m["file_id"] for m in transcript] == sent
    assert [m["caption"] for m in transcript] == [f"photo {i}" for i in range(10)]
