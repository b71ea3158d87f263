"""Exactly one message per photo, across a crash, a rebalance, a closed conversation
and a forgotten consumer. Each test that replaces delivery restores the normal one in finally."""

from __future__ import annotations

from shared.contract.events import GdprForget
from shared.contract.topics import FILE_DELETED, FILE_REJECTED, GDPR_FORGET, MESSAGE_PUBLISHED
from tests.integration.delivery_support import (
    ExtraDelivery,
    delivery_stopped,
    ensure_normal_delivery,
    new_conversation,
    small_photo,
    start_delivery,
    upload_ok,
)
from tests.support import sample, scrape, unique, wait_until

CRASH_EXIT_CODE = 17


def messages_for(client, file_ids) -> dict[str, int]:
    wanted = set(file_ids)
    counts = {f: 0 for f in wanted}
    for m in client.read_topic(MESSAGE_PUBLISHED, lambda e: e.file_id in wanted):
        counts[m.file_id] += 1
    return counts


def conversations_over_partitions(client, count: int = 8) -> tuple[str, list[str]]:
    """One account with `count` open conversations, so photos spread over partitions that can
    move between group members."""
    account, first, _ = new_conversation(client)
    conversations = [first]
    for _ in range(count - 1):
        conversations.append(unique("conv"))
        client.open_conversation(account, conversations[-1], unique("consumer"))
    return account, conversations


def test_crash_between_produce_and_commit_yields_one_message(client, stack):
    account, conversation, _ = new_conversation(client)
    stack.stop_process("delivery")
    try:
        crashing = start_delivery(stack, {"FS_TEST_CRASH_AFTER_PRODUCE": "delivery"})
        file_id = upload_ok(client, account, conversation, small_photo())
        wait_until(lambda: crashing.poll() is not None, timeout=60, what="delivery to crash after producing")
        assert crashing.returncode == CRASH_EXIT_CODE
        assert messages_for(client, [file_id]) == {file_id: 1}, "the message was produced before the crash"

        # The input was never committed: the restarted delivery gets file.resized again.
        ensure_normal_delivery(stack)
        wait_until(
            lambda: sample(scrape(stack.env), "fileshare_duplicates_suppressed_total") >= 1,
            timeout=60,
            what="the redelivered file.resized to be recognised as a duplicate",
        )
        assert messages_for(client, [file_id]) == {file_id: 1}
        assert client.wait_status(file_id, account)["status"] == "published"
        assert sample(scrape(stack.env), "fileshare_messages_published_total") == 0, "nothing published again"
    finally:
        ensure_normal_delivery(stack)


def test_rebalance_between_two_instances_yields_one_message_per_photo(client, stack):
    # Several conversations, so the photos spread over partitions that move between members.
    account, conversations = conversations_over_partitions(client)
    files: list[str] = []

    def send(n: int):
        for _ in range(n):
            conversation = conversations[len(files) % len(conversations)]
            files.append(upload_ok(client, account, conversation, small_photo(seed=len(files))))

    def second_handled_one() -> bool:
        if sample(scrape_extra(second), "fileshare_records_total", topic="file.resized", outcome="ok") >= 1:
            return True
        send(1)  # keep photos coming until one lands on a partition the second member owns
        return False

    second = ExtraDelivery.start(stack)
    try:
        send(4)  # while the second member joins: the group rebalances
        second.wait_ready()
        wait_until(
            second_handled_one,
            timeout=120,
            interval=0.5,
            what="the second instance to own a partition and publish a photo",
        )
        send(4)
        assert second.stop() == 0  # leaves the group: a second rebalance, partitions move back
        send(4)
        for file_id in files:
            assert client.wait_status(file_id, account, timeout=90)["status"] == "published"
        counts = messages_for(client, files)
        assert counts == {f: 1 for f in files}, counts
    finally:
        second.stop()
        if stack.procs.get("delivery") is None or stack.procs["delivery"].poll() is not None:
            ensure_normal_delivery(stack)


def test_member_dying_after_produce_hands_its_partition_over_without_a_second_message(client, stack):
    """The rebalance a clean leave cannot show: a member dies between producing message.published
    and committing file.resized, the group gives its partitions to the survivor, which gets that
    file.resized again and must recognise it as published (dedupe, not the revocation fence)."""
    account, conversations = conversations_over_partitions(client)
    files: list[str] = []
    suppressed_before = sample(scrape(stack.env), "fileshare_duplicates_suppressed_total")

    def second_died() -> bool:
        if second.stack.procs[second.name].poll() is not None:
            return True
        conversation = conversations[len(files) % len(conversations)]
        files.append(upload_ok(client, account, conversation, small_photo(seed=len(files))))
        return False  # keep photos coming until one lands on a partition the dying member owns

    second = ExtraDelivery.start(stack, env={"FS_TEST_CRASH_AFTER_PRODUCE": "delivery"})
    try:
        second.wait_ready()
        wait_until(second_died, timeout=120, interval=0.5, what="the second member to die after producing")
        assert second.stack.procs[second.name].returncode == CRASH_EXIT_CODE
        for file_id in files:
            assert client.wait_status(file_id, account, timeout=90)["status"] == "published"
        wait_until(
            lambda: sample(scrape(stack.env), "fileshare_duplicates_suppressed_total") > suppressed_before,
            timeout=60,
            what="the survivor to suppress the redelivered file.resized",
        )
        counts = messages_for(client, files)
        assert counts == {f: 1 for f in files}, counts
    finally:
        second.stop()


def scrape_extra(extra: ExtraDelivery) -> dict:
    return scrape({"FS_METRICS_PORT_BASE": str(extra.metrics_base)})


def test_conversation_closed_before_publish_gets_no_message(client, stack):
    account, conversation, consumer = new_conversation(client)
    with delivery_stopped(stack):
        file_id = upload_ok(client, account, conversation, small_photo())
        client.wait_status(file_id, account, ("resized",))
        client.conversation(account, conversation, consumer, kind="conversation.closed")
    status = client.wait_status(file_id, account)
    assert (status["status"], status["reason"]) == ("rejected", "conversation_closed"), status
    assert messages_for(client, [file_id]) == {file_id: 0}
    [rejection] = client.read_topic(FILE_REJECTED, lambda e: e.file_id == file_id)
    assert rejection.stage == "delivery"
    r = client.download(file_id, account)
    assert r.status_code == 404
    assert client.transcript_ids(account, conversation) == []


def test_forgotten_consumer_before_publish_gets_no_message(client, stack):
    account, conversation, consumer = new_conversation(client)
    with delivery_stopped(stack):
        file_id = upload_ok(client, account, conversation, small_photo())
        client.wait_status(file_id, account, ("resized",))
        client.publish(
            GDPR_FORGET, consumer, GdprForget(request_id=unique("forget"), account_id=account, consumer_id=consumer)
        )
        wait_until(
            lambda: client.read_topic(FILE_DELETED, lambda e: e.file_id == file_id),
            timeout=60,
            what="retention to forget the consumer",
        )
    wait_until(
        lambda: client.read_topic(FILE_REJECTED, lambda e: e.file_id == file_id),
        timeout=60,
        what="delivery to reject the forgotten consumer's file",
    )
    [rejection] = client.read_topic(FILE_REJECTED, lambda e: e.file_id == file_id)
    assert (rejection.stage, rejection.reason) == ("delivery", "consumer_forgotten")
    assert messages_for(client, [file_id]) == {file_id: 0}
