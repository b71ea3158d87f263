"""Helpers of the upload tests, speaking only the contract: bot records, outcomes, images."""

from __future__ import annotations

import asyncio
import base64
import io

from aiokafka import AIOKafkaProducer
from PIL import Image

from shared.contract.events import FileShareRequested
from shared.contract.topics import FILE_REJECTED, FILE_UPLOADED
from tests.support import Client, unique, wait_until


def png_bytes(width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def publish_many(client: Client, records: list[tuple[str, str, object]]) -> None:
    """Publish (topic, key, event-or-bytes) with one producer, waiting for every ack."""

    async def send():
        p = AIOKafkaProducer(bootstrap_servers=client.env["FS_KAFKA_BOOTSTRAP"], max_request_size=16 * 1024 * 1024)
        await p.start()
        try:
            futures = [
                await p.send(topic, value if isinstance(value, bytes) else value.to_bytes(), key=key.encode())
                for topic, key, value in records
            ]
            await asyncio.gather(*futures)
        finally:
            await p.stop()

    asyncio.run(send())


def share_request(
    token: str, account: str, conversation: str, data: bytes, caption: str | None = None, request_id: str | None = None
) -> FileShareRequested:
    return FileShareRequested(
        request_id=request_id or unique("req"),
        token=token,
        account_id=account,
        conversation_id=conversation,
        filename="photo.png",
        caption=caption,
        content_b64=base64.b64encode(data).decode(),
    )


def bot_outcomes(client: Client, request_ids: set[str], timeout: float = 60) -> dict[str, list]:
    """Every file.uploaded / file.rejected carrying one of the request ids, once each id has one."""

    def read():
        found: dict[str, list] = {}
        for topic in (FILE_UPLOADED, FILE_REJECTED):
            for e in client.read_topic(topic, lambda e: getattr(e, "request_id", None) in request_ids):
                found.setdefault(e.request_id, []).append(e)
        return found if set(found) == request_ids else None

    return wait_until(read, timeout=timeout, interval=0.3, what=f"outcomes of {len(request_ids)} bot records")


def outcome_of(events: list) -> tuple[int, str | None]:
    """A bot record's outcome in HTTP terms, for comparing with the oracle."""
    assert len(events) == 1, f"one outcome per record, got {events}"
    event = events[0]
    if event.event_type == "file.uploaded":
        return 202, None
    assert event.stage == "upload"
    return {
        "unauthenticated": 401,
        "feature_disabled": 403,
        "file_sharing_disabled": 403,
        "permission_denied": 403,
        "conversation_not_found": 404,
        "conversation_closed": 409,
        "channel_not_supported": 409,
        "file_too_large": 413,
        "unsupported_type": 415,
        "invalid_request": 422,
        "rate_limited": 429,
    }[event.reason], event.reason
