"""One embedded stack (Tansu + rclone S3 + clamd + the five services) per test session.

Tests isolate themselves with unique account, conversation and consumer ids; servers are
started once on free ports and never mocked.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from shared.adapters.db import Database
from shared.devstack.embedded import (
    EmbeddedStack,
    create_database,
    embedded_database_url,
    free_port,
    load_or_create_secrets,
    running_stack,
)
from shared.devstack.embedded_clamd import write_test_signatures
from tests.support import Client


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> EmbeddedStack:
    data_dir = tmp_path_factory.mktemp("fsdata")
    for k in [k for k in os.environ if k.startswith("FS_")]:
        os.environ.pop(k)  # the developer's own FS_* must not leak into the test stack
    signatures = write_test_signatures(data_dir / "clamav-db").parent
    with running_stack(data_dir, clamd_signatures=signatures, FS_RETENTION_SWEEP_SECONDS="1", FS_LOG_LEVEL="INFO") as s:
        yield s


@pytest.fixture(scope="session")
def client(stack) -> Client:
    return Client(env=stack.env, data_dir=Path(stack.data_dir))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """A PostgreSQL server of its own (no Kafka, no services) for tests of database-backed handlers;
    tests isolate themselves with unique ids."""
    data_dir = tmp_path_factory.mktemp("pg")
    password = load_or_create_secrets(data_dir)["FS_DATABASE_PASSWORD"]
    server = EmbeddedStack(data_dir, {"FS_DATABASE_URL": embedded_database_url(password, free_port())})
    server.start_postgres()
    yield server.env["FS_DATABASE_URL"]
    server.stop()


@pytest.fixture
async def open_database(database_url):
    """`await open_database(schema)`: that service's schema, migrated, on the test server; with
    `fresh=True` in a database of its own (for tests of sweeps that scan every row)."""
    opened: list[Database] = []

    async def open_(schema: str, fresh: bool = False) -> Database:
        url = database_url
        if fresh:
            url = database_url.rsplit("/", 1)[0] + "/" + uuid.uuid4().hex
            create_database(url)
        db = Database(url, schema, max_size=4)
        await db.open()
        opened.append(db)
        return db

    yield open_
    for db in opened:
        await db.close()


@pytest.fixture
def own_object_store(stack, tmp_path) -> dict[str, str]:
    """An rclone serve s3 of its own (its own `fileshare` and `fileshare-keys`), for a test that works
    on a whole bucket (a key rotation) without touching the stack's: stack.env with its S3 values."""
    env = {**stack.env, "FS_S3_ENDPOINT": f"127.0.0.1:{free_port()}"}
    server = EmbeddedStack(tmp_path / "own-s3", env)
    server.start_s3()
    yield server.env
    server.stop()
