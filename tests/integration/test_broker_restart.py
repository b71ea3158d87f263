"""Issue 2: restarting the broker (Tansu on the same S3 data) loses no committed event."""
from __future__ import annotations

from shared.topics import FILE_SANITIZED, FILE_UPLOADED, MESSAGE_PUBLISHED
from tests.integration.test_walking_skeleton import camera_photo
from tests.support import unique, wait_until


def test_broker_restart_keeps_events_and_committed_offsets(stack, client):
    account, conversation, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account)
    client.open_conversation(account, conversation, consumer)
    first = client.upload(account, conversation, camera_photo(1200, 900, 1)).json()["file_id"]
    assert client.wait_status(first, account)["status"] == "published"
    before = {t: len(client.read_topic(t, lambda e: getattr(e, "file_id", None) == first))
              for t in (FILE_UPLOADED, FILE_SANITIZED, MESSAGE_PUBLISHED)}
    assert before == {FILE_UPLOADED: 1, FILE_SANITIZED: 1, MESSAGE_PUBLISHED: 1}

    stack.stop_process("kafka")
    stack.start_kafka()

    # Everything written before the restart is still in the log ...
    assert len(client.read_topic(MESSAGE_PUBLISHED, lambda e: e.file_id == first)) == 1
    # ... the services reconnect by themselves and keep working ...
    second = wait_until(lambda: (r := client.upload(account, conversation, camera_photo(900, 600, 1))).status_code == 202
                        and r.json()["file_id"], timeout=60, what="upload after broker restart")
    assert client.wait_status(second, account, timeout=90)["status"] == "published"
    # ... and committed offsets survived: the first photo was not processed again.
    after = {t: len(client.read_topic(t, lambda e: getattr(e, "file_id", None) == first))
             for t in (FILE_UPLOADED, FILE_SANITIZED, MESSAGE_PUBLISHED)}
    assert after == before
    # The account's settings (compacted topic) also survived.
    assert client.http.get(f"{client.upload_url}/v1/accounts/{account}/settings",
                           headers=client.auth(account, "admin")).json()["feature_enabled"] is True
