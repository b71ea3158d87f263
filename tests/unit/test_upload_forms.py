"""The upload form reader: a hard byte cap while streaming, and the photo never touches disk."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from services.upload.forms import BodyTooLarge, MalformedForm, read_form_limited
from shared.runtime.httpapi import ApiError

BOUNDARY = "xyzBOUNDARYxyz"


def multipart(file_bytes: bytes, caption: str = "hi") -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="caption"\r\n\r\n{caption}\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + file_bytes
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def request_for(body: bytes, chunk: int = 65536, declare_length: bool = True) -> Request:
    headers = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    if declare_length:
        headers.append((b"content-length", str(len(body)).encode()))
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]

    async def receive():
        data = chunks.pop(0)
        return {"type": "http.request", "body": data, "more_body": bool(chunks)}

    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def test_a_3_mb_photo_is_parsed_in_memory_never_spooled_to_disk():
    photo = b"\xff\xd8\xff" + bytes(range(256)) * 12000
    form = asyncio.run(read_form_limited(request_for(multipart(photo)), limit=6 * 1024 * 1024))
    upload = form["file"]
    assert form["caption"] == "hi"
    assert not upload.file._rolled, "a rolled SpooledTemporaryFile wrote the plaintext photo to disk"
    assert asyncio.run(upload.read()) == photo


def test_a_body_over_the_limit_stops_being_read_even_without_a_declared_length():
    body = multipart(b"x" * 3_000_000)
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_form_limited(request_for(body, declare_length=False), limit=1_000_000))


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_form_limited(request_for(multipart(b"x" * 10)), limit=5))


def test_a_body_that_is_no_multipart_form_is_malformed():
    request = Request(
        {"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]},
        request_for(b"{}").receive,
    )
    with pytest.raises(MalformedForm):
        asyncio.run(read_form_limited(request, limit=1000))


def test_a_full_budget_is_a_503_not_a_malformed_form():
    # The body-limit middleware raises the budget's 503 from receive(): it must reach the client as is.
    busy = ApiError(503, "unavailable", "too many uploads in flight", {"Retry-After": "1"})

    async def receive():
        raise busy

    request = Request(
        {
            "type": "http",
            "method": "POST",
            "headers": [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())],
        },
        receive,
    )
    with pytest.raises(ApiError) as caught:
        asyncio.run(read_form_limited(request, limit=1000))
    assert caught.value is busy
