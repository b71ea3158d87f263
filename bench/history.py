"""History: start-up, memory and status latency of every service with a year of history stored,
against an empty system, measured in the same run on the same servers (a benchmark, not a test).

    uv run python -m bench.history [--files 1000000] [--conversations 200000] [--accounts 1000]
                                   [--restarts 3] [--probes 2000]

The rule it checks: "with a million files and 200,000 conversations stored, every
service is ready within 1.5x the time it takes with none, and its memory grows by at most 50 MB".

1. One stack (running_stack) on a fresh data folder: the services migrate their schemas in its
   database, which stays empty. A second database on the same server, `history`, is migrated the
   same way (shared.adapters.db.migrate), then the history is bulk-loaded into it as a restore would:
   PostgreSQL COPY (psycopg 3 `cursor.copy()`) straight into every service's tables, rows streamed
   from generators (the bench's own memory stays flat), then VACUUM ANALYZE of the loaded tables
   and a CHECKPOINT (what a restore runbook does next). The load is timed.
2. A second set of the five services beside the first, on the loaded database, with a broker and
   ports of its own (the same PostgreSQL server, object storage and secrets). Other work on this
   machine moves its load a lot within a minute, so both sets are measured at the same time:
   `--restarts` times, all ten services are stopped and started together (the servers keep
   running); per service, time from process start to /readyz 200 and RSS (psutil) after ready;
   then `--probes` sequential `GET /v1/files/{id}` on each upload for random loaded files (the
   empty one answers 404), the transcripts of their conversations on each delivery, the two sets'
   requests alternating, and the RSS again. Ready times, RSS: medians over the restarts; latency
   percentiles over every probe of every restart.

The history: `--accounts` accounts (every schema's account_settings), `--conversations`
conversations (one consumer each, in upload and delivery), `--files` published photos spread over
the last 12 months: upload.files as a published file's row (status, caption on a third, sender,
dimensions, history, `pending_event` NULL), delivery.messages with the message.published document
(a 1 KB base64 preview), retention.files with created and expiry times (13 months, none due).

Writes bench/out/history.json and bench/out/history.png.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import httpx

from bench.cpu import cpu_seconds
from bench.pipeline import percentile
from shared.contract.durations import parse_duration
from shared.contract.events import AccountSettingsDocument
from shared.devstack.embedded import (
    SERVICES,
    EmbeddedStack,
    create_database,
    free_port,
    free_port_block,
    running_stack,
    tail,
)

OUT = Path(__file__).parent / "out"
TARGET_READY_RATIO, TARGET_RSS_DELTA_MB, TARGET_STATUS_P99_MS = 1.5, 50, 20
HISTORY_DAYS = 365
# The default retention, in the retention service's calendar terms.
RETENTION = parse_duration(AccountSettingsDocument.model_fields["retention"].default)
PREVIEW_BYTES = 768  # 1,024 characters of base64
PROGRESS_EVERY = 100_000
SAMPLE_SEED = 20261130


# --- the history ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """A deterministic history: everything about file i is a function of i, so the probes can name
    loaded files (and their accounts) without the bench keeping a million ids in memory."""

    files: int
    conversations: int
    accounts: int
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def account(self, conversation: int) -> str:
        return f"acct-{conversation % self.accounts:05d}"

    @staticmethod
    def conversation_id(conversation: int) -> str:
        return f"conv-{conversation:07d}"

    @staticmethod
    def consumer_id(conversation: int) -> str:
        return f"consumer-{conversation:07d}"

    def conversation_of(self, i: int) -> int:
        return i % self.conversations

    @staticmethod
    def file_id(i: int) -> str:
        return fake_uuid(b"file", i)

    def created_at(self, i: int) -> datetime:
        """Oldest first, evenly over the last HISTORY_DAYS (none expires within 13 months)."""
        return self.now - timedelta(seconds=(self.files - i) * HISTORY_DAYS * 86400 // max(self.files, 1))

    @staticmethod
    def sender(i: int) -> str:
        return f"agent-{i % 50:02d}"

    @staticmethod
    def caption(i: int) -> str | None:
        return f"Photo {i} of your order, as discussed: the item before it was packed" if i % 3 == 0 else None

    @staticmethod
    def shape(i: int) -> tuple[int, int, int]:
        """width, height, size in bytes of the final image."""
        width, height = ((800, 600), (600, 800), (800, 800), (800, 450))[i % 4]
        return width, height, 60_000 + (i * 7919) % 240_000

    def sample(self, n: int) -> list[int]:
        return random.Random(SAMPLE_SEED).sample(range(self.files), min(n, self.files))

    def settings_document(self) -> str:
        return AccountSettingsDocument(
            feature_enabled=True,
            file_sharing_enabled=True,
            permissions={
                "agent": ["send_files_local", "send_files_widget"],
                "agent_manager": ["send_files_local"],
                "bot": ["send_files_local"],
            },
        ).model_dump_json()


def fake_uuid(kind: bytes, i: int) -> str:
    """A random-looking version-4 UUID, the same for the same (kind, i)."""
    x = hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16, person=kind).hexdigest()
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-a{x[17:20]}-{x[20:]}"


PREVIEWS = [base64.b64encode(random.Random(n).randbytes(PREVIEW_BYTES)).decode() for n in range(64)]


def account_settings_rows(h: History) -> Iterator[tuple]:
    document = h.settings_document()
    for a in range(h.accounts):
        yield h.account(a), document, h.now - timedelta(days=HISTORY_DAYS + 1)


def conversation_rows(h: History) -> Iterator[tuple]:
    for c in range(h.conversations):
        # The newest 5% are still open; the rest were closed after their last photo.
        is_open = c >= h.conversations * 0.95
        yield h.conversation_id(c), h.account(c), h.consumer_id(c), "web", True, is_open, h.now


UPLOAD_FILE_COLUMNS = (
    "file_id",
    "account_id",
    "conversation_id",
    "consumer_id",
    "status",
    "content_type",
    "size_bytes",
    "width",
    "height",
    "caption",
    "sender_id",
    "history",
    "described_by",
    "updated_at",
    "pending_event",
    "moved_at",
    "redrives",
)
PUBLISHED_HISTORY = "{uploaded,sanitized,resized,published}"


def upload_file_rows(h: History) -> Iterator[tuple]:
    """A published file as upload.status leaves it: described by its message, nothing pending."""
    for i in range(h.files):
        c = h.conversation_of(i)
        width, height, size = h.shape(i)
        published = h.created_at(i) + timedelta(seconds=3)
        yield (
            h.file_id(i),
            h.account(c),
            h.conversation_id(c),
            h.consumer_id(c),
            "published",
            "image/jpeg",
            size,
            width,
            height,
            h.caption(i),
            h.sender(i),
            PUBLISHED_HISTORY,
            "published",
            published,
            None,
            published,
            0,
        )


MESSAGE_COLUMNS = (
    "file_id",
    "seq",
    "account_id",
    "conversation_id",
    "consumer_id",
    "content_type",
    "size_bytes",
    "message",
    "published_at",
)


def message_rows(h: History) -> Iterator[tuple]:
    """delivery.messages: the message.published document as delivery stores it (1 KB preview)."""
    for i in range(h.files):
        c = h.conversation_of(i)
        file_id, (w, ht, size) = h.file_id(i), h.shape(i)
        published = h.created_at(i) + timedelta(seconds=3)
        caption = h.caption(i)
        message = {
            "event_id": fake_uuid(b"event", i),
            "event_type": "message.published",
            "occurred_at": published.isoformat(),
            "file_id": file_id,
            "account_id": h.account(c),
            "conversation_id": h.conversation_id(c),
            "consumer_id": h.consumer_id(c),
            "sender": {"id": h.sender(i), "role": "agent"},
            "source": "local",
            "request_id": None,
            "message_id": fake_uuid(b"message", i),
            "caption": caption,
            "content": {
                "type": "hosted_file",
                "content_type": "image/jpeg",
                "width": w,
                "height": ht,
                "size_bytes": size,
                "caption": caption,
                "download_path": f"/v1/files/{file_id}/content",
                "preview": PREVIEWS[i % len(PREVIEWS)],
            },
        }
        yield (
            file_id,
            i + 1,
            h.account(c),
            h.conversation_id(c),
            h.consumer_id(c),
            "image/jpeg",
            size,
            json.dumps(message, separators=(",", ":")),
            published,
        )


RETENTION_FILE_COLUMNS = (
    "file_id",
    "account_id",
    "consumer_id",
    "conversation_id",
    "size_bytes",
    "created_at",
    "expires_at",
)


def retention_file_rows(h: History) -> Iterator[tuple]:
    for i in range(h.files):
        c = h.conversation_of(i)
        created = h.created_at(i)
        yield (
            h.file_id(i),
            h.account(c),
            h.consumer_id(c),
            h.conversation_id(c),
            h.shape(i)[2],
            created,
            expires_at(created),
        )


@lru_cache(maxsize=4096)
def _expiry_of_day(day: datetime) -> datetime:
    return day + RETENTION


def expires_at(created: datetime) -> datetime:
    """created + RETENTION: calendar months move the date only, so the date arithmetic is done once
    per day, not for each of a million rows."""
    day = created.replace(hour=0, minute=0, second=0, microsecond=0)
    return _expiry_of_day(day) + (created - day)


SETTINGS_COLUMNS = ("account_id", "document", "updated_at")
CONVERSATION_COLUMNS = (
    "conversation_id",
    "account_id",
    "consumer_id",
    "channel",
    "authenticated",
    "open",
    "updated_at",
)


def tables(h: History) -> list[tuple[str, tuple[str, ...], Callable[[], Iterator[tuple]], int]]:
    """(table, columns, rows, row count): every schema's tables a restore fills."""
    settings = [
        (f"{schema}.account_settings", SETTINGS_COLUMNS, lambda: account_settings_rows(h), h.accounts)
        for schema in ("upload", "sanitizer", "resizer", "retention")
    ]
    conversations = [
        (f"{schema}.conversations", CONVERSATION_COLUMNS, lambda: conversation_rows(h), h.conversations)
        for schema in ("upload", "delivery")
    ]
    return (
        settings
        + conversations
        + [
            ("upload.files", UPLOAD_FILE_COLUMNS, lambda: upload_file_rows(h), h.files),
            ("delivery.messages", MESSAGE_COLUMNS, lambda: message_rows(h), h.files),
            ("retention.files", RETENTION_FILE_COLUMNS, lambda: retention_file_rows(h), h.files),
        ]
    )


