"""Accepting a file (services.upload.handlers) on a real PostgreSQL: one file per id whatever the
concurrency, nothing half-done when storing or publishing fails, no plaintext caption on the event."""

from __future__ import annotations

import asyncio
import io
import os

import pytest
from PIL import Image

from services.upload import status as file_status
from services.upload.handlers import Replayed, StorageFailed, UploadDeps, UploadRequest, accept_file
from shared.adapters.crypto import ConsumerKeyStore, EncryptedFileStore, MasterKeyRing
from shared.contract import events as ev
from shared.contract.auth import Principal
from shared.contract.topics import FILE_UPLOADED
from shared.pipeline import open_caption
from shared.projections.account_settings import put_document
from shared.settings import Settings
from tests.dbsupport import RecordingPublisher, announce
from tests.memory_store import MemoryStore
from tests.support import unique


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "PNG")
    return out.getvalue()


class FailingPutStore(MemoryStore):
    """Stores the object, then the request times out (the client never learns it was written)."""

    def __init__(self):
        super().__init__()
        self.fail_put = False

    async def put(self, key, data):
        await super().put(key, data)
        if self.fail_put:
            raise TimeoutError("read timed out after the server stored it")


@pytest.fixture
async def world(open_database):
    blobs = FailingPutStore()
    files = EncryptedFileStore(blobs, ConsumerKeyStore(MemoryStore(), MasterKeyRing(os.urandom(32))))
    deps = UploadDeps(
        settings=Settings(), db=await open_database("upload"), files=files, publisher=RecordingPublisher()
    )
    account, conversation = unique("acct"), unique("conv")
    async with deps.db.transaction() as conn:
        await put_document(
            conn,
            account,
            ev.AccountSettingsDocument(
                feature_enabled=True, file_sharing_enabled=True, permissions={"agent": ["send_files_local"]}
            ),
        )
    await announce(deps.db, account, conversation, unique("cons"))
    request = UploadRequest(
        Principal("agent-1", account, "agent"),
        account,
        conversation,
        png(),
        caption="see the red button",
        file_id=unique("file"),
    )
    return deps, blobs, request


async def stored_status(deps: UploadDeps, file_id: str):
    async with deps.db.pool.connection() as conn:
        return await file_status.load(conn, file_id)


async def test_an_accepted_file_has_its_row_its_encrypted_original_and_one_event_with_a_sealed_caption(world):
    deps, blobs, request = world
    event = await accept_file(request, deps)
    [published] = deps.publisher.events(FILE_UPLOADED)
    assert published == event and "caption" not in event.model_dump() and event.schema_version == 2
    assert await open_caption(event, deps.files) == "see the red button"
    assert request.data not in blobs.objects[event.object_key][0]
    status = await stored_status(deps, event.file_id)
    assert (status.status, status.caption, status.pending_event["event_id"]) == (
        "uploaded",
        "see the red button",
        event.event_id,
    )


async def test_two_concurrent_requests_for_one_id_create_one_file(world):
    deps, _, request = world
    results = await asyncio.gather(accept_file(request, deps), accept_file(request, deps), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["FileUploaded", "Replayed"]
    assert len(deps.publisher.events(FILE_UPLOADED)) == 1
    with pytest.raises(Replayed):
        await accept_file(request, deps)


async def test_storing_fails_late_nothing_is_left(world):
    deps, blobs, request = world
    blobs.fail_put = True
    with pytest.raises(StorageFailed):
        await accept_file(request, deps)
    assert not [k for k in blobs.objects if request.file_id in k]
    assert await stored_status(deps, request.file_id) is None and deps.publisher.sent == []


async def test_a_failed_publish_leaves_no_row_and_the_retry_with_the_same_id_is_accepted_once(world):
    deps, _, request = world
    deps.publisher.failures = 1
    with pytest.raises(StorageFailed):
        await accept_file(request, deps)
    assert await stored_status(deps, request.file_id) is None
    await accept_file(request, deps)
    assert len(deps.publisher.events(FILE_UPLOADED)) == 1
    assert (await stored_status(deps, request.file_id)).status == "uploaded"
