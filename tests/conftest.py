"""One embedded stack (Tansu + rclone S3 + clamd + the five services) per test session.

Tests isolate themselves with unique account, conversation and consumer ids; servers are
started once on free ports and never mocked.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.embedded import EmbeddedStack, running_stack
from shared.embedded_clamd import write_test_signatures
from tests.support import Client


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> EmbeddedStack:
    data_dir = tmp_path_factory.mktemp("fsdata")
    for k in [k for k in os.environ if k.startswith("FS_")]:
        os.environ.pop(k)  # the developer's own FS_* must not leak into the test stack
    signatures = write_test_signatures(data_dir / "clamav-db").parent
    with running_stack(data_dir, clamd_signatures=signatures, FS_RETENTION_SWEEP_SECONDS="1",
                       FS_LOG_LEVEL="INFO") as s:
        yield s


@pytest.fixture(scope="session")
def client(stack) -> Client:
    return Client(env=stack.env, data_dir=Path(stack.data_dir))