def copy_table(conn, table: str, columns: tuple[str, ...], rows: Iterator[tuple], total: int) -> dict:
    from psycopg import sql

    schema, name = table.split(".")
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    started = last = time.perf_counter()
    count = 0
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
            if count % PROGRESS_EVERY == 0:
                now = time.perf_counter()
                print(f"    {table}: {count:,}/{total:,} rows, {PROGRESS_EVERY / (now - last):,.0f} rows/s", flush=True)
                last = now
    seconds = time.perf_counter() - started
    return {"rows": count, "seconds": round(seconds, 2), "rows_per_second": round(count / seconds) if seconds else None}


def bulk_load(url: str, h: History) -> dict:
    """COPY every table (one transaction each), then what a restore ends with: the sequence past the
    loaded rows, VACUUM ANALYZE, a CHECKPOINT."""
    import psycopg

    out: dict = {"tables": {}}
    print(f"  bulk load: {h.files:,} files, {h.conversations:,} conversations, {h.accounts:,} accounts", flush=True)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for table, columns, rows, total in tables(h):
            with conn.transaction():
                out["tables"][table] = copy_table(conn, table, columns, rows(), total)
            print(
                f"    {table}: {out['tables'][table]['rows']:,} rows in {out['tables'][table]['seconds']:.1f}s",
                flush=True,
            )
        conn.execute("SELECT setval(pg_get_serial_sequence('delivery.messages', 'seq'), %s)", (max(h.files, 1),))
        out["copy_seconds"] = round(time.perf_counter() - started, 2)
        vacuum_started = time.perf_counter()
        for table in out["tables"]:
            conn.execute(f"VACUUM ANALYZE {table}")
        out["vacuum_analyze_seconds"] = round(time.perf_counter() - vacuum_started, 2)
        checkpoint_started = time.perf_counter()
        conn.execute("CHECKPOINT")  # the restore is done when it is on disk, not while the server still writes it
        out["checkpoint_seconds"] = round(time.perf_counter() - checkpoint_started, 2)
        out["table_bytes"] = {
            table: conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0] for table in out["tables"]
        }
    out["seconds"] = round(time.perf_counter() - started, 2)
    out["bench_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux
    print(
        f"  bulk load done: COPY {out['copy_seconds']:.1f}s, VACUUM ANALYZE {out['vacuum_analyze_seconds']:.1f}s, "
        f"CHECKPOINT {out['checkpoint_seconds']:.1f}s, bench process peak RSS {out['bench_max_rss_mb']:.0f} MB, "
        f"database {sum(out['table_bytes'].values()) / 1e9:.2f} GB",
        flush=True,
    )
    return out


def row_counts(url: str, h: History) -> dict[str, int]:
    """Rows in the tables the history fills (of the empty database, at the end: all zero, since the
    loaded set has a broker of its own)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table, *_ in tables(h)}


# --- measuring the services ------------------------------------------------------------------------


def rss_mb(pid: int) -> dict[str, float]:
    """The service process's RSS, and with its child processes (image workers) added."""
    import psutil

    proc = psutil.Process(pid)
    own = proc.memory_info().rss
    children = 0
    for child in proc.children(recursive=True):
        try:
            children += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return {"rss_mb": round(own / 2**20, 1), "rss_tree_mb": round((own + children) / 2**20, 1)}


STATES = ("empty", "loaded")


def restart_services(stacks: dict[str, object], timeout: float = 300) -> dict[str, dict[str, dict]]:
    """Stop every service of both stacks, start all ten together (as `make run` starts five) and time
    each from its process start to /readyz 200 (polled every 20 ms). {state: {service: figures}}"""
    for stack in stacks.values():
        for name in SERVICES:
            stack.stop_process(name)
    started = {}
    for name in SERVICES:
        for state, stack in stacks.items():
            started[state, name] = time.perf_counter()
            stack.start_service(name)
    ready: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1) as http:
        while len(ready) < len(started):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready within {timeout}s: {sorted(set(started) - set(ready))}")
            for state, name in [k for k in started if k not in ready]:
                stack = stacks[state]
                proc = stack.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{state} {name} exited with {proc.returncode}:\n{tail(stack.log_dir / f'{name}.log', 30)}"
                    )
                try:
                    answered = http.get(stack.service_ready_url(name)).status_code == 200
                except httpx.HTTPError:
                    answered = False
                if answered:
                    ready[state, name] = round(time.perf_counter() - started[state, name], 3)
            time.sleep(0.02)
    return {
        state: {name: {"ready_seconds": ready[state, name], **rss_mb(stack.procs[name].pid)} for name in SERVICES}
        for state, stack in stacks.items()
    }


