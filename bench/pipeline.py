"""End-to-end pipeline throughput and latency on the embedded stack, against CPU-only baselines
measured in the same run on the same cores (a benchmark, not a test).

    uv run python -m bench.pipeline [--photos 40] [--kind jpeg_12mp]

Throughput baseline: the same photos thumbnailed to 800 px by pyvips (and by naive Pillow)
in a process pool of one worker per core — the least CPU any pipeline could spend per photo.
Writes bench/out/pipeline.json and bench/out/pipeline.png.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx

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


async def drive_pipeline(env: dict, photos: list[bytes], concurrency: int = 8, conversations: int = 8) -> dict:
    from shared.auth import mint_token
    from tests.support import Client, unique
    client = Client(env=env, data_dir=Path(env["FS_DATA_DIR"]))
    # Photos of one conversation are processed in order (one partition); a brand has many
    # conversations at once, so the load is spread over several.
    account = unique("bench")
    client.enable_account(account)
    convs = [unique("conv") for _ in range(conversations)]
    for conv in convs:
        await asyncio.to_thread(client.open_conversation, account, conv, unique("consumer"))
    headers = {"Authorization": f"Bearer {mint_token(env['FS_AUTH_SECRET'], account, 'agent', 'bench-agent')}"}
    urls = [f"{client.upload_url}/v1/accounts/{account}/conversations/{conv}/files" for conv in convs]
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    gate = asyncio.Semaphore(concurrency)

    async with httpx.AsyncClient(timeout=120) as http:
        async def upload(i: int, data: bytes):
            async with gate:
                t = time.perf_counter()
                r = await http.post(urls[i % len(urls)], files={"file": ("p.jpg", data, "image/jpeg")}, headers=headers)
                r.raise_for_status()
                sent[r.json()["file_id"]] = t

        async def watch():
            while len(done) < len(photos):
                for fid in [f for f in sent if f not in done]:
                    r = await http.get(f"{client.upload_url}/v1/files/{fid}", headers=headers)
                    if r.json()["status"] in ("published", "rejected"):
                        done[fid] = time.perf_counter()
                        if r.json()["status"] != "published":
                            print("rejected:", r.json())
                await asyncio.sleep(0.02)

        started = time.perf_counter()
        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(upload(i, p) for i, p in enumerate(photos)))
        await asyncio.wait_for(watcher, 600)
        elapsed = max(done.values()) - started
    latencies = [done[f] - sent[f] for f in done]
    return {"photos": len(photos), "seconds": elapsed, "photos_per_second": len(photos) / elapsed,
            "latency_p50": percentile(latencies, 50), "latency_p95": percentile(latencies, 95),
            "latency_p99": percentile(latencies, 99)}


def cpu_by_process(stack) -> dict[str, float]:
    """CPU seconds (user+system) of every server and service, including their worker processes."""
    import psutil
    out = {}
    for name, proc in stack.procs.items():
        try:
            p = psutil.Process(proc.pid)
            total = sum(sum(q.cpu_times()[:2]) for q in [p, *p.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
        out[name] = total
    return out


def run_stack_bench(photos: list[bytes]) -> dict:
    from shared.embedded import running_stack
    from shared.embedded_clamd import write_test_signatures
    with tempfile.TemporaryDirectory(prefix="fsbench-") as tmp:
        data_dir = Path(tmp)
        signatures = write_test_signatures(data_dir / "db").parent
        with running_stack(data_dir, clamd_signatures=signatures, FS_LOG_LEVEL="WARNING") as stack:
            asyncio.run(drive_pipeline(stack.env, photos[:4]))  # warm-up: workers, connections
            before = cpu_by_process(stack)
            result = asyncio.run(drive_pipeline(stack.env, photos))
            after = cpu_by_process(stack)
            result["cpu_seconds_per_photo"] = {name: round((after[name] - before.get(name, 0)) / len(photos), 4)
                                               for name in after}
            return result


def main(argv=None) -> dict:
    from tests import imagecorpus
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--kind", default="jpeg_12mp", choices=["jpeg_12mp", "jpeg_4mp"])
    args = parser.parse_args(argv)
    photo = getattr(imagecorpus, args.kind)()
    photos = [photo] * args.photos
    print(f"pipeline bench: {args.photos} × {args.kind} ({len(photo) / 1e6:.1f} MB) on {os.cpu_count()} cores")
    pyvips_rate = baseline_throughput(pyvips_thumbnail, photos)
    pillow_rate = baseline_throughput(pillow_thumbnail, photos)
    ours = run_stack_bench(photos)
    result = {"kind": args.kind, "cores": os.cpu_count(), "pipeline": ours,
              "baseline_pyvips_photos_per_second": pyvips_rate, "baseline_pillow_photos_per_second": pillow_rate,
              "ratio_vs_pyvips": ours["photos_per_second"] / pyvips_rate,
              "ratio_vs_pillow": ours["photos_per_second"] / pillow_rate}
    print(f"{'':28}{'photos/s':>10}{'ratio':>8}")
    print(f"{'pyvips thumbnail (CPU only)':28}{pyvips_rate:10.2f}{1:8.2f}")
    print(f"{'naive Pillow (CPU only)':28}{pillow_rate:10.2f}{pillow_rate / pyvips_rate:8.2f}")
    print(f"{'fileshare pipeline (e2e)':28}{ours['photos_per_second']:10.2f}{result['ratio_vs_pyvips']:8.2f}")
    print(f"latency upload→published: p50 {ours['latency_p50']:.2f}s  p95 {ours['latency_p95']:.2f}s  "
          f"p99 {ours['latency_p99']:.2f}s")
    print("CPU seconds per photo by process:",
          ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(ours["cpu_seconds_per_photo"].items(), key=lambda kv: -kv[1])))
    OUT.mkdir(exist_ok=True)
    (OUT / "pipeline.json").write_text(json.dumps(result, indent=2))
    plot(result)
    return result


def plot(result: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    names = ["pyvips (CPU)", "Pillow (CPU)", "pipeline (e2e)"]
    rates = [result["baseline_pyvips_photos_per_second"], result["baseline_pillow_photos_per_second"],
             result["pipeline"]["photos_per_second"]]
    a.bar(names, rates, color=["#4c72b0", "#dd8452", "#55a868"])
    a.set_ylabel("photos / s")
    a.set_title(f"throughput, {result['kind']}, {result['cores']} cores")
    p = result["pipeline"]
    b.bar(["p50", "p95", "p99"], [p["latency_p50"], p["latency_p95"], p["latency_p99"]], color="#55a868")
    b.set_ylabel("seconds")
    b.set_title("latency upload → published")
    fig.tight_layout()
    fig.savefig(OUT / "pipeline.png", dpi=100)


if __name__ == "__main__":
    main()
