"""One embedded stack (Tansu + rclone S3 + clamd + the five services) per test session.

Tests isolate themselves with unique account, conversation and consumer ids; servers are
started once on free ports and never mocked.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from shared.embedded import EmbeddedStack, SERVICES, free_port, load_or_create_secrets
from shared.embedded_clamd import start_clamd, write_test_signatures
from tests.support import Client


def free_port_block(n: int) -> int:
    """A base port with n free consecutive ports (the metrics ports are base+0..4)."""
    for _ in range(200):
        base = free_port()
        if base + n >= 65535:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no block of free ports")


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> EmbeddedStack:
    data_dir = tmp_path_factory.mktemp("fsdata")
    env = {
        "FS_DATA_DIR": str(data_dir),
        "FS_S3_ENDPOINT": f"127.0.0.1:{free_port()}",
        "FS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "FS_UPLOAD_PORT": str(free_port()),
        "FS_DELIVERY_PORT": str(free_port()),
        "FS_METRICS_PORT_BASE": str(free_port_block(5)),
        "FS_RETENTION_SWEEP_SECONDS": "1",
        "FS_LOG_LEVEL": "INFO",
    }
    for k in [k for k in os.environ if k.startswith("FS_")]:
        os.environ.pop(k)  # the developer's own FS_* must not leak into the test stack
    env.update(load_or_create_secrets(data_dir / "secrets"))
    s = EmbeddedStack(data_dir, env)
    try:
        s.start_s3()
        s.start_kafka()
        db = write_test_signatures(data_dir / "clamav-db").parent
        clamd_port = free_port()
        s.procs["clamd"] = start_clamd(data_dir / "clamd", db, clamd_port)
        s.env["FS_CLAMD"] = f"127.0.0.1:{clamd_port}"
        s.bootstrap()
        for name in SERVICES:
            s.start_service(name)
        for name in SERVICES:
            s.wait_ready(name)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def client(stack) -> Client:
    return Client(env=stack.env, data_dir=Path(stack.data_dir))
