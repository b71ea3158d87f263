"""Kafka helpers: producer/consumer lifecycle and the stream-processor loop.

Topics are transport, not storage: no service reads a topic's history to rebuild state (that lives
in PostgreSQL, shared.adapters.db); after a broker lost its log, re-drive (services.upload.redrive) emits
every unfinished file's last stage event again.

At-least-once everywhere: a record's offset is committed only after every event it
produced has been acknowledged by the broker. Handlers are idempotent, so a crash
between produce and commit only repeats work. A record that cannot be handled is
turned into output by `on_poison` (usually a file.rejected) and committed: no
partition ever gets stuck. Transient errors (storage, scanner, broker) are retried
with backoff and never committed past.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import RecordMetadata

from shared.adapters.crypto import UnknownMasterKey
from shared.adapters.db import DB_TRANSIENT
from shared.contract.events import Event
from shared.contract.topics import FILE_REJECTED, MAX_MESSAGE_BYTES
from shared.runtime.outages import note_transient
from shared.runtime.retry import Backoff, retry_transient
from shared.runtime.tracing import consuming, current_headers, fail
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: str
    event: Event
    # The trace context where the event was made (the handler's or request's span), for the record's
    # headers: whoever consumes it continues the file's trace (shared.runtime.tracing).
    headers: tuple[tuple[str, bytes], ...] = field(
        default_factory=lambda: tuple(current_headers()), compare=False, repr=False
    )


class TransientError(Exception):
    """Raise (or subclass) for failures that should be retried, never rejected."""


Handler = Callable[[ConsumerRecord], Awaitable[list[Outgoing]]]
PoisonHandler = Callable[[ConsumerRecord, BaseException], "list[Outgoing] | Awaitable[list[Outgoing]]"]
Send = Callable[[list[Outgoing]], Awaitable[object]]


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        max_request_size=MAX_MESSAGE_BYTES,
        linger_ms=2,
        request_timeout_ms=30000,
    )


BACKGROUND_FETCH_WAIT_MS = 500


def fetch_wait_ms(settings: Settings, background: bool = False) -> int:
    """How long a consumer's empty fetch waits on the broker: FS_KAFKA_FETCH_WAIT_MS, at least
    BACKGROUND_FETCH_WAIT_MS for a consumer whose lag nobody waits on (retention's index and
    settings copy).

    Tansu (embedded) answers an empty fetch only after the full wait, even when records arrive
    meanwhile, so the wait is added at every hop of a photo's way: hence 50 ms by default, not
    Kafka's 500. Each empty fetch costs Tansu CPU too (13 consumers waiting 50 ms: ~0.2 of a core
    with nothing to do). Apache Kafka answers as soon as a record arrives, so on Kafka 500 costs no
    latency and ten times fewer requests (docker-compose.yml sets it)."""
    wait = settings.kafka_fetch_wait_ms
    return max(wait, BACKGROUND_FETCH_WAIT_MS) if background else wait


def make_consumer(
    settings: Settings, group_id: str | None, *topics: str, background: bool = False, **kwargs
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait_ms(settings, background),
        fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
        max_partition_fetch_bytes=2 * MAX_MESSAGE_BYTES,
        # Low timeouts: Tansu group joins otherwise wait out the full session.
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        rebalance_timeout_ms=10000,
        max_poll_interval_ms=600000,
        **kwargs,
    )


async def start_with_retry(client, what: str, stop: asyncio.Event | None = None, max_wait: float = 10.0):
    """Start an aiokafka client, retrying until the broker answers (services start before Kafka is up)."""

    async def start():
        try:
            await client.start()
        except KafkaError:
            with contextlib.suppress(Exception):  # a client that failed to start is stopped before the next try
                await client.stop()
            raise
        return client

    return await retry_transient(start, what, (KafkaError,), stop, backoff=Backoff(0.2, max_wait))


async def _produce(producer: AIOKafkaProducer, outgoing: list[Outgoing]) -> list:
    """Send every event; the broker's answer to each, in order: its record metadata or the error."""
    futures = [
        await producer.send(
            o.topic, o.event.to_bytes(), key=o.key.encode(), **({"headers": list(o.headers)} if o.headers else {})
        )
        for o in outgoing
    ]
    return await asyncio.gather(*futures, return_exceptions=True)


async def send_all(producer: AIOKafkaProducer, outgoing: Iterable[Outgoing]) -> None:
    """Produce events and wait until the broker acknowledged every one of them."""
    for answer in await _produce(producer, list(outgoing)):
        if isinstance(answer, BaseException):
            raise answer


