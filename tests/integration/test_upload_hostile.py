"""Hostile and malformed requests at the upload door (HTTP and bot topic)."""

from __future__ import annotations

import httpx
import jwt

from shared.contract.auth import mint_token
from shared.contract.topics import FILE_SHARE_REQUESTED, FILE_UPLOADED
from tests.support import PeakRss, unique, wait_until
from tests.uploadsupport import bot_outcomes, png_bytes, publish_many, share_request

MAX = 5 * 1024 * 1024
NOT_PHOTOS = {
    "svg": (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "image/svg+xml",
        "x.svg",
    ),
    "html": (b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", "text/html", "x.png"),
    "webp": (b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 40, "image/webp", "x.webp"),
    "heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 40, "image/heic", "x.heic"),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "application/pdf", "x.jpg"),
    "empty": (b"", "image/jpeg", "x.jpg"),
}


def ready_conversation(client):
    account, conversation, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account)
    client.open_conversation(account, conversation, consumer)
    return account, conversation, consumer


def files_url(client, account, conversation):
    return f"{client.upload_url}/v1/accounts/{account}/conversations/{conversation}/files"


def error_code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def test_tokens_missing_expired_forged_or_of_another_account(client):
    account, conversation, _ = ready_conversation(client)
    secret = client.env["FS_AUTH_SECRET"]
    url = files_url(client, account, conversation)
    files = {"file": ("p.png", png_bytes(), "image/png")}
    expired = mint_token(secret, account, "agent", "agent-1", ttl_seconds=-60)
    forged = mint_token("not-the-secret-" + secret, account, "agent", "agent-1")
    unsigned = jwt.encode({"sub": "a", "acct": account, "role": "agent", "exp": 2**31}, key=None, algorithm="none")
    for headers in (
        {},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": f"Bearer {unsigned}"},
        {"Authorization": "Basic YWdlbnQ6cHc="},
        {"Authorization": "Bearer"},
    ):
        r = client.http.post(url, files=files, headers=headers)
        assert error_code(r) == (401, "unauthenticated"), (headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    other = client.auth(unique("acct"), "agent", "agent-1")
    assert error_code(client.http.post(url, files=files, headers=other)) == (403, "permission_denied")
    # Every other endpoint wants a token too.
    for method, path in (
        ("GET", f"/v1/accounts/{account}/settings"),
        ("PUT", f"/v1/accounts/{account}/settings"),
        ("GET", f"/v1/accounts/{account}/conversations/{conversation}/capabilities"),
        ("GET", f"/v1/files/{unique('file')}"),
    ):
        r = client.http.request(method, client.upload_url + path, json={})
        assert error_code(r) == (401, "unauthenticated"), path


def test_authentication_comes_before_validation(client):
    """401 first (contract order): a request that is both unauthenticated and invalid is 401; with a
    valid token the same request is 422."""
    account, conversation, _ = ready_conversation(client)
    settings_url = f"{client.upload_url}/v1/accounts/{account}/settings"
    caps_url = f"{client.upload_url}/v1/accounts/{account}/conversations/{conversation}/capabilities"
    forged = {
        "Authorization": "Bearer "
        + mint_token("not-the-secret-but-as-long-as-one-0123456789", account, "agent", "agent-1")
    }
    long_key = {"Idempotency-Key": "k" * 201}
    photo = {"file": ("p.png", png_bytes(), "image/png")}
    bad_bodies = ({"max_image_dimension": 99}, {"colour": "blue"}, "not json", None)

    def put_settings(body, headers):
        if isinstance(body, str) or body is None:
            return client.http.put(settings_url, content=body or b"", headers=headers)
        return client.http.put(settings_url, json=body, headers=headers)

    for body in bad_bodies:
        for headers in ({}, forged):
            r = put_settings(body, headers)
            assert error_code(r) == (401, "unauthenticated"), (body, headers, r.text)
        r = put_settings(body, client.auth(account, "platform", "team"))
        assert error_code(r) == (422, "invalid_request"), (body, r.text)
    for headers in ({}, forged):
        r = client.http.post(files_url(client, account, conversation), files=photo, headers={**headers, **long_key})
        assert error_code(r) == (401, "unauthenticated"), (headers, r.text)
        r = client.http.get(caps_url, params={"source": "email"}, headers=headers)
        assert error_code(r) == (401, "unauthenticated"), (headers, r.text)
    agent = client.auth(account, "agent", "agent-1")
    r = client.http.post(files_url(client, account, conversation), files=photo, headers={**agent, **long_key})
    assert error_code(r) == (422, "invalid_request"), r.text
    assert error_code(client.http.get(caps_url, params={"source": "email"}, headers=agent)) == (422, "invalid_request")
    # At the limit the key is fine, and a known source answers.
    r = client.http.post(
        files_url(client, account, conversation), files=photo, headers={**agent, "Idempotency-Key": "k" * 200}
    )
    assert r.status_code == 202, r.text
    assert client.http.get(caps_url, params={"source": "widget"}, headers=agent).json()["enabled"] is True


def test_size_limit_at_the_byte(client):
    account, conversation, _ = ready_conversation(client)
    signature = b"\x89PNG\r\n\x1a\n"
    exactly = signature + b"\x00" * (MAX - len(signature))
    r = client.upload(account, conversation, exactly + b"\x00", filename="big.png")
    assert error_code(r) == (413, "file_too_large")
    assert r.status_code == 413
    # Exactly the limit passes the door (the sanitizer then finds it is no image).
    r = client.upload(account, conversation, exactly, filename="limit.png")
    assert r.status_code == 202, r.text


def test_a_200_mb_body_is_refused_without_the_service_holding_it(client, stack):
    account, conversation, _ = ready_conversation(client)
    upload_pid = stack.procs["upload"].pid
    boundary = "fsboundary7d1f"
    chunk = b"\x00" * (1024 * 1024)

    def body():  # generated: the test itself never holds 200 MB either
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode() + b"\x89PNG\r\n\x1a\n"
        for _ in range(200):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {**client.auth(account, "agent", "agent-1"), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    statuses = []
    with PeakRss(upload_pid) as rss:
        for _ in range(3):  # repeated: a leak or a buffered body would add up
            try:
                # Chunked transfer: no Content-Length to refuse on, the limit must hold while streaming.
                r = httpx.post(files_url(client, account, conversation), content=body(), headers=headers, timeout=60)
                statuses.append(error_code(r))
            except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
                statuses.append("connection closed while sending")  # the server stopped reading: also a refusal
        # With a declared Content-Length it is refused before a byte of the body is read.
        r = httpx.post(
            files_url(client, account, conversation),
            content=body(),
            headers={**headers, "Content-Length": str(sum(len(part) for part in body()))},
            timeout=60,
        )
        assert error_code(r) == (413, "file_too_large")
    print(
        f"upload RSS {rss.baseline / 2**20:.1f} MiB before 4 × 200 MB bodies, peak {rss.peak / 2**20:.1f} MiB "
        f"(VmHWM reset: {rss.hwm_reset})"
    )
    assert (413, "file_too_large") in statuses, statuses
    # The cap is 5 MB + multipart slack; a body held in memory would be 200 MB.
    assert rss.growth < 40 * 2**20, f"upload service peaked {rss.growth / 2**20:.1f} MiB above its baseline"
    # And the service still works.
    assert client.upload(account, conversation, png_bytes()).status_code == 202


def test_content_decides_the_type_never_the_name(client):
    account, conversation, _ = ready_conversation(client)
    for kind, (data, declared, filename) in NOT_PHOTOS.items():
        r = client.upload(account, conversation, data, filename=filename, content_type=declared)
        assert error_code(r) == (415, "unsupported_type"), kind
    # A PNG named .jpg, declared as jpeg, is a PNG: accepted and published as one.
    r = client.upload(account, conversation, png_bytes(), filename="holiday.jpg", content_type="image/jpeg")
    assert r.status_code == 202, r.text
    status = client.wait_status(r.json()["file_id"], account)
    assert (status["status"], status["content_type"]) == ("published", "image/png"), status
    # Refusals are counted by reason, accepted bytes and latency too.
    metrics = httpx.get(f"http://127.0.0.1:{client.env['FS_METRICS_PORT_BASE']}/metrics").text
    assert 'fileshare_uploads_total{outcome="unsupported_type",via="http"}' in metrics
    assert 'fileshare_uploads_total{outcome="accepted",via="http"}' in metrics
    assert 'fileshare_upload_bytes_count{via="http"}' in metrics
    assert 'fileshare_upload_request_seconds_bucket{le="0.5",outcome="refused"}' in metrics


def test_multipart_shape_and_caption(client):
    account, conversation, _ = ready_conversation(client)
    url, auth = files_url(client, account, conversation), client.auth(account, "agent", "agent-1")
    photo = png_bytes()
    cases = {
        "no file": dict(data={"caption": "hello"}, files={"other": (None, "x")}),
        "two files": dict(files=[("file", ("a.png", photo, "image/png")), ("file", ("b.png", photo, "image/png"))]),
        "file under another name": dict(files={"photo": ("a.png", photo, "image/png")}),
        "file plus another file field": dict(
            files=[("file", ("a.png", photo, "image/png")), ("extra", ("b.png", photo, "image/png"))]
        ),
        "json instead of multipart": dict(json={"file": "aGVsbG8="}),
        "unknown source": dict(files={"file": ("a.png", photo, "image/png")}, data={"source": "email"}),
        "caption of 2001 characters": dict(files={"file": ("a.png", photo, "image/png")}, data={"caption": "x" * 2001}),
        "caption with control characters": dict(
            files={"file": ("a.png", photo, "image/png")}, data={"caption": "hi\x1b[2J"}
        ),
    }
    for name, kwargs in cases.items():
        r = client.http.post(url, headers=auth, **kwargs)
        assert error_code(r) == (422, "invalid_request"), (name, r.text)
        assert r.json()["error"]["message"], name
    r = client.upload(account, conversation, photo, caption="é" * 2000)
    assert r.status_code == 202, r.text
    assert wait_until(lambda: client.status(r.json()["file_id"], account).get("caption")) == "é" * 2000


def test_idempotency_key_returns_the_first_answer_and_creates_nothing_new(client):
    account, conversation, consumer = ready_conversation(client)
    key = {"Idempotency-Key": unique("key")}
    first = client.upload(account, conversation, png_bytes(), headers=key)
    second = client.upload(account, conversation, png_bytes(50, 50), headers=key)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    # Another user with the same key is another request.
    other = client.upload(account, conversation, png_bytes(), headers=key, sub="agent-2")
    assert other.json()["file_id"] != first.json()["file_id"]
    # The same key for another conversation is refused, not silently answered.
    conversation2 = unique("conv")
    client.open_conversation(account, conversation2, consumer)
    assert error_code(client.upload(account, conversation2, png_bytes(), headers=key)) == (422, "invalid_request")
    # The same key on another account's path: that account refuses the caller first (contract order).
    other_account = unique("acct")
    assert error_code(
        client.http.post(
            f"{client.upload_url}/v1/accounts/{other_account}/conversations/{conversation}/files",
            files={"file": ("photo.png", png_bytes(), "image/png")},
            headers={**client.auth(account, "agent", "agent-1"), **key},
        )
    ) == (403, "permission_denied")
    file_id = first.json()["file_id"]
    assert len(client.read_topic(FILE_UPLOADED, lambda e: e.file_id == file_id)) == 1


def test_status_visible_to_the_account_and_the_conversations_consumer_only(client):
    account, conversation, consumer = ready_conversation(client)
    file_id = client.upload(account, conversation, png_bytes()).json()["file_id"]
    url = f"{client.upload_url}/v1/files/{file_id}"
    for role, sub in (("agent", "agent-9"), ("admin", "admin-1"), ("consumer", consumer)):
        r = client.http.get(url, headers=client.auth(account, role, sub))
        assert r.status_code == 200 and r.json()["file_id"] == file_id, (role, r.text)
    for headers in (client.auth(account, "consumer", unique("consumer")), client.auth(unique("acct"), "agent", "a")):
        assert error_code(client.http.get(url, headers=headers)) == (404, "not_found")


def test_bot_records_hostile_and_malformed(client):
    account, conversation, _ = ready_conversation(client)
    secret = client.env["FS_AUTH_SECRET"]
    bot = client.token(account, "bot", "bot-1")
    cases = {
        "forged token": (
            share_request(mint_token("wrong" + secret, account, "bot", "bot-1"), account, conversation, png_bytes()),
            "unauthenticated",
        ),
        "expired token": (
            share_request(mint_token(secret, account, "bot", "bot-1", -60), account, conversation, png_bytes()),
            "unauthenticated",
        ),
        "token of another account": (
            share_request(client.token(unique("acct"), "bot", "bot-1"), account, conversation, png_bytes()),
            "permission_denied",
        ),
        "too large": (
            share_request(bot, account, conversation, b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX),
            "file_too_large",
        ),
        "not a photo": (share_request(bot, account, conversation, NOT_PHOTOS["svg"][0]), "unsupported_type"),
        "long caption": (share_request(bot, account, conversation, png_bytes(), caption="x" * 2001), "invalid_request"),
        "unknown conversation": (share_request(bot, account, unique("conv"), png_bytes()), "conversation_not_found"),
    }
    records = [(FILE_SHARE_REQUESTED, r.conversation_id, r) for r, _ in cases.values()]
    missing_content = unique("req")
    records += [
        # No usable ids: logged and skipped; the records behind it are still handled.
        (FILE_SHARE_REQUESTED, conversation, b"\x00not json"),
        (FILE_SHARE_REQUESTED, conversation, b'{"event_type": "file.share.requested", "account_id": "../x"}'),
        # Usable ids but no content: rejected as invalid_request.
        (
            FILE_SHARE_REQUESTED,
            conversation,
            (
                f'{{"request_id": "{missing_content}", "account_id": "{account}", '
                f'"conversation_id": "{conversation}", "token": "{bot}"}}'
            ).encode(),
        ),
    ]
    good = share_request(bot, account, conversation, png_bytes(), caption="from a bot")
    records += [(FILE_SHARE_REQUESTED, conversation, good), (FILE_SHARE_REQUESTED, conversation, good)]  # redelivered
    publish_many(client, records)
    wanted = {r.request_id: reason for r, reason in cases.values()}
    outcomes = bot_outcomes(client, {*wanted, missing_content, good.request_id})
    for name, (record, reason) in cases.items():
        (event,) = outcomes[record.request_id]
        assert (event.event_type, event.reason, event.stage) == ("file.rejected", reason, "upload"), name
    assert [e.reason for e in outcomes[missing_content]] == ["invalid_request"]
    (uploaded,) = outcomes[good.request_id]
    assert uploaded.event_type == "file.uploaded" and uploaded.caption_sealed and "caption" not in uploaded.model_dump()
    assert client.status(uploaded.file_id, account)["caption"] == "from a bot"
    assert uploaded.sender.role == "bot" and uploaded.sender.id == "bot-1"
    assert client.wait_status(uploaded.file_id, account)["status"] == "published"
