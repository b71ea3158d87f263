"""PostgreSQL, the system of record: one schema per service, a connection pool, a unit of work,
and versioned migrations (Alembic) applied at start.

Each service owns one schema (`upload`, `delivery`, …) and never reads another's. Connections
use that schema as their search_path and UTC as their time zone, so SQL names tables plainly and
interval arithmetic on months matches the contract's calendar (2025-01-31 + P13M = 2026-02-28).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from shared.runtime.retry import retry_transient

log = logging.getLogger(__name__)

# Failures of the database that pass: retried by stream processors, 503 on HTTP.
DB_TRANSIENT: tuple[type[BaseException], ...] = (psycopg.OperationalError, PoolTimeout)

# Every connection of a Database reads rows as dicts (row_factory below).
Connection = psycopg.AsyncConnection[DictRow]


class Database:
    """A pool of connections to one service's schema."""

    def __init__(self, url: str, schema: str, max_size: int = 10):
        if not url:
            raise ValueError("FS_DATABASE_URL is not set: the services keep their state in PostgreSQL")
        self.url, self.schema = url, schema
        self.pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=10,
            # A connection that died with a restarted server is replaced, not handed out.
            check=AsyncConnectionPool.check_connection,
            kwargs={
                "row_factory": dict_row,
                "options": f"-c search_path={schema} -c timezone=UTC",
                "connect_timeout": 5,
            },
        )

    async def open(self, stop: asyncio.Event | None = None) -> None:
        """Wait for the server to answer (a connection, counted as a database outage while it does not),
        apply migrations once (a migration that fails stops the service: retrying cannot mend it), then
        open the pool."""

        async def server_answers() -> None:
            await (await psycopg.AsyncConnection.connect(self.url, connect_timeout=5)).close()

        await retry_transient(server_answers, f"database of {self.schema}", DB_TRANSIENT, stop, max_delay=5)
        await migrate_in_child(self.url, self.schema)
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A unit of work: committed when the block ends, rolled back when it raises."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                yield conn

    async def ready(self) -> bool:
        try:
            async with self.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:
            return False


def the_row(row: DictRow | None) -> DictRow:
    """The row of a query that always answers one (an aggregate, a clock, an upsert's RETURNING)."""
    if row is None:
        raise LookupError("the query answered no row")
    return row


async def lock_files(conn: Connection, *file_ids: str) -> None:
    """Serialise, until this transaction ends, every transaction of this schema that locks one of these
    files (e.g. a deletion and a publish of the same file); always in one order, so never a deadlock."""
    # One batch, not a round trip per file (psycopg pipelines executemany); still in one order.
    await conn.cursor().executemany(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [(file_id,) for file_id in sorted(set(file_ids))]
    )


class MigrationFailed(Exception):
    """The migration process failed: the last line of its output."""


async def migrate_in_child(url: str, schema: str) -> None:
    """migrate() in a child process: Alembic and SQLAlchemy (about 30 MB) never stay in a service's
    memory. The DSN travels in the environment, not on the command line."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.adapters.db",
        schema,
        env={**os.environ, "FS_MIGRATE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await child.communicate()
    if child.returncode != 0:
        lines = output.decode(errors="replace").strip().splitlines()
        raise MigrationFailed(lines[-1] if lines else f"exit {child.returncode}")


def sqlalchemy_url(url: str) -> str:
    """Alembic runs on SQLAlchemy: the same DSN with the psycopg 3 dialect."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def versions_dir(schema: str) -> Path:
    """Each service keeps its migrations beside its code: services/<schema>/migrations."""
    return Path(__file__).resolve().parents[2] / "services" / schema / "migrations"


def migrate(url: str, schema: str) -> None:
    """Bring the service's schema to the newest revision. Safe when several instances start at once:
    env.py holds an advisory lock per schema while it migrates."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    config.set_main_option("version_locations", str(versions_dir(schema)))
    config.set_main_option("path_separator", "os")
    config.attributes.update(url=sqlalchemy_url(url), schema=schema)
    command.upgrade(config, "head")


if __name__ == "__main__":  # the child of migrate_in_child
    migrate(os.environ["FS_MIGRATE_URL"], sys.argv[1])
