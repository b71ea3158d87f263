"""StreamProcessor without a broker. The rebalance fence: a record's outputs go out only while
this member may still own its partition (a record finished inside the fence is produced and
committed; one that outlives it is dropped and left uncommitted for the next owner). And a
configuration fault is retried, never turned into rejections."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import ConsumerRecord, TopicPartition

from shared.adapters import kafka
from shared.adapters.kafka import Outgoing, StreamProcessor
from shared.contract.events import GdprForget

TP = TopicPartition("file.resized", 0)


class FakeProducer:
    def __init__(self):
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic, value, key=None):
        self.sent.append((topic, value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class FakeConsumer:
    def __init__(self):
        self.commits: list[dict] = []

    async def commit(self, offsets):
        self.commits.append(offsets)


def record(offset: int) -> ConsumerRecord:
    return ConsumerRecord(TP.topic, TP.partition, offset, 0, 0, b"k", b"{}", None, 2, 2, [])


def processor(handle, **options) -> tuple[StreamProcessor, list]:
    """options: StreamProcessor's (concurrency, commit_per_batch)."""
    produced: list = []

    async def on_produced(outputs):
        produced.append(outputs)

    p = StreamProcessor(
        SimpleNamespace(),
        "test",
        "group",
        [TP.topic],
        handle,
        on_poison=lambda r, e: [],
        on_produced=on_produced,
        **options,
    )
    p.producer, p.consumer = FakeProducer(), FakeConsumer()
    return p, produced


def output(request_id: str = "r") -> list[Outgoing]:
    return [Outgoing("message.published", "conv", GdprForget(request_id=request_id, account_id="a", consumer_id="u"))]


async def run_with_rebalance(monkeypatch, fence_wait: float, release_after_fence: bool):
    monkeypatch.setattr(kafka, "REVOKE_WAIT_SECONDS", fence_wait)
    started, release = asyncio.Event(), asyncio.Event()

    async def handle(rec):
        started.set()
        await release.wait()  # a slow record: a decode, a storage retry
        return output()

    p, produced = processor(handle)
    p._idle.clear()
    work = asyncio.ensure_future(p._process_partition(TP, [record(5), record(6)], p._generation))
    work.add_done_callback(lambda _: p._idle.set())
    await started.wait()
    fence = asyncio.ensure_future(p.hand_over())
    if release_after_fence:
        await fence  # times out: the next owner may start now
        release.set()
    else:
        release.set()
        await fence
    return p, produced, await work


async def test_a_record_that_finishes_inside_the_fence_is_produced_and_committed(monkeypatch):
    p, produced, unfinished = await run_with_rebalance(monkeypatch, fence_wait=30, release_after_fence=False)
    assert len(p.producer.sent) == 1 and len(produced) == 1
    assert p.consumer.commits == [{TP: 6}]
    assert unfinished == 6, "the rest of the batch is left to the next owner"


async def test_a_record_that_outlives_the_fence_is_dropped_not_published_twice(monkeypatch):
    p, produced, unfinished = await run_with_rebalance(monkeypatch, fence_wait=0.01, release_after_fence=True)
    assert p.producer.sent == [] and produced == [], "the next owner publishes it, this member must not"
    assert p.consumer.commits == [] and unfinished == 5, "left uncommitted, so it is redone, not lost"


async def test_a_missing_master_key_is_retried_not_turned_into_rejections(monkeypatch):
    # An operator rotated FS_MASTER_KEY without FS_PREVIOUS_MASTER_KEYS: every file in flight would
    # be rejected for good if this were a poison record. It is retried until the config is fixed.
    from shared.adapters.crypto import UnknownMasterKey

    monkeypatch.setattr(kafka.asyncio, "sleep", _no_wait)
    attempts = []

    async def handle(rec):
        attempts.append(rec.offset)
        if len(attempts) < 3:
            raise UnknownMasterKey("master key abc is not configured")
        return output()

    p, produced = processor(handle)
    poisoned = []
    p.on_poison = lambda rec, exc: poisoned.append(exc) or []
    assert await p._process_partition(TP, [record(1)], p._generation) is None
    assert attempts == [1, 1, 1] and poisoned == [] and len(produced) == 1
    assert p.consumer.commits == [{TP: 2}]


_real_sleep = asyncio.sleep


async def _no_wait(delay, *args):
    await _real_sleep(0)


