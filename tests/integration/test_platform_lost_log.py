"""The platform through a lost log: a follower started before the broker's restart receives every
message once (its partitions are reset, delivery re-sends recent messages with their message_id)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from services.delivery.handlers import message_id_for
from shared.devstack.embedded import running_stack
from tests.integration.test_recovery import conversations, send
from tests.support import Client, FollowerThread, sample, scrape, unique, wait_until


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("lostlog"), FS_REDRIVE_SECONDS="3") as stack:
        yield stack


def test_a_follower_through_a_broker_restart_receives_every_message_once(stack):
    client = Client(env=stack.env, data_dir=Path(stack.data_dir))
    account = unique("acct")
    client.enable_account(account)
    convs = conversations(client, account, 4)
    follower = FollowerThread(stack.env["FS_KAFKA_BOOTSTRAP"])
    follower.start()
    before = send(client, account, convs, 6)
    client.wait_published(account, before)
    stack.stop_process("kafka", signal.SIGKILL)
    stack.start_kafka()
    wait_until(
        lambda: sample(scrape(stack.env), "fileshare_delivery_republished_total") >= len(before),
        timeout=60,
        what="delivery re-sent the recent messages",
    )
    after = send(client, account, convs, 6)
    client.wait_published(account, after)
    ids = {client.status(f, account)["file_id"] for f in {**before, **after}}
    wanted = {message_id_for(f) for f in ids}
    wait_until(lambda: wanted <= set(follower.received), timeout=60, what="the follower received every message")
    assert len(follower.received) == len(set(follower.received))  # never one message_id twice
    follower.stopping.set()
