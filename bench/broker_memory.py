"""Broker memory: the embedded broker's resident memory per 1,000 photos, and `make run` keeping it
under `FS_EMBEDDED_BROKER_MAX_MB` by recycling the broker in quiet moments (shared.devstack.broker_memory).

    uv run python -m bench.broker_memory [--photos 5000] [--limit-mb 48] [--wave 250]

Runs `fileshare run` itself (the launcher is what recycles), on free ports, with the rate limits
raised out of the way. Every photo is its own 640×480 JPEG of random noise, so its preview in
message.published is near the 30 KB worst case and no photo is ever the same bytes twice.

Photos go in waves of `--wave` (8 requests at a time over 16 conversations); each wave ends when a
platform follower (shared.sdk.PublishedFollower, running throughout) has received every one of its
messages. Between waves, a broker over the limit gets up to 30 s to be recycled: that is the quiet
moment a real brand has between its bursts. A thread samples the broker's RSS (its process tree)
every 0.25 s. Reported: RSS at start and after each 1,000 photos, growth per 1,000 photos before
the first recycle, the highest RSS seen against the limit plus one wave's growth (the broker can
only be recycled between waves), recycles (the launcher's counter), and photos lost (sent but
never received by the follower, or not `published`) or received twice: both must be 0.
Writes bench/out/broker_memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from shared.devstack.broker_memory import RECYCLE_FROM

OUT = Path(__file__).parent / "out"
MB = 1024 * 1024
RECYCLE_WAIT_SECONDS = 30.0


def noise_photo(rng) -> bytes:
    from PIL import Image

    pixels = rng.integers(0, 256, size=(480, 640, 3), dtype="uint8")
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=85)
    return out.getvalue()


class BrokerSampler(threading.Thread):
    """The RSS of the launcher's broker every `every` seconds: (time, pid, bytes); its highest."""

    def __init__(self, launcher_pid: int, every: float = 0.25):
        super().__init__(daemon=True)
        self.launcher_pid, self.every, self.stopping = launcher_pid, every, threading.Event()
        self.samples: list[tuple[float, int, int]] = []

    def run(self) -> None:
        from shared.devstack.broker_memory import tree_rss
        from tests.launcher import component

        while not self.stopping.is_set():
            broker = component(self.launcher_pid, "kafka")
            if broker is not None:
                self.samples.append((time.monotonic(), broker.pid, tree_rss(broker.pid)))
            self.stopping.wait(self.every)

    def now(self) -> tuple[int, int]:
        """(pid, bytes) of the latest sample."""
        return self.samples[-1][1:] if self.samples else (0, 0)


async def post_wave(env: dict, target, photos: list[bytes], concurrency: int = 8) -> list[str]:
    """POST the photos over the target's conversations; their file ids."""
    import httpx

    from bench.pipeline import post_until_accepted

    gate = asyncio.Semaphore(concurrency)

    async with httpx.AsyncClient(timeout=120) as http:

        async def one(i: int, data: bytes) -> str:
            async with gate:
                r, _ = await post_until_accepted(http, target.urls[i % len(target.urls)], target.headers, data)
                r.raise_for_status()
                return r.json()["file_id"]

        return await asyncio.gather(*(one(i, p) for i, p in enumerate(photos)))