async def test_records_of_one_partition_are_handled_side_by_side_and_produced_in_order():
    """A burst into one conversation: three photos decode at once, the later ones finishing first;
    nothing goes out until the first is done, then all in send order, each offset committed only
    after its outputs."""
    release = {offset: asyncio.Event() for offset in (1, 2, 3)}
    running = set()

    async def handle(rec):
        running.add(rec.offset)
        await release[rec.offset].wait()
        return output(str(rec.offset))

    p, produced = processor(handle, concurrency=3)
    sent_at_commit = []
    commit = p.consumer.commit

    async def commit_after_sends(offsets):
        sent_at_commit.append(len(p.producer.sent))
        await commit(offsets)

    p.consumer.commit = commit_after_sends
    records = [record(1), record(2), record(3)]
    handled = p._handle_ahead(records)
    work = asyncio.ensure_future(p._process_partition(TP, records, p._generation, None, handled))
    await asyncio.wait_for(_until(lambda: running == {1, 2, 3}), 5)
    release[3].set()
    release[2].set()
    await asyncio.wait_for(asyncio.gather(handled[1], handled[2]), 5)  # photos 2 and 3 are done
    for _ in range(3):  # turns in which a producing side that did not wait for photo 1 would send
        await asyncio.sleep(0)
    assert produced == [] and p.consumer.commits == [], "photo 1 is still being handled: nothing overtakes it"
    release[1].set()
    assert await asyncio.wait_for(work, 5) is None
    assert [outputs[0].event.request_id for outputs in produced] == ["1", "2", "3"]
    assert p.consumer.commits[-1] == {TP: 4} and len(p.consumer.commits) < 3, "one commit covers ready records"
    assert all(sent == int(c[TP]) - 1 for sent, c in zip(sent_at_commit, p.consumer.commits)), (
        "an offset is committed only after its record's outputs were sent"
    )


async def _until(condition):
    while not condition():
        await asyncio.sleep(0)


async def test_at_most_concurrency_records_of_a_partition_are_handled_at_once():
    running, most = 0, 0

    async def handle(rec):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)
        running -= 1
        return output(str(rec.offset))

    p, produced = processor(handle, concurrency=2)
    records = [record(o) for o in range(10, 16)]
    assert await p._process_partition(TP, records, p._generation, None, p._handle_ahead(records)) is None
    assert most == 2 and len(produced) == 6


async def test_a_batch_behind_one_that_stopped_early_leaves_everything_from_there_undone():
    """No record is skipped: the partition is read again from the first record left undone."""
    p, produced = processor(_outputs_of)
    earlier = asyncio.get_running_loop().create_future()
    earlier.set_result(7)  # the batch before stopped at offset 7 (a failed commit)
    assert await p._process_partition(TP, [record(9), record(10)], p._generation, earlier) == 7
    assert produced == [] and p.consumer.commits == []


async def _outputs_of(rec):
    return output(str(rec.offset))


async def test_records_handled_one_by_one_are_committed_each_or_once_per_batch_for_projections():
    p, produced = processor(_outputs_of)
    assert await p._process_partition(TP, [record(3), record(4), record(5)], p._generation) is None
    assert p.consumer.commits == [{TP: 4}, {TP: 5}, {TP: 6}], "a rebalance or crash redoes one record"
    p, produced = processor(_outputs_of, commit_per_batch=True)
    assert await p._process_partition(TP, [record(3), record(4), record(5)], p._generation) is None
    assert len(produced) == 3 and p.consumer.commits == [{TP: 6}]


async def test_a_batch_behind_one_that_failed_commits_nothing():
    """The batch before raised (the service is about to stop on it): its undone records must not be
    skipped by a commit of the records after them."""
    p, produced = processor(_outputs_of)
    failed = asyncio.get_running_loop().create_future()
    failed.set_exception(RuntimeError("the broker refused a record for good"))
    assert await p._process_partition(TP, [record(9), record(10)], p._generation, failed) == 9
    assert produced == [] and p.consumer.commits == []


class LogCheckConsumer:
    """Positions and fetch high watermarks of two partitions, as aiokafka keeps them."""

    def __init__(self, positions: dict, highwaters: dict):
        self.positions, self.highwaters, self.rewound = positions, highwaters, []

    def assignment(self):
        return set(self.positions)

    def highwater(self, tp):
        return self.highwaters[tp]

    async def position(self, tp):
        return self.positions[tp]

    async def seek_to_beginning(self, tp):
        self.rewound.append(tp)


async def test_only_a_partition_whose_fetched_end_lies_before_the_position_is_read_again():
    """Tansu's ListOffsets answers the last batch's base offset + 1, short of the real end: only the
    fetch high watermark tells a healthy partition (position 68, end 68) from a lost log (end 3)."""
    healthy, lost, unfetched = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)
    p, _ = processor(_outputs_of)
    p.consumer = LogCheckConsumer({healthy: 68, lost: 12, unfetched: 5}, {healthy: 68, lost: 3, unfetched: None})
    await p._reread_partitions_whose_log_was_lost()
    assert p.consumer.rewound == [lost]


def test_consumers_wait_on_the_broker_as_configured_and_background_ones_at_least_half_a_second():
    embedded, on_kafka = SimpleNamespace(kafka_fetch_wait_ms=50), SimpleNamespace(kafka_fetch_wait_ms=500)
    assert (kafka.fetch_wait_ms(embedded), kafka.fetch_wait_ms(embedded, background=True)) == (50, 500)
    assert (kafka.fetch_wait_ms(on_kafka), kafka.fetch_wait_ms(on_kafka, background=True)) == (500, 500)
    slow = SimpleNamespace(kafka_fetch_wait_ms=1000)
    assert kafka.fetch_wait_ms(slow, background=True) == 1000