def probe(http: httpx.Client, targets: list[tuple[str, str, dict]]) -> dict[str, dict]:
    """Sequential GETs, the two states' requests alternating (no queueing in the figures, and the
    same machine load on both): per state, latencies in ms, a count per answer code and, for answers
    with a `status` (upload's file status), a count per status."""
    out = {state: {"latencies_ms": [], "codes": {}, "statuses": {}} for state in STATES}
    for state, url, headers in targets:
        t = time.perf_counter()
        r = http.get(url, headers=headers)
        seen = out[state]
        seen["latencies_ms"].append(round((time.perf_counter() - t) * 1000, 2))
        seen["codes"][r.status_code] = seen["codes"].get(r.status_code, 0) + 1
        if r.status_code == 200 and "status" in (body := r.json()):
            seen["statuses"][body["status"]] = seen["statuses"].get(body["status"], 0) + 1
    return out


def probe_targets(stacks: dict[str, object], h: History, sample: list[int]) -> dict[str, list[tuple[str, str, dict]]]:
    """upload `GET /v1/files/{id}` of the sampled files and delivery transcripts of their
    conversations, each as an agent of the file's account, on both stacks in turn."""
    from shared.contract.auth import mint_token

    tokens: dict[str, dict] = {}

    def auth(account: str) -> dict:
        if account not in tokens:
            secret = stacks["loaded"].env["FS_AUTH_SECRET"]
            tokens[account] = {"Authorization": f"Bearer {mint_token(secret, account, 'agent', 'bench-agent')}"}
        return tokens[account]

    targets: dict[str, list] = {"status": [], "transcript": []}
    for i in sample:
        c = h.conversation_of(i)
        for state, stack in stacks.items():
            upload = f"http://127.0.0.1:{stack.env['FS_UPLOAD_PORT']}"
            delivery = f"http://127.0.0.1:{stack.env['FS_DELIVERY_PORT']}"
            targets["status"].append((state, f"{upload}/v1/files/{h.file_id(i)}", auth(h.account(c))))
            targets["transcript"].append(
                (state, f"{delivery}/v1/conversations/{h.conversation_id(c)}/messages", auth(h.account(c)))
            )
    return targets


