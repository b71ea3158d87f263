"""Retention domain logic without Kafka: receipts exactly once (also across crashes), forget order,
idempotence, in-flight leftovers, expiry by the account's current retention."""
from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta, timezone

import pytest

from shared import events as ev
from shared.crypto import ConsumerKeyStore, EncryptedFileStore, MasterKeyRing
from shared.state import AccountSettingsState
from shared.storage import ObjectInfo, ObjectKey
from tests.memory_store import MemoryStore
from services.retention.handlers import (ReceiptLedger, RetentionDeps, clean_forgotten_file, forget_consumer,
                                         safety_net_days, sweep)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class Topic:
    """The file.deleted topic as produced; `fail` makes the next produce fail (broker down / crash)."""

    def __init__(self):
        self.events: list[ev.FileDeleted] = []
        self.fail = False
        self.before_send = None

    async def send(self, outgoing):
        if self.before_send:
            await self.before_send()
        if self.fail:
            self.fail = False
            raise ConnectionError("broker unavailable")
        self.events += [o.event for o in outgoing]


class World:
    def __init__(self):
        self.blobs, self.key_blobs = MemoryStore(lambda: NOW), MemoryStore(lambda: NOW)
        self.keys = ConsumerKeyStore(self.key_blobs, MasterKeyRing(os.urandom(32)))
        self.files = EncryptedFileStore(self.blobs, self.keys)
        self.accounts = AccountSettingsState()
        self.topic = Topic()
        self.requests: list[ev.GdprForget] = []  # the gdpr.forget topic
        self.now = NOW

    def deps(self, ledger: ReceiptLedger | None = None) -> RetentionDeps:
        """A fresh ledger folded from the topic = a restarted retention service."""
        if ledger is None:
            ledger = ReceiptLedger()
            for e in [*self.requests, *self.topic.events]:
                ledger.apply(e)
        return RetentionDeps(self.blobs, self.keys, self.accounts, ledger, self.topic.send, clock=lambda: self.now)

    def store(self, account, consumer, conversation, file_id, variants=("original", "sanitized", "final")):
        for v in variants:
            asyncio.run(self.files.put(ObjectKey(account, consumer, conversation, file_id, v), b"photo " + v.encode()))

    def forget(self, account, consumer, request_id="req-1"):
        request = ev.GdprForget(request_id=request_id, account_id=account, consumer_id=consumer,
                                occurred_at=NOW - timedelta(milliseconds=300))
        self.requests.append(request)
        return asyncio.run(forget_consumer(request, self.deps()))

    def receipts(self, file_id=None):
        return [e for e in self.topic.events if file_id is None or e.file_id == file_id]

    def settings(self, account, retention):
        self.accounts.apply(ev.AccountSettings(account_id=account, retention=retention))


def test_forget_shreds_keys_before_anything_else_and_gives_one_receipt_per_file():
    w = World()
    w.store("a", "c1", "conv1", "f1")
    w.store("a", "c1", "conv1", "f2")
    w.store("a", "c1", "conv2", "f3", variants=("original",))  # still in the pipeline
    w.store("a", "c2", "conv1", "other")                        # another consumer, same conversation id
    w.store("b", "c1", "conv9", "other-account")                 # same consumer id in another account

    async def keys_already_gone():
        assert not await w.keys.has_any("a", "c1"), "receipts may only exist once the files are unreadable"
    w.topic.before_send = keys_already_gone

    summary = w.forget("a", "c1")

    assert (summary.keys_destroyed, summary.files_found, summary.receipts, summary.objects_deleted) == (1, 3, 3, 7)
    assert summary.outcome == "erased"
    assert sorted(e.file_id for e in w.receipts()) == ["f1", "f2", "f3"]
    assert {(e.reason, e.request_id, e.consumer_id) for e in w.receipts()} == {("gdpr", "req-1", "c1")}
    assert not [k for k in w.blobs.objects if k.startswith("a/c1/")]
    assert not [k for k in w.key_blobs.objects if k.startswith("a/c1/")]
    for account, consumer, conv, fid in (("a", "c2", "conv1", "other"), ("b", "c1", "conv9", "other-account")):
        assert asyncio.run(w.files.get(ObjectKey(account, consumer, conv, fid, "final")))[0] == b"photo final"


