"""Issue 3: storing or publishing fails → StorageFailed (HTTP 503) and nothing half-done remains,
including a publish whose outcome is unknown (the broker may have stored the event)."""
from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from shared import events as ev
from shared.auth import Principal
from shared.settings import Settings
from shared.state import AccountSettingsState, ConversationState, FileStatusState
from services.upload.handlers import (Replayed, StorageFailed, UploadDeps, UploadRequest, accept_file,
                                      settle_kept_originals)

ACCOUNT, CONVERSATION, CONSUMER, FILE_ID = "acct-a", "conv-a", "consumer-a", "file-a"
ORIGINAL = f"{ACCOUNT}/{CONSUMER}/{CONVERSATION}/{FILE_ID}/original"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "PNG")
    return out.getvalue()


class Store:
    """EncryptedFileStore and its ObjectStore in one: put/delete, optionally failing."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.store = self
        self.fail_put_after_write = self.fail_delete = False

    async def put(self, key, data: bytes) -> None:
        self.objects[str(key)] = data
        if self.fail_put_after_write:
            raise TimeoutError("read timed out after the server stored it")

    async def delete(self, key: str) -> None:
        if self.fail_delete:
            raise ConnectionError("store unreachable")
        self.objects.pop(key, None)


class Broker:
    """A producer whose send fails; `stored` says whether the broker kept the event anyway."""

    def __init__(self, statuses: FileStatusState):
        self.statuses, self.fail, self.stored = statuses, False, False
        self.log: list[bytes] = []

    async def send(self, topic, value: bytes, key: bytes):
        done = asyncio.get_running_loop().create_future()
        if self.fail and not self.stored:
            done.set_exception(ConnectionError("broker unreachable"))
        elif self.fail:  # stored, but the acknowledgement never arrived
            self.log.append(value)
            done.set_exception(asyncio.TimeoutError("request timed out"))
        else:
            self.log.append(value)
            done.set_result(None)
        return done

    async def caught_up(self) -> None:
        """The status view reading the log to its end."""
        for value in self.log:
            self.statuses.apply(ev.parse_event(value))


def make_deps() -> tuple[UploadDeps, Store, Broker]:
    accounts, conversations, statuses = AccountSettingsState(), ConversationState(), FileStatusState()
    accounts.apply(ev.AccountSettings(account_id=ACCOUNT, feature_enabled=True, file_sharing_enabled=True,
                                      permissions={"agent": ["send_files_local"]}))
    conversations.apply(ev.ConversationEvent(event_type="conversation.opened", account_id=ACCOUNT,
                                             conversation_id=CONVERSATION, consumer_id=CONSUMER, channel="web",
                                             authenticated=True))
    store, broker = Store(), Broker(statuses)
    deps = UploadDeps(settings=Settings(), files=store, producer=broker, accounts=accounts,
                      conversations=conversations, statuses=statuses, log_caught_up=broker.caught_up)
    return deps, store, broker


def request() -> UploadRequest:
    return UploadRequest(Principal("agent-1", ACCOUNT, "agent"), ACCOUNT, CONVERSATION, png(), file_id=FILE_ID)


def test_storing_fails_late_nothing_is_left():
    deps, store, broker = make_deps()
    store.fail_put_after_write = True
    with pytest.raises(StorageFailed):
        asyncio.run(accept_file(request(), deps))
    assert store.objects == {} and broker.log == [] and deps.kept_originals == {}


def test_storing_fails_and_the_store_is_unreachable_the_original_is_settled_later():
    deps, store, broker = make_deps()
    store.fail_put_after_write = store.fail_delete = True
    with pytest.raises(StorageFailed):
        asyncio.run(accept_file(request(), deps))
    assert list(deps.kept_originals) == [FILE_ID]
    store.fail_delete = False
    assert asyncio.run(settle_kept_originals(deps)) == 1
    assert store.objects == {} and deps.kept_originals == {}


def test_publish_never_stored_the_original_is_kept_until_the_log_says_so_then_deleted():
    deps, store, broker = make_deps()
    broker.fail = True
    with pytest.raises(StorageFailed):
        asyncio.run(accept_file(request(), deps))
    assert list(store.objects) == [ORIGINAL], "outcome unknown: not deleted at once"
    assert asyncio.run(settle_kept_originals(deps)) == 1
    assert store.objects == {} and deps.kept_originals == {} and deps.statuses.get(FILE_ID) is None


def test_publish_stored_without_acknowledgement_keeps_the_original_for_the_pipeline():
    deps, store, broker = make_deps()
    broker.fail = broker.stored = True
    with pytest.raises(StorageFailed):
        asyncio.run(accept_file(request(), deps))
    assert asyncio.run(settle_kept_originals(deps)) == 0
    assert list(store.objects) == [ORIGINAL], "file.uploaded names it: it must stay"
    assert deps.statuses.get(FILE_ID).status == "uploaded" and deps.kept_originals == {}


def test_retry_after_an_unknown_outcome_learns_it_first():
    # Stored after all: the retry is a replay and does not overwrite the original.
    deps, store, broker = make_deps()
    broker.fail = broker.stored = True
    with pytest.raises(StorageFailed):
        asyncio.run(accept_file(request(), deps))
    first = store.objects[ORIGINAL]
    broker.fail = False
    retry = request()
    retry.data = png() + b"different"
    with pytest.raises(Replayed):
        asyncio.run(accept_file(retry, deps))
    assert store.objects[ORIGINAL] == first and len(broker.log) == 1 and deps.kept_originals == {}
    # Never stored: the retry stores and publishes, and nothing is left to settle.
    deps, store, broker = make_deps()
    broker.fail = True
    with pytest.raises(StorageFailed):
        asyncio.run(accept_file(request(), deps))
    broker.fail = False
    event = asyncio.run(accept_file(request(), deps))
    assert event.file_id == FILE_ID and len(broker.log) == 1 and deps.kept_originals == {}
    assert asyncio.run(settle_kept_originals(deps)) == 0 and list(store.objects) == [ORIGINAL]