def services_cpu_seconds(stacks: dict[str, object]) -> float:
    """CPU time used so far by every service of both stacks, image workers included (one read of /proc)."""
    return sum(
        cpu_seconds(
            {f"{state}/{name}": stack.procs[name].pid for state, stack in stacks.items() for name in SERVICES}
        ).values()
    )


def wait_until_settled(stacks: dict[str, object], timeout: float = 60.0) -> float:
    """After a restart the ten services still join consumer groups, fork image workers and catch up
    with the settings re-published for 1,000 accounts: seconds until their CPU use per second stops
    falling (two 1 s windows within 0.05 CPU-seconds), so the probes measure the steady state, not
    the start-up (which `ready` measures)."""
    started = time.perf_counter()
    previous, before = None, services_cpu_seconds(stacks)
    while time.perf_counter() - started < timeout:
        time.sleep(1.0)
        now = services_cpu_seconds(stacks)
        used, before = now - before, now
        if previous is not None and abs(used - previous) < 0.05:
            break
        previous = used
    return round(time.perf_counter() - started, 1)


def measure_once(stacks: dict[str, object], targets: dict[str, list]) -> dict[str, dict]:
    """One restart of both stacks' services, then (once they settled) the probes, then RSS again.
    {state: run}"""
    load_before = os.getloadavg()[0]
    services = restart_services(stacks)
    settled = wait_until_settled(stacks)
    with httpx.Client(timeout=30) as http:
        probes = {what: probe(http, of_what) for what, of_what in targets.items()}
    loadavg = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    for state, stack in stacks.items():
        for name in SERVICES:
            services[state][name].update({f"{k}_after_probes": v for k, v in rss_mb(stack.procs[name].pid).items()})
    return {
        state: {
            "services": services[state],
            "probes": {what: probes[what][state] for what in probes},
            "loadavg_1m": loadavg,
            "settled_seconds": settled,
        }
        for state in stacks
    }


