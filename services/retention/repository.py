"""Retention's tables (schema `retention`): the file index, the receipts, the forget requests.

Every statement of the handlers, each inside the caller's connection or transaction; the handlers
decide what to lock, erase and send (services.retention.handlers).
"""

from __future__ import annotations

from datetime import datetime

from shared.adapters.db import Connection, the_row
from shared.contract.durations import MAKE_INTERVAL_SQL, interval_args

INDEX_COLUMNS = "file_id, account_id, consumer_id, conversation_id"


async def index(conn: Connection, file: dict, size_bytes: int, created: datetime, retention: str) -> None:
    """`file` (its four ids) enters the index, expiring `retention` after `created`, unless it has a
    receipt already or is indexed."""
    await conn.execute(
        "INSERT INTO files (file_id, account_id, consumer_id, conversation_id, size_bytes, created_at, expires_at) "
        f"SELECT %(file_id)s, %(account_id)s, %(consumer_id)s, %(conversation_id)s, %(size)s, %(created)s, "
        f"%(created)s + {MAKE_INTERVAL_SQL} "
        "WHERE NOT EXISTS (SELECT 1 FROM receipts WHERE file_id = %(file_id)s) ON CONFLICT (file_id) DO NOTHING",
        {**file, "size": size_bytes, "created": created, **interval_args(retention)},
    )


async def index_found(conn: Connection, file: dict) -> None:
    """A file found in the store but not indexed joins the index (unless it has a receipt)."""
    await conn.execute(
        "INSERT INTO files (file_id, account_id, consumer_id, conversation_id, created_at, expires_at) "
        "SELECT %(file_id)s, %(account_id)s, %(consumer_id)s, %(conversation_id)s, now(), "
        "now() + interval '1 day' "  # the erasure retries until it is done; expiry is the backstop
        "WHERE NOT EXISTS (SELECT 1 FROM receipts WHERE file_id = %(file_id)s) "
        "ON CONFLICT (file_id) DO NOTHING",
        file,
    )


async def set_retention(conn: Connection, account_id: str, retention: str) -> None:
    """Every indexed file of the account expires `retention` after it was created."""
    await conn.execute(
        f"UPDATE files SET expires_at = created_at + {MAKE_INTERVAL_SQL} WHERE account_id = %(account_id)s",
        {"account_id": account_id, **interval_args(retention)},
    )


async def lock_indexed(conn: Connection, file_ids: list[str]) -> None:
    """The index rows of `file_ids`, locked in one order (file_id)."""
    await conn.execute("SELECT file_id FROM files WHERE file_id = ANY(%s) ORDER BY file_id FOR UPDATE", (file_ids,))


async def unindex(conn: Connection, file_ids: list[str]) -> None:
    await conn.execute("DELETE FROM files WHERE file_id = ANY(%s)", (file_ids,))


async def add_receipt(conn: Connection, file_id: str, account_id: str, reason: str, request_id: str | None) -> bool:
    """Record the file's receipt; False when it had one (one receipt per file, ever)."""
    row = await (
        await conn.execute(
            "INSERT INTO receipts (file_id, account_id, reason, request_id) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (file_id) DO NOTHING RETURNING file_id",
            (file_id, account_id, reason, request_id),
        )
    ).fetchone()
    return row is not None


async def lock_expired(conn: Connection, now: datetime, limit: int) -> list[dict]:
    """Up to `limit` indexed files expired at `now`, oldest first, locked; rows other sweeps hold are skipped."""
    return await (
        await conn.execute(
            f"SELECT {INDEX_COLUMNS} FROM files WHERE expires_at <= %s "
            "ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit),
        )
    ).fetchall()


async def indexed_of_consumer(conn: Connection, account_id: str, consumer_id: str) -> list[dict]:
    return await (
        await conn.execute(
            f"SELECT {INDEX_COLUMNS} FROM files WHERE account_id = %s AND consumer_id = %s ORDER BY file_id",
            (account_id, consumer_id),
        )
    ).fetchall()


async def start_forget(conn: Connection, request_id: str, account_id: str, consumer_id: str) -> bool:
    """Record the forget request; False when it was carried out before (done_at set)."""
    await conn.execute(
        "INSERT INTO forget_requests (request_id, account_id, consumer_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (request_id, account_id, consumer_id),
    )
    row = the_row(
        await (
            await conn.execute(
                "SELECT done_at FROM forget_requests WHERE request_id = %s AND account_id = %s AND consumer_id = %s",
                (request_id, account_id, consumer_id),
            )
        ).fetchone()
    )
    return row["done_at"] is None


async def finish_forget(conn: Connection, request_id: str, account_id: str, consumer_id: str) -> None:
    await conn.execute(
        "UPDATE forget_requests SET done_at = now() WHERE request_id = %s AND account_id = %s AND consumer_id = %s",
        (request_id, account_id, consumer_id),
    )


async def latest_forget(conn: Connection, account_id: str, consumer_id: str) -> str | None:
    """The request id of the consumer's latest forget request, if any."""
    row = await (
        await conn.execute(
            "SELECT request_id FROM forget_requests WHERE account_id = %s AND consumer_id = %s "
            "ORDER BY received_at DESC LIMIT 1",
            (account_id, consumer_id),
        )
    ).fetchone()
    return row["request_id"] if row else None
