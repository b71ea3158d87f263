"""Recycling the embedded broker (DESIGN.md, "The two commands": `FS_EMBEDDED_BROKER_MAX_MB`).

Tansu's memory engine keeps every record it was given and enforces no `retention.ms`; each
message.published carries a preview of up to 30 KB, so a broker that serves for months only grows.
Its log is transport, never state (the database is the system of record, re-drive and delivery's
republish mend a lost log, the platform's follower reads a partition again from its beginning), so
the way to free that memory is to restart it empty. `make run` does that in a quiet moment once
the broker's resident memory passes 90% of the limit (so what comes before that moment keeps it under the limit):

- every consumer group has committed the end of every partition it committed on (the end is a
  fetch's high watermark: Tansu under-reports ListOffsets, see shared.adapters.kafka.fetched_ends), and
- no file is in flight: none unfinished in upload's table that moved within `FS_REDRIVE_SECONDS`
  (one that has not moved for that long is re-drive's anyway, and must not hold the recycle off
  for ever).

So nothing waits in the log when it goes: no re-drive delay, nothing for the platform to miss.
A group that is behind for good (a platform consumer that went away without catching up) holds
the recycle off; the hourly warning names it.

The probes run in a daemon thread (like shared.devstack.liveness), so a slow broker or database never
stalls the supervisor's loop; the supervisor asks `due()` each round and does the restart.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("fileshare.stack")

MB = 1024 * 1024
NAG_SECONDS = 3600.0  # over the limit and never quiet: one warning per this many seconds
# A broker is not recycled again within this many seconds of its start: with a limit below what an
# empty broker uses, it would otherwise be restarted at every quiet probe.
MIN_AGE_SECONDS = 30.0
# The recycler looks for a quiet moment from this share of FS_EMBEDDED_BROKER_MAX_MB on: the records
# that arrive before the next quiet moment then grow the broker up to the limit, not past it.
RECYCLE_FROM = 0.9


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (0 when it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def groups_behind(committed: dict[str, dict[tuple[str, int], int]], ends: dict[tuple[str, int], int]) -> list[str]:
    """The groups that have not committed the end of a partition they committed on. A partition
    whose end is unknown counts as not caught up, and so does a commit past the end (the log was
    lost under the group: it reads the partition again)."""
    return sorted(
        group for group, offsets in committed.items() if any(ends.get(tp) != offset for tp, offset in offsets.items())
    )


@dataclass(frozen=True)
class Probe:
    """One look at the broker: its memory, the groups behind, the files in flight (None: unknown)."""

    pid: int
    rss: int
    behind: tuple[str, ...] = ()
    in_flight: int | None = 0
    at: float = 0.0
    settled: bool = True  # False: started too recently to be recycled again (MIN_AGE_SECONDS)

    def over(self, limit: int) -> bool:
        return self.rss > limit

    @property
    def quiet(self) -> bool:
        return self.settled and not self.behind and self.in_flight == 0


def verdict(probe: Probe, limit: int) -> str:
    """`fine` (under the limit), `recycle` (over it and quiet) or `wait` (over it, not quiet)."""
    if not probe.over(limit):
        return "fine"
    return "recycle" if probe.quiet else "wait"


async def read_groups_behind(bootstrap: str) -> list[str]:
    """Every consumer group the broker knows whose commits are behind a partition's end."""
    return groups_behind(*await read_commits_and_ends(bootstrap))


async def read_commits_and_ends(bootstrap: str) -> tuple[dict, dict]:
    """What every consumer group committed, and the end of each partition one committed on."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="fileshare-broker-memory")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="fileshare-broker-memory"
    )
    await admin.start()
    try:
        await consumer.start()
        topics = sorted(t for t in await consumer.topics() if not t.startswith("__"))
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        committed: dict[str, dict[tuple[str, int], int]] = {}
        # Tansu breaks the connection on an OffsetFetch without partitions: every one is named.
        for group, _kind in await admin.list_consumer_groups():
            answer = await admin.list_consumer_group_offsets(group, partitions=tps)
            committed[group] = {(tp.topic, tp.partition): o.offset for tp, o in answer.items() if o.offset >= 0}
        lowest: dict[tuple[str, int], int] = {}  # each partition is fetched from just before its lowest commit
        for offsets in committed.values():
            for tp, offset in offsets.items():
                lowest[tp] = min(offset, lowest.get(tp, offset))
        return committed, await fetched_ends_of(consumer, lowest)
    finally:
        await consumer.stop()
        await admin.close()


async def fetched_ends_of(
    consumer, near: dict[tuple[str, int], int], timeout: float = 5.0
) -> dict[tuple[str, int], int]:
    """The end of each partition as a fetch's high watermark reports it (Tansu under-reports
    ListOffsets), fetching from just before `near` (a small read when caught up); all partitions
    in one assignment. Partitions whose end is still unknown at `timeout` are left out."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(t, p) for t, p in sorted(near)]
    if not tps:
        return {}
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, max(near[(tp.topic, tp.partition)] - 1, 0))
    deadline = time.monotonic() + timeout
    while any(consumer.highwater(tp) is None for tp in tps) and time.monotonic() < deadline:
        await consumer.getmany(*tps, timeout_ms=200, max_records=len(tps))
    return {(tp.topic, tp.partition): consumer.highwater(tp) for tp in tps if consumer.highwater(tp) is not None}