def print_run(n: int, total: int, runs: dict[str, dict]) -> None:
    print(
        f"  restart {n}/{total}, load average {runs['empty']['loadavg_1m'][0]:.1f}, probes "
        f"{runs['empty']['settled_seconds']:.0f} s after ready (once the services' CPU use settled):"
    )
    for state, run in runs.items():
        status = run["probes"]["status"]
        print(
            f"    {state:7} ready "
            + ", ".join(f"{s} {run['services'][s]['ready_seconds']:.2f}s" for s in SERVICES)
            + f"; status p50 {percentile(status['latencies_ms'], 50):.1f} ms "
            f"p99 {percentile(status['latencies_ms'], 99):.1f} ms {status['codes']}",
            flush=True,
        )


def summarize_state(runs: list[dict]) -> dict:
    """Per service the median over the restarts; probe percentiles over every probe of every restart."""
    names = runs[0]["services"].keys()
    services = {
        name: {
            metric: statistics.median(r["services"][name][metric] for r in runs) for metric in runs[0]["services"][name]
        }
        for name in names
    }
    for name in names:
        services[name]["ready_seconds_runs"] = [r["services"][name]["ready_seconds"] for r in runs]
    probes = {}
    for what in runs[0]["probes"]:
        latencies = [x for r in runs for x in r["probes"][what]["latencies_ms"]]
        counts: dict[str, dict[str, int]] = {"codes": {}, "statuses": {}}
        for r in runs:
            for kind, seen in counts.items():
                for value, count in r["probes"][what][kind].items():
                    seen[str(value)] = seen.get(str(value), 0) + count
        probes[what] = {
            "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2),
            "max_ms": round(max(latencies), 2),
            "requests": len(latencies),
            **counts,
            "p50_ms_runs": [round(percentile(r["probes"][what]["latencies_ms"], 50), 2) for r in runs],
            "p99_ms_runs": [round(percentile(r["probes"][what]["latencies_ms"], 99), 2) for r in runs],
        }
    return {"restarts": len(runs), "services": services, "probes": probes, "runs": runs}


