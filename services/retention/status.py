"""`fileshare retention status`: stored files per account, oldest file age, next expiry.

Read-only: lists the file bucket (the retention index, see handlers.py) and reads account.settings.
"""
from __future__ import annotations

from datetime import datetime

from shared.durations import expires_at
from shared.state import AccountSettingsState

from services.retention.handlers import StoredFile


def summarize(files: list[StoredFile], accounts: AccountSettingsState, now: datetime) -> dict:
    by_account: dict[str, dict] = {}
    for f in files:
        retention = accounts.get(f.account_id).retention
        created = f.created(now)
        try:
            expiry = expires_at(created, retention)
        except ValueError:
            expiry = None
        row = by_account.setdefault(f.account_id, {
            "account_id": f.account_id, "retention": retention, "files": 0, "bytes": 0, "consumers": set(),
            "oldest_created": created, "next_expiry": expiry})
        row["files"] += 1
        row["bytes"] += f.size
        row["consumers"].add(f.consumer_id)
        row["oldest_created"] = min(row["oldest_created"], created)
        if expiry is not None and (row["next_expiry"] is None or expiry < row["next_expiry"]):
            row["next_expiry"] = expiry
    rows = []
    for row in sorted(by_account.values(), key=lambda r: r["account_id"]):
        rows.append({
            "account_id": row["account_id"], "retention": row["retention"], "files": row["files"],
            "bytes": row["bytes"], "consumers": len(row["consumers"]),
            "oldest_file_age_seconds": round((now - row["oldest_created"]).total_seconds(), 1),
            "next_expiry": row["next_expiry"].isoformat() if row["next_expiry"] else None,
            "next_expiry_overdue": bool(row["next_expiry"] and row["next_expiry"] <= now),
        })
    return {"generated_at": now.isoformat(), "files": sum(r["files"] for r in rows), "accounts": rows}


async def load_status(settings, now: datetime) -> dict:
    from shared.kafka import TopicView
    from shared.runtime import build_storage
    from shared.state import decode
    from shared.topics import ACCOUNT_SETTINGS

    from services.retention.handlers import group_files

    storage = build_storage(settings)
    accounts = AccountSettingsState()
    view = TopicView(settings, [ACCOUNT_SETTINGS], lambda r: accounts.apply(decode(r.value)), "account-settings")
    await view.start()  # returns once caught up
    try:
        files = group_files(await storage.blobs.list(""))
    finally:
        await view.stop()
    return summarize(files, accounts, now)
