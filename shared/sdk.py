"""Python SDK for bots (and scripts) sending photos to consumers.

Over HTTP:
    client = FileSharingClient("http://127.0.0.1:8080", token)
    status = client.send_file("acct-1", "conv-1", "photo.jpg", caption="Here you go")
    # status["status"] == "published" (or raises FileRejected with the pipeline's reason)

Over Kafka (a record on file.share.requested; the outcome is file.uploaded or
file.rejected carrying the request_id):
    request_id = publish_file_request("127.0.0.1:9092", token, "acct-1", "conv-1", "photo.jpg")

Every refusal raises FileSharingError whose `code` is the contract's error code. Both send the
caller's current OpenTelemetry trace context along (`traceparent`), so the photo's trace continues
the caller's.

For messaging platforms, a follower of message.published that survives a broker which lost its log
(a position past a partition's end is read again from the beginning; each `message_id` yielded once,
among the last `seen_limit` (100,000) ids; positions committed as a member of `group_id`):
    async with PublishedFollower("127.0.0.1:9092", group_id="platform") as follower:
        async for message in follower:   # the message.published record, as a dict
            deliver(message)             # follower.resets counts the partitions read again
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import httpx

from shared.runtime.tracing import current_headers, current_http_headers

FINAL_STATUSES = ("published", "rejected", "deleted")
MESSAGE_PUBLISHED = "message.published"
log = logging.getLogger(__name__)
MAX_RECORD_BYTES = 8 * 1024 * 1024 + 65536


class FileSharingError(Exception):
    """The service said no: `code` is the contract's error code (e.g. `conversation_closed`)."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class FileRejected(FileSharingError):
    """Accepted at the door, then rejected by the pipeline (e.g. `malware_detected`)."""

    def __init__(self, file_id: str, reason: str, detail: str | None):
        super().__init__(reason, detail or reason)
        self.file_id = file_id


def _read(path_or_bytes: str | Path | bytes) -> tuple[bytes, str]:
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return bytes(path_or_bytes), "photo"
    path = Path(path_or_bytes)
    return path.read_bytes(), path.name


