"""Download latency of a 5 MB-class final image: p50/p90 over N GETs.

  uv run python -m bench.delivery_download [--requests 30]

Starts its own embedded stack (rclone S3 + Tansu + the five services, no clamd) in a
temporary folder on free ports, publishes one noisy PNG that stays ~4.8 MB through an
account with max_image_dimension 4096, then times sequential authenticated downloads
(HTTP request to last byte, including decryption and the S3 read). Not a test: numbers
depend on the machine. `make bench` calls measure() on its own stack (bench.pipeline).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from shared.devstack.embedded import running_stack
from tests.integration.delivery_support import new_conversation, publish_photo
from tests.integration.test_delivery_api import noisy_png
from tests.support import Client


def measure(stack, requests: int = 30) -> dict:
    """On a running stack: publish the ~4.8 MB PNG, then time `requests` sequential downloads."""
    client = Client(env=stack.env, data_dir=Path(stack.env["FS_DATA_DIR"]))
    where = new_conversation(client, max_image_dimension=4096)
    photo = publish_photo(client, where=where, data=noisy_png(1400, 1150), filename="big.png")
    auth = client.auth(photo.account, "agent", "agent-1")
    url = f"{client.delivery_url}/v1/files/{photo.file_id}/content"
    size = len(client.http.get(url, headers=auth).content)  # warm-up
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        r = client.http.get(url, headers=auth)
        timings.append(time.perf_counter() - started)
        assert r.status_code == 200 and len(r.content) == size
    timings.sort()
    return {
        "final_bytes": size,
        "requests": len(timings),
        "p50_seconds": statistics.median(timings),
        "p90_seconds": timings[int(0.9 * (len(timings) - 1))],
        "max_seconds": timings[-1],
    }


def report(result: dict) -> None:
    print(
        f"delivery download of a 5 MB-class final image ({result['final_bytes']} bytes), {result['requests']} "
        f"sequential GETs: p50 {result['p50_seconds'] * 1000:.1f} ms, p90 {result['p90_seconds'] * 1000:.1f} ms, "
        f"max {result['max_seconds'] * 1000:.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fs-bench-") as tmp:
        with running_stack(Path(tmp), FS_LOG_LEVEL="WARNING") as stack:
            result = measure(stack, args.requests)
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
