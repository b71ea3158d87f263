"""GDPR forget latency on the embedded stack (a benchmark, not a test).

    uv run python -m bench.forget [--photos 10] [--reps 3]

Per repetition: one consumer with two conversations gets N published photos; then a
gdpr.forget (topic gdpr.forget, key = consumer id) is sent by an already-connected producer
and the clock starts. Measured from the client side:
  * request → all unreadable: every download of the N files answers 404/410 (polled);
  * request → all receipts: a file.deleted with the request id for each of the N files
    (a consumer positioned at the end of file.deleted before the request);
and from the retention service's own histograms (metrics port FS_METRICS_PORT_BASE+4):
fileshare_forget_shred_seconds (occurred_at → keys destroyed) and fileshare_forget_seconds
(occurred_at → every file receipted and deleted), as sum/count over the repetitions.
Without a stack passed in, starts its own (no clamd). Writes bench/out/forget.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

OUT = Path(__file__).parent / "out"
METRICS = (
    "fileshare_forget_shred_seconds_sum",
    "fileshare_forget_shred_seconds_count",
    "fileshare_forget_seconds_sum",
    "fileshare_forget_seconds_count",
)


def retention_metrics(env: dict) -> dict[str, float]:
    from tests.support import sample, scrape

    samples = scrape(env, "retention")
    return {name: sample(samples, name) for name in METRICS}


async def forget_once(client, photos: int) -> dict:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from bench.pipeline import read_from_now
    from shared.contract import events as ev
    from shared.contract.topics import FILE_DELETED, GDPR_FORGET
    from tests.integration.delivery_support import small_photo, upload_ok
    from tests.support import events_of, unique

    account, consumer = unique("bench-forget"), unique("consumer")
    convs = [unique("conv"), unique("conv")]
    await asyncio.to_thread(client.enable_account, account)
    for conv in convs:
        await asyncio.to_thread(client.open_conversation, account, conv, consumer)
    file_ids = [
        await asyncio.to_thread(upload_ok, client, account, convs[i % 2], small_photo(seed=i)) for i in range(photos)
    ]
    for fid in file_ids:
        status = await asyncio.to_thread(client.wait_status, fid, account)
        if status["status"] != "published":
            raise RuntimeError(f"forget bench: photo {fid} ended {status}")
    auth = client.auth(account, "agent", "agent-1")
    urls = [f"{client.delivery_url}/v1/files/{fid}/content" for fid in file_ids]

    bootstrap = client.env["FS_KAFKA_BOOTSTRAP"]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    receipts_consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await producer.start()
    await receipts_consumer.start()
    try:
        await read_from_now(receipts_consumer, FILE_DELETED)  # before the request: no receipt is missed
        async with httpx.AsyncClient(timeout=30) as http:
            before = await asyncio.gather(*(http.get(u, headers=auth) for u in urls))
            if any(r.status_code != 200 for r in before):
                raise RuntimeError(f"forget bench: not all readable before: {[r.status_code for r in before]}")
            request = ev.GdprForget(request_id=unique("req"), account_id=account, consumer_id=consumer)
            started = time.perf_counter()
            await producer.send_and_wait(GDPR_FORGET, request.to_bytes(), key=consumer.encode())
            sent = time.perf_counter()

            async def unreadable() -> float:
                pending = list(urls)
                while pending:
                    answers = await asyncio.gather(*(http.get(u, headers=auth) for u in pending))
                    pending = [u for u, r in zip(pending, answers) if r.status_code not in (404, 410)]
                    if pending:
                        await asyncio.sleep(0.01)
                return time.perf_counter() - started

            async def receipted() -> float:
                seen: set[str] = set()
                while not set(file_ids) <= seen:
                    seen |= {
                        e.file_id
                        for e in events_of(await receipts_consumer.getmany(timeout_ms=50))
                        if getattr(e, "request_id", None) == request.request_id
                    }
                return time.perf_counter() - started

            t_unreadable, t_receipts = await asyncio.wait_for(asyncio.gather(unreadable(), receipted()), 120)
    finally:
        await receipts_consumer.stop()
        await producer.stop()
    return {"unreadable_seconds": t_unreadable, "receipts_seconds": t_receipts, "send_seconds": sent - started}


def measure(stack, photos: int = 10, reps: int = 3) -> dict:
    from tests.support import Client

    client = Client(env=stack.env, data_dir=Path(stack.env["FS_DATA_DIR"]))
    before = retention_metrics(stack.env)
    runs = [asyncio.run(forget_once(client, photos)) for _ in range(reps)]
    after = retention_metrics(stack.env)
    delta = {k: after[k] - before[k] for k in METRICS}

    def mean(prefix: str) -> float | None:
        count = delta[f"{prefix}_count"]
        return delta[f"{prefix}_sum"] / count if count else None

    return {
        "photos_per_consumer": photos,
        "conversations": 2,
        "repetitions": reps,
        "runs": runs,
        "unreadable_p50_seconds": statistics.median(r["unreadable_seconds"] for r in runs),
        "receipts_p50_seconds": statistics.median(r["receipts_seconds"] for r in runs),
        "metric_delta": delta,
        "metric_shred_mean_seconds": mean("fileshare_forget_shred_seconds"),
        "metric_forget_mean_seconds": mean("fileshare_forget_seconds"),
    }


def report(result: dict) -> None:
    runs, d = result["runs"], result["metric_delta"]

    def ms(value) -> str:
        return "n/a" if value is None else f"{value * 1000:.0f} ms"

    unreadable = ", ".join(ms(r["unreadable_seconds"]) for r in runs)
    receipts = ", ".join(ms(r["receipts_seconds"]) for r in runs)
    print(
        f"gdpr forget, {result['photos_per_consumer']} photos in 2 conversations, {result['repetitions']} reps: "
        f"request→all unreadable p50 {ms(result['unreadable_p50_seconds'])} ({unreadable}); "
        f"request→all receipts p50 {ms(result['receipts_p50_seconds'])} ({receipts})"
    )
    print(
        f"  retention metrics: fileshare_forget_shred_seconds sum {d['fileshare_forget_shred_seconds_sum']:.3f}s"
        f" / count {d['fileshare_forget_shred_seconds_count']:.0f} = {ms(result['metric_shred_mean_seconds'])}; "
        f"fileshare_forget_seconds sum {d['fileshare_forget_seconds_sum']:.3f}s"
        f" / count {d['fileshare_forget_seconds_count']:.0f} = {ms(result['metric_forget_mean_seconds'])}"
    )


def write(result: dict) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / "forget.json").write_text(json.dumps(result, indent=2))


def main(argv=None) -> dict:
    from shared.devstack.embedded import running_stack

    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fsbench-") as tmp:
        with running_stack(Path(tmp), FS_LOG_LEVEL="WARNING") as stack:
            result = measure(stack, args.photos, args.reps)
    report(result)
    write(result)
    return result


if __name__ == "__main__":
    main()
