"""Delivery's publish handler on a real PostgreSQL: one message per file, rejections, deletions."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from services.delivery.handlers import (
    DeliveryDeps,
    find_message,
    message_id_for,
    publish_resized,
    record_deletion,
    transcript_of,
)
from services.delivery.metrics import DeliveryMetrics
from shared.adapters.crypto import ConsumerKeyStore, EncryptedFileStore, MasterKeyRing, parse_header
from shared.adapters.storage import ObjectKey
from shared.contract import events as ev
from shared.contract.topics import FILE_REJECTED, MESSAGE_PUBLISHED
from shared.pipeline import caption_binding, companion_of, seal_for_file
from tests.dbsupport import RecordingPublisher, announce
from tests.memory_store import MemoryStore
from tests.support import unique, with_forged_data_key

FINAL = b"\x89PNG\r\n\x1a\n" + os.urandom(2048)


@pytest.fixture
async def world(open_database):
    blobs = MemoryStore()
    files = EncryptedFileStore(blobs, ConsumerKeyStore(MemoryStore(), MasterKeyRing(os.urandom(32))))
    deps = DeliveryDeps(
        db=await open_database("delivery"), files=files, publisher=RecordingPublisher(), metrics=DeliveryMetrics()
    )
    return deps, blobs


async def resized(deps: DeliveryDeps, conversation_open: bool = True) -> ev.FileResized:
    account, conversation, consumer, file_id = unique("acct"), unique("conv"), unique("cons"), unique("file")
    key = ObjectKey(account, consumer, conversation, file_id, "final")
    key_id = await deps.files.put(key, FINAL)
    await announce(
        deps.db, account, conversation, consumer, "conversation.opened" if conversation_open else "conversation.closed"
    )
    event = ev.FileResized(
        file_id=file_id,
        account_id=account,
        conversation_id=conversation,
        consumer_id=consumer,
        sender={"id": "agent-1", "role": "agent"},
        object_key=str(key),
        content_type="image/png",
        size_bytes=len(FINAL),
        width=10,
        height=20,
    )
    return event.model_copy(
        update={
            "preview_sealed": await seal_for_file(event, deps.files, companion_of(key, "preview"), b"pre", key_id),
            "caption_sealed": await seal_for_file(event, deps.files, caption_binding(file_id), b"hello", key_id),
        }
    )


def published(deps: DeliveryDeps) -> list[ev.MessagePublished]:
    return deps.publisher.events(MESSAGE_PUBLISHED)


async def test_publishes_the_contract_message_with_the_caption_opened(world):
    deps, _ = world
    event = await resized(deps)
    assert await publish_resized(event, deps) == []  # the handler produced it itself, inside its transaction
    [message] = published(deps)
    assert message.message_id == message_id_for(event.file_id) and message.caption == "hello"
    assert message.content.model_dump() == {
        "type": "hosted_file",
        "content_type": "image/png",
        "width": 10,
        "height": 20,
        "size_bytes": len(FINAL),
        "caption": "hello",
        "download_path": f"/v1/files/{event.file_id}/content",
        "preview": "cHJl",
    }
    async with deps.db.pool.connection() as conn:
        assert [m["file_id"] for m in await transcript_of(conn, event.conversation_id)] == [event.file_id]


async def test_a_redelivery_and_a_concurrent_handler_publish_nothing_more(world):
    deps, _ = world
    event = await resized(deps)
    await asyncio.gather(publish_resized(event, deps), publish_resized(event, deps))
    await publish_resized(event, deps)
    assert len(published(deps)) == 1
    assert deps.metrics.duplicates._value.get() == 2


async def test_a_publish_the_broker_never_acknowledged_is_redone(world):
    deps, _ = world
    event = await resized(deps)
    deps.publisher.failures = 1
    with pytest.raises(Exception):
        await publish_resized(event, deps)
    async with deps.db.pool.connection() as conn:
        assert await find_message(conn, event.file_id) is None  # rolled back with the failed produce
    await publish_resized(event, deps)
    assert len(published(deps)) == 1


async def test_tampered_or_foreign_sealed_preview_and_caption_are_rejected(world):
    deps, _ = world
    event = await resized(deps)
    sealed = bytearray(base64.b64decode(event.preview_sealed))
    sealed[-1] ^= 1
    [out] = await publish_resized(event.model_copy(update={"preview_sealed": base64.b64encode(sealed).decode()}), deps)
    assert out.topic == FILE_REJECTED and out.event.reason == "processing_failed"
    # A caption sealed for another file id (same consumer key) does not open for this one.
    key_id = (await deps.files.get(ObjectKey.parse(event.object_key)))[1]
    foreign = await seal_for_file(event, deps.files, caption_binding("another-file"), b"hello", key_id)
    [out] = await publish_resized(event.model_copy(update={"caption_sealed": foreign}), deps)
    assert out.event.reason == "processing_failed" and out.event.caption_sealed is None
    assert published(deps) == []


async def test_closed_conversation_gets_no_message(world):
    deps, _ = world
    [out] = await publish_resized(await resized(deps, conversation_open=False), deps)
    assert out.topic == FILE_REJECTED and out.event.reason == "conversation_closed"


async def test_forgotten_consumer_gets_no_message(world):
    deps, blobs = world
    event = await resized(deps)
    await deps.files.keys.destroy(event.account_id, event.consumer_id)
    [out] = await publish_resized(event, deps)
    assert out.event.reason == "consumer_forgotten"
    blobs.objects.clear()
    [out] = await publish_resized(event, deps)
    assert out.event.reason == "consumer_forgotten"


async def test_a_final_with_a_forged_header_or_under_another_key_is_not_published(world):
    """Publish authenticates the final's header (its data key, bound to the object key and key id), not
    its body: that is decrypted, and authenticated, by each download (test_tampered_blob_is_never_served)."""
    deps, blobs = world
    event = await resized(deps)
    blob, stored_at = blobs.objects[event.object_key]
    blobs.objects[event.object_key] = (with_forged_data_key(blob), stored_at)
    [out] = await publish_resized(event, deps)
    assert out.topic == FILE_REJECTED and out.event.reason == "processing_failed"

    # A valid blob of the same consumer under another object key, copied over the final.
    other = ObjectKey.parse(event.object_key).with_variant("sanitized")
    await deps.files.put_existing_key(other, b"\xff\xd8\xff other", parse_header(bytes(blob)).key_id)
    blobs.objects[event.object_key] = blobs.objects[str(other)]
    [out] = await publish_resized(event, deps)
    assert out.topic == FILE_REJECTED and out.event.reason == "processing_failed"
    assert [m.file_id for m in published(deps)] == []


async def test_a_missing_final_is_not_published(world):
    deps, blobs = world
    event = await resized(deps)
    del blobs.objects[event.object_key]
    [out] = await publish_resized(event, deps)
    assert out.topic == FILE_REJECTED and out.event.reason == "processing_failed"


async def test_a_deleted_file_leaves_only_its_receipt_and_is_never_published_again(world):
    deps, _ = world
    event = await resized(deps)
    await publish_resized(event, deps)
    async with deps.db.transaction() as conn:
        await record_deletion(
            conn,
            ev.FileDeleted(
                file_id=event.file_id,
                account_id=event.account_id,
                conversation_id=event.conversation_id,
                consumer_id=event.consumer_id,
                reason="gdpr",
            ),
        )
    async with deps.db.pool.connection() as conn:
        assert await find_message(conn, event.file_id) is None
        assert await transcript_of(conn, event.conversation_id) == []
    [late] = await publish_resized(event, deps)  # a late redelivery
    assert (late.topic, late.event.reason) == (FILE_REJECTED, "consumer_forgotten") and len(published(deps)) == 1