def compare(empty: dict, loaded: dict) -> dict:
    out = {}
    for name, e in empty["services"].items():
        l = loaded["services"][name]
        out[name] = {
            "ready_ratio": round(l["ready_seconds"] / e["ready_seconds"], 2),
            "rss_delta_mb": round(l["rss_mb_after_probes"] - e["rss_mb_after_probes"], 1),
            "rss_tree_delta_mb": round(l["rss_tree_mb_after_probes"] - e["rss_tree_mb_after_probes"], 1),
        }
    worst_ready = max(v["ready_ratio"] for v in out.values())
    worst_rss = max(v["rss_delta_mb"] for v in out.values())
    status_p99 = loaded["probes"]["status"]["p99_ms"]
    return {
        "services": out,
        "worst_ready_ratio": worst_ready,
        "worst_rss_delta_mb": worst_rss,
        "loaded_status_p99_ms": status_p99,
        "targets": {
            "ready_ratio": worst_ready <= TARGET_READY_RATIO,
            "rss_delta": worst_rss <= TARGET_RSS_DELTA_MB,
            "status_p99": status_p99 <= TARGET_STATUS_P99_MS,
        },
    }


@contextmanager
def twin_stack(stack, data_dir: Path, **env: str):
    """A second set of the five services beside `stack`: the same PostgreSQL server (another
    database), object storage and secrets, its own broker and ports (consumer groups of its own)."""
    twin = EmbeddedStack(
        data_dir,
        {
            **stack.env,
            "FS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "FS_UPLOAD_PORT": str(free_port()),
            "FS_DELIVERY_PORT": str(free_port()),
            "FS_METRICS_PORT_BASE": str(free_port_block(5)),
            **env,
        },
    )
    try:
        twin.start_kafka()
        yield twin
    finally:
        twin.stop()


def run(files: int, conversations: int, accounts: int = 1000, restarts: int = 3, probes: int = 2000) -> dict:
    """The whole bench on its own servers; returns the result (see the module docstring)."""
    from shared.adapters.db import migrate

    h = History(files, conversations, min(accounts, conversations))
    sample = h.sample(probes)
    with tempfile.TemporaryDirectory(prefix="fsbench-history-") as tmp:
        with running_stack(Path(tmp) / "empty", FS_LOG_LEVEL="WARNING") as stack:
            empty_url = stack.env["FS_DATABASE_URL"]  # migrated by the services' first start
            loaded_url = empty_url.rsplit("/", 1)[0] + "/history"
            create_database(loaded_url)
            for schema in SERVICES:
                migrate(loaded_url, schema)
            for name in SERVICES:
                stack.stop_process(name)  # idle, but not in the way of the load
            load = bulk_load(loaded_url, h)
            with twin_stack(stack, Path(tmp) / "loaded", FS_DATABASE_URL=loaded_url) as twin:
                stacks = {"empty": stack, "loaded": twin}
                targets = probe_targets(stacks, h, sample)
                print(
                    f"history bench: {restarts} restart(s) of the five services on each database, both sets "
                    f"together, {len(sample)} probes of each kind per set",
                    flush=True,
                )
                runs: list[dict[str, dict]] = []
                for n in range(restarts):
                    runs.append(measure_once(stacks, targets))
                    print_run(n + 1, restarts, runs[-1])
            empty_rows = row_counts(empty_url, h)
    empty, loaded = (summarize_state([r[state] for r in runs]) for state in STATES)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "files": files,
        "conversations": conversations,
        "accounts": h.accounts,
        "probes": len(sample),
        "empty_database_rows": empty_rows,
        "load": load,
        "empty": empty,
        "loaded": loaded,
        "comparison": compare(empty, loaded),
    }


