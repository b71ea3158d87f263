"""Erasure that really erases. After a forget and after an expiry no row in any schema holds
the caption, sender or dimensions of those files, their sealed captions no longer open (forget), and
the status API answers `deleted` and nothing more."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg import sql

from shared.contract.topics import FILE_DELETED, FILE_UPLOADED
from shared.pipeline import StageRejection, open_caption
from shared.runtime.wiring import build_storage
from shared.settings import Settings
from tests.integration.test_walking_skeleton import camera_photo
from tests.support import unique, wait_until

SCHEMAS = ("upload", "sanitizer", "resizer", "delivery", "retention")


def rows_mentioning(url: str, needle: str) -> list[tuple[str, dict]]:
    """Every row of every service's tables whose JSON text contains `needle`: (schema.table, row)."""
    found = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema = ANY(%s) AND table_name <> 'alembic_version'",
            (list(SCHEMAS),),
        ).fetchall()
        for schema, table in tables:
            query = sql.SQL("SELECT row_to_json(t) FROM {}.{} t WHERE row_to_json(t)::text LIKE %s").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            found += [(f"{schema}.{table}", row) for (row,) in conn.execute(query, (f"%{needle}%",))]
    return found


RECEIPTS = {"upload.files", "delivery.deleted_files", "retention.receipts"}


def assert_erased(client, account: str, file_id: str, caption: str, sender: str) -> None:
    url = client.env["FS_DATABASE_URL"]
    assert rows_mentioning(url, caption) == [], "a caption outlived its file"
    assert rows_mentioning(url, sender) == [], "a sender outlived its files"
    holders = rows_mentioning(url, file_id)
    assert {table for table, _ in holders} <= RECEIPTS, holders
    for table, row in holders:
        described = {k: v for k, v in row.items() if v not in (None, [], {})}
        assert not {
            "width",
            "height",
            "content_type",
            "size_bytes",
            "consumer_id",
            "conversation_id",
            "caption",
            "sender_id",
            "pending_event",
        } & set(described), (table, described)
    status = client.status(file_id, account)
    assert set(status) == {"file_id", "status", "reason"} and status["file_id"] == file_id, status


def send_published(client, account: str, sender: str, caption: str) -> tuple[str, str]:
    conversation, consumer = unique("conv"), unique("consumer")
    client.open_conversation(account, conversation, consumer)
    r = client.upload(account, conversation, camera_photo(800, 600, 1), caption=caption, sub=sender)
    assert r.status_code == 202, r.text
    file_id = r.json()["file_id"]
    assert client.wait_status(file_id, account)["status"] == "published"
    return file_id, consumer


def test_a_forget_leaves_only_receipts_and_shreds_the_sealed_caption(client):
    account, sender, caption = unique("acct"), unique("agent"), unique("caption forgotten")
    client.enable_account(account)
    file_id, consumer = send_published(client, account, sender, caption)
    [uploaded] = client.read_topic(FILE_UPLOADED, lambda e: e.file_id == file_id)
    client.forget(account, consumer)
    wait_until(
        lambda: client.status(file_id, account).get("status") == "deleted",
        timeout=60,
        what="the forgotten file to be deleted",
    )
    wait_until(
        lambda: not rows_mentioning(client.env["FS_DATABASE_URL"], caption),
        timeout=60,
        what="every service to erase its rows",
    )
    assert_erased(client, account, file_id, caption, sender)
    storage = build_storage(Settings(**{k[3:].lower(): v for k, v in client.env.items() if k.startswith("FS_")}))
    with pytest.raises(StageRejection) as shredded:
        asyncio.run(open_caption(uploaded, storage.files))
    assert shredded.value.reason == "consumer_forgotten"


def test_an_expiry_leaves_only_receipts(client):
    account, sender, caption = unique("acct"), unique("agent"), unique("caption expired")
    client.enable_account(account)
    file_id, _ = send_published(client, account, sender, caption)
    client.enable_account(account, retention="PT1S")  # a shorter retention applies to existing files
    wait_until(
        lambda: client.read_topic(FILE_DELETED, lambda e: e.file_id == file_id), timeout=60, what="the expiry receipt"
    )
    wait_until(
        lambda: not rows_mentioning(client.env["FS_DATABASE_URL"], caption),
        timeout=60,
        what="every service to erase its rows",
    )
    assert client.status(file_id, account) == {"file_id": file_id, "status": "deleted", "reason": "expired"}
    assert_erased(client, account, file_id, caption, sender)
