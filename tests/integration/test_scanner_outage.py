"""An unreachable scanner is never taken for "clean": the sanitizer retries with
backoff, the photo waits, and it goes through once clamd is back."""

from __future__ import annotations

import re

import httpx

from shared.devstack.embedded import split_hostport
from shared.devstack.embedded_clamd import start_clamd
from tests import imagecorpus as corpus
from tests.support import metrics_url, unique, wait_until


def scanner_retries(stack) -> float:
    text = httpx.get(metrics_url(stack.env, "sanitizer")).text
    return sum(
        float(v)
        for v in re.findall(r'^fileshare_transient_retries_total\{kind="ScannerUnavailable"\} ([0-9.e+]+)$', text, re.M)
    )


def test_photo_waits_while_clamd_is_down_and_passes_when_it_is_back(stack, client):
    account, conv, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account)
    client.open_conversation(account, conv, consumer)
    proc = stack.procs["clamd"]
    run_dir, db_dir = stack.data_dir / "clamd", stack.data_dir / "clamav-db"
    _, port = split_hostport(stack.env["FS_CLAMD"])
    retries_before = scanner_retries(stack)
    stack.stop_process("clamd")
    try:
        file_id = client.upload(account, conv, corpus.to_jpeg(corpus.photo(640, 480))).json()["file_id"]
        wait_until(
            lambda: scanner_retries(stack) >= retries_before + 2,
            timeout=60,
            what="the sanitizer to retry the unreachable scanner",
        )
        assert client.status(file_id, account)["status"] == "uploaded", "nothing passes unscanned"
    finally:
        if "clamd" not in stack.procs:
            stack.procs["clamd"] = start_clamd(run_dir, db_dir, port)
    assert proc.poll() is not None
    assert client.wait_status(file_id, account, timeout=90)["status"] == "published"
