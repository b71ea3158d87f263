"""`fileshare retention status`: stored files per account, oldest file age, next expiry.

Read-only: one grouped query over retention's file index (its expiry times are indexed).
"""

from __future__ import annotations

from datetime import datetime

from shared.adapters.db import Database
from shared.contract import events as ev
from shared.projections.account_settings import all_documents
from shared.settings import Settings

PER_ACCOUNT = """
    SELECT account_id, count(*) AS files, coalesce(sum(size_bytes), 0) AS bytes,
           count(DISTINCT consumer_id) AS consumers, min(created_at) AS oldest_created,
           min(expires_at) AS next_expiry
    FROM files GROUP BY account_id ORDER BY account_id"""


def summarize(rows: list[dict], documents: dict[str, ev.AccountSettingsDocument], now: datetime) -> dict:
    accounts = []
    for row in rows:
        retention = documents.get(row["account_id"], ev.AccountSettingsDocument()).retention
        accounts.append(
            {
                "account_id": row["account_id"],
                "retention": retention,
                "files": row["files"],
                "bytes": int(row["bytes"]),
                "consumers": row["consumers"],
                "oldest_file_age_seconds": round((now - row["oldest_created"]).total_seconds(), 1),
                "next_expiry": row["next_expiry"].isoformat(),
                "next_expiry_overdue": row["next_expiry"] <= now,
            }
        )
    return {"generated_at": now.isoformat(), "files": sum(a["files"] for a in accounts), "accounts": accounts}


async def load_status(settings: Settings, now: datetime) -> dict:
    db = Database(settings.database_url, "retention", max_size=1)
    await db.open()
    try:
        async with db.pool.connection() as conn:
            rows = await (await conn.execute(PER_ACCOUNT)).fetchall()
            documents = await all_documents(conn)
    finally:
        await db.close()
    return summarize(rows, documents, now)
