"""Re-drive on the real database: a file stuck at `resized` that was re-driven before is first looked
up with delivery (its message.published may have been lost with the broker's log); only the files
delivery did not publish are emitted again. And the gauge of how long each stage's oldest
unfinished file has waited, which the stuck-file alert reads."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from psycopg.types.json import Jsonb

from services.upload import status as file_status
from services.upload.metrics import UploadMetrics
from services.upload.redrive import LOOKUPS_AT_ONCE, measure_unfinished, redrive_stalled
from shared.contract import events as ev
from shared.contract.topics import FILE_RESIZED, FILE_SANITIZED
from tests.dbsupport import RecordingPublisher
from tests.support import unique


def stage_event(kind: type[ev.FileEvent], file_id: str) -> ev.FileEvent:
    account, conversation, consumer = "acct-redrive", unique("conv"), unique("consumer")
    key = f"{account}/{consumer}/{conversation}/{file_id}/"
    return kind(
        file_id=file_id,
        account_id=account,
        conversation_id=conversation,
        consumer_id=consumer,
        sender=ev.Sender(id="agent-1", role="agent"),
        object_key=key + "final",
        content_type="image/jpeg",
        size_bytes=2000,
        width=800,
        height=533,
    )


async def stalled(db, event: ev.FileEvent, redrives: int) -> None:
    """The file's row as the status projection leaves it, idle for an hour, re-driven `redrives` times."""
    async with db.transaction() as conn:
        status = await file_status.claim(conn, event)
        status.apply(event)
        await file_status.save(conn, status, moved=True)
        await conn.execute(
            "UPDATE files SET redrives = %s, moved_at = now() - %s, pending_event = %s WHERE file_id = %s",
            (redrives, timedelta(hours=1), Jsonb(event.model_dump(mode="json")), event.file_id),
        )


async def test_files_delivery_published_are_confirmed_and_only_the_others_are_emitted_again(open_database):
    db = await open_database("upload", fresh=True)  # re-drive scans every row
    resized = [stage_event(ev.FileResized, unique("f")) for _ in range(LOOKUPS_AT_ONCE + 4)]
    first_time = stage_event(ev.FileResized, unique("f"))  # never re-driven yet: not asked about
    sanitized = stage_event(ev.FileSanitized, unique("f"))  # not at delivery yet: not asked about
    for event in resized:
        await stalled(db, event, redrives=1)
    await stalled(db, first_time, redrives=0)
    await stalled(db, sanitized, redrives=1)
    published = {e.file_id for e in resized[: LOOKUPS_AT_ONCE + 1]}
    asked: list[str] = []
    in_flight, most_in_flight, enough_asked = 0, 0, asyncio.Event()

    async def delivered(event: ev.FileResized) -> bool:
        """Answers once LOOKUPS_AT_ONCE questions are open: asking one after another never gets there."""
        nonlocal in_flight, most_in_flight
        asked.append(event.file_id)
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        if in_flight == LOOKUPS_AT_ONCE:
            enough_asked.set()
        try:
            await asyncio.wait_for(enough_asked.wait(), 5)
        except TimeoutError:
            raise AssertionError(f"only {in_flight} question(s) to delivery at once") from None
        in_flight -= 1
        return event.file_id in published

    publisher = RecordingPublisher()
    emitted = await redrive_stalled(db, publisher, idle_seconds=60, delivered=delivered)

    again = {e.file_id for e in publisher.events(FILE_RESIZED)}
    assert again == {e.file_id for e in resized[LOOKUPS_AT_ONCE + 1 :]} | {first_time.file_id}
    assert [e.file_id for e in publisher.events(FILE_SANITIZED)] == [sanitized.file_id]
    assert emitted == len(again) + 1
    assert sorted(asked) == sorted(e.file_id for e in resized)
    assert most_in_flight == LOOKUPS_AT_ONCE
    async with db.pool.connection() as conn:
        for file_id in published:
            status = await file_status.load(conn, file_id)
            assert (status.status, status.pending_event) == ("published", None)


async def test_each_stage_reports_how_long_its_oldest_unfinished_file_has_waited(open_database):
    db = await open_database("upload", fresh=True)
    waits = {"sanitized": [timedelta(minutes=30), timedelta(minutes=1)], "resized": [timedelta(minutes=5)]}
    kinds = {"sanitized": ev.FileSanitized, "resized": ev.FileResized}
    for stage, ages in waits.items():
        for age in ages:
            event = stage_event(kinds[stage], unique("f"))
            await stalled(db, event, redrives=0)
            async with db.transaction() as conn:
                await conn.execute("UPDATE files SET updated_at = now() - %s WHERE file_id = %s", (age, event.file_id))
    metrics = UploadMetrics()

    def waited(stage: str) -> float:
        return metrics.registry.get_sample_value("fileshare_oldest_unfinished_file_seconds", {"stage": stage})

    await measure_unfinished(db, metrics)
    assert 30 * 60 <= waited("sanitized") < 40 * 60
    assert 5 * 60 <= waited("resized") < 15 * 60
    assert waited("uploaded") == 0

    async with db.transaction() as conn:  # every file finished: nothing waits any more
        await conn.execute("UPDATE files SET pending_event = NULL")
    await measure_unfinished(db, metrics)
    assert [waited(stage) for stage in ("uploaded", "sanitized", "resized")] == [0, 0, 0]
