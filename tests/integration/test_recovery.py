"""Recovery on a stack of its own (re-drive after 3 s): a broker that lost its log, a database
restarted mid-pipeline, and several instances of upload, delivery and retention at once."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.contract.topics import FILE_DELETED, FILE_UPLOADED, MESSAGE_PUBLISHED, topic_configs
from shared.devstack.embedded import free_port, free_port_block, running_stack
from tests.integration.test_walking_skeleton import camera_photo
from tests.support import Client, sample, scrape, unique, wait_until

PARTITIONS = 4


@pytest.fixture(scope="module")
def recovery_stack(tmp_path_factory):
    with running_stack(
        tmp_path_factory.mktemp("recovery"), FS_REDRIVE_SECONDS="3", FS_RETENTION_SWEEP_SECONDS="1"
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def rclient(recovery_stack) -> Client:
    return Client(env=recovery_stack.env, data_dir=Path(recovery_stack.data_dir))


def photo(i: int) -> bytes:
    return camera_photo(640 + 8 * i, 480, 1)


def conversations(client: Client, account: str, n: int) -> list[tuple[str, str]]:
    """n open web conversations, one consumer each: (conversation, consumer)."""
    out = [(unique("conv"), unique("consumer")) for _ in range(n)]
    for conversation, consumer in out:
        client.open_conversation(account, conversation, consumer)
    return out


def send(client: Client, account: str, convs: list[tuple[str, str]], n: int, **kw) -> dict[str, str]:
    """n photos spread over the conversations; {file_id: conversation}."""
    sent = {}
    for i in range(n):
        conversation = convs[i % len(convs)][0]
        r = client.upload(account, conversation, photo(i), caption=f"photo {i}", **kw)
        assert r.status_code == 202, r.text
        sent[r.json()["file_id"]] = conversation
    return sent


def assert_each_once_in_transcripts(client: Client, account: str, sent: dict[str, str]) -> None:
    for conversation in set(sent.values()):
        ids = client.transcript_ids(account, conversation)
        assert sorted(ids) == sorted(f for f, c in sent.items() if c == conversation), conversation


def test_every_event_topic_has_a_finite_retention_read_back_from_the_broker(rclient):
    # First in this module: topics the embedded broker auto-creates for a producer in the instant
    # between its restart and the topic creation have no configs (docs/operations.md, known limits).
    async def read_back():
        admin = AIOKafkaAdminClient(bootstrap_servers=rclient.env["FS_KAFKA_BOOTSTRAP"])
        await admin.start()
        try:
            answer = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in topic_configs(1)]
            )
        finally:
            await admin.close()
        return {r[3]: {e[0]: e[1] for e in r[4]} for response in answer for r in response.resources}

    configs = asyncio.run(read_back())
    for name, wanted in topic_configs(168).items():
        if "retention.ms" in wanted:
            assert 0 < int(configs[name]["retention.ms"]) <= 168 * 3600 * 1000, name
    assert configs["account.settings"]["cleanup.policy"] == "compact"


def test_broker_killed_with_20_photos_in_flight_loses_none_and_publishes_each_once(recovery_stack, rclient):
    account = unique("acct")
    rclient.enable_account(account)
    convs = conversations(rclient, account, 4)
    sent = send(rclient, account, convs, 20)
    recovery_stack.stop_process("kafka", signal.SIGKILL)  # its log (in memory) is gone
    recovery_stack.start_kafka()  # empty, with the topics created at once
    rclient.wait_published(account, sent)
    assert_each_once_in_transcripts(rclient, account, sent)
    # The broker's new log holds at most one message per file (the earlier log is gone with the broker).
    messages = rclient.read_topic(MESSAGE_PUBLISHED, lambda e: e.file_id in sent)
    assert len(messages) == len({m.file_id for m in messages})
    # Settings and conversations came from the databases, not from the lost log: new photos still flow.
    more = send(rclient, account, convs, 2)
    rclient.wait_published(account, more)


def test_database_restarted_mid_pipeline_loses_nothing_and_services_recover_on_their_own(recovery_stack, rclient):
    account = unique("acct")
    rclient.enable_account(account)
    convs = conversations(rclient, account, 2)
    services = [
        n
        for n in recovery_stack.procs
        if n.split("-")[0] in ("upload", "sanitizer", "resizer", "delivery", "retention")
    ]
    pids = {n: recovery_stack.procs[n].pid for n in services}
    sent = send(rclient, account, convs, 10)
    recovery_stack.stop_process("postgres", signal.SIGKILL)
    recovery_stack.start_postgres()
    rclient.wait_published(account, sent)
    assert_each_once_in_transcripts(rclient, account, sent)
    for name in services:
        assert recovery_stack.procs[name].pid == pids[name], f"{name} was restarted"
        recovery_stack.wait_ready(name)


def log_since(stack, name: str, offset: int = 0) -> str:
    return (stack.log_dir / f"{name}.log").read_bytes()[offset:].decode(errors="replace")


def outages_closed(text: str, dependency: str) -> bool:
    return text.count(f"{dependency} unavailable (") == text.count(f"{dependency} available again:")


def records_in(text: str) -> list[str]:
    """Log records; the indented lines of a traceback belong to the record above."""
    return [line for line in text.splitlines() if line and not line[0].isspace()]


def test_a_broker_outage_logs_a_line_when_it_starts_and_one_when_it_ends_and_counts_the_rest(recovery_stack, rclient):
    services = ("upload", "sanitizer", "resizer", "delivery", "retention")
    wait_until(
        lambda: all(outages_closed(log_since(recovery_stack, n), "kafka") for n in services),
        timeout=60,
        what="earlier outages to be over",
    )
    offsets = {n: (recovery_stack.log_dir / f"{n}.log").stat().st_size for n in services}
    recovery_stack.stop_process("kafka", signal.SIGKILL)
    wait_until(
        lambda: all("kafka unavailable (" in log_since(recovery_stack, n, offsets[n]) for n in services),
        what="every service to notice the outage",
    )
    recovery_stack.start_kafka()
    wait_until(
        lambda: all("kafka available again" in log_since(recovery_stack, n, offsets[n]) for n in services),
        timeout=60,
        what="every service to log the end of the outage",
    )
    for name in services:
        records = records_in(log_since(recovery_stack, name, offsets[name]))
        print(f"{name}: {len(records)} log records for the outage")
        assert len(records) <= 6, "\n".join(records)
        assert sample(scrape(rclient.env, name), "fileshare_dependency_errors_total", dependency="kafka") > 0


@pytest.fixture(scope="module")
def second_instances(recovery_stack) -> dict[str, str]:
    """A second process of upload, delivery and retention, in the same consumer groups."""
    env = {
        "FS_UPLOAD_PORT": str(free_port()),
        "FS_DELIVERY_PORT": str(free_port()),
        "FS_METRICS_PORT_BASE": str(free_port_block(5)),
    }
    for name in ("upload", "delivery", "retention"):
        recovery_stack.start_service(name, env, instance="2")
    for name in ("upload", "delivery", "retention"):
        recovery_stack.wait_ready(f"{name}-2", timeout=120)
    return {
        "upload": f"http://127.0.0.1:{env['FS_UPLOAD_PORT']}",
        "delivery": f"http://127.0.0.1:{env['FS_DELIVERY_PORT']}",
    }


def test_one_idempotency_key_sent_to_two_upload_instances_at_once_is_one_file(rclient, second_instances):
    account = unique("acct")
    rclient.enable_account(account)
    [(conversation, _)] = conversations(rclient, account, 1)
    key, data = unique("key"), photo(1)
    barrier, answers = threading.Barrier(4), []

    def post(base: str):
        barrier.wait()
        with httpx.Client(timeout=60) as http:
            answers.append(
                http.post(
                    f"{base}/v1/accounts/{account}/conversations/{conversation}/files",
                    files={"file": ("p.jpg", data)},
                    headers={**rclient.auth(account, "agent", "agent-1"), "Idempotency-Key": key},
                )
            )

    threads = [
        threading.Thread(target=post, args=(base,)) for base in (rclient.upload_url, second_instances["upload"]) * 2
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    assert len({a.json()["file_id"] for a in answers}) == 1
    file_id = answers[0].json()["file_id"]
    rclient.wait_published(account, {file_id: conversation})
    assert len({e.event_id for e in rclient.read_topic(FILE_UPLOADED, lambda e: e.file_id == file_id)}) == 1


def test_50_photos_through_two_delivery_instances_give_exactly_50_messages(rclient, second_instances):
    account = unique("acct")
    rclient.enable_account(account)
    convs = conversations(rclient, account, 10)
    sent = send(rclient, account, convs, 50)
    rclient.wait_published(account, sent, timeout=300)
    messages = rclient.read_topic(MESSAGE_PUBLISHED, lambda e: e.file_id in sent)
    assert sorted(m.file_id for m in messages) == sorted(sent)
    for conversation in set(sent.values()):  # both instances serve the same transcripts
        assert rclient.transcript_ids(account, conversation) == rclient.transcript_ids(
            account, conversation, second_instances["delivery"]
        )


def test_forget_and_expiry_with_two_retention_instances_give_one_receipt_per_file(rclient, second_instances):
    forgotten, expiring = unique("acct"), unique("acct")
    rclient.enable_account(forgotten)
    rclient.enable_account(expiring, retention="PT3S")
    forget_convs, expiry_convs = conversations(rclient, forgotten, 3), conversations(rclient, expiring, 3)
    to_forget = send(rclient, forgotten, forget_convs, 6)
    to_expire = send(rclient, expiring, expiry_convs, 6)
    rclient.wait_published(forgotten, to_forget)
    for _, consumer in forget_convs:
        rclient.forget(forgotten, consumer)

    def receipts():
        return [e for e in rclient.read_topic(FILE_DELETED, lambda e: e.file_id in to_forget or e.file_id in to_expire)]

    wait_until(
        lambda: {e.file_id for e in receipts()} == set(to_forget) | set(to_expire),
        timeout=120,
        interval=0.5,
        what="a receipt for every file",
    )
    done = receipts()
    assert len(done) == 12 and {e.reason for e in done if e.file_id in to_expire} == {"expired"}
