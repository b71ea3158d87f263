"""Test helpers speaking only the contract: HTTP API, topics, storage layout."""

from __future__ import annotations

import asyncio
import http.client
import io
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from shared.contract.auth import mint_token
from shared.contract.events import ConversationEvent, Event, GdprForget, parse_event
from shared.contract.topics import CONVERSATION_EVENTS, GDPR_FORGET
from shared.sdk import PublishedFollower
from shared.settings import METRICS_PORT_OFFSETS


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def metrics_url(env: dict[str, str], service: str = "delivery") -> str:
    """The /metrics of a service of the stack (FS_METRICS_PORT_BASE + its offset)."""
    return f"http://127.0.0.1:{int(env['FS_METRICS_PORT_BASE']) + METRICS_PORT_OFFSETS[service]}/metrics"


def scrape(env: dict[str, str], service: str = "delivery") -> dict[tuple[str, tuple], float]:
    """Every sample of a service's metrics (delivery by default): {(name, sorted labels): value}."""
    text = httpx.get(metrics_url(env, service), timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def events_of(batches: dict) -> list[Event]:
    """The events of an aiokafka getmany() result, in order; records that are not events are skipped."""
    out = []
    for records in batches.values():
        for r in records:
            try:
                out.append(parse_event(r.value))
            except Exception:
                continue
    return out


class FakeClock:
    """A monotonic clock the test moves by hand (`clock.now += 5`)."""

    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_until(check, timeout: float = 30, interval: float = 0.05, what: str = "condition"):
    """Poll an observable state until `check()` returns a truthy value (never a blind sleep)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def raw_request(
    port: int, method: str, path: str, headers: dict, body: bytes = b"", declared_length: int | None = None
) -> tuple[int, dict, bytes]:
    """A request sent as written: the path byte for byte (no client normalises `..` or `%2F` in it),
    and a declared Content-Length that may exceed what is sent (like curl waiting on
    `Expect: 100-continue`): the answer must come without the server waiting for the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(declared_length if declared_length is not None else len(body)))
        conn.endheaders()
        if body:
            conn.send(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@dataclass
class Client:
    """One running system (the embedded stack) seen from outside."""

    env: dict[str, str]
    data_dir: Path
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def upload_url(self) -> str:
        return f"http://127.0.0.1:{self.env['FS_UPLOAD_PORT']}"

    @property
    def delivery_url(self) -> str:
        return f"http://127.0.0.1:{self.env['FS_DELIVERY_PORT']}"

    def token(self, account: str, role: str, sub: str, ttl: int = 600) -> str:
        return mint_token(self.env["FS_AUTH_SECRET"], account, role, sub, ttl)

    def auth(self, account: str, role: str, sub: str = "user-1") -> dict:
        return {"Authorization": f"Bearer {self.token(account, role, sub)}"}

    # --- messaging platform side ---
    def publish(self, topic: str, key: str, event: Event | bytes) -> None:
        value = event if isinstance(event, bytes) else event.to_bytes()

        async def send():
            p = AIOKafkaProducer(bootstrap_servers=self.env["FS_KAFKA_BOOTSTRAP"], max_request_size=16 * 1024 * 1024)
            await p.start()
            try:
                await p.send_and_wait(topic, value, key=key.encode())
            finally:
                await p.stop()

        asyncio.run(send())

    def conversation(
        self, account: str, conversation: str, consumer: str, kind: str = "conversation.opened", channel: str = "web"
    ) -> None:
        self.publish(*conversation_record(account, conversation, consumer, kind, channel))

    def forget(self, account: str, consumer: str, request_id: str | None = None) -> str:
        """The GDPR system asks to forget a consumer; returns the request id."""
        request = GdprForget(request_id=request_id or unique("forget"), account_id=account, consumer_id=consumer)
        self.publish(GDPR_FORGET, consumer, request)
        return request.request_id

    def read_topic(self, topic: str, match=lambda e: True) -> list:
        """Every event on the topic (from the beginning) that matches."""

        async def read():
            c = AIOKafkaConsumer(
                bootstrap_servers=self.env["FS_KAFKA_BOOTSTRAP"],
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_bytes=32 * 1024 * 1024,
                max_partition_fetch_bytes=16 * 1024 * 1024,
            )
            await c.start()
            try:
                await c.topics()  # loads metadata for every topic
                tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
                c.assign(tps)
                await c.seek_to_beginning(*tps)
                out = []

                async def behind():
                    # The fetches' high watermark, not ListOffsets: Tansu's end offset can fall short
                    # of the last batch (shared.adapters.kafka, StreamProcessor._reread_partitions_whose_log_was_lost).
                    return [tp for tp in tps if c.highwater(tp) is None or await c.position(tp) < c.highwater(tp)]

                # Tansu can report a high watermark past the last record it serves (after a restart, for
                # a batch whose produce failed): reading stops once fetches come back empty.
                empty_fetches = 0
                while empty_fetches < 6 and await behind():
                    batch = await c.getmany(timeout_ms=500)
                    empty_fetches = 0 if any(batch.values()) else empty_fetches + 1
                    out += [e for e in events_of(batch) if match(e)]
                return out
            finally:
                await c.stop()

        return asyncio.run(read())

    # --- account setup ---
    def enable_account(self, account: str, permissions: dict | None = None, **overrides) -> dict:
        doc = {
            "feature_enabled": True,
            "file_sharing_enabled": True,
            "permissions": permissions
            or {
                "agent": ["send_files_local", "send_files_widget"],
                "agent_manager": ["send_files_local", "send_files_widget"],
                "bot": ["send_files_local"],
            },
            "max_image_dimension": 800,
            "retention": "P13M",
        }
        doc.update(overrides)
        r = self.http.put(
            f"{self.upload_url}/v1/accounts/{account}/settings",
            json=doc,
            headers=self.auth(account, "platform", "account-team"),
        )
        assert r.status_code == 200, r.text
        return doc

    def open_conversation(
        self, account: str, conversation: str, consumer: str, channel: str = "web", role: str = "agent"
    ) -> None:
        """Open it on the platform and wait until the upload service knows it."""
        self.conversation(account, conversation, consumer, channel=channel)
        wait_until(
            lambda: self.capabilities(account, conversation, role).get("reason") != "conversation_not_found",
            what=f"upload service to learn conversation {conversation}",
        )

    def capabilities(self, account: str, conversation: str, role: str = "agent", sub: str = "user-1") -> dict:
        return self.http.get(
            f"{self.upload_url}/v1/accounts/{account}/conversations/{conversation}/capabilities",
            headers=self.auth(account, role, sub),
        ).json()

    # --- sending ---
    def upload(
        self,
        account: str,
        conversation: str,
        data: bytes,
        filename: str = "photo.jpg",
        caption: str | None = None,
        role: str = "agent",
        sub: str = "agent-1",
        source: str | None = None,
        headers: dict | None = None,
        content_type: str = "application/octet-stream",
    ) -> httpx.Response:
        form = {}
        if caption is not None:
            form["caption"] = caption
        if source is not None:
            form["source"] = source
        return self.http.post(
            f"{self.upload_url}/v1/accounts/{account}/conversations/{conversation}/files",
            files={"file": (filename, io.BytesIO(data), content_type)},
            data=form,
            headers={**self.auth(account, role, sub), **(headers or {})},
        )

    def status(self, file_id: str, account: str, role: str = "agent", sub: str = "agent-1") -> dict:
        return self.http.get(f"{self.upload_url}/v1/files/{file_id}", headers=self.auth(account, role, sub)).json()

    def wait_status(
        self, file_id: str, account: str, statuses: tuple[str, ...] = ("published", "rejected"), timeout: float = 60
    ) -> dict:
        return wait_until(
            lambda: (s := self.status(file_id, account)).get("status") in statuses and s,
            timeout=timeout,
            what=f"file {file_id} to reach {statuses}",
        )

    def wait_published(self, account: str, file_ids, timeout: float = 180, interval: float = 0.5) -> None:
        def unpublished():
            return [f for f in file_ids if self.status(f, account).get("status") != "published"]

        wait_until(lambda: not unpublished(), timeout=timeout, interval=interval, what="every photo published")

    def transcript_ids(self, account: str, conversation: str, delivery_url: str | None = None) -> list[str]:
        """The file ids of the conversation's transcript, in order (as an agent of the account)."""
        r = self.http.get(
            f"{delivery_url or self.delivery_url}/v1/conversations/{conversation}/messages",
            headers=self.auth(account, "agent"),
        )
        assert r.status_code == 200, r.text
        return [m["file_id"] for m in r.json()["messages"]]

    def download(self, file_id: str, account: str, role: str = "agent", sub: str = "agent-1") -> httpx.Response:
        return self.http.get(f"{self.delivery_url}/v1/files/{file_id}/content", headers=self.auth(account, role, sub))

    def all_stored_files(self) -> list[Path]:
        return [p for p in self.data_dir.rglob("*") if p.is_file()]


class PeakRss:
    """The peak resident memory of a process while the block runs: its VmHWM (high-water mark) is
    reset at entry when the kernel allows it (/proc/<pid>/clear_refs, 5), and VmRSS is also sampled
    every 5 ms in a thread, so a short spike between two reads is not missed either way."""

    def __init__(self, pid: int):
        self.proc = Path(f"/proc/{pid}")
        self.baseline = self.peak = 0
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _read(self, field: str) -> int:
        return int(re.search(rf"^{field}:\s+(\d+) kB$", (self.proc / "status").read_text(), re.M).group(1)) * 1024

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._read("VmRSS"))

    def __enter__(self) -> PeakRss:
        try:
            (self.proc / "clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            pass
        self.baseline = self.peak = self._read("VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read("VmRSS"), self._read("VmHWM") if self.hwm_reset else 0)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def with_forged_data_key(blob: bytes) -> bytes:
    """The blob with one bit flipped inside its header's wrapped data key (shared.adapters.crypto.parse_header's
    layout: magic and version, key id length and key id, wrapped key length and wrapped key, nonce)."""
    data = bytearray(blob)
    data[4 + 1 + data[4] + 1 + 20] ^= 0x01
    return bytes(data)


class FollowerThread(threading.Thread):
    """A platform following message.published with the SDK's follower, in a thread of its own."""

    def __init__(self, bootstrap: str):
        super().__init__(daemon=True)
        self.bootstrap, self.received, self.stopping, self.follower = bootstrap, [], threading.Event(), None

    def run(self):
        async def follow():
            async with PublishedFollower(self.bootstrap, group_id=unique("platform")) as self.follower:
                async for message in self.follower:
                    self.received.append(message["message_id"])
                    if self.stopping.is_set():
                        return

        asyncio.run(follow())


def conversation_record(account: str, conversation: str, consumer: str, kind: str, channel: str = "web"):
    """(topic, key, event) of a conversation event as the messaging platform sends it."""
    return (
        CONVERSATION_EVENTS,
        conversation,
        ConversationEvent(
            event_type=kind,
            account_id=account,
            conversation_id=conversation,
            consumer_id=consumer,
            channel=channel,
            authenticated=True,
        ),
    )
