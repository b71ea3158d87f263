"""End-to-end pipeline throughput and latency on the embedded stack, against the same pipeline
with pyvips doing the image work, plus CPU-only baselines, all measured in the same run on the
same cores (a benchmark, not a test).

    uv run python -m bench.pipeline [--photos 40] [--kind jpeg_12mp]

The fair reading of "pipeline throughput >= 0.8x pyvips on the same cores": one stack
(upload, clamd, encrypted S3, Kafka, delivery, retention), driven with the same photos with our
sanitizer/resizer and with those two services restarted as `python -m bench.vips_stage
sanitizer|resizer` (the same services, their image functions swapped for pyvips equivalents),
after one unmeasured warm-up batch, in ABBA rounds. The ratio ours / pyvips-pipeline is the
target's number. Each round checks which image library the stages' workers have loaded.

CPU-only baselines, for scale: the same photos thumbnailed to 800 px by pyvips (and by naive
Pillow) in a process pool of one worker per core — no scan, storage or messaging at all.

A photo that ends `rejected` fails the run (it would otherwise count as done).
Writes bench/out/pipeline.json and bench/out/pipeline.png.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.cpu import delta
from shared.settings import Settings

OUT = Path(__file__).parent / "out"


def pyvips_thumbnail(data: bytes) -> int:
    import pyvips

    return len(pyvips.Image.thumbnail_buffer(data, 800).write_to_buffer(".jpg[Q=85]"))


def pillow_thumbnail(data: bytes) -> int:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    img.thumbnail((800, 800), Image.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return len(out.getvalue())


def baseline_throughput(fn, photos: list[bytes]) -> float:
    import multiprocessing

    workers = os.cpu_count() or 1
    # spawn: forking a parent whose libvips threads are running (after the image bench) deadlocks.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(fn, photos[:workers]))  # warm up imports
        started = time.perf_counter()
        list(pool.map(fn, photos))
        return len(photos) / (time.perf_counter() - started)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@dataclass
class Target:
    """An enabled account with open conversations, as the bench's agent posts to it."""

    headers: dict[str, str]
    urls: list[str]  # one upload URL per conversation


def open_target(env: dict, conversations: int = 8) -> Target:
    from shared.contract.auth import mint_token
    from tests.support import Client, unique

    client = Client(env=env, data_dir=Path(env["FS_DATA_DIR"]))
    account = unique("bench")
    client.enable_account(account)
    convs = [unique("conv") for _ in range(conversations)]
    for conv in convs:
        client.open_conversation(account, conv, unique("consumer"))
    headers = {"Authorization": f"Bearer {mint_token(env['FS_AUTH_SECRET'], account, 'agent', 'bench-agent')}"}
    return Target(headers, [f"{client.upload_url}/v1/accounts/{account}/conversations/{conv}/files" for conv in convs])


async def post_until_accepted(
    http: httpx.AsyncClient, url: str, headers: dict, data: bytes
) -> tuple[httpx.Response, int]:
    """POST one photo with an Idempotency-Key; a 503 with Retry-After is sent again after that wait
    with the same key (no photo twice). The final answer, and how many 503s came before it."""
    from tests.support import unique

    headers = {**headers, "Idempotency-Key": unique("bench")}
    retries = 0
    while True:
        r = await http.post(url, files={"file": ("p.jpg", data, "image/jpeg")}, headers=headers)
        if r.status_code != 503 or "retry-after" not in r.headers:
            return r, retries
        retries += 1
        await asyncio.sleep(float(r.headers["retry-after"]))


async def read_from_now(consumer, *topics: str) -> None:
    """Assign a started consumer every partition of the topics at their current ends, resolved now:
    nothing produced after this returns is missed."""
    from aiokafka import TopicPartition

    await consumer.topics()
    tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)


