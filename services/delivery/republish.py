"""After the broker lost its log, send the recent messages again.

Re-drive (services.upload.redrive) brings back every file that was not finished; a message already
published is finished, so one the platform had not read yet when the broker lost its log would be
gone. Delivery sends again, with their original `message_id` and content (the row it keeps for the
transcript), the messages it published in the last `FS_REPUBLISH_MINUTES`; platforms deduplicate.

The signal, robust with several instances and silent on Apache Kafka: every publish raises, in the
same transaction as its message row, `published_ends` of its partition to the offset after the one
where the broker put it (`GREATEST`: instances acknowledged out of order never lower it). A partition
whose end (a fetch's high watermark) is now below that lost records delivery had written: a broker's
end offset never goes back, retention moves only the start. Limit: a lost log that grew past the old
end before the next check (every `CHECK_SECONDS`) goes unseen.

Once per lost log across instances: the republishing instance holds every `published_ends` row
(`FOR UPDATE`) while it reads the ends again, sends and sets each row to where the new log ends;
an instance that saw the same loss waits on those rows, reads the ends again, and finds nothing lost.
A message published into the new log before the check saw the loss is not sent twice (the new log
of each lost partition is read first); on a partition whose loss went unseen while another's was
seen, a message may come twice, with its one message_id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.adapters.db import Connection, Database
from shared.adapters.kafka import Outgoing, Publisher, fetched_ends, start_with_retry
from shared.contract import events as ev
from shared.contract.topics import MESSAGE_PUBLISHED
from shared.runtime.outages import note_transient
from shared.settings import Settings

log = logging.getLogger(__name__)
CHECK_SECONDS = 2.0


async def note_landed(conn: Connection, landed) -> None:
    """Where a publish landed (RecordMetadata from Publisher.send)."""
    for meta in landed:
        await conn.execute(
            "INSERT INTO published_ends (partition, next_offset) VALUES (%s, %s) ON CONFLICT (partition) "
            "DO UPDATE SET next_offset = GREATEST(published_ends.next_offset, EXCLUDED.next_offset)",
            (meta.partition, meta.offset + 1),
        )


def lost_partitions(written: dict[int, int], ends: dict[int, int]) -> list[int]:
    """Partitions that end before what delivery wrote to them (unknown ends count as intact)."""
    return sorted(p for p, upto in written.items() if p in ends and ends[p] < upto)


async def recent_messages(conn: Connection, minutes: float) -> list[ev.MessagePublished]:
    rows = await (
        await conn.execute(
            "SELECT message FROM messages WHERE published_at > now() - make_interval(secs => %s) ORDER BY seq",
            (minutes * 60,),
        )
    ).fetchall()
    return [ev.MessagePublished.model_validate(r["message"]) for r in rows]


async def message_ids_in(consumer: AIOKafkaConsumer, ends: dict[int, int], timeout: float = 10.0) -> set[str]:
    """The message_ids on message.published's partitions, from their start up to `ends` (a log that was
    just lost again: a few seconds of records)."""
    tps = [TopicPartition(MESSAGE_PUBLISHED, p) for p, end in ends.items() if end > 0]
    if not tps:
        return set()
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    found: set[str] = set()
    deadline = time.monotonic() + timeout
    # A list, not a generator: `await` in a generator expression makes an async generator, which any() cannot take.
    while any([await consumer.position(tp) < ends[tp.partition] for tp in tps]):
        if time.monotonic() > deadline:
            raise TimeoutError("could not read the new log of message.published")
        for records in (await consumer.getmany(*tps, timeout_ms=200)).values():
            for record in records:
                try:
                    found.add(json.loads(record.value)["message_id"])
                except (ValueError, TypeError, KeyError):
                    continue  # not ours to republish either way
    return found


async def republish_if_log_lost(
    db: Database, publisher: Publisher, consumer: AIOKafkaConsumer, minutes: float, metrics=None
) -> int | None:
    """One check; returns how many messages were sent again, None when nothing was lost."""
    async with db.pool.connection() as conn:
        written = {
            r["partition"]: r["next_offset"]
            for r in await (await conn.execute("SELECT partition, next_offset FROM published_ends")).fetchall()
        }
    if not written or not lost_partitions(written, await fetched_ends(consumer, MESSAGE_PUBLISHED, written)):
        return None
    async with db.transaction() as conn:
        written = {
            r["partition"]: r["next_offset"]
            for r in await (
                await conn.execute("SELECT partition, next_offset FROM published_ends ORDER BY partition FOR UPDATE")
            ).fetchall()
        }
        ends = await fetched_ends(consumer, MESSAGE_PUBLISHED, written)
        lost = lost_partitions(written, ends)
        if not lost:
            return None  # another instance sent them again while we waited for the rows
        # What was published into the new log before this check saw the loss is there already.
        present = await message_ids_in(consumer, {p: ends[p] for p in lost})
        messages = [m for m in await recent_messages(conn, minutes) if m.message_id not in present]
        landed = await publisher.send([Outgoing(MESSAGE_PUBLISHED, m.conversation_id, m) for m in messages])
        now_ends = {p: ends[p] for p in lost}
        for meta in landed:
            now_ends[meta.partition] = max(now_ends.get(meta.partition, 0), meta.offset + 1)
        for partition, upto in now_ends.items():  # lowered on purpose: this is the new log's end
            await conn.execute("UPDATE published_ends SET next_offset = %s WHERE partition = %s", (upto, partition))
    log.warning(
        "the broker lost its log (message.published partitions %s end before what delivery wrote): "
        "sent again the %d message(s) published in the last %g minutes",
        lost,
        len(messages),
        minutes,
    )
    if metrics is not None:
        metrics.republished.inc(len(messages))
    return len(messages)


def republish_job(settings: Settings, db: Database, publisher: Publisher, metrics=None):
    """The background job: a check at start, then every CHECK_SECONDS."""

    async def watch(stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        await start_with_retry(consumer, "delivery log watch", stop)
        try:
            while not stop.is_set():
                try:
                    await republish_if_log_lost(db, publisher, consumer, settings.republish_minutes, metrics)
                except Exception as e:  # the next round retries; a dead job would stop the watch
                    if not note_transient(e, "lost-log check"):
                        log.warning("lost-log check failed (%s: %s)", type(e).__name__, e)
                try:
                    await asyncio.wait_for(stop.wait(), CHECK_SECONDS)
                except TimeoutError:
                    pass
        finally:
            await consumer.stop()

    return watch