def files_in_flight(database_url: str, redrive_seconds: float) -> int:
    """Unfinished files that moved within `redrive_seconds` (at most 1,000 counted). The launcher
    reads upload's table because it alone knows when a file is finished; the partial index
    files_unfinished makes this cheap."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5, autocommit=True, options="-c statement_timeout=5000") as conn:
        row = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM upload.files WHERE pending_event IS NOT NULL "
            "AND moved_at > now() - make_interval(secs => %s) LIMIT 1000) AS moving",
            (redrive_seconds,),
        ).fetchone()
        return row[0] if row is not None else 0


@dataclass
class BrokerRecycler:
    """Probes the broker every `interval` seconds; `due()` tells the supervisor when to restart it.
    `quiet_check(pid)` answers (groups behind, files in flight) and is only asked over the limit."""

    limit: int
    pid: Callable[[], int | None]
    quiet_check: Callable[[], tuple[list[str], int | None]]
    interval: float = 2.0
    metrics: LauncherMetrics | None = None
    clock: Callable[[], float] = time.monotonic
    nag_every: float = NAG_SECONDS
    min_age: float = MIN_AGE_SECONDS
    first_seen: dict[int, float] = field(default_factory=dict)  # broker pid → when first probed
    last: Probe | None = None
    over_since: float | None = None
    nagged_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def probe(self) -> Probe | None:
        """One look (in the caller's thread); None when there is no broker process."""
        pid = self.pid()
        if pid is None:
            return None
        rss = tree_rss(pid)
        if self.metrics is not None:
            self.metrics.resident.set(rss)
        if pid not in self.first_seen:
            self.first_seen = {pid: self.clock()}
        if rss <= self.limit:
            return Probe(pid, rss, at=self.clock())
        if self.clock() - self.first_seen[pid] < self.min_age:
            return Probe(pid, rss, at=self.clock(), settled=False)
        try:
            behind, in_flight = self.quiet_check()
        except Exception as e:  # a broker or database that does not answer now: not quiet
            log.debug("broker quiet check failed: %s", e)
            behind, in_flight = ["(the check failed)"], None
        return Probe(pid, rss, tuple(behind), in_flight, self.clock())

    def note(self, probe: Probe | None) -> None:
        with self.lock:
            self.last = probe
            if probe is None or not probe.over(self.limit):
                self.over_since = self.nagged_at = None
                return
            now = self.clock()
            self.over_since = self.over_since if self.over_since is not None else now
            if (
                not probe.quiet
                and now - self.over_since >= self.nag_every
                and (self.nagged_at is None or now - self.nagged_at >= self.nag_every)
            ):
                self.nagged_at = now
                log.warning(
                    "kafka uses %d MB (limit %d MB) and cannot be recycled yet: %s",
                    probe.rss // MB,
                    self.limit // MB,
                    why_not_quiet(probe),
                )

    def due(self, current_pid: int | None) -> Probe | None:
        """The probe that calls for a restart now: over the limit, quiet, of the running broker, and
        fresh (at most two intervals old); taken, so one probe restarts once."""
        with self.lock:
            probe = self.last
            if (
                probe is None
                or current_pid != probe.pid
                or verdict(probe, self.limit) != "recycle"
                or self.clock() - probe.at > 2 * self.interval
            ):
                return None
            self.last = None
            return probe

    def recycled(self) -> None:
        with self.lock:
            self.last, self.over_since, self.nagged_at = None, None, None
        if self.metrics is not None:
            self.metrics.recycles.inc()

    def run_in_background(self, stopping: threading.Event) -> threading.Thread:
        def rounds() -> None:
            while not stopping.is_set():
                try:
                    self.note(self.probe())
                except Exception:  # the thread must outlive any one failed look
                    log.debug("broker memory probe failed", exc_info=True)
                stopping.wait(self.interval)

        thread = threading.Thread(target=rounds, name="broker-memory", daemon=True)
        thread.start()
        return thread


def why_not_quiet(probe: Probe) -> str:
    parts = [] if probe.settled else [f"started less than {MIN_AGE_SECONDS:.0f} s ago"]
    if probe.behind:
        parts.append(
            f"consumer groups behind: {', '.join(probe.behind[:5])}"
            + (f" and {len(probe.behind) - 5} more" if len(probe.behind) > 5 else "")
        )
    if probe.in_flight is None:
        parts.append("files in flight unknown (database unreachable)")
    elif probe.in_flight:
        parts.append(f"{probe.in_flight} file(s) in flight")
    return "; ".join(parts)


class LauncherMetrics:
    """The launcher's own metrics (FS_METRICS_PORT_BASE + 5), served by prometheus-client."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.resident = Gauge(
            "fileshare_embedded_broker_resident_bytes",
            "Resident memory of the embedded broker's process tree",
            registry=self.registry,
        )
        self.recycles = Counter(
            "fileshare_embedded_broker_recycles",
            "Restarts of the embedded broker in a quiet moment to free its memory",
            registry=self.registry,
        )
        self.server = None

    def serve(self, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        self.server, _thread = start_http_server(port, addr=host, registry=self.registry)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def stack_recycler(stack, settings, metrics: LauncherMetrics | None = None) -> BrokerRecycler:
    """The recycler of the stack's broker, with its limit and quiet checks from the settings."""
    bootstrap, url = settings.kafka_bootstrap, stack.env["FS_DATABASE_URL"]

    def quiet_check() -> tuple[list[str], int | None]:
        behind = asyncio.run(asyncio.wait_for(read_groups_behind(bootstrap), 15))
        return behind, files_in_flight(url, settings.redrive_seconds)

    def pid() -> int | None:
        proc = stack.procs.get("kafka")
        return proc.pid if proc is not None and proc.poll() is None else None

    return BrokerRecycler(int(settings.embedded_broker_max_mb * MB * RECYCLE_FROM), pid, quiet_check, metrics=metrics)
