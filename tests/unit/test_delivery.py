"""Delivery's domain code without Kafka: publish/dedupe decisions, authorization, signed links.

Storage is an in-memory implementation of the ObjectStore port holding real encrypted blobs.
"""
from __future__ import annotations

import base64
import os
import time
from urllib.parse import parse_qs

import pytest

from shared import events as ev
from shared.auth import Principal
from shared.crypto import ConsumerKeyStore, EncryptedFileStore, MasterKeyRing
from shared.pipeline import seal_companion
from shared.links import MAX_LINK_TTL, LinkError, audience_of, parse_audience, sign_link, verify_link
from shared.state import ConversationState, MessageState
from shared.storage import ObjectKey
from shared.topics import FILE_REJECTED, MESSAGE_PUBLISHED

from tests.memory_store import MemoryStore
from services.delivery.handlers import (DeliveryDeps, Denied, authorize_conversation, authorize_file_access,
                                        message_id_for, publish_resized, record_published)


class Counter:
    def __init__(self):
        self.value = 0

    def inc(self, n=1):
        self.value += n


class Metrics:
    def __init__(self):
        self.duplicates = Counter()
        self.published = Counter()


FINAL = b"\x89PNG\r\n\x1a\n" + os.urandom(2048)


@pytest.fixture
def world():
    blobs, keys = MemoryStore(), MemoryStore()
    files = EncryptedFileStore(blobs, ConsumerKeyStore(keys, MasterKeyRing(os.urandom(32))))
    conversations = ConversationState()
    deps = DeliveryDeps(files=files, messages=MessageState(), conversations=conversations, metrics=Metrics())
    return deps, blobs


async def resized(deps: DeliveryDeps, conversation_open: bool = True) -> ev.FileResized:
    key = ObjectKey("acct-1", "cons-1", "conv-1", "file-1", "final")
    await deps.files.put(key, FINAL)

    deps.conversations.apply(ev.ConversationEvent(
        event_type="conversation.opened" if conversation_open else "conversation.closed", account_id="acct-1",
        conversation_id="conv-1", consumer_id="cons-1", channel="web", authenticated=True))
    event = ev.FileResized(file_id="file-1", account_id="acct-1", conversation_id="conv-1", consumer_id="cons-1",
                           sender={"id": "agent-1", "role": "agent"}, caption="hello", object_key=str(key),
                           content_type="image/png", size_bytes=len(FINAL), width=10, height=20)
    key_id = (await deps.files.get(key))[1]
    sealed = await seal_companion(event, deps.files, key, "preview", b"pre", key_id)
    return event.model_copy(update={"preview_sealed": sealed})


async def test_publishes_the_contract_message(world):
    deps, _ = world
    event = await resized(deps)
    [out] = await publish_resized(event, deps)
    assert out.topic == MESSAGE_PUBLISHED and out.key == "conv-1"
    message = out.event
    assert message.message_id == message_id_for("file-1") and message.file_id == "file-1"
    assert message.content.model_dump() == {
        "type": "hosted_file", "content_type": "image/png", "width": 10, "height": 20, "size_bytes": len(FINAL),
        "caption": "hello", "download_path": "/v1/files/file-1/content", "preview": "cHJl"}


async def test_a_tampered_or_moved_sealed_preview_is_rejected_not_published(world):
    deps, _ = world
    event = await resized(deps)
    sealed = bytearray(base64.b64decode(event.preview_sealed))
    sealed[-1] ^= 1
    tampered = event.model_copy(update={"preview_sealed": base64.b64encode(bytes(sealed)).decode()})
    [out] = await publish_resized(tampered, deps)
    assert out.topic == FILE_REJECTED and out.event.reason == "processing_failed"
    # A preview sealed for another file does not open for this one (bound to the object key).
    other = event.model_copy(update={"file_id": "file-2", "object_key": "acct-1/cons-1/conv-1/file-2/final"})
    await deps.files.put(ObjectKey.parse(other.object_key), FINAL)
    [out] = await publish_resized(other, deps)
    assert out.topic == FILE_REJECTED and out.event.reason == "processing_failed"
    assert not deps.messages.published("file-1") and not deps.messages.published("file-2")


async def test_redelivery_in_the_same_process_is_suppressed(world):
    deps, _ = world
    event = await resized(deps)
    outputs = await publish_resized(event, deps)
    assert len(outputs) == 1
    record_published(outputs, deps)  # what the processor does once the broker acknowledged them
    assert await publish_resized(event, deps) == []
    assert deps.metrics.duplicates.value == 1 and deps.metrics.published.value == 1


async def test_a_publish_that_never_reached_the_broker_does_not_suppress_the_redelivery(world):
    # Produce failed, or the record was abandoned at a rebalance: no message on the topic, so the
    # redelivered file.resized must publish (a suppressed one would be a lost photo).
    deps, _ = world
    event = await resized(deps)
    assert len(await publish_resized(event, deps)) == 1
    assert not deps.messages.published("file-1")
    [again] = await publish_resized(event, deps)
    assert again.topic == MESSAGE_PUBLISHED and deps.metrics.duplicates.value == 0


async def test_redelivery_after_a_restart_is_suppressed_by_the_topic(world):
    deps, _ = world
    event = await resized(deps)
    [out] = await publish_resized(event, deps)
    # A restarted process knows only what its view read back from message.published.
    fresh = DeliveryDeps(files=deps.files, messages=MessageState(), conversations=deps.conversations,
                         metrics=Metrics())
    fresh.messages.apply(ev.parse_event(out.event.to_bytes()))
    assert await publish_resized(event, fresh) == []
    assert fresh.metrics.duplicates.value == 1