class OutcomeWatcher:
    """Follows message.published and file.rejected from their ends, as the messaging platform would:
    unlike polling each file's status, it costs the stack nothing but the broker's fetches (polling
    24 files every 20 ms cost upload ~30 ms of CPU per photo, time taken from the pipeline)."""

    def __init__(self, env: dict, fetch_wait_ms: int | None = None):
        """fetch_wait_ms: as the services' consumers by default; shorter only to time single photos
        precisely (each empty fetch costs the broker CPU that a burst would rather have)."""
        self.env = env
        self.fetch_wait_ms = fetch_wait_ms or int(
            env.get("FS_KAFKA_FETCH_WAIT_MS") or Settings.model_fields["kafka_fetch_wait_ms"].default
        )
        self.seen: dict[str, tuple[float, str, str | None]] = {}  # file_id: (when, event_type, reason)
        self.news = asyncio.Event()

    async def __aenter__(self) -> OutcomeWatcher:
        from aiokafka import AIOKafkaConsumer

        from shared.contract.topics import FILE_REJECTED, MESSAGE_PUBLISHED

        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.env["FS_KAFKA_BOOTSTRAP"],
            enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_wait_ms,
            fetch_max_bytes=64 * 2**20,
        )
        await self.consumer.start()
        await read_from_now(self.consumer, MESSAGE_PUBLISHED, FILE_REJECTED)
        self.task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value)
                    self.seen.setdefault(event["file_id"], (now, event["event_type"], event.get("reason")))
            if batches:
                self.news.set()

    async def wait_for(self, file_ids: set[str], timeout: float = 600) -> None:
        deadline = time.perf_counter() + timeout
        while not file_ids <= self.seen.keys():
            self.news.clear()
            news = asyncio.ensure_future(self.news.wait())
            done, _ = await asyncio.wait(
                {news, self.task}, timeout=max(0.0, deadline - time.perf_counter()), return_when=asyncio.FIRST_COMPLETED
            )
            news.cancel()
            if self.task in done:  # the follower died (broker error, a record it cannot read): say why
                raise RuntimeError("stopped following message.published") from self.task.exception()
            if not done:
                raise TimeoutError(f"{len(file_ids - self.seen.keys())} photos never published or rejected")

    async def __aexit__(self, *exc) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


async def drive_pipeline(
    env: dict,
    photos: list[bytes],
    concurrency: int = 8,
    conversations: int = 8,
    target: Target | None = None,
    watch_wait_ms: int | None = None,
) -> dict:
    """Upload the photos (photo i into conversation i mod conversations, at most `concurrency` requests
    at a time; a 503 with Retry-After is sent again after that wait with the same Idempotency-Key),
    and follow message.published until each is published (OutcomeWatcher). seconds: from the first
    request to the last `published`; latency of a photo: from its request to its `published`."""
    # Photos of one conversation are processed in order (one partition); a brand has many
    # conversations at once, so the load is spread over several.
    if target is None:
        target = await asyncio.to_thread(open_target, env, conversations)
    urls, headers = target.urls, target.headers
    sent: dict[str, float] = {}
    retries = 0
    gate = asyncio.Semaphore(concurrency)

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=max(concurrency, 10))) as http:

        async def upload(i: int, data: bytes):
            nonlocal retries
            async with gate:
                t = time.perf_counter()
                r, resent = await post_until_accepted(http, urls[i % len(urls)], headers, data)
                retries += resent
                r.raise_for_status()
                sent[r.json()["file_id"]] = t

        async with OutcomeWatcher(env, watch_wait_ms) as outcomes:
            started = time.perf_counter()
            await asyncio.gather(*(upload(i, p) for i, p in enumerate(photos)))
            await outcomes.wait_for(set(sent))
        done = {f: outcomes.seen[f][0] for f in sent}
        rejected = {
            f: {"status": outcomes.seen[f][1], "reason": outcomes.seen[f][2]}
            for f in sent
            if outcomes.seen[f][1] != "message.published"
        }
        elapsed = max(done.values()) - started
    if rejected:
        reasons = sorted({str(v.get("reason")) for v in rejected.values()})
        raise RuntimeError(
            f"{len(rejected)} of {len(photos)} photos ended rejected, not published: reasons {reasons}, "
            f"e.g. {next(iter(rejected.values()))}"
        )
    latencies = [done[f] - sent[f] for f in done]
    return {
        "photos": len(photos),
        "seconds": elapsed,
        "photos_per_second": len(photos) / elapsed,
        "latency_p50": percentile(latencies, 50),
        "latency_p95": percentile(latencies, 95),
        "latency_p99": percentile(latencies, 99),
        "latencies": [round(x, 3) for x in latencies],
        "retries_after_503": retries,
    }


def pids(stack) -> dict[str, int]:
    return {name: proc.pid for name, proc in stack.procs.items()}


def cpu_by_process(stack) -> dict[str, float]:
    """CPU seconds (user+system) of every server and service, including their worker processes
    (live and exited: bench.cpu)."""
    from bench.cpu import cpu_seconds

    return cpu_seconds(pids(stack))


IMAGE_STAGES = ("sanitizer", "resizer")


