"""The malware scanner fails closed. FS_CLAMD unset: the sanitizer refuses to start;
`disabled` is the explicit, loud opt-out (see test_make_run.py for `make run` without signatures);
a clamd address: scanning, said in /readyz and a metric."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from shared.devstack.embedded import free_port_block
from shared.settings import METRICS_PORT_OFFSETS
from tests.support import sample, scrape


def test_without_fs_clamd_the_sanitizer_refuses_to_start(stack):
    env = {**os.environ, **stack.env, "FS_CLAMD": "", "FS_METRICS_PORT_BASE": str(free_port_block(5))}
    result = subprocess.run(
        [sys.executable, "-m", "services.sanitizer"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    refusal = [line for line in result.stderr.splitlines() if "refuses to start" in line]
    assert refusal and "FS_CLAMD is not set" in refusal[0] and "FS_CLAMD=disabled" in refusal[0], result.stderr
    assert "Traceback" not in result.stderr  # one clear line, not a stack dump


def test_with_clamd_readiness_and_metrics_say_files_are_scanned(stack):
    port = int(stack.env["FS_METRICS_PORT_BASE"]) + METRICS_PORT_OFFSETS["sanitizer"]
    readyz = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
    assert (readyz.status_code, readyz.json()) == (200, {"ready": True, "scanner": "clamd"})
    assert sample(scrape(stack.env, "sanitizer"), "fileshare_scanner_enabled") == 1.0
