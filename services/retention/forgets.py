"""Retention's record of forget requests, as read by the master-key rotation (shared.adapters.key_rotation).

A forget inserts its row (forget_requests, committed) BEFORE it destroys the consumer's keys, and
sets done_at after; both stamps come from the database's clock. So a rotation that read a key at
time T and wrote it back afterwards can tell, from here alone, whether a forget may have deleted
that key in between: a forget of that consumer still running, or finished at or after T.
"""

from __future__ import annotations

from datetime import datetime

from shared.adapters.db import Database, the_row

FORGOTTEN_SINCE = """
    SELECT DISTINCT account_id, consumer_id FROM forget_requests
    WHERE (account_id, consumer_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
      AND (done_at IS NULL OR done_at >= %s)"""


class ForgetLedger:
    """Read-only view of retention.forget_requests for one command run."""

    def __init__(self, database_url: str):
        self._db = Database(database_url, "retention", max_size=1)

    async def __aenter__(self) -> ForgetLedger:
        await self._db.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._db.close()

    async def now(self) -> datetime:
        """The database's clock (the one forget_requests is stamped with), now."""
        async with self._db.pool.connection() as conn:
            return the_row(await (await conn.execute("SELECT clock_timestamp() AS now")).fetchone())["now"]

    async def forgotten_since(self, consumers: set[tuple[str, str]], since: datetime) -> set[tuple[str, str]]:
        """The consumers among `consumers` with a forget running now or finished at or after `since`."""
        if not consumers:
            return set()
        accounts, ids = zip(*sorted(consumers))
        async with self._db.pool.connection() as conn:
            rows = await (await conn.execute(FORGOTTEN_SINCE, (list(accounts), list(ids), since))).fetchall()
        return {(r["account_id"], r["consumer_id"]) for r in rows}