PUBLISH_BACKOFF = Backoff(0.2)  # between the tries of a produce the broker did not acknowledge


class Publisher:
    """A producer for what a service sends outside a stream processor (HTTP answers, sweeps).
    Created at start: aiokafka clients bind to the running loop."""

    def __init__(self, settings: Settings, name: str):
        self.settings, self.name = settings, name
        self.producer: AIOKafkaProducer | None = None

    async def start(self, stop: asyncio.Event | None = None) -> None:
        self.producer = make_producer(self.settings)
        await start_with_retry(self.producer, f"{self.name} producer", stop)

    async def send(self, outgoing: Iterable[Outgoing], attempts: int = 3) -> list[RecordMetadata]:
        """Produce and wait until the broker acknowledged every event; where each one landed, in
        order. A failed produce is tried again a few times (Tansu answers a produce that races another
        producer on its partition with an error); at-least-once: the handlers downstream are idempotent."""
        if self.producer is None:
            raise TransientError("the producer is not started yet")
        outgoing = list(outgoing)
        landed: list[RecordMetadata | None] = [None] * len(outgoing)
        pending = list(range(len(outgoing)))
        for attempt in range(attempts):
            failed = []
            for i, answer in zip(pending, await _produce(self.producer, [outgoing[i] for i in pending])):
                if isinstance(answer, BaseException):
                    failed.append((i, answer))
                else:
                    landed[i] = answer
            if not failed:
                return landed
            error = failed[0][1]
            if attempt == attempts - 1 or not all(isinstance(r, KafkaError) for _, r in failed):
                raise error
            log.info(
                "%s: %d of %d events not acknowledged (%s); sending those again",
                self.name,
                len(failed),
                len(pending),
                error,
            )
            pending = [i for i, _ in failed]  # the acknowledged ones are not sent twice
            await asyncio.sleep(PUBLISH_BACKOFF.delay(attempt + 1))

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


class GroupOffsets:
    """What consumer groups have committed, read with an admin client (it joins no group). The client
    is opened at first use, and opened again after a failure: aiokafka clients bind to the running
    loop, and a closed admin client cannot be started again."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.admin: AIOKafkaAdminClient | None = None
        self._opening = asyncio.Lock()

    async def stop(self) -> None:
        if self.admin is not None:
            admin, self.admin = self.admin, None
            await admin.close()

    async def wait_committed(
        self, groups: Iterable[str], upto: dict[TopicPartition, int], timeout: float, interval: float = 0.05
    ) -> list[str]:
        """Wait until every group has committed at least `upto` (the next offset to read) on each of
        those partitions; returns the groups still behind when `timeout` ran out. A round of reads
        that does not answer in the time left raises asyncio.TimeoutError (a broker that does not
        answer must not hold the caller for aiokafka's 40 s request timeout); a broker error raises."""
        behind, deadline = list(groups), time.monotonic() + timeout
        while behind:
            try:
                rounds = await asyncio.wait_for(
                    asyncio.gather(*(self._committed(g, list(upto)) for g in behind)), deadline - time.monotonic()
                )
            except Exception:
                await self.stop()  # opened again next time
                raise
            behind = [
                g
                for g, committed in zip(behind, rounds)
                if any(committed.get(tp, 0) < offset for tp, offset in upto.items())
            ]
            if not behind or time.monotonic() + interval >= deadline:
                break
            await asyncio.sleep(interval)
        return behind

    async def _committed(self, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's next offset to read on each partition (0 where it committed none)."""
        admin = await self._client()
        answer = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return {tp: max(committed.offset, 0) for tp, committed in answer.items()}

    async def _client(self) -> AIOKafkaAdminClient:
        async with self._opening:
            if self.admin is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
                try:
                    await admin.start()
                except BaseException:
                    await admin.close()
                    raise
                self.admin = admin
            return self.admin


async def fetched_ends(
    consumer: AIOKafkaConsumer, topic: str, near: dict[int, int], timeout: float = 5.0
) -> dict[int, int]:
    """Each partition's end as a fetch's high watermark reports it (never ListOffsets: Tansu answers it
    with the base offset of the last record batch + 1, below the true end after a batch of several
    records). `consumer` belongs to no group; each partition is fetched from just before `near`
    (a small read when the log is intact). Partitions whose end is still unknown at `timeout` are
    left out."""
    await consumer.topics()  # fresh metadata: the partitions of a topic created again
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not tps:
        return {}
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, max(near.get(tp.partition, 0) - 1, 0))
    deadline = time.monotonic() + timeout
    while any(consumer.highwater(tp) is None for tp in tps) and time.monotonic() < deadline:
        await consumer.getmany(*tps, timeout_ms=200, max_records=len(tps))
    return {tp.partition: consumer.highwater(tp) for tp in tps if consumer.highwater(tp) is not None}


DEFAULT_TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    KafkaError,
    asyncio.TimeoutError,
    UnknownMasterKey,
) + DB_TRANSIENT


