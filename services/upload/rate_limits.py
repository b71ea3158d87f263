"""Upload rate limits: per sender and conversation, and per account, over any 60 s, across every
upload instance (the uploads of the last minute are rows of `upload.recent_uploads`).

A slot is taken after every other rule passed (429 is the contract's last refusal) and given back
when the file could not be stored; each scope is counted under a transaction-scoped advisory lock,
held for the count and the insert only, never while the file is stored.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.upload.policy import Refused
from shared.adapters.db import Database, the_row
from shared.contract.auth import Principal
from shared.settings import Settings

WINDOW = timedelta(seconds=60)


@dataclass(frozen=True)
class Limit:
    scope: str  # what is counted, e.g. one sender in one conversation
    per_minute: int
    what: str  # for the refusal's message


def scope_of(*parts: str) -> str:
    """A scope or file as stored: a digest, so that no row names a sender or a file (a forget erases
    every row that does; these rows only expire)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def limits_for(principal: Principal, account_id: str, conversation_id: str, settings: Settings) -> list[Limit]:
    sender = scope_of("sender", account_id, principal.role, principal.sub, conversation_id)
    return [
        Limit(sender, settings.uploads_per_minute, "uploads by one sender into one conversation"),
        Limit(scope_of("account", account_id), settings.account_uploads_per_minute, "uploads into this account"),
    ]


def retry_after(count: int, oldest: datetime | None, limit: int, now: datetime) -> int | None:
    """Seconds until one more upload fits in the window, or None when it fits now."""
    if count < limit or oldest is None:
        return None
    return max(1, math.ceil((oldest + WINDOW - now).total_seconds()))


async def take_slot(db: Database, limits: list[Limit], file_id: str) -> None:
    """Count this file in every scope, or raise Refused(429 rate_limited, Retry-After) and count it
    in none. A file already counted (a retry) is not counted again."""
    digest = scope_of(file_id)
    async with db.transaction() as conn:
        for limit in sorted(limits, key=lambda limit: limit.scope):  # one order everywhere: no deadlock
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (limit.scope,))
            now = the_row(await (await conn.execute("SELECT clock_timestamp() AS now")).fetchone())["now"]
            row = the_row(
                await (
                    await conn.execute(
                        "SELECT count(*) AS count, min(at) AS oldest, coalesce(bool_or(file_digest = %s), false) AS counted "
                        "FROM recent_uploads WHERE scope = %s AND at > %s",
                        (digest, limit.scope, now - WINDOW),
                    )
                ).fetchone()
            )
            if row["counted"]:
                continue
            wait = retry_after(row["count"], row["oldest"], limit.per_minute, now)
            if wait is not None:
                raise Refused(
                    429,
                    "rate_limited",
                    f"at most {limit.per_minute} {limit.what} per minute; retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            await conn.execute(
                "INSERT INTO recent_uploads (scope, file_digest, at) VALUES (%s, %s, %s) "
                "ON CONFLICT (scope, file_digest) DO UPDATE SET at = EXCLUDED.at",
                (limit.scope, digest, now),
            )


async def give_back(db: Database, file_id: str) -> None:
    """The file was not accepted after all (storage or the broker failed): it does not count."""
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM recent_uploads WHERE file_digest = %s", (scope_of(file_id),))


async def sweep(db: Database) -> None:
    """Rows older than the window count for nothing: remove them (re-drive's rounds call this)."""
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM recent_uploads WHERE at < clock_timestamp() - %s", (WINDOW,))
