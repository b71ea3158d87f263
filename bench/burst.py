"""Bursts: photos sent quickly into one conversation and spread over many, against
libvips on all cores, the latency of a single photo on a quiet stack, and CPU per stage per photo,
all in one run on one stack (a benchmark, not a test).

    uv run python -m bench.burst [--photos 24] [--conversations 12] [--single 10] [--kind jpeg_12mp]

Every photo sent is a different generated one (distinct_photos): clamd keeps the verdict of a file
it has already scanned, so one photo sent again and again would measure that cache, not the scan.
One embedded stack with a real clamd (bench.pipeline does the same), then:

1. warm-up: `--warmup` photos over two conversations, unmeasured (workers, connections, group
   assignment, first segments);
2. burst: `--photos` photos posted at once into ONE conversation; photos/s from the first request to
   the last `published` (bench.pipeline.drive_pipeline follows message.published);
3. spread: the same number of photos posted at once over `--conversations` conversations;
4. single: `--single` photos one at a time, each after the stack is quiet again; upload→published
   latency p50 and p90 (message.published followed with 10 ms fetches).

Before the burst, between burst and spread and after the spread, libvips `thumbnail_buffer` to
800 px of the same photos in a process pool of one worker per core
(bench.pipeline.baseline_throughput) with the stack idle: each ratio is against the mean of the
libvips figures right before and right after it; both are printed, and far apart they say the
machine's other load moved during the run (it is shared). Targets: burst >= 0.5x libvips, spread >= 0.8x, single p50 <= 400 ms.

CPU per stage per photo: CPU seconds (user+system) of each server's and service's whole process
tree (image workers, PostgreSQL backends; exited ones too: bench.cpu) spent from the first request of the
burst and of the spread until the stack is quiet again (the last photos' follow-up work, such as
retention's index, counts), divided by their photos. It includes what the stack uses when idle (measured for 3 s after start, printed beside it). "Quiet" means
the stack uses at most 0.1 CPU more than that idle figure.

A photo that ends `rejected` fails the run. Writes bench/out/burst.json and bench/out/burst.png.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.cpu import delta
from bench.pipeline import (
    baseline_throughput,
    cpu_by_process,
    drive_pipeline,
    open_target,
    percentile,
    pids,
    pyvips_thumbnail,
)
from shared.devstack.embedded import SERVICES

OUT = Path(__file__).parent / "out"
TARGET_BURST, TARGET_SPREAD, TARGET_SINGLE_P50 = 0.5, 0.8, 0.400
SERVERS = ("kafka", "s3", "clamd", "postgres")


SIZES = {"jpeg_12mp": (4000, 3000), "jpeg_4mp": (2310, 1732)}


def distinct_photos(kind: str, count: int) -> list[bytes]:
    """`count` photo-like JPEGs of the kind's size, each its own shapes and sensor noise: never one
    photo twice, so no cache (clamd keeps the verdict of a file it has scanned) is measured.
    Generated before any measured window (about 0.8 s of CPU per 12 MP photo)."""
    from tests import imagecorpus

    width, height = SIZES[kind]
    photos = [imagecorpus.to_jpeg(imagecorpus.photo(width, height, seed=i), quality=88) for i in range(count)]
    if len({hashlib.sha256(p).digest() for p in photos}) != count:
        raise RuntimeError("two generated photos are identical")
    return photos


def idle_rate(stack, seconds: float = 3.0) -> dict[str, float]:
    """CPUs each process tree uses with nothing to do (consumers' fetch long polls, timers)."""
    before = cpu_by_process(stack)
    time.sleep(seconds)
    return {name: cpu / seconds for name, cpu in delta(before, cpu_by_process(stack)).items()}


def wait_quiet(stack, idle: float, margin: float = 0.1, interval: float = 0.5, timeout: float = 20) -> float:
    """Wait until the stack's processes together use at most `margin` CPUs more than when idle over
    `interval` s (follow-up work of the last photos done: retention, commits); the seconds waited."""
    started = time.monotonic()
    before = cpu_by_process(stack)
    while time.monotonic() - started < timeout:
        time.sleep(interval)
        now = cpu_by_process(stack)
        if sum(delta(before, now).values()) <= (idle + margin) * interval:
            break
        before = now
    return time.monotonic() - started


def run_measured(stack, photos: list[bytes], target, concurrency: int, quiet: float) -> dict:
    """One batch posted at once, with the stack's CPU around it: until the stack is quiet again, so
    the follow-up work of the last photos (retention's index, status, commits) is counted too."""
    who, before, t0, own = pids(stack), cpu_by_process(stack), time.perf_counter(), time.process_time()
    result = asyncio.run(drive_pipeline(stack.env, photos, concurrency=concurrency, target=target))
    own = time.process_time() - own
    wait_quiet(stack, quiet)
    after, t1 = cpu_by_process(stack), time.perf_counter()
    restarted = sorted(name for name, pid in pids(stack).items() if who.get(name) != pid)
    if restarted:
        raise RuntimeError(f"{restarted} restarted during the run: their CPU cannot be counted")
    result["cpu_seconds"] = delta(before, after)
    result["cpu_window_seconds"] = t1 - t0
    # The bench itself (posting the photos, following message.published) shares the cores.
    result["load_generator_cpu_seconds"] = own
    return result


def measure(stack, pool: list[bytes], photos: int, conversations: int, singles: int, warmup: int = 2) -> dict:
    """pool: warmup + 2 * photos + singles distinct photos, each sent once."""
    warm, burst, spread, single = (
        pool[:warmup],
        pool[warmup : warmup + photos],
        pool[warmup + photos : warmup + 2 * photos],
        pool[warmup + 2 * photos :],
    )
    targets = {
        name: open_target(stack.env, n)
        for name, n in (("warmup", 2), ("burst", 1), ("spread", conversations), ("single", 1))
    }
    idle = idle_rate(stack)
    quiet = sum(idle.values())
    asyncio.run(drive_pipeline(stack.env, warm, target=targets["warmup"]))
    wait_quiet(stack, quiet)
    out: dict = {"idle_cpus": idle}

    def libvips() -> float:  # the stack is quiet: the warm-up and each measured run wait for it
        return baseline_throughput(pyvips_thumbnail, burst + spread)

    before = libvips()
    for phase, batch in (("burst", burst), ("spread", spread)):
        run = run_measured(stack, batch, targets[phase], concurrency=photos, quiet=quiet)
        after = libvips()
        run["libvips_before_after"] = [before, after]
        run["libvips_photos_per_second"] = (before + after) / 2
        run["ratio_vs_libvips"] = run["photos_per_second"] / run["libvips_photos_per_second"]
        run["conversations"] = len(targets[phase].urls)
        out[phase] = run
        before = after
    latencies, waited = [], []
    for photo in single:
        waited.append(wait_quiet(stack, quiet))
        one = asyncio.run(drive_pipeline(stack.env, [photo], concurrency=1, target=targets["single"], watch_wait_ms=10))
        latencies.append(one["latencies"][0])
    out["single"] = {
        "photos": singles,
        "latencies": latencies,
        "p50": percentile(latencies, 50),
        "p90": percentile(latencies, 90),
        "quiet_wait_seconds": [round(w, 2) for w in waited],
    }
    measured = out["burst"]["photos"] + out["spread"]["photos"]
    names = [n for n in (*SERVICES, *SERVERS) if n in out["burst"]["cpu_seconds"]] + sorted(
        n for n in out["burst"]["cpu_seconds"] if n not in SERVICES + SERVERS
    )
    out["cpu_seconds_per_photo"] = {
        n: (out["burst"]["cpu_seconds"].get(n, 0) + out["spread"]["cpu_seconds"].get(n, 0)) / measured for n in names
    }
    out["cpu_photos"] = measured
    window = out["burst"]["cpu_window_seconds"] + out["spread"]["cpu_window_seconds"]
    out["idle_cpu_seconds_per_photo"] = {n: idle.get(n, 0) * window / measured for n in names}
    return out


def report(result: dict) -> None:
    print(
        f"burst bench: {result['photo_bytes'] / 1e6:.1f} MB {result['kind']} photos, {result['cores']} cores, "
        f"account max_image_dimension 800"
    )
    print(f"{'':44}{'photos/s':>9}{'libvips':>9}{'ratio':>8}{'target':>8}")
    for phase, label, target in (
        ("burst", f"burst: {result['burst']['photos']} into 1 conversation", TARGET_BURST),
        (
            "spread",
            f"spread: {result['spread']['photos']} over {result['spread']['conversations']} conversations",
            TARGET_SPREAD,
        ),
    ):
        r = result[phase]
        verdict = "met" if result["targets_met"][phase] else "NOT met"
        print(
            f"{label:44}{r['photos_per_second']:9.2f}{r['libvips_photos_per_second']:9.2f}"
            f"{r['ratio_vs_libvips']:7.2f}x{target:7.1f}x  {verdict}   (libvips before/after "
            f"{r['libvips_before_after'][0]:.1f}/{r['libvips_before_after'][1]:.1f}; latency p50 {r['latency_p50']:.2f}s, "
            f"max {max(r['latencies']):.2f}s, {r['retries_after_503']} retries on 503)"
        )
    s = result["single"]
    verdict = "met" if result["targets_met"]["single"] else "NOT met"
    print(
        f"single photo on a quiet stack, upload→published over {s['photos']}: p50 {s['p50'] * 1000:.0f} ms, "
        f"p90 {s['p90'] * 1000:.0f} ms (target p50 <= {TARGET_SINGLE_P50 * 1000:.0f} ms: {verdict})"
    )
    cpu = result["cpu_seconds_per_photo"]
    print(
        f"CPU per photo (burst + spread, {result['cpu_photos']} photos), total {sum(cpu.values()) * 1000:.0f} ms: "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
    )
    idle = result["idle_cpus"]
    print(
        f"  of which the idle stack's own use ({sum(idle.values()):.2f} CPUs before the warm-up, mostly "
        f"{max(idle, key=idle.get)}'s {max(idle.values()):.2f}): "
        f"{sum(result['idle_cpu_seconds_per_photo'].values()) * 1000:.0f} ms per photo"
    )
    generator = sum(result[p]["load_generator_cpu_seconds"] for p in ("burst", "spread")) / result["cpu_photos"]
    print(
        f"  not counted above: the bench's own CPU (posting photos, following message.published) "
        f"{generator * 1000:.0f} ms per photo, on the same cores"
    )


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.3, 0.8, 1.3]})
    labels, rates, colours = [], [], []
    for phase, _target in (("burst", TARGET_BURST), ("spread", TARGET_SPREAD)):
        r = result[phase]
        labels += [f"{phase}\n({r['conversations']} conv.)", f"libvips\n(around {phase})"]
        rates += [r["photos_per_second"], r["libvips_photos_per_second"]]
        colours += ["#55a868", "#4c72b0"]
    bars = a.bar(range(4), rates, color=colours)
    a.bar_label(bars, fmt="%.1f", fontsize=8)
    for i, (phase, target) in enumerate((("burst", TARGET_BURST), ("spread", TARGET_SPREAD))):
        a.plot(
            [2 * i + 1] * 2,
            result[phase]["libvips_before_after"],
            "k_",
            markersize=14,
            label="libvips before / after" if i == 0 else None,
        )
        goal = target * result[phase]["libvips_photos_per_second"]
        a.hlines(
            goal, 2 * i - 0.4, 2 * i + 0.4, colors="#c44e52", linestyles="dashed", label="target" if i == 0 else None
        )
    a.set_xticks(range(4), labels, fontsize=8)
    a.set_ylabel("photos / s")
    a.set_title(f"{result['photos']} × {result['kind']}, {result['cores']} cores")
    a.legend(fontsize=8)
    s = result["single"]
    bars = b.bar(["p50", "p90"], [s["p50"] * 1000, s["p90"] * 1000], color="#55a868")
    b.bar_label(bars, fmt="%.0f", fontsize=8)
    b.axhline(TARGET_SINGLE_P50 * 1000, color="#c44e52", linestyle="dashed", label="target p50")
    b.set_ylabel("ms")
    b.set_title(f"single photo upload → published ({s['photos']})")
    b.legend(fontsize=8)
    cpu = result["cpu_seconds_per_photo"]
    names = list(cpu)
    bars = c.barh(
        names, [cpu[n] * 1000 for n in names], color=["#55a868" if n in SERVICES else "#8172b2" for n in names]
    )
    c.bar_label(bars, fmt="%.0f", fontsize=8)
    c.invert_yaxis()
    c.set_xlabel("CPU ms per photo (burst + spread)")
    c.set_title(f"CPU per stage per photo, total {sum(cpu.values()) * 1000:.0f} ms")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None, out: Path = OUT) -> dict:
    from shared.devstack.embedded import running_stack
    from shared.devstack.embedded_clamd import write_test_signatures

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=24, help="photos in the burst and in the spread")
    parser.add_argument("--conversations", type=int, default=12, help="conversations of the spread")
    parser.add_argument("--single", type=int, default=10, help="single photos, one at a time")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--kind", default="jpeg_12mp", choices=["jpeg_12mp", "jpeg_4mp"])
    args = parser.parse_args(argv)
    pool = distinct_photos(args.kind, args.warmup + 2 * args.photos + args.single)
    with tempfile.TemporaryDirectory(prefix="fsbench-") as tmp:
        data_dir = Path(tmp)
        signatures = write_test_signatures(data_dir / "db").parent
        with running_stack(data_dir, clamd_signatures=signatures, FS_LOG_LEVEL="WARNING") as stack:
            measured = measure(stack, pool, args.photos, args.conversations, args.single, args.warmup)
    result = {
        "kind": args.kind,
        "photo_bytes": sum(map(len, pool)) // len(pool),
        "photos": args.photos,
        "distinct_photos": len(pool),
        "photo_sha256": [hashlib.sha256(p).hexdigest() for p in pool],
        "cores": os.cpu_count(),
        "targets": {
            "burst_ratio": TARGET_BURST,
            "spread_ratio": TARGET_SPREAD,
            "single_p50_seconds": TARGET_SINGLE_P50,
        },
        **measured,
    }
    result["targets_met"] = {
        "burst": result["burst"]["ratio_vs_libvips"] >= TARGET_BURST,
        "spread": result["spread"]["ratio_vs_libvips"] >= TARGET_SPREAD,
        "single": result["single"]["p50"] <= TARGET_SINGLE_P50,
    }
    report(result)
    out.mkdir(exist_ok=True)
    (out / "burst.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "burst.png")
    print(f"wrote {out / 'burst.json'} and {out / 'burst.png'}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
