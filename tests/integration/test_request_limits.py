"""Abuse at the HTTP doors: 401 before any other check on every endpoint, a cap on every
request body while it streams, and a burst of uploads that leaves upload's memory flat."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from tests.imagecorpus import padded_jpeg, photo, to_jpeg
from tests.support import PeakRss, raw_request, unique

CREDENTIAL_PARAMS = {"exp", "aud", "sig"}  # a signed link is a credential: a bad one is 403 invalid_link
BAD_VALUE = "-1e9x\u00e9" * 60  # no integer, no enum member, longer than any key


# Every endpoint of both HTTP services (the audit of the HTTP doors); a test below fails when one is added
# to a service and not here.
ENDPOINTS = [
    ("FS_UPLOAD_PORT", "POST", "/v1/accounts/{account_id}/conversations/{conversation_id}/files"),
    ("FS_UPLOAD_PORT", "GET", "/v1/accounts/{account_id}/conversations/{conversation_id}/capabilities"),
    ("FS_UPLOAD_PORT", "GET", "/v1/accounts/{account_id}/settings"),
    ("FS_UPLOAD_PORT", "PUT", "/v1/accounts/{account_id}/settings"),
    ("FS_UPLOAD_PORT", "GET", "/v1/files/{file_id}"),
    ("FS_DELIVERY_PORT", "GET", "/v1/files/{file_id}/content"),
    ("FS_DELIVERY_PORT", "HEAD", "/v1/files/{file_id}/content"),
    ("FS_DELIVERY_PORT", "POST", "/v1/files/{file_id}/link"),
    ("FS_DELIVERY_PORT", "GET", "/v1/conversations/{conversation_id}/messages"),
]


@pytest.fixture(scope="module")
def operations(client) -> dict[tuple[str, str, str], dict]:
    """Every /v1/ operation the two services publish in their OpenAPI."""
    found = {}
    for port_key in ("FS_UPLOAD_PORT", "FS_DELIVERY_PORT"):
        spec = httpx.get(f"http://127.0.0.1:{client.env[port_key]}/openapi.json", timeout=10).json()
        for path, methods in spec["paths"].items():
            for method, operation in methods.items():
                if path.startswith("/v1/"):
                    found[(port_key, method.upper(), path)] = operation
    return found


def test_the_matrix_below_covers_every_endpoint(operations):
    assert sorted(operations) == sorted(ENDPOINTS)


def code_of(body: bytes) -> str:
    return json.loads(body)["error"]["code"]


def bad_request(client, port_key: str, method: str, path: str, operation: dict, headers: dict) -> httpx.Response:
    """The endpoint with every parameter invalid and a body that is neither JSON nor multipart."""
    url = (client.upload_url if port_key == "FS_UPLOAD_PORT" else client.delivery_url) + path.replace("{", "").replace(
        "}", ""
    )
    params, extra_headers = {}, {}
    for parameter in operation.get("parameters", []):
        if parameter["name"] in CREDENTIAL_PARAMS:
            continue
        if parameter["in"] == "query":
            params[parameter["name"]] = BAD_VALUE
        elif parameter["in"] == "header":
            extra_headers[parameter["name"]] = "k" * 500
    content = b"{not json" if "requestBody" in operation or method in ("POST", "PUT") else None
    return client.http.request(
        method,
        url,
        params=params,
        content=content,
        headers={**headers, **extra_headers, "Content-Type": "application/json"},
    )


FORGED = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}


@pytest.mark.parametrize("port_key, method, path", ENDPOINTS, ids=[f"{m} {p}" for _, m, p in ENDPOINTS])
@pytest.mark.parametrize("token", [{}, FORGED], ids=["no token", "forged token"])
def test_every_endpoint_answers_401_before_any_other_check(client, operations, port_key, method, path, token):
    """Without a valid token an endpoint is 401 even with every parameter invalid, a header too long and
    a broken body, or with a body far over its cap (declared, not sent)."""
    r = bad_request(client, port_key, method, path, operations[(port_key, method, path)], token)
    assert r.status_code == 401, r.text
    if method != "HEAD":
        assert r.json()["error"]["code"] == "unauthenticated"
    status, _, body = raw_request(
        int(client.env[port_key]),
        method,
        path.replace("{", "").replace("}", ""),
        {**token, "Content-Type": "application/json"},
        declared_length=200 * 2**20,
    )
    assert status == 401 and (method == "HEAD" or code_of(body) == "unauthenticated"), body


def test_a_link_with_a_bad_ttl_is_401_without_a_token_and_422_with_one(client):
    account = unique("acct")
    url = f"{client.delivery_url}/v1/files/{uuid.uuid4()}/link"
    for ttl in ("abc", "0", "3601", "-5", "1e3", "²"):
        assert client.http.post(url, params={"ttl_seconds": ttl}).status_code == 401, ttl
        r = client.http.post(url, params={"ttl_seconds": ttl}, headers=client.auth(account, "agent", "a"))
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request"), (ttl, r.text)
    # A valid ttl goes on to the next check (no such file).
    r = client.http.post(url, params={"ttl_seconds": "60"}, headers=client.auth(account, "agent", "a"))
    assert r.status_code == 404


def test_a_200_mb_settings_document_is_refused_while_it_streams(client, stack):
    account = unique("acct")
    team = client.auth(account, "platform", "team")
    url = f"{client.upload_url}/v1/accounts/{account}/settings"
    chunk = b" " * (1024 * 1024)

    def body():  # a JSON document padded with 200 MB of whitespace; never held by the test either
        yield b'{"feature_enabled": true'
        for _ in range(200):
            yield chunk
        yield b"}"

    with PeakRss(stack.procs["upload"].pid) as rss:
        try:  # chunked: no Content-Length to refuse on
            r = httpx.put(url, content=body(), headers={**team, "Content-Type": "application/json"}, timeout=60)
            outcome = (r.status_code, r.json()["error"]["code"])
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            outcome = "connection closed while sending"  # the server stopped reading: also a refusal
        status, _, answer = raw_request(
            int(client.env["FS_UPLOAD_PORT"]),
            "PUT",
            url.removeprefix(client.upload_url),
            {**team, "Content-Type": "application/json"},
            declared_length=200 * 2**20,
        )
    assert outcome in ((413, "body_too_large"), "connection closed while sending"), outcome
    assert (status, code_of(answer)) == (413, "body_too_large")
    assert b"65536 bytes" in answer
    assert rss.growth < 40 * 2**20, f"upload grew {rss.growth / 2**20:.1f} MiB reading a capped body"
    # A document of normal size still goes through.
    assert client.http.put(url, json={"feature_enabled": True}, headers=team).status_code == 200


def five_mb_jpeg() -> bytes:
    """A small photo padded to 5 MB: the upload door sees a 5 MB photo, and the stages behind it
    have little to decode."""
    return padded_jpeg(to_jpeg(photo(320, 240)), 5_000_000)


def test_a_burst_of_5_mb_uploads_keeps_upload_memory_flat(client, stack):
    """30 agents send a 5 MB photo at the same moment. Before the budget, every body was held (and
    copied) at once: 50 of them took upload from ~110 MB to ~600 MB. Now the bodies read at one time
    share FS_UPLOAD_BUFFER_BYTES (32 MiB); the others wait in line. Every photo is accepted, by a
    client that retries a 503 after its Retry-After as the contract says."""
    account = unique("acct")
    client.enable_account(account)
    conversations = [unique("conv") for _ in range(6)]
    for conversation in conversations:
        client.open_conversation(account, conversation, unique("consumer"))
    data, auth = five_mb_jpeg(), client.auth(account, "agent", "agent-1")

    async def burst(n: int) -> list[int]:
        async def one(http: httpx.AsyncClient, i: int) -> int:
            url = f"{client.upload_url}/v1/accounts/{account}/conversations/{conversations[i % 6]}/files"
            headers = {**auth, "Idempotency-Key": unique("burst")}
            while True:
                r = await http.post(url, headers=headers, files={"file": ("p.jpg", data, "image/jpeg")})
                if r.status_code != 503:
                    return r.status_code
                await asyncio.sleep(float(r.headers["retry-after"]))

        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=n)) as http:
            return await asyncio.gather(*(one(http, i) for i in range(n)))

    assert asyncio.run(burst(2)) == [202, 202]  # warm-up: the consumer keys exist, code paths are loaded
    with PeakRss(stack.procs["upload"].pid) as rss:
        answers = asyncio.run(burst(30))
    print(f"upload RSS {rss.baseline / 2**20:.0f} MiB before 30 × 5 MB uploads, peak {rss.peak / 2**20:.0f} MiB")
    assert answers == [202] * 30
    # 30 bodies held at once would be 150 MB of bodies alone, and about three times that with copies.
    assert rss.growth < 150 * 2**20, f"upload grew {rss.growth / 2**20:.0f} MiB under the burst"
