"""Re-drive: what makes a broker that lost its log lose no photo.

Every `FS_REDRIVE_SECONDS` / 4 each upload instance takes the unfinished files (uploaded, sanitized,
resized) whose stage has not moved for `FS_REDRIVE_SECONDS`, emits their last pipeline event again
and marks them moved; handlers are idempotent, so a file that was only slow is done twice, never
lost. `FOR UPDATE SKIP LOCKED`: several instances share the work, none emits a file twice per round.

One case re-drive cannot mend: delivery published the file, and the broker lost the
message.published before this service read it. Delivery then ignores the re-driven file.resized
(at most one message per file), so a `resized` file that was re-driven before is first looked up
with delivery's internal publication lookup (`GET /internal/v1/files/{id}/publication`, a service
token): when it is published, its status says so and nothing is emitted.

Also here: account.settings is re-published from the database when the topic is empty (a broker
that restarted on its memory engine), so the services that follow it keep their settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.upload import rate_limits
from services.upload import status as file_status
from shared.adapters.db import Connection, Database
from shared.adapters.kafka import Outgoing, Publisher, start_with_retry
from shared.contract import events as ev
from shared.contract.auth import mint_service_token
from shared.contract.ids import is_valid_id, shown
from shared.contract.topics import ACCOUNT_SETTINGS, FILE_RESIZED, FILE_SANITIZED, FILE_UPLOADED
from shared.projections.account_settings import all_documents
from shared.runtime.logs import file_ctx
from shared.runtime.outages import note_transient
from shared.settings import Settings

log = logging.getLogger(__name__)
TOPIC_OF_EVENT = {"file.uploaded": FILE_UPLOADED, "file.sanitized": FILE_SANITIZED, "file.resized": FILE_RESIZED}
BATCH = 200
LOOKUPS_AT_ONCE = 8  # questions to delivery in flight at once (a backlog after a broker loss)


Delivered = Callable[[ev.FileResized], Awaitable[bool]]


async def redrive_stalled(
    db: Database, publisher: Publisher, idle_seconds: float, metrics=None, delivered: Delivered | None = None
) -> int:
    """One round; returns how many files were re-driven. A short transaction claims the stalled files
    (marks them moved: the next round of any instance leaves them alone); asking delivery (a few
    files at once) and producing happen outside it, so no row stays locked behind a slow dependency.
    A file re-driven again waits twice as long each time (up to 64×): a backlog is not re-emitted
    over and over."""
    async with db.transaction() as conn:
        rows = await (
            await conn.execute(
                "SELECT file_id, pending_event, redrives FROM files WHERE pending_event IS NOT NULL "
                "AND moved_at < now() - make_interval(secs => %s * power(2, least(redrives, 6))) "
                "ORDER BY moved_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (idle_seconds, BATCH),
            )
        ).fetchall()
        if not rows:
            return 0
        await conn.execute(
            "UPDATE files SET moved_at = now(), redrives = redrives + 1 WHERE file_id = ANY(%s)",
            ([r["file_id"] for r in rows],),
        )
    stalled = [ev.parse_event(row["pending_event"]) for row in rows]
    asks = asyncio.Semaphore(LOOKUPS_AT_ONCE)

    async def published(row, event) -> bool:
        if not (row["redrives"] and delivered is not None and isinstance(event, ev.FileResized)):
            return False
        async with asks:
            return await delivered(event)

    # An answer that failed counts as "not published": re-driving a published file is harmless
    # (delivery publishes once per file), skipping an unpublished one is not.
    answers = await asyncio.gather(
        *(published(row, event) for row, event in zip(rows, stalled)), return_exceptions=True
    )
    failed = [a for a in answers if isinstance(a, Exception)]
    if failed:
        log.warning(
            "asking delivery about %d re-driven file(s) failed (%s: %s); re-driving them",
            len(failed),
            type(failed[0]).__name__,
            failed[0],
        )
    events = []
    for event, was_published in zip(stalled, answers):
        if was_published is True:
            async with db.transaction() as conn:
                await confirm_published(conn, event)
        else:
            events.append(event)
    await publisher.send([Outgoing(TOPIC_OF_EVENT[e.event_type], e.conversation_id, e) for e in events])
    for e in events:
        log.warning("re-drove %s: no progress for %.0fs", e.event_type, idle_seconds, **file_ctx(e))
        if metrics is not None:
            metrics.redriven.labels(e.event_type).inc()
    return len(events)


async def confirm_published(conn: Connection, event: ev.FileResized) -> None:
    status = await file_status.load(conn, event.file_id, for_update=True)
    if status is not None and status.confirm_published():
        await file_status.save(conn, status, moved=True)
        log.warning(
            "delivery had published it; its message.published was lost with the broker's log", **file_ctx(event)
        )


class LookupFailed(Exception):
    """Delivery's publication lookup answered neither yes (200) nor no (404): a wrong secret or URL."""