class FileSharingClient:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0, http: httpx.Client | None = None):
        self.base_url = base_url.rstrip("/")
        self.http = http or httpx.Client(timeout=timeout)
        self.headers = {"Authorization": f"Bearer {token}"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.http.close()

    def _check(self, response: httpx.Response) -> dict:
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = error["code"], error["message"]
            except Exception:
                code, message = "http_error", response.text[:200]
            raise FileSharingError(code, message, response.status_code)
        return response.json()

    def send_file(
        self,
        account: str,
        conversation: str,
        path_or_bytes: str | Path | bytes,
        caption: str | None = None,
        wait: bool = True,
        idempotency_key: str | None = None,
        timeout: float = 120.0,
        poll_interval: float = 0.25,
    ) -> dict:
        """Upload one photo. wait=False returns the 202 answer ({file_id, status, status_url});
        wait=True polls the status until published and returns it, or raises FileRejected.
        A retry after a network error reuses `idempotency_key` (one is generated) so nothing is sent twice."""
        data, filename = _read(path_or_bytes)
        key = idempotency_key or str(uuid.uuid4())
        form = {"caption": caption} if caption is not None else {}
        url = f"{self.base_url}/v1/accounts/{account}/conversations/{conversation}/files"
        for attempt in range(3):
            try:
                response = self.http.post(
                    url,
                    files={"file": (filename, data, "application/octet-stream")},
                    data=form,
                    headers={**self.headers, "Idempotency-Key": key, **current_http_headers()},
                )
                if response.status_code != 503 or attempt == 2:
                    break
            except httpx.TransportError:
                if attempt == 2:
                    raise
            time.sleep(0.5 * (attempt + 1))
        accepted = self._check(response)
        return self.wait_for(accepted["file_id"], timeout, poll_interval) if wait else accepted

    def status(self, file_id: str) -> dict:
        return self._check(self.http.get(f"{self.base_url}/v1/files/{file_id}", headers=self.headers))

    def wait_for(self, file_id: str, timeout: float = 120.0, poll_interval: float = 0.25) -> dict:
        """Poll GET /v1/files/{id} until a final status; raises FileRejected or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(file_id)
            if status["status"] == "rejected":
                raise FileRejected(file_id, status.get("reason") or "processing_failed", status.get("detail"))
            if status["status"] in FINAL_STATUSES:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"file {file_id} still {status['status']} after {timeout}s")
            time.sleep(poll_interval)

    def capabilities(self, account: str, conversation: str) -> dict:
        return self._check(
            self.http.get(
                f"{self.base_url}/v1/accounts/{account}/conversations/{conversation}/capabilities", headers=self.headers
            )
        )


def file_request_record(
    token: str,
    account: str,
    conversation: str,
    path_or_bytes: str | Path | bytes,
    caption: str | None = None,
    request_id: str | None = None,
) -> dict:
    """The file.share.requested record of the contract, as a dict."""
    data, filename = _read(path_or_bytes)
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "file.share.requested",
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "schema_version": 1,
        "request_id": request_id or str(uuid.uuid4()),
        "token": token,
        "account_id": account,
        "conversation_id": conversation,
        "filename": filename,
        "caption": caption,
        "content_b64": base64.b64encode(data).decode(),
    }


async def publish_file_request_async(
    bootstrap: str,
    token: str,
    account: str,
    conversation: str,
    path_or_bytes: str | Path | bytes,
    caption: str | None = None,
    request_id: str | None = None,
) -> str:
    import json

    from aiokafka import AIOKafkaProducer

    record = file_request_record(token, account, conversation, path_or_bytes, caption, request_id)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_RECORD_BYTES)
    await producer.start()
    try:
        await producer.send_and_wait(
            "file.share.requested",
            json.dumps(record).encode(),
            key=conversation.encode(),
            headers=current_headers() or None,
        )
    finally:
        await producer.stop()
    return record["request_id"]


def publish_file_request(
    bootstrap: str,
    token: str,
    account: str,
    conversation: str,
    path_or_bytes: str | Path | bytes,
    caption: str | None = None,
    request_id: str | None = None,
) -> str:
    """Publish a bot record on file.share.requested; returns its request_id. The outcome is a
    file.uploaded or file.rejected carrying that request_id (same checks and codes as HTTP)."""
    return asyncio.run(
        publish_file_request_async(bootstrap, token, account, conversation, path_or_bytes, caption, request_id)
    )


class PublishedFollower:
    """Follows message.published as a consumer group member. After each fetch, a partition whose
    position lies past its end (the fetch's high watermark: the broker lost its log and numbers
    from 0 again, answering no OFFSET_OUT_OF_RANGE) is read again from its beginning. A message
    sent again (delivery's republish, a re-read partition) is yielded once: its `message_id` is
    remembered among the last `seen_limit`. Positions are committed once a batch was yielded."""

    def __init__(self, bootstrap: str, group_id: str, seen_limit: int = 100_000, **consumer_options):
        from aiokafka import AIOKafkaConsumer

        self.consumer = AIOKafkaConsumer(
            MESSAGE_PUBLISHED,
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **consumer_options,
        )
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.seen_limit, self.resets = seen_limit, 0

    async def __aenter__(self) -> PublishedFollower:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()

    def first_time(self, message_id: str) -> bool:
        if message_id in self.seen:
            self.seen.move_to_end(message_id)
            return False
        self.seen[message_id] = None
        if len(self.seen) > self.seen_limit:
            self.seen.popitem(last=False)
        return True

    async def reset_partitions_past_their_end(self) -> None:
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            try:
                if end is not None and await asyncio.wait_for(self.consumer.position(tp), 1.0) > end:
                    log.warning(
                        "%s[%d]: position past the end %d (the broker lost its log): reading it again "
                        "from its beginning",
                        tp.topic,
                        tp.partition,
                        end,
                    )
                    await self.consumer.seek_to_beginning(tp)
                    self.resets += 1
            except (TimeoutError, AssertionError):  # AssertionError: revoked meanwhile
                continue

    async def __aiter__(self):
        from aiokafka.errors import KafkaError

        while True:
            try:
                batches = await self.consumer.getmany(timeout_ms=500)
            except KafkaError as e:
                log.info("message.published fetch failed (%s); retrying", e)
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for record in records:
                    message = json.loads(record.value)
                    if self.first_time(message["message_id"]):
                        yield message
            await self.reset_partitions_past_their_end()
            if any(batches.values()):
                try:
                    await self.consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batches.items() if rs})
                except KafkaError as e:  # a rebalance or a broker away: the next owner reads them again
                    log.info("commit failed (%s)", e)