def wait_received(follower, wanted: set[str], timeout: float = 600) -> set[str]:
    """Wait until the follower has every wanted message id; the ones still missing at `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        missing = wanted - set(follower.received)
        if not missing:
            return set()
        time.sleep(0.2)
    return wanted - set(follower.received)


def wait_recycled(sampler: BrokerSampler, limit: int, timeout: float = RECYCLE_WAIT_SECONDS) -> bool:
    """A broker over the limit: wait until it is another process (recycled); True when it was."""
    pid, rss = sampler.now()
    if rss <= limit:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sampler.now()[0] not in (0, pid):
            return True
        time.sleep(0.2)
    return False


def measure(env: dict, launcher_pid: int, photos: int, wave: int, limit: int, seed: int) -> dict:
    import numpy as np

    from bench.pipeline import open_target
    from services.delivery.handlers import message_id_for
    from tests.support import FollowerThread

    rng = np.random.default_rng(seed)
    sampler = BrokerSampler(launcher_pid)
    sampler.start()
    follower = FollowerThread(env["FS_KAFKA_BOOTSTRAP"])
    follower.start()
    target = open_target(env, conversations=16)
    start_rss = sampler.now()[1]
    sent: list[str] = []
    digests: set[bytes] = set()
    total_bytes = 0
    marks, missing, waits = [{"photos": 0, "rss_mb": start_rss / MB, "recycles": 0}], set(), []
    while len(sent) < photos:
        batch = [noise_photo(rng) for _ in range(min(wave, photos - len(sent)))]
        digests.update(hashlib.sha256(p).digest() for p in batch)
        total_bytes += sum(map(len, batch))
        ids = asyncio.run(post_wave(env, target, batch))
        sent += ids
        missing |= wait_received(follower, {message_id_for(f) for f in ids})
        if len(sent) // 1000 > marks[-1]["photos"] // 1000:
            marks.append({"photos": len(sent), "rss_mb": sampler.now()[1] / MB, "recycles": recycles_seen(sampler)})
            print(f"  {marks[-1]}", flush=True)
        started = time.monotonic()
        if wait_recycled(sampler, int(limit * RECYCLE_FROM)):  # where the launcher looks for a quiet moment
            waits.append(round(time.monotonic() - started, 2))
    sampler.stopping.set()
    follower.stopping.set()
    return {
        "sent": len(sent),
        "distinct_photos": len(digests),
        "marks": marks,
        "quiet_waits_seconds": waits,
        "max_rss_mb": max(s[2] for s in sampler.samples) / MB,
        "recycles_seen": recycles_seen(sampler),
        "missing_at_follower": len(missing),
        "received_twice": len(follower.received) - len(set(follower.received)),
        "photo_bytes_mean": total_bytes // max(len(sent), 1),
    }


def recycles_seen(sampler: BrokerSampler) -> int:
    pids = [s[1] for s in sampler.samples]
    return sum(1 for a, b in zip(pids, pids[1:], strict=False) if a != b)


def summarise(result: dict, limit_mb: float, wave: int) -> dict:
    """Growth per 1,000 photos before the first recycle, and the verdict on the highest RSS."""
    marks = result["marks"]
    before = [m for m in marks if m["recycles"] == 0]
    growth = (before[-1]["rss_mb"] - before[0]["rss_mb"]) * 1000 / before[-1]["photos"] if len(before) > 1 else None
    headroom = growth * wave / 1000 if growth is not None else None
    result.update(
        {
            "limit_mb": limit_mb,
            "wave": wave,
            "rss_growth_mb_per_1000_photos": growth,
            "allowed_max_mb": limit_mb + headroom if headroom is not None else None,
        }
    )
    result["under_limit_plus_headroom"] = (
        result["allowed_max_mb"] is None or result["max_rss_mb"] <= result["allowed_max_mb"]
    )
    result["under_limit"] = result["max_rss_mb"] <= limit_mb
    return result


def report(r: dict) -> None:
    growth = r["rss_growth_mb_per_1000_photos"]
    print(
        f"broker memory bench: {r['sent']} distinct 640x480 noise photos in waves of {r['wave']}, "
        f"FS_EMBEDDED_BROKER_MAX_MB={r['limit_mb']:g}"
    )
    print("  RSS after each 1,000 photos: " + ", ".join(f"{m['photos']}: {m['rss_mb']:.0f} MB" for m in r["marks"]))
    print(
        f"  growth before the first recycle: {growth:.1f} MB per 1,000 photos"
        if growth is not None
        else "  growth: not measured (recycled before 1,000 photos)"
    )
    allowed = f"{r['allowed_max_mb']:.0f}" if r["allowed_max_mb"] is not None else "?"
    print(
        f"  highest RSS {r['max_rss_mb']:.0f} MB (limit + one wave's growth: {allowed} MB: "
        f"{'met' if r['under_limit_plus_headroom'] else 'NOT met'}; under the limit itself: {'yes' if r['under_limit'] else 'NO'}); recycles {r['recycles']} "
        f"(waits for a quiet moment: {r['quiet_waits_seconds']} s)"
    )
    print(f"  photos lost: {r['lost']}; received twice by the platform follower: {r['received_twice']}")


def run(photos: int, limit_mb: float, wave: int, seed: int = 1) -> dict:
    from shared.devstack.broker_memory import MB as _MB
    from tests.launcher import client_of, launched, launcher_metrics, run_env, wait_all_ready

    with tempfile.TemporaryDirectory(prefix="fsbench-broker-") as tmp:
        env = run_env(
            Path(tmp),
            FS_EMBEDDED_BROKER_MAX_MB=str(limit_mb),
            FS_UPLOADS_PER_MINUTE="1000000",
            FS_ACCOUNT_UPLOADS_PER_MINUTE="1000000",
            FS_LOG_LEVEL="WARNING",
        )
        log_path = Path(tmp) / "run.log"
        with launched(env, log_path) as proc:
            wait_all_ready(proc, log_path, env)
            client = client_of(env)
            result = measure(client.env, proc.pid, photos, wave, int(limit_mb * _MB), seed)
            result["recycles"] = int(launcher_metrics(env)["fileshare_embedded_broker_recycles_total"])
            result["recycle_log_lines"] = log_path.read_text().count("restarting it to free its memory")
            proc.terminate()
            proc.wait(120)
    result["lost"] = result["missing_at_follower"]
    return summarise(result, limit_mb, wave)


def main(argv: list[str] | None = None, out: Path = OUT) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=5000)
    parser.add_argument("--limit-mb", type=float, default=48)
    parser.add_argument("--wave", type=int, default=250)
    parser.add_argument("--tiny", action="store_true", help="30 photos in waves of 10, limit 1 MB (the test's size)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.photos, args.wave, args.limit_mb = 30, 10, 1
    result = run(args.photos, args.limit_mb, args.wave)
    report(result)
    out.mkdir(exist_ok=True)
    (out / "broker_memory.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'broker_memory.json'}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
