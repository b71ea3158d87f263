"""Upload's memory under a burst: 50 concurrent 5 MB uploads, peak RSS of the upload process.

  uv run python -m bench.upload_burst [--uploads 50]

Starts its own embedded stack (no clamd) in a temporary folder on free ports, unless `make bench`
hands it one. Each client sends its photo once and, answered 503 with `Retry-After`, waits that long
and sends it again with the same `Idempotency-Key` (what a well-behaved client does). The peak is
the upload process's VmHWM (reset first) and its RSS sampled every 5 ms (tests.support.PeakRss).
Target: at most 250 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.pipeline import Target, open_target, post_until_accepted
from tests import imagecorpus as corpus
from tests.support import PeakRss

OUT = Path(__file__).parent / "out"
TARGET_BYTES = 250 * 10**6
PHOTO_BYTES = 5_000_000


def five_mb_photo() -> bytes:
    """A 12 MP photo-like JPEG (3.9 MB) padded with comment segments to about 5 MB: what a phone
    camera sends, near the size limit."""
    return corpus.padded_jpeg(corpus.jpeg_12mp(), PHOTO_BYTES)


async def send_all(target: Target, photo: bytes, uploads: int) -> dict:
    outcomes: dict[str, int] = {}
    retries = 0

    async def one(http: httpx.AsyncClient, i: int) -> None:
        nonlocal retries
        r, resent = await post_until_accepted(http, target.urls[i % len(target.urls)], target.headers, photo)
        retries += resent
        outcomes[str(r.status_code)] = outcomes.get(str(r.status_code), 0) + 1

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=uploads)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(one(http, i) for i in range(uploads)))
        seconds = time.perf_counter() - started
    return {"outcomes": outcomes, "retries_after_503": retries, "seconds": seconds}


def measure(stack, uploads: int = 50) -> dict:
    """On a running stack: the burst, with the upload process's peak RSS around it."""
    photo = five_mb_photo()
    target = open_target(stack.env, 10)
    asyncio.run(send_all(target, photo, 2))  # warm-up: connections, first keys, code paths
    with PeakRss(stack.procs["upload"].pid) as rss:
        result = asyncio.run(send_all(target, photo, uploads))
    return {
        **result,
        "uploads": uploads,
        "photo_bytes": len(photo),
        "rss_baseline_bytes": rss.baseline,
        "rss_peak_bytes": rss.peak,
        "vmhwm_reset": rss.hwm_reset,
        "target_bytes": TARGET_BYTES,
        "target_met": rss.peak <= TARGET_BYTES and result["outcomes"] == {"202": uploads},
    }


def report(result: dict) -> None:
    print(
        f"upload burst: {result['uploads']} concurrent uploads of {result['photo_bytes'] / 1e6:.1f} MB: answers "
        f"{result['outcomes']} after {result['retries_after_503']} retries on 503, {result['seconds']:.1f} s; "
        f"upload RSS {result['rss_baseline_bytes'] / 1e6:.0f} MB before, peak {result['rss_peak_bytes'] / 1e6:.0f} MB "
        f"(target <= {result['target_bytes'] / 1e6:.0f} MB: {'met' if result['target_met'] else 'NOT met'})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=50)
    args = parser.parse_args(argv)
    from shared.devstack.embedded import running_stack

    with tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp:
        with running_stack(Path(tmp), FS_LOG_LEVEL="WARNING") as stack:
            result = measure(stack, args.uploads)
    report(result)
    OUT.mkdir(exist_ok=True)
    (OUT / "upload_burst.json").write_text(json.dumps(result, indent=2))
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