class _RevocationFence(ConsumerRebalanceListener):
    """Hold a rebalance until the record in flight is produced and committed.

    aiokafka awaits on_partitions_revoked before this member rejoins, and every member
    revokes before any member is assigned: so the next owner of a partition starts
    only after our last output for it is on the topic (what delivery's dedupe reads).
    """

    def __init__(self, processor: StreamProcessor):
        self.processor = processor

    async def on_partitions_revoked(self, revoked) -> None:
        await self.processor.hand_over()

    async def on_partitions_assigned(self, assigned) -> None:
        pass


# Below the consumer's rebalance timeout, so a slow record does not get this member expelled.
REVOKE_WAIT_SECONDS = 8.0
# How often a processor compares its positions with the partitions' ends (a broker that lost its log).
LOG_CHECK_SECONDS = 2.0


class StreamProcessor:
    """Consume topics in a consumer group, hand each record to `handle`, produce, then commit."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        group_id: str,
        topics: list[str],
        handle: Handler,
        on_poison: PoisonHandler,
        metrics=None,
        transient: tuple[type[BaseException], ...] = DEFAULT_TRANSIENT,
        before_partition: Callable[[TopicPartition], Awaitable[None]] | None = None,
        on_produced: Callable[[list[Outgoing]], Awaitable[None]] | None = None,
        concurrency: int = 1,
        commit_per_batch: bool = False,
        background: bool = False,
        trace_as: str | dict[str, str] | None = None,
    ):
        """before_partition: awaited before a partition's batch (e.g. catch a view up);
        on_produced: called with a record's outputs once the broker acknowledged them, before
        the next record of the partition (state that must only follow a real publish);
        concurrency: how many records of one partition are handled side by side (the image stages:
        a burst into one conversation would otherwise wait in line; at most this many in the whole
        processor, so as many originals are in memory at once). Outputs are still produced, and
        offsets committed, in record order: a conversation's photos stay in send order;
        commit_per_batch: records handled one by one are committed once at the end of their batch
        (projections: redoing a few upserts after a crash costs nothing; elsewhere each record is
        committed, so a rebalance or crash redoes one record, not a batch);
        background: nobody waits on this consumer's lag (half a second is never noticed), so it polls
        the broker less often (fetch_wait_ms);
        trace_as: the name of the span each record's handling is, in the trace its headers carry, or
        the name per topic (topics not named are not traced): the pipeline's stages; projections are
        not traced (a file's trace would gain a span per view)."""
        if concurrency > 1 and before_partition is not None:
            raise ValueError("before_partition runs before a batch; records handled ahead would skip it")
        self.settings, self.name, self.group_id, self.topics = settings, name, group_id, topics
        self.handle, self.on_poison, self.metrics, self.transient = handle, on_poison, metrics, transient
        self.before_partition, self.on_produced, self.concurrency = before_partition, on_produced, concurrency
        self.commit_per_batch, self.background, self.trace_as = commit_per_batch, background, trace_as
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.stopping = asyncio.Event()
        self.running = False
        # Test-only fault injection: die between producing outputs and committing the input.
        self._crash_after_produce = os.environ.get("FS_TEST_CRASH_AFTER_PRODUCE") == name
        # Set while no batch is being handled: rebalances and stop() wait for it, so a record's
        # outputs are never produced after this member gave its partition away.
        self._idle = asyncio.Event()
        self._idle.set()
        self._generation = 0
        self._abandon_below = 0  # records fetched in a generation below this outlived their fence
        self._in_flight: dict[TopicPartition, asyncio.Future] = {}  # each partition's newest batch
        self._unfinished: dict[TopicPartition, int] = {}  # records fetched and not yet committed
        self._handler_slots = asyncio.Semaphore(concurrency)
        self._failure: BaseException | None = None
        self.offsets = GroupOffsets(settings)  # wait_caught_up reads every instance's commits with it

    async def hand_over(self) -> None:
        """Before this member gives its partitions away: wait for the record in flight (bounded)."""
        self._generation += 1  # batches fetched before the rebalance stop after the current record
        try:
            await asyncio.wait_for(self._idle.wait(), REVOKE_WAIT_SECONDS)
        except TimeoutError:
            # The next owner starts now and redoes that record: whatever it yields here is dropped
            # (never produced), so the two members cannot both publish it.
            self._abandon_below = self._generation
            log.warning(
                "%s: record still in flight at rebalance; its outputs will be dropped and the next owner redoes it",
                self.name,
            )

    async def start(self) -> None:
        # aiokafka clients bind to the running loop: create them here, not in __init__.
        self.producer = make_producer(self.settings)
        self.consumer = make_consumer(self.settings, self.group_id, background=self.background)
        self.consumer.subscribe(self.topics, listener=_RevocationFence(self))
        await start_with_retry(self.producer, f"{self.name} producer", self.stopping)
        await start_with_retry(self.consumer, f"{self.name} consumer", self.stopping)
        self.running = True

    async def stop(self) -> None:
        self.stopping.set()
        self.running = False
        try:
            # Finish (produce + commit) the record in flight before leaving the group.
            await asyncio.wait_for(self._idle.wait(), REVOKE_WAIT_SECONDS)
        except TimeoutError:
            log.warning("%s: stopping with a record in flight; it will be redone", self.name)
        for client in (self.consumer, self.producer, self.offsets):
            if client is None:
                continue
            try:
                await client.stop()
            except Exception:
                log.debug("stop failed", exc_info=True)

    async def run(self) -> None:
        """Fetch continuously; each partition's records run in a task of their own, in order.

        A partition with work in flight is paused, so the next fetches serve the others: one
        slow record (a decode cut off only by its time limit, a storage retry) holds up its own
        conversation's partition, never the rest. Raises what a partition task could not handle.
        """
        log.info("%s: consuming %s as group %s", self.name, ",".join(self.topics), self.group_id)
        next_log_check = time.monotonic() + LOG_CHECK_SECONDS
        while not self.stopping.is_set():
            if self._failure is not None:
                raise self._failure
            if time.monotonic() >= next_log_check:
                next_log_check = time.monotonic() + LOG_CHECK_SECONDS
                await self._reread_partitions_whose_log_was_lost()
            try:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=50)
            except KafkaError as e:
                if not note_transient(e, f"{self.name} fetch"):
                    log.warning("%s: fetch failed (%s); retrying", self.name, e)
                await asyncio.sleep(0.5)
                continue
            for tp, records in batches.items():
                if records and not self.stopping.is_set() and self._failure is None:
                    self._start_partition(tp, records)
        if self._failure is not None:
            raise self._failure

    async def _reread_partitions_whose_log_was_lost(self) -> None:
        """A broker that lost its log (the embedded one after a restart) starts every partition again
        at offset 0. A member whose position (or a committed offset that reached the new broker) is
        past the new end would skip everything written there until the log grows past it: such a
        partition is read again from its beginning (handlers are idempotent).

        The end is the high watermark of the partition's last fetch, never ListOffsets: Tansu answers
        ListOffsets(latest) with the base offset of the last record batch + 1, which is below our
        position after every batch of more than one record (a healthy partition would be re-read
        every time, and its old events would be folded in again)."""
        rewound = []
        for tp in self.consumer.assignment():
            try:
                end = self.consumer.highwater(tp)
                if tp in self._in_flight or end is None:
                    continue
                position = await asyncio.wait_for(self.consumer.position(tp), 1.0)
                if position > end:
                    await self.consumer.seek_to_beginning(tp)
                    rewound.append(f"{tp.topic}[{tp.partition}] {position}→{end}")
            except (TimeoutError, KafkaError, AssertionError) as e:  # AssertionError: unassigned meanwhile
                log.debug("%s: log check of %s skipped (%s)", self.name, tp, e)
        if rewound:
            log.warning(
                "%s: %d partition(s) end before our position (a broker that lost its log); reading them "
                "again from their beginning: %s",
                self.name,
                len(rewound),
                ", ".join(rewound),
            )

    def _start_partition(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        """Paused once `concurrency` records of the partition are unfinished: the next fetches serve
        the others, and one slow record holds up its own conversation's partition, never the rest."""
        self._idle.clear()
        self._unfinished[tp] = self._unfinished.get(tp, 0) + len(records)
        if self._unfinished[tp] >= self.concurrency:
            self.consumer.pause(tp)
        # A batch still running for this partition (the one before, or one that outlived a rebalance
        # fence and the partition came back) produces and commits first: record order is kept.
        previous = self._in_flight.get(tp)
        handled = self._handle_ahead(records) if self.concurrency > 1 else None
        # Not awaited by run(): cancelling run() (shutdown) lets the record in flight finish; stop() waits.
        task = asyncio.ensure_future(self._process_partition(tp, records, self._generation, previous, handled))
        self._in_flight[tp] = task
        task.add_done_callback(lambda t: self._partition_done(tp, t, len(records)))

    def _handle_ahead(self, records: list[ConsumerRecord]) -> list[asyncio.Future]:
        """Start handling the batch's records now, at most `concurrency` in the processor at a time
        (first come, first served: a batch's records in order)."""

        async def handle(record: ConsumerRecord):
            async with self._handler_slots:
                return await self._handle_one(record)

        return [asyncio.ensure_future(handle(r)) for r in records]

    def _partition_done(self, tp: TopicPartition, task: asyncio.Future, fetched: int) -> None:
        self._unfinished[tp] -= fetched
        if self._in_flight.get(tp) is task:
            del self._in_flight[tp]
        if not self._in_flight:
            self._idle.set()
        if task.cancelled():
            return
        if task.exception() is not None:
            self._failure = self._failure or task.exception()
            return
        if self.stopping.is_set() or self._failure is not None:
            return  # leaving: the next owner starts from the committed offset
        unfinished = task.result()
        try:
            if tp not in self.consumer.assignment():
                return  # revoked: the next owner starts from the committed offset
            if unfinished is not None:
                # The fetch position is past the batch: go back so no record is skipped (handlers
                # are idempotent: a record done twice is harmless, one never done is a lost photo).
                self.consumer.seek(tp, unfinished)
            if tp in self._in_flight and (unfinished is not None or self._unfinished[tp] >= self.concurrency):
                return  # the batches behind resume it (after stopping early too: they were fetched past it)
            self.consumer.resume(tp)
        except Exception:
            log.warning(
                "%s: cannot resume %s; it is redelivered after the next rebalance", self.name, tp, exc_info=True
            )

    async def _process_partition(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord],
        generation: int,
        previous: asyncio.Future | None = None,
        handled: list[asyncio.Future] | None = None,
    ) -> int | None:
        """Produce and commit each record's outputs in record order (handling them one by one, or
        awaiting `handled`, started ahead); returns the offset of the first record left undone
        (stopping, a rebalance, a failed commit, a batch before it left undone), or None."""
        try:
            if previous is not None:
                await asyncio.wait([previous])
                if previous.cancelled() or previous.exception() is not None:
                    # The batch before failed (the service stops on it) or was cancelled (stopping):
                    # nothing after its undone records may be committed.
                    return records[0].offset
                if previous.result() is not None:
                    return previous.result()  # the batch before stopped early: all from there is redone
            if self.before_partition is not None:
                await retry_transient(
                    lambda: self.before_partition(tp), f"{self.name} prepare {tp}", self.transient, self.stopping
                )
            return await self._produce_in_order(tp, records, generation, handled)
        finally:
            for work in handled or ():
                if not work.done():
                    work.cancel()  # records left undone: redone by whoever reads them next (idempotent)
                elif not work.cancelled():
                    work.exception()  # retrieved: a record's failure is reported once, by its own await

    async def _produce_in_order(
        self, tp: TopicPartition, records: list[ConsumerRecord], generation: int, handled: list[asyncio.Future] | None
    ) -> int | None:
        """One commit covers the records produced until the next one is not ready yet (or, with
        commit_per_batch, the batch ends): a crash redoes at most those (handlers are idempotent),
        and a burst costs one commit round trip instead of one per record."""
        uncommitted: int | None = None  # the first record produced but not committed yet

        async def commit(upto: ConsumerRecord) -> bool:
            nonlocal uncommitted
            try:
                await self.consumer.commit({tp: upto.offset + 1})
            except (CommitFailedError, KafkaError) as e:
                # Partition moved to another member: it will redo these records (handlers are idempotent).
                log.warning(
                    "%s: commit of %s@%d failed (%s); records from @%d will be redelivered",
                    self.name,
                    tp,
                    upto.offset,
                    e,
                    uncommitted,
                )
                return False
            uncommitted = None
            return True

        for i, record in enumerate(records):
            if self._failure is not None:
                return record.offset if uncommitted is None else uncommitted  # the service stops
            if self.stopping.is_set() or generation != self._generation:
                # Stopping, or the group rebalanced (inside the fence: this member may still commit):
                # what is produced is committed, the rest is redelivered from there.
                if uncommitted is not None and not await commit(records[i - 1]):
                    return uncommitted
                return record.offset
            outputs, outcome = await (handled[i] if handled else self._handle_one(record))
            if generation < self._abandon_below:
                log.warning(
                    "%s: %s@%d finished after its partition was handed over; outputs dropped, the owner redoes it",
                    self.name,
                    tp,
                    record.offset,
                )
                return record.offset if uncommitted is None else uncommitted
            await retry_transient(
                lambda: send_all(self.producer, outputs), f"{self.name} produce", self.transient, self.stopping
            )
            if self.on_produced is not None and outputs:
                await retry_transient(
                    lambda: self.on_produced(outputs), f"{self.name} record outputs", self.transient, self.stopping
                )
            self._count_rejections(outputs)
            if self._crash_after_produce:
                log.error("%s: FS_TEST_CRASH_AFTER_PRODUCE set: exiting before commit", self.name)
                os._exit(17)
            if self.metrics is not None:
                self.metrics.records.labels(tp.topic, outcome).inc()
            uncommitted = record.offset if uncommitted is None else uncommitted
            if handled is None:
                next_ready = self.commit_per_batch and i + 1 < len(records)
            else:
                next_ready = i + 1 < len(records) and handled[i + 1].done()
            if not next_ready and not await commit(record):
                return uncommitted
        return None

    async def wait_caught_up(self, timeout: float = 10.0) -> None:
        """Return once this consumer group (every instance of it) has committed every record that was
        in its topics when called, e.g. conversation closes before a publish. After `timeout` it logs
        and returns: a lagging group must slow the caller down, never stop it. Limit: the end of a
        partition another instance owns comes from ListOffsets, which Tansu under-reports by its
        last batch's other records (exact for one-record produces; Apache Kafka is exact)."""
        tps = [TopicPartition(t, p) for t in self.topics for p in sorted(self.consumer.partitions_for_topic(t) or ())]
        ends = await self.consumer.end_offsets(tps)
        for tp in tps:
            # Tansu's ListOffsets can fall short by the last batch's size (see above); the high
            # watermark of our own partitions' fetches does not.
            if tp in self.consumer.assignment():
                ends[tp] = max(ends[tp], self.consumer.highwater(tp) or 0)
        try:
            behind = await self.offsets.wait_committed([self.group_id], ends, timeout)
        except TimeoutError:
            behind = [self.group_id]
        if behind:
            log.warning("%s: group %s still behind after %.0fs; going on", self.name, self.group_id, timeout)

    def _count_rejections(self, outputs: list[Outgoing]) -> None:
        rejected = getattr(self.metrics, "rejected", None)
        for out in outputs:
            if rejected is not None and out.topic == FILE_REJECTED:
                rejected.labels(getattr(out.event, "reason", "unknown")).inc()

    async def _handle_one(self, record: ConsumerRecord) -> tuple[list[Outgoing], str]:
        def count_retry(e: BaseException):
            if self.metrics is not None:
                self.metrics.retries.labels(type(e).__name__).inc()

        started = time.perf_counter()
        span_name = self.trace_as.get(record.topic) if isinstance(self.trace_as, dict) else self.trace_as
        with consuming(record, span_name, self.group_id) as span:  # the outputs made here carry it on
            try:
                outputs = await retry_transient(
                    lambda: self.handle(record),
                    f"{self.name} handle {record.topic}@{record.offset}",
                    self.transient,
                    self.stopping,
                    on_retry=count_retry,
                )
                if self.metrics is not None:
                    self.metrics.handle_seconds.labels(record.topic).observe(time.perf_counter() - started)
                return outputs, "ok"
            except Exception as exc:
                if self.stopping.is_set():
                    raise
                log.exception("%s: poison record %s[%d]@%d", self.name, record.topic, record.partition, record.offset)
                fail(span, exc)

                error = exc  # what poison() closes over: a name that outlives the except block

                async def poison():
                    outputs = self.on_poison(record, error)
                    return await outputs if inspect.isawaitable(outputs) else outputs

                return await retry_transient(
                    poison, f"{self.name} poison {record.offset}", self.transient, self.stopping
                ), "poison"