def test_repeated_forget_does_nothing_new_and_still_answers():
    w = World()
    w.store("a", "c1", "conv1", "f1")
    w.forget("a", "c1")
    again = w.forget("a", "c1", "req-2")
    assert (again.keys_destroyed, again.files_found, again.receipts, again.outcome) == (0, 0, 0, "nothing_left")
    assert len(w.receipts()) == 1


def test_a_request_seen_earlier_in_its_partition_is_a_repeat_but_its_own_redelivery_is_not():
    ledger = ReceiptLedger()
    request = ev.GdprForget(request_id="req-1", account_id="a", consumer_id="c1")
    ledger.apply(request, (3, 10))
    ledger.apply(request.model_copy(update={"event_id": ev.new_id()}), (3, 42))  # sent again later
    assert not ledger.is_repeat(request, (3, 10)), "the first record, redelivered after a crash, is redone"
    assert ledger.is_repeat(request, (3, 42))
    # Another consumer, or another request id, is another request.
    assert not ledger.is_repeat(request.model_copy(update={"consumer_id": "c2"}), (3, 42))
    assert not ledger.is_repeat(request.model_copy(update={"request_id": "req-2"}), (3, 42))


def test_crash_between_receipt_and_delete_neither_loses_nor_repeats_receipts():
    w = World()
    w.store("a", "c1", "conv1", "f1")
    w.store("a", "c1", "conv1", "f2")
    w.blobs.fail_delete = 1  # the process dies after the receipts, before the first object is gone
    with pytest.raises(SystemExit):
        w.forget("a", "c1")
    assert len(w.receipts()) == 2 and w.blobs.objects, "receipts acknowledged, objects still there"

    w.forget("a", "c1")  # the uncommitted request is redelivered
    assert sorted(e.file_id for e in w.receipts()) == ["f1", "f2"]
    assert not w.blobs.objects


def test_failed_receipt_deletes_nothing_and_the_retry_gives_it():
    w = World()
    w.store("a", "c1", "conv1", "f1")
    w.topic.fail = True
    with pytest.raises(ConnectionError):
        w.forget("a", "c1")
    assert w.blobs.objects and not w.receipts()
    w.forget("a", "c1")
    assert [e.file_id for e in w.receipts()] == ["f1"] and not w.blobs.objects


def test_expiry_uses_the_accounts_current_retention_and_calendar_months():
    w = World()
    w.settings("short", "PT5S")
    w.settings("long", "P13M")
    w.store("short", "c", "conv", "young")
    w.store("long", "c", "conv", "kept")
    w.store("default", "c", "conv", "no-settings")
    deps = w.deps()

    w.now = NOW + timedelta(seconds=4)
    assert asyncio.run(sweep(deps)).receipted == []
    w.now = NOW + timedelta(seconds=5)
    assert [f.file_id for f in asyncio.run(sweep(deps)).receipted] == ["young"]
    assert [(e.file_id, e.reason, e.request_id) for e in w.receipts()] == [("young", "expired", None)]

    w.now = datetime(2027, 4, 1, 11, 59, tzinfo=timezone.utc)  # 13 calendar months minus a minute
    assert asyncio.run(sweep(deps)).receipted == []
    w.now = datetime(2027, 4, 1, 12, 0, tzinfo=timezone.utc)
    assert sorted(f.file_id for f in asyncio.run(sweep(deps)).receipted) == ["kept", "no-settings"]
    assert not w.blobs.objects


def test_a_shorter_retention_applies_to_existing_files():
    w = World()
    w.settings("acct", "P13M")
    w.store("acct", "c", "conv", "f")
    w.now = NOW + timedelta(days=40)
    assert asyncio.run(sweep(w.deps())).receipted == []
    w.settings("acct", "P30D")
    assert [f.file_id for f in asyncio.run(sweep(w.deps())).receipted] == ["f"]


