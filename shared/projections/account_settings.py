"""Account settings as every service keeps them: the table `account_settings` in its own schema.

The upload service writes it (PUT /v1/accounts/{acct}/settings: it is the system of record) and
publishes each change to the compacted topic account.settings; the other services that need a
setting (the resize target, the retention) follow that topic into their own copy of the table.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from aiokafka import TopicPartition
from aiokafka.structs import RecordMetadata
from psycopg.types.json import Jsonb

from shared.adapters.db import Connection, Database, the_row
from shared.adapters.kafka import GroupOffsets, StreamProcessor
from shared.contract import events as ev
from shared.contract.topics import ACCOUNT_SETTINGS
from shared.projections.projection import projection, projection_group
from shared.settings import Settings

log = logging.getLogger(__name__)


async def get_document(conn: Connection, account_id: str, for_update: bool = False) -> ev.AccountSettingsDocument:
    """The account's settings; the defaults (everything off) until one is stored. for_update: locked
    until the transaction ends, also the first time (the defaults are stored first, so there is a row
    to lock and two first writers cannot both read "nothing")."""
    if for_update:
        await conn.execute(
            "INSERT INTO account_settings (account_id, document) VALUES (%s, %s) ON CONFLICT (account_id) DO NOTHING",
            (account_id, Jsonb(ev.AccountSettingsDocument().model_dump())),
        )
    row = await (
        await conn.execute(
            "SELECT document FROM account_settings WHERE account_id = %s" + (" FOR UPDATE" if for_update else ""),
            (account_id,),
        )
    ).fetchone()
    return ev.AccountSettingsDocument.model_validate(row["document"]) if row else ev.AccountSettingsDocument()


async def put_document(conn: Connection, account_id: str, document: ev.AccountSettingsDocument) -> datetime:
    """The settings API's write (upload keeps the system of record); returns the time to publish it
    with. Taken from the database's clock under the row's lock and always after the row's previous
    write, so the followers (which ignore an older document) never drop a newer one because two
    upload instances' clocks disagree."""
    row = await (
        await conn.execute(
            "INSERT INTO account_settings (account_id, document, updated_at) VALUES (%s, %s, clock_timestamp()) "
            "ON CONFLICT (account_id) DO UPDATE SET document = EXCLUDED.document, "
            "  updated_at = greatest(clock_timestamp(), account_settings.updated_at + interval '1 microsecond') "
            "RETURNING updated_at",
            (account_id, Jsonb(document.model_dump())),
        )
    ).fetchone()
    return the_row(row)["updated_at"]


async def follow_document(conn: Connection, event: ev.AccountSettings) -> bool:
    """A follower's write: False (nothing changed) when the row came from a newer event already, so a
    redelivered older document (at-least-once, a partition read again) never comes back."""
    row = await (
        await conn.execute(
            "INSERT INTO account_settings (account_id, document, event_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (account_id) DO UPDATE SET document = EXCLUDED.document, event_at = EXCLUDED.event_at, "
            "  updated_at = now() "
            "WHERE account_settings.event_at IS NULL OR account_settings.event_at <= EXCLUDED.event_at "
            "RETURNING account_id",
            (event.account_id, Jsonb(event.document().model_dump()), event.occurred_at),
        )
    ).fetchone()
    return row is not None


async def all_documents(conn: Connection) -> dict[str, ev.AccountSettingsDocument]:
    rows = await (await conn.execute("SELECT account_id, document FROM account_settings")).fetchall()
    return {r["account_id"]: ev.AccountSettingsDocument.model_validate(r["document"]) for r in rows}


OnChange = Callable[[Connection, ev.AccountSettings], Awaitable[None]]


def settings_follower(
    settings: Settings,
    service: str,
    db: Database,
    metrics=None,
    on_change: OnChange | None = None,
    background: bool = False,
) -> StreamProcessor:
    """Keeps this service's account_settings table equal to the topic. on_change runs in the same
    transaction (retention moves its files' expiry times)."""

    async def apply(conn: Connection, event: ev.AccountSettings) -> None:
        if not await follow_document(conn, event):
            log.info(
                "%s: settings of %s from %s are older than the ones applied; ignored",
                service,
                event.account_id,
                event.occurred_at.isoformat(),
            )
            return
        if on_change is not None:
            await on_change(conn, event)

    return projection(
        settings,
        service,
        "settings",
        [ACCOUNT_SETTINGS],
        ev.AccountSettings.model_validate_json,
        apply,
        db,
        metrics,
        background,
    )


# The services whose copy of the settings decides how a photo is processed (the resize target). A
# settings PUT answers once both hold the change, so a photo sent after the answer is processed
# with it; the others' copies (retention's) may follow later.
IMAGE_STAGES = ("sanitizer", "resizer")
APPLY_WAIT_SECONDS = 2.0


def follower_group(service: str) -> str:
    return projection_group(service, "settings")


@dataclass(frozen=True)
class Lag:
    """The image stages that do not hold a settings change yet, and why they could not be asked."""

    behind: list[str]
    cause: BaseException | None = None


async def wait_applied(offsets: GroupOffsets, record: RecordMetadata, timeout: float = APPLY_WAIT_SECONDS) -> Lag:
    """Wait until the image stages' settings followers have applied the settings record (where it
    landed on account.settings), at most `timeout`; whatever the broker does, the answer is in time."""
    groups = {follower_group(service): service for service in IMAGE_STAGES}
    past_it = {TopicPartition(record.topic, record.partition): record.offset + 1}
    try:
        behind = await offsets.wait_committed(groups, past_it, timeout)
    except Exception as e:  # noqa: BLE001 - their progress could not be read: say so, do not fail the change
        return Lag(list(IMAGE_STAGES), e)
    return Lag([groups[g] for g in behind])


SettingsOf = Callable[[str], Awaitable[ev.AccountSettingsDocument]]


def settings_reader(db: Database) -> SettingsOf:
    """`await settings_of(account_id)`: this service's copy of the account's settings."""

    async def settings_of(account_id: str) -> ev.AccountSettingsDocument:
        async with db.pool.connection() as conn:
            return await get_document(conn, account_id)

    return settings_of