def report(result: dict) -> None:
    e, l, cmp = result["empty"], result["loaded"], result["comparison"]
    load = result["load"]
    print(
        f"history: {result['files']:,} files, {result['conversations']:,} conversations, {result['accounts']:,} "
        f"accounts; bulk load {load['seconds']:.0f}s (COPY {load['copy_seconds']:.0f}s + VACUUM ANALYZE "
        f"{load['vacuum_analyze_seconds']:.0f}s + CHECKPOINT {load['checkpoint_seconds']:.0f}s), "
        f"{sum(load['table_bytes'].values()) / 1e9:.2f} GB; medians of {e['restarts']} restarts"
    )
    print(f"{'service':12}{'ready empty':>12}{'loaded':>9}{'ratio':>7}{'RSS MB empty':>14}{'loaded':>9}{'delta':>8}")
    for name in SERVICES:
        es, ls, c = e["services"][name], l["services"][name], cmp["services"][name]
        print(
            f"{name:12}{es['ready_seconds']:11.2f}s{ls['ready_seconds']:8.2f}s{c['ready_ratio']:6.2f}x"
            f"{es['rss_mb_after_probes']:14.1f}{ls['rss_mb_after_probes']:9.1f}{c['rss_delta_mb']:+8.1f}"
        )
    for what, label in (("status", "upload GET /v1/files/{id}"), ("transcript", "delivery transcript")):
        ep, lp = e["probes"][what], l["probes"][what]
        print(
            f"{label}: empty p50 {ep['p50_ms']:.1f} ms p99 {ep['p99_ms']:.1f} ms {ep['codes']}; "
            f"loaded p50 {lp['p50_ms']:.1f} ms p99 {lp['p99_ms']:.1f} ms {lp['codes']}; p99 per restart "
            f"empty {', '.join(f'{x:.1f}' for x in ep['p99_ms_runs'])}, "
            f"loaded {', '.join(f'{x:.1f}' for x in lp['p99_ms_runs'])} ms"
        )
    t = cmp["targets"]
    print(
        f"targets: ready ≤ {TARGET_READY_RATIO}x empty: worst {cmp['worst_ready_ratio']:.2f}x "
        f"{'met' if t['ready_ratio'] else 'NOT met'}; RSS ≤ +{TARGET_RSS_DELTA_MB} MB: worst "
        f"{cmp['worst_rss_delta_mb']:+.1f} MB {'met' if t['rss_delta'] else 'NOT met'}; status p99 ≤ "
        f"{TARGET_STATUS_P99_MS} ms: {cmp['loaded_status_p99_ms']:.1f} ms {'met' if t['status_p99'] else 'NOT met'}"
    )


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    width = 0.38
    states = (("empty", "#4c72b0"), ("loaded", "#dd8452"))
    for ax, metric, label in (
        (axes[0], "ready_seconds", "seconds to /readyz 200"),
        (axes[1], "rss_mb_after_probes", "RSS MB (after probes)"),
    ):
        for k, (state, colour) in enumerate(states):
            ax.bar(
                [x + (k - 0.5) * width for x in range(len(SERVICES))],
                [result[state]["services"][s][metric] for s in SERVICES],
                width,
                label=state,
                color=colour,
            )
        ax.set_xticks(range(len(SERVICES)), SERVICES, fontsize=8)
        ax.set_ylabel(label)
        ax.legend()
    axes[0].set_title(
        f"start-up, worst {result['comparison']['worst_ready_ratio']:.2f}x (target ≤ {TARGET_READY_RATIO}x)"
    )
    axes[1].set_title(
        f"memory, worst {result['comparison']['worst_rss_delta_mb']:+.0f} MB (target ≤ +{TARGET_RSS_DELTA_MB} MB)"
    )
    ax = axes[2]
    groups = [(what, p) for what in ("status", "transcript") for p in ("p50_ms", "p99_ms")]
    for k, (state, colour) in enumerate(states):
        ax.bar(
            [x + (k - 0.5) * width for x in range(len(groups))],
            [result[state]["probes"][what][p] for what, p in groups],
            width,
            label=state,
            color=colour,
        )
    ax.set_xticks(range(len(groups)), [f"{what} {p[:3]}" for what, p in groups], fontsize=8)
    ax.axhline(TARGET_STATUS_P99_MS, color="grey", linestyle=":", linewidth=1)
    ax.set_ylabel("ms")
    ax.set_title("GET latency, sequential")
    ax.legend()
    fig.suptitle(
        f"history: {result['files']:,} files, {result['conversations']:,} conversations "
        f"(bulk load {result['load']['seconds']:.0f}s), {result['date'][:10]}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None, out: Path = OUT) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--conversations", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--restarts", type=int, default=3, help="restarts of the services per state (medians)")
    parser.add_argument("--probes", type=int, default=2000, help="status requests per restart")
    args = parser.parse_args(argv)
    result = run(args.files, args.conversations, args.accounts, args.restarts, args.probes)
    report(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "history.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "history.png")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