def test_leftover_of_an_in_flight_stage_is_removed_on_its_consumer_forgotten_rejection():
    w = World()
    w.store("a", "c1", "conv1", "f1", variants=("original",))
    # A stage loaded the consumer key just before the forget and writes after the forget's listing.
    key_id, consumer_key = asyncio.run(w.keys.get_or_create("a", "c1"))
    w.forget("a", "c1")
    from shared.crypto import encrypt_blob
    late = "a/c1/conv1/f1/sanitized"
    asyncio.run(w.blobs.put(late, encrypt_blob(b"late", late, key_id, consumer_key)))
    late_new_file = "a/c1/conv1/f9/original"  # an upload that got the old key before the forget
    asyncio.run(w.blobs.put(late_new_file, encrypt_blob(b"late", late_new_file, key_id, consumer_key)))
    # The consumer comes back: a new conversation gets a new key, its files must survive.
    w.store("a", "c1", "conv-new", "fresh")

    def rejection(file_id, conversation="conv1", reason="consumer_forgotten"):
        return ev.FileRejected(file_id=file_id, account_id="a", conversation_id=conversation, consumer_id="c1",
                               sender=ev.Sender(id="agent", role="agent"), stage="resizer", reason=reason)

    deps = w.deps()
    assert asyncio.run(clean_forgotten_file(rejection("f1"), deps)).receipted == [], "f1 already had its receipt"
    erased = asyncio.run(clean_forgotten_file(rejection("f9"), deps))
    assert [f.file_id for f in erased.receipted] == ["f9"]
    assert [(e.reason, e.request_id) for e in w.receipts("f9")] == [("gdpr", "req-1")]
    assert late not in w.blobs.objects and late_new_file not in w.blobs.objects
    assert len(w.receipts("f1")) == 1

    assert asyncio.run(clean_forgotten_file(rejection("fresh", "conv-new"), deps)) is None, "live key: kept"
    assert asyncio.run(clean_forgotten_file(rejection("fresh", "conv-new", "corrupt_image"), deps)) is None
    assert asyncio.run(w.files.get(ObjectKey("a", "c1", "conv-new", "fresh", "final")))[0] == b"photo final"


def test_ledger_folds_receipts_and_forget_requests():
    ledger = ReceiptLedger()
    ledger.apply(ev.FileDeleted(file_id="f", account_id="a", conversation_id="c", consumer_id="u", reason="expired"))
    ledger.apply(ev.GdprForget(request_id="r1", account_id="a", consumer_id="u"))
    ledger.apply(ev.GdprForget(request_id="r2", account_id="a", consumer_id="u"))
    ledger.apply(None)
    assert ledger.has_receipt("f") and not ledger.has_receipt("g")
    assert ledger.request_for("a", "u") == "r2" and ledger.request_for("a", "x") is None


def test_safety_net_covers_the_longest_retention_in_use():
    accounts = AccountSettingsState()
    assert safety_net_days(accounts, NOW) == 396 + 1  # 2026-03-01 + P13M = 2027-04-01, plus a day of grace
    accounts.apply(ev.AccountSettings(account_id="short", retention="PT5S"))
    assert safety_net_days(accounts, NOW) == 397
    accounts.apply(ev.AccountSettings(account_id="long", retention="P2Y"))
    assert safety_net_days(accounts, NOW) == 731 + 1  # 2028 is a leap year


def test_status_summarizes_files_per_account_with_oldest_age_and_next_expiry():
    from services.retention.handlers import group_files
    from services.retention.status import summarize
    accounts = AccountSettingsState()
    accounts.apply(ev.AccountSettings(account_id="a", retention="P1M"))
    objects = [ObjectInfo("a/c1/conv/f1/original", 10, datetime(2026, 1, 31, tzinfo=timezone.utc)),
               ObjectInfo("a/c1/conv/f1/final", 5, datetime(2026, 1, 31, 0, 0, 2, tzinfo=timezone.utc)),
               ObjectInfo("a/c2/conv/f2/original", 7, datetime(2026, 2, 20, tzinfo=timezone.utc)),
               ObjectInfo("b/c1/conv/f3/original", 1, datetime(2026, 2, 1, tzinfo=timezone.utc))]
    status = summarize(group_files(objects), accounts, NOW)
    a, b = status["accounts"]
    assert (a["account_id"], a["files"], a["bytes"], a["consumers"], a["retention"]) == ("a", 2, 22, 2, "P1M")
    assert a["oldest_file_age_seconds"] == (NOW - datetime(2026, 1, 31, tzinfo=timezone.utc)).total_seconds()
    assert a["next_expiry"] == "2026-02-28T00:00:00+00:00" and a["next_expiry_overdue"]
    assert (b["account_id"], b["retention"], b["next_expiry"]) == ("b", "P13M", "2027-03-01T00:00:00+00:00")
    assert status["files"] == 3