async def test_closed_conversation_gets_no_message(world):
    deps, _ = world
    event = await resized(deps, conversation_open=False)
    [out] = await publish_resized(event, deps)
    assert out.topic == FILE_REJECTED and out.event.reason == "conversation_closed"
    assert not deps.messages.published("file-1")


async def test_forgotten_consumer_gets_no_message(world):
    deps, _ = world
    event = await resized(deps)
    await deps.files.keys.destroy("acct-1", "cons-1")
    [out] = await publish_resized(event, deps)
    assert out.topic == FILE_REJECTED and out.event.reason == "consumer_forgotten"


async def test_forgotten_consumer_whose_blobs_are_gone_too(world):
    deps, blobs = world
    event = await resized(deps)
    await deps.files.keys.destroy("acct-1", "cons-1")
    blobs.objects.clear()
    [out] = await publish_resized(event, deps)
    assert out.event.reason == "consumer_forgotten"


async def test_tampered_final_is_not_published(world):
    deps, blobs = world
    event = await resized(deps)
    blob = bytearray(blobs.objects[event.object_key][0])
    blob[-5] ^= 0x01
    blobs.objects[event.object_key] = (bytes(blob), blobs.objects[event.object_key][1])
    [out] = await publish_resized(event, deps)
    assert out.topic == FILE_REJECTED and out.event.reason == "processing_failed"


# --- authorization ---

MESSAGE = ev.MessagePublished(
    message_id="m", file_id="f", account_id="acct-1", conversation_id="conv-1", consumer_id="cons-1",
    sender={"id": "agent-1", "role": "agent"},
    content=ev.HostedFileContent(content_type="image/png", width=1, height=1, size_bytes=1,
                                 download_path="/v1/files/f/content"))


@pytest.mark.parametrize("role", ["agent", "agent_manager", "bot", "admin", "platform"])
def test_every_account_user_may_download(role):
    authorize_file_access(Principal("someone", "acct-1", role), MESSAGE)
    authorize_conversation(Principal("someone", "acct-1", role), "acct-1", "cons-1")


def test_the_conversations_consumer_may_download():
    authorize_file_access(Principal("cons-1", "acct-1", "consumer"), MESSAGE)
    authorize_conversation(Principal("cons-1", "acct-1", "consumer"), "acct-1", "cons-1")


def test_another_consumer_of_the_account_is_forbidden():
    with pytest.raises(Denied) as e:
        authorize_file_access(Principal("cons-2", "acct-1", "consumer"), MESSAGE)
    assert e.value.status == 403
    with pytest.raises(Denied) as e:
        authorize_conversation(Principal("cons-2", "acct-1", "consumer"), "acct-1", "cons-1")
    assert e.value.status == 403


@pytest.mark.parametrize("role", ["agent", "agent_manager", "bot", "admin", "platform", "consumer"])
def test_another_account_never_learns_the_file_exists(role):
    with pytest.raises(Denied) as e:
        authorize_file_access(Principal("cons-1", "acct-2", role), MESSAGE)
    assert (e.value.status, e.value.code) == (404, "not_found")


# --- signed links ---

def _link(file_id="f", audience="account/acct-1", ttl=300, now=None):
    query, expires = sign_link("secret", file_id, audience, ttl, now=now)
    q = {k: v[0] for k, v in parse_qs(query).items()}
    return q, expires


def test_link_round_trip_names_its_audience():
    q, expires = _link()
    assert int(q["exp"]) == expires
    assert verify_link("secret", "f", q["exp"], q["aud"], q["sig"]) == "account/acct-1"


def test_link_lifetime_default_and_cap():
    now = time.time()
    _, expires = _link(ttl=300, now=now)
    assert expires == int(now + 300)
    _, expires = _link(ttl=10 * 3600, now=now)
    assert expires == int(now + MAX_LINK_TTL) and MAX_LINK_TTL == 3600


@pytest.mark.parametrize("tamper", ["file", "exp", "aud", "sig", "secret"])
def test_any_change_to_a_link_breaks_it(tamper):
    q, _ = _link()
    file_id, secret = "f", "secret"
    if tamper == "file":
        file_id = "g"
    elif tamper == "exp":
        q["exp"] = str(int(q["exp"]) + 3600)
    elif tamper == "aud":
        q["aud"] = "account:acct-2"
    elif tamper == "sig":
        q["sig"] = ("0" if q["sig"][0] != "0" else "1") + q["sig"][1:]
    else:
        secret = "other"
    with pytest.raises(LinkError):
        verify_link(secret, file_id, q["exp"], q["aud"], q["sig"])


def test_expired_link_is_refused():
    q, _ = _link(ttl=60, now=time.time() - 120)
    with pytest.raises(LinkError, match="expired"):
        verify_link("secret", "f", q["exp"], q["aud"], q["sig"])


def test_link_audience_binds_consumer_or_account():
    assert audience_of("acct-1", "consumer", "cons-1") == "consumer/acct-1/cons-1"
    assert audience_of("acct-1", "agent", "agent-1") == "account/acct-1"
    # Ids may contain ":" (check_id allows it): the parts still come back whole.
    assert parse_audience(audience_of("org:eu:1", "consumer", "user:42")) == ("consumer", "org:eu:1", "user:42")
    assert parse_audience(audience_of("org:eu:1", "admin", "x")) == ("account", "org:eu:1", "")
    for malformed in ("", "account/", "consumer/acct-1", "robot/acct-1", "account/acct-1/extra"):
        with pytest.raises(LinkError):
            parse_audience(malformed)