def delivery_lookup(settings: Settings, http: httpx.AsyncClient) -> Delivered:
    """Asks delivery's internal publication lookup whether it published the file (upload's service token)."""

    async def delivered(event: ev.FileResized) -> bool:
        token = mint_service_token(settings.auth_secret, "upload")
        url = f"{settings.internal_delivery_url}/internal/v1/files/{event.file_id}/publication"
        r = await http.get(url, headers={"Authorization": f"Bearer {token}"})  # an error: counted, re-driven
        if r.status_code not in (200, 404):
            raise LookupFailed(f"delivery answered {r.status_code} at {url}")
        return r.status_code == 200

    return delivered


async def reseed_settings_if_empty(db: Database, publisher: Publisher, consumer: AIOKafkaConsumer) -> int:
    """Re-publish every account's settings when account.settings holds nothing; returns how many."""
    partitions = consumer.partitions_for_topic(ACCOUNT_SETTINGS) or set()
    if not partitions:
        await consumer.topics()  # refresh metadata: the topic may have been created since
        return 0
    ends = await consumer.end_offsets([TopicPartition(ACCOUNT_SETTINGS, p) for p in partitions])
    if any(ends.values()):
        return 0
    async with db.pool.connection() as conn:
        documents = await all_documents(conn)
    # Rows stored before ids had one shape cannot be published (the event refuses them).
    if refused := [account_id for account_id in documents if not is_valid_id(account_id)]:
        log.warning(
            "not re-publishing the settings of %d account(s) whose id is not of the contract's shape: %s",
            len(refused),
            ", ".join(shown(a) for a in refused[:5]),
        )
        documents = {a: d for a, d in documents.items() if is_valid_id(a)}
    if documents:
        await publisher.send(
            [
                Outgoing(ACCOUNT_SETTINGS, account_id, ev.AccountSettings(account_id=account_id, **doc.model_dump()))
                for account_id, doc in documents.items()
            ]
        )
        log.warning(
            "account.settings was empty (a broker that lost its log): re-published %d account(s)", len(documents)
        )
    return len(documents)


async def measure_unfinished(db: Database, metrics) -> None:
    """Set `fileshare_oldest_unfinished_file_seconds{stage}`: the wait of each stage's oldest file."""
    async with db.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT status, extract(epoch FROM now() - min(coalesce(updated_at, moved_at))) AS waited "
                "FROM files WHERE pending_event IS NOT NULL GROUP BY status"
            )
        ).fetchall()
    waited = {row["status"]: max(0.0, float(row["waited"])) for row in rows}
    for stage in file_status.UNFINISHED:
        metrics.oldest_unfinished.labels(stage).set(waited.get(stage, 0.0))


def recovery_job(settings: Settings, db: Database, publisher: Publisher, metrics=None):
    """The background job, forever: the settings re-seed, re-drive, the rate-limit sweep and the gauge of
    unfinished files."""

    async def recover(stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
        await start_with_retry(consumer, "upload recovery", stop)
        http = httpx.AsyncClient(timeout=5)
        delivered = delivery_lookup(settings, http)
        interval = max(0.5, min(settings.redrive_seconds / 4, 15))
        steps = [
            (lambda: reseed_settings_if_empty(db, publisher, consumer), "settings re-seed"),
            (lambda: redrive_stalled(db, publisher, settings.redrive_seconds, metrics, delivered), "re-drive"),
            (lambda: rate_limits.sweep(db), "rate-limit sweep"),
        ]
        if metrics is not None:
            steps.append((lambda: measure_unfinished(db, metrics), "unfinished-files gauge"))
        try:
            while not stop.is_set():
                for step, what in steps:
                    try:
                        await step()
                    except Exception as e:  # the next round retries; a dead job would stop all recovery
                        if not note_transient(e, what):
                            log.warning("%s failed (%s: %s); next round in %.1fs", what, type(e).__name__, e, interval)
                try:
                    await asyncio.wait_for(stop.wait(), interval)
                except TimeoutError:
                    pass
        finally:
            await http.aclose()
            await consumer.stop()

    return recover
