"""Account settings as sanitizer, resizer and retention follow them (shared.projections.account_settings), on a
real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from shared.contract import events as ev
from shared.projections.account_settings import follow_document, get_document, put_document
from tests.support import unique


async def test_older_settings_delivered_again_do_not_come_back(open_database):
    db, account = await open_database("resizer"), unique("acct")
    older = ev.AccountSettings(
        account_id=account, feature_enabled=True, file_sharing_enabled=True, max_image_dimension=800
    )
    newer = older.model_copy(
        update={"max_image_dimension": 1200, "occurred_at": older.occurred_at + timedelta(seconds=1)}
    )
    async with db.transaction() as conn:
        assert await follow_document(conn, older)
        assert await follow_document(conn, newer)
        assert not await follow_document(conn, older)  # a partition read again from its beginning
        assert (await get_document(conn, account)).max_image_dimension == 1200


async def test_each_settings_write_is_stamped_after_the_one_before(open_database):
    """The time published with a PUT comes from the database, after the row's last write: followers
    order the documents by it, whatever the clocks of the upload instances say."""
    db, account = await open_database("upload"), unique("acct")
    stamps = []
    for dimension in (800, 1200, 640):
        async with db.transaction() as conn:
            stamps.append(await put_document(conn, account, ev.AccountSettingsDocument(max_image_dimension=dimension)))
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