def use_image_stages(stack, which: str) -> None:
    """Restart the sanitizer and resizer of the running stack as ours or as bench.vips_stage."""
    for name in IMAGE_STAGES:
        stack.stop_process(name)
        if which == "pyvips":
            stack.spawn(name, [sys.executable, "-m", "bench.vips_stage", name], {"VIPS_CONCURRENCY": "1"})
        else:
            stack.start_service(name)
    for name in IMAGE_STAGES:
        stack.wait_ready(name, timeout=120)


def libvips_loaded(stack, name: str) -> bool:
    """Whether any process of the service (its image workers) has libvips mapped."""
    import psutil

    try:
        procs = [psutil.Process(stack.procs[name].pid), *psutil.Process(stack.procs[name].pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for proc in procs:
        try:
            if any("libvips" in m.path for m in proc.memory_maps()):
                return True
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return False


def run_pipeline(stack, photos: list[bytes]) -> dict:
    asyncio.run(drive_pipeline(stack.env, photos[:4]))  # warm-up: workers, connections, group assignment
    before = cpu_by_process(stack)
    result = asyncio.run(drive_pipeline(stack.env, photos))
    after = cpu_by_process(stack)
    result["cpu_seconds_per_photo"] = {
        name: round(spent / len(photos), 4) for name, spent in delta(before, after).items()
    }
    result["libvips_in_image_stages"] = {name: libvips_loaded(stack, name) for name in IMAGE_STAGES}
    return result


def combine(runs: list[dict]) -> dict:
    """Rounds of one variant as one run: photos/s over the summed time, percentiles over all photos."""
    photos = sum(r["photos"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    latencies = [x for r in runs for x in r["latencies"]]
    cpu = {
        name: round(sum(r["cpu_seconds_per_photo"].get(name, 0) * r["photos"] for r in runs) / photos, 4)
        for name in runs[0]["cpu_seconds_per_photo"]
    }
    return {
        "photos": photos,
        "seconds": seconds,
        "photos_per_second": photos / seconds,
        "latency_p50": percentile(latencies, 50),
        "latency_p95": percentile(latencies, 95),
        "latency_p99": percentile(latencies, 99),
        "cpu_seconds_per_photo": cpu,
        "rounds_photos_per_second": [r["photos_per_second"] for r in runs],
        "rounds": runs,
    }


def run_stack_bench(photos: list[bytes], extras: dict | None = None, rounds: int = 2) -> dict:
    """On one stack: an unmeasured warm-up batch, then rounds in ABBA order (ours, pyvips, pyvips,
    ours, ...) so a drift in machine load hits both alike; the extras (other benches on this stack)
    run right after the first round of ours."""
    from shared.devstack.embedded import running_stack
    from shared.devstack.embedded_clamd import write_test_signatures

    order = [v for i in range(rounds) for v in (("ours", "pyvips") if i % 2 == 0 else ("pyvips", "ours"))]
    with tempfile.TemporaryDirectory(prefix="fsbench-") as tmp:
        data_dir = Path(tmp)
        signatures = write_test_signatures(data_dir / "db").parent
        with running_stack(data_dir, clamd_signatures=signatures, FS_LOG_LEVEL="WARNING") as stack:
            asyncio.run(drive_pipeline(stack.env, photos))  # warm-up of a fresh stack (first segments, caches)
            runs: dict[str, list[dict]] = {"ours": [], "pyvips": []}
            out: dict = {"extras": {}, "order": order}
            current = "ours"
            for variant in order:
                if variant != current:
                    use_image_stages(stack, variant)
                    current = variant
                runs[variant].append(run_pipeline(stack, photos))
                if variant == "ours" and len(runs["ours"]) == 1:
                    for name, measure in (extras or {}).items():
                        out["extras"][name] = measure(stack)
    for variant, expect in (("ours", False), ("pyvips", True)):
        for r in runs[variant]:
            if set(r["libvips_in_image_stages"].values()) != {expect}:
                raise RuntimeError(f"{variant} round ran with libvips loaded = {r['libvips_in_image_stages']}")
        out[variant] = combine(runs[variant])
    return out


def print_pipeline(label: str, p: dict) -> None:
    rounds = " ".join(f"{x:.2f}" for x in p["rounds_photos_per_second"])
    print(
        f"  {label}: rounds {rounds} photos/s; latency upload→published p50 {p['latency_p50']:.2f}s  p95 {p['latency_p95']:.2f}s  "
        f"p99 {p['latency_p99']:.2f}s; CPU per photo:",
        ", ".join(
            f"{k} {v * 1000:.0f} ms" for k, v in sorted(p["cpu_seconds_per_photo"].items(), key=lambda kv: -kv[1])
        ),
    )


def main(argv=None, extras: dict | None = None, reports: dict | None = None) -> dict:
    """extras: name -> measure(stack) run on the same stack after our pipeline run;
    reports: name -> report(result) printing each extra's numbers."""
    from tests import imagecorpus

    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--kind", default="jpeg_12mp", choices=["jpeg_12mp", "jpeg_4mp"])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of ours and the pyvips pipeline")
    args = parser.parse_args(argv)
    photo = getattr(imagecorpus, args.kind)()
    photos = [photo] * args.photos
    print(
        f"pipeline bench: {args.rounds} ABBA rounds of {args.photos} × {args.kind} ({len(photo) / 1e6:.1f} MB) "
        f"per pipeline on {os.cpu_count()} cores, account max_image_dimension 800"
    )
    pyvips_rate = baseline_throughput(pyvips_thumbnail, photos)
    pillow_rate = baseline_throughput(pillow_thumbnail, photos)
    runs = run_stack_bench(photos, extras, args.rounds)
    ours, vips = runs["ours"], runs["pyvips"]
    result = {
        "kind": args.kind,
        "cores": os.cpu_count(),
        "pipeline": ours,
        "pipeline_pyvips": vips,
        "ratio_vs_pyvips_pipeline": ours["photos_per_second"] / vips["photos_per_second"],
        "baseline_pyvips_photos_per_second": pyvips_rate,
        "baseline_pillow_photos_per_second": pillow_rate,
        "ratio_vs_pyvips": ours["photos_per_second"] / pyvips_rate,
        "ratio_vs_pillow": ours["photos_per_second"] / pillow_rate,
        "order": runs["order"],
        "extras": runs["extras"],
    }
    vips_rate = vips["photos_per_second"]
    print(f"{'':40}{'photos/s':>10}{'/ pyvips pipeline':>19}{'/ pyvips CPU-only':>19}")
    print(
        f"{'fileshare pipeline, ours (e2e)':40}{ours['photos_per_second']:10.2f}"
        f"{result['ratio_vs_pyvips_pipeline']:19.2f}{result['ratio_vs_pyvips']:19.2f}"
    )
    print(f"{'fileshare pipeline, pyvips stages (e2e)':40}{vips_rate:10.2f}{1:19.2f}{vips_rate / pyvips_rate:19.2f}")
    print(f"{'pyvips thumbnail (CPU only)':40}{pyvips_rate:10.2f}{pyvips_rate / vips_rate:19.2f}{1:19.2f}")
    print(
        f"{'naive Pillow (CPU only)':40}{pillow_rate:10.2f}{pillow_rate / vips_rate:19.2f}{pillow_rate / pyvips_rate:19.2f}"
    )
    print_pipeline("ours", ours)
    print_pipeline("pyvips stages", vips)
    target = "met" if result["ratio_vs_pyvips_pipeline"] >= 0.8 else "NOT met"
    print(
        f"  target pipeline throughput >= 0.8x pyvips (same pipeline, same cores): "
        f"{result['ratio_vs_pyvips_pipeline']:.2f}x, {target}"
    )
    OUT.mkdir(exist_ok=True)
    for name, extra in runs["extras"].items():
        if reports and name in reports:
            reports[name](extra)
        (OUT / f"{name}.json").write_text(json.dumps(extra, indent=2))
    (OUT / "pipeline.json").write_text(json.dumps(result, indent=2))
    plot(result)
    return result


def plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["pipeline ours", "pipeline pyvips", "pyvips (CPU)", "Pillow (CPU)"]
    rates = [
        result["pipeline"]["photos_per_second"],
        result["pipeline_pyvips"]["photos_per_second"],
        result["baseline_pyvips_photos_per_second"],
        result["baseline_pillow_photos_per_second"],
    ]
    a.bar(names, rates, color=["#55a868", "#8172b2", "#4c72b0", "#dd8452"])
    a.set_ylabel("photos / s")
    a.set_title(f"throughput, {result['kind']}, {result['cores']} cores")
    a.tick_params(axis="x", labelsize=8)
    width = 0.38
    for i, (key, label, colour) in enumerate(
        (("pipeline", "ours", "#55a868"), ("pipeline_pyvips", "pyvips stages", "#8172b2"))
    ):
        p = result[key]
        b.bar(
            [x + (i - 0.5) * width for x in range(3)],
            [p["latency_p50"], p["latency_p95"], p["latency_p99"]],
            width,
            label=label,
            color=colour,
        )
    b.set_xticks(range(3), ["p50", "p95", "p99"])
    b.set_ylabel("seconds")
    b.set_title("latency upload → published")
    b.legend()
    fig.tight_layout()
    fig.savefig(OUT / "pipeline.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
