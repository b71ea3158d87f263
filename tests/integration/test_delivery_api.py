"""Downloads, signed links and transcripts: only the right people, the right headers,
never a tampered image."""

from __future__ import annotations

import asyncio
import io
import os
import time
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from shared.adapters.crypto import ConsumerKeyStore, MasterKeyRing, decode_master_key
from shared.adapters.storage.objectstore import S3ObjectStore
from shared.contract.auth import mint_service_token, mint_token
from shared.contract.events import FileDeleted
from shared.contract.links import sign_link
from shared.contract.topics import FILE_DELETED
from tests.integration.delivery_support import delivery_log, new_conversation, publish_photo, small_photo
from tests.support import sample, scrape, unique, wait_until, with_forged_data_key

IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8")


@pytest.fixture(scope="module")
def photo(client):
    return publish_photo(client, filename="../../etc/<script>holiday photo.jpg")


def content_url(client, file_id: str) -> str:
    return f"{client.delivery_url}/v1/files/{file_id}/content"


def get_content(client, file_id: str, headers: dict | None = None):
    return client.http.get(content_url(client, file_id), headers=headers or {})


def make_link(client, file_id: str, headers: dict, **params):
    return client.http.post(f"{client.delivery_url}/v1/files/{file_id}/link", headers=headers, params=params)


def follow(client, url: str):
    """A link is used as-is, without any header (like <img src>)."""
    return client.http.get(f"{client.delivery_url}{url}")


def error_code(r) -> str:
    return r.json()["error"]["code"]


# --- who may download and make links ---


@pytest.mark.parametrize("role", ["agent", "agent_manager", "bot", "admin"])
def test_account_users_download_and_link(client, photo, role):
    auth = client.auth(photo.account, role, f"{role}-7")
    r = get_content(client, photo.file_id, auth)
    assert r.status_code == 200 and r.content.startswith(b"\xff\xd8\xff")
    link = make_link(client, photo.file_id, auth)
    assert link.status_code == 200, link.text
    assert follow(client, link.json()["url"]).content == r.content


def test_the_conversations_consumer_downloads_and_links(client, photo):
    auth = client.auth(photo.account, "consumer", photo.consumer)
    r = get_content(client, photo.file_id, auth)
    assert r.status_code == 200 and r.content.startswith(b"\xff\xd8\xff")
    link = make_link(client, photo.file_id, auth)
    assert link.status_code == 200
    assert follow(client, link.json()["url"]).status_code == 200


def test_another_consumer_of_the_same_account_is_refused(client, photo):
    auth = client.auth(photo.account, "consumer", unique("consumer"))
    r = get_content(client, photo.file_id, auth)
    assert r.status_code == 403 and error_code(r) == "forbidden"
    assert not r.content.startswith(IMAGE_SIGNATURES)
    assert make_link(client, photo.file_id, auth).status_code == 403


@pytest.mark.parametrize("role", ["agent", "agent_manager", "bot", "admin", "platform", "consumer"])
def test_another_account_does_not_learn_the_file_exists(client, photo, role):
    auth = client.auth(unique("acct"), role, photo.consumer if role == "consumer" else "someone")
    r = get_content(client, photo.file_id, auth)
    assert r.status_code == 404 and error_code(r) == "not_found"
    unknown = get_content(client, str(uuid.uuid4()), auth)
    assert (unknown.status_code, unknown.json()) == (404, r.json()), "same answer as for a file that does not exist"
    assert make_link(client, photo.file_id, auth).status_code == 404


def test_no_expired_or_forged_token_is_401(client, photo):
    secret = client.env["FS_AUTH_SECRET"]
    cases = {
        "none": {},
        "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "expired": {"Authorization": "Bearer " + mint_token(secret, photo.account, "agent", "a", ttl_seconds=-60)},
        "forged": {
            "Authorization": "Bearer "
            + mint_token("not-the-secret-but-long-enough-for-hs256", photo.account, "agent", "a")
        },
        "garbage": {"Authorization": "Bearer abc.def.ghi"},
    }
    for name, headers in cases.items():
        for r in (get_content(client, photo.file_id, headers), make_link(client, photo.file_id, headers)):
            assert r.status_code == 401, (name, r.status_code, r.text)
            assert error_code(r) == "unauthenticated" and r.headers["www-authenticate"] == "Bearer"


# --- signed links ---


def test_link_defaults_to_five_minutes_and_allows_at_most_an_hour(client, photo):
    auth = client.auth(photo.account, "agent", "agent-1")
    before = time.time()
    body = make_link(client, photo.file_id, auth).json()
    assert set(body) == {"url", "expires_at"}
    assert urlsplit(body["url"]).path == f"/v1/files/{photo.file_id}/content"
    expires = datetime.fromisoformat(body["expires_at"]).timestamp()
    assert before + 299 <= expires <= time.time() + 301
    hour = make_link(client, photo.file_id, auth, ttl_seconds=3600).json()
    assert datetime.fromisoformat(hour["expires_at"]).timestamp() <= time.time() + 3601
    too_long = make_link(client, photo.file_id, auth, ttl_seconds=7200)
    assert too_long.status_code == 422 and error_code(too_long) == "invalid_request"


def test_expired_tampered_or_wrong_file_links_are_403(client, photo):
    auth = client.auth(photo.account, "agent", "agent-1")
    other = publish_photo(client, where=(photo.account, photo.conversation, photo.consumer), data=small_photo(seed=3))
    url = make_link(client, photo.file_id, auth).json()["url"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    path = f"/v1/files/{photo.file_id}/content"

    def with_query(p, **changes):
        q = {**query, **changes}
        return f"{p}?exp={q['exp']}&aud={q['aud']}&sig={q['sig']}"

    secret = client.env["FS_AUTH_SECRET"]
    expired, _ = sign_link(secret, photo.file_id, f"account/{photo.account}", 60, now=time.time() - 3600)
    flipped = query["sig"][:-1] + ("0" if query["sig"][-1] != "0" else "1")
    refused = {
        "expired": f"{path}?{expired}",
        "signature": with_query(path, sig=flipped),
        "expiry extended": with_query(path, exp=str(int(query["exp"]) + 3600)),
        "audience changed": with_query(path, aud=f"account/{unique('acct')}"),
        "wrong file": with_query(f"/v1/files/{other.file_id}/content"),
        "forged with another secret": f"{path}?{sign_link('guess', photo.file_id, query['aud'], 300)[0]}",
    }
    assert follow(client, url).status_code == 200
    for name, bad in refused.items():
        r = follow(client, bad)
        assert r.status_code == 403, (name, r.status_code, r.text)
        assert error_code(r) == "invalid_link" and not r.content.startswith(IMAGE_SIGNATURES), name


def test_a_consumers_link_still_speaks_only_for_that_consumer(client, photo):
    """A consumer link for another conversation's file is refused, even though it is validly signed."""
    stranger = unique("consumer")
    secret = client.env["FS_AUTH_SECRET"]
    query, _ = sign_link(secret, photo.file_id, f"consumer/{photo.account}/{stranger}", 300)
    assert follow(client, f"/v1/files/{photo.file_id}/content?{query}").status_code == 403


# --- response headers ---


def test_download_headers_caching_and_head(client, photo):
    auth = client.auth(photo.account, "agent", "agent-1")
    r = get_content(client, photo.file_id, auth)
    assert r.status_code == 200
    h = r.headers
    assert h["content-type"] == "image/jpeg"
    assert int(h["content-length"]) == len(r.content)
    assert h["x-content-type-options"] == "nosniff"
    assert h["content-disposition"] == f'inline; filename="{photo.file_id}.jpg"', "generated, never the uploaded name"
    assert "holiday" not in h["content-disposition"] and "script" not in h["content-disposition"]
    assert h["cache-control"].startswith("private") and "max-age=" in h["cache-control"]
    etag = h["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert Image.open(io.BytesIO(r.content)).format == "JPEG"

    again = get_content(client, photo.file_id, {**auth, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    listed = get_content(client, photo.file_id, {**auth, "If-None-Match": f'"other", W/{etag}'})
    assert listed.status_code == 304
    changed = get_content(client, photo.file_id, {**auth, "If-None-Match": '"something-else"'})
    assert changed.status_code == 200 and changed.content == r.content

    head = client.http.head(content_url(client, photo.file_id), headers=auth)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == h["content-length"]
    assert head.headers["content-type"] == "image/jpeg" and head.headers["etag"] == etag

    status = client.status(photo.file_id, photo.account)
    assert status["size_bytes"] == len(r.content)


def test_head_and_if_none_match_are_authorized_too(client, photo):
    etag = get_content(client, photo.file_id, client.auth(photo.account, "agent", "a")).headers["etag"]
    stranger = client.auth(photo.account, "consumer", unique("consumer"))
    assert client.http.head(content_url(client, photo.file_id)).status_code == 401
    assert client.http.head(content_url(client, photo.file_id), headers=stranger).status_code == 403
    assert get_content(client, photo.file_id, {**stranger, "If-None-Match": etag}).status_code == 403


# --- integrity and deletion ---


def final_blob(client, p) -> Path:
    return Path(client.data_dir) / "s3" / "fileshare" / p.account / p.consumer / p.conversation / p.file_id / "final"


def test_a_consumer_key_under_a_master_key_delivery_was_not_given_is_a_clean_503(client, stack):
    """A rotation done wrong (the services restarted without the former key in
    FS_PREVIOUS_MASTER_KEYS): the download says unavailable, names no internals, and heals once the
    key opens again."""
    p = publish_photo(client)
    auth = client.auth(p.account, "agent", "agent-1")
    good = get_content(client, p.file_id, auth)
    env = stack.env
    store = S3ObjectStore(env["FS_S3_ENDPOINT"], env["FS_S3_ACCESS_KEY"], env["FS_S3_SECRET_KEY"], "fileshare-keys")
    unknown = MasterKeyRing(os.urandom(32), [decode_master_key(env["FS_MASTER_KEY"])])
    keys = ConsumerKeyStore(store, unknown)

    async def rewrap_under_unknown():
        [name] = [o.key for o in await store.list(f"{p.account}/{p.consumer}/")]
        original = await store.get(name)
        await keys.replace(name, keys.rewrapped(name, await keys.record(name)))
        return name, original

    name, original = asyncio.run(rewrap_under_unknown())

    r = get_content(client, p.file_id, auth)
    assert (r.status_code, error_code(r)) == (503, "unavailable"), r.text
    assert "Traceback" not in r.text and not r.content.startswith(IMAGE_SIGNATURES)
    wait_until(
        lambda: (
            f"master key {unknown.current_id} is not configured (set FS_PREVIOUS_MASTER_KEYS after a "
            f"rotation) file_id={p.file_id}" in delivery_log(stack)
        ),
        what="a log line naming the cause",
    )
    asyncio.run(store.put(name, original))
    assert get_content(client, p.file_id, auth).content == good.content


def test_tampered_blob_is_never_served(client, stack):
    p = publish_photo(client)
    auth = client.auth(p.account, "agent", "agent-1")
    good = get_content(client, p.file_id, auth)
    assert good.status_code == 200
    before = scrape(stack.env)

    blob = final_blob(client, p)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the ciphertext
    blob.write_bytes(bytes(data))

    r = get_content(client, p.file_id, auth)
    assert r.status_code == 500, r.text
    assert r.headers["content-type"] == "application/json" and error_code(r) == "integrity_error"
    assert good.content[:64] not in r.content and not r.content.startswith(IMAGE_SIGNATURES)
    assert "ETag" not in r.headers and "content-disposition" not in r.headers

    wait_until(
        lambda: f"failed authentication: refusing to serve it file_id={p.file_id}" in delivery_log(stack),
        what="a log line naming the tampered file",
    )
    after = scrape(stack.env)
    assert (
        sample(after, "fileshare_integrity_failures_total") == sample(before, "fileshare_integrity_failures_total") + 1
    )
    assert (
        sample(after, "fileshare_downloads_total", result="integrity_error")
        == sample(before, "fileshare_downloads_total", result="integrity_error") + 1
    )
    # The same through a signed link: no bytes either.
    link = make_link(client, p.file_id, auth).json()["url"]
    assert follow(client, link).status_code == 500


def test_deleted_file_is_gone(client):
    p = publish_photo(client)
    auth = client.auth(p.account, "agent", "agent-1")
    link = make_link(client, p.file_id, auth).json()["url"]
    client.publish(
        FILE_DELETED,
        p.conversation,
        FileDeleted(
            file_id=p.file_id,
            account_id=p.account,
            conversation_id=p.conversation,
            consumer_id=p.consumer,
            reason="expired",
        ),
    )
    r = wait_until(
        lambda: (r := get_content(client, p.file_id, auth)).status_code != 200 and r,
        what="delivery to learn the file was deleted",
    )
    assert r.status_code == 410 and error_code(r) == "gone"
    assert follow(client, link).status_code == 410
    assert make_link(client, p.file_id, auth).status_code == 410
    # Still not revealed across accounts, nor to consumers: delivery kept only the receipt (file,
    # account, reason), not whose conversation it was.
    assert get_content(client, p.file_id, client.auth(unique("acct"), "agent", "a")).status_code == 404
    assert get_content(client, p.file_id, client.auth(p.account, "consumer", unique("c"))).status_code == 404
    transcript = client.http.get(f"{client.delivery_url}/v1/conversations/{p.conversation}/messages", headers=auth)
    assert transcript.json()["messages"] == []


def test_blob_removed_from_storage_is_gone(client):
    p = publish_photo(client)
    env = client.env
    store = S3ObjectStore(env["FS_S3_ENDPOINT"], env["FS_S3_ACCESS_KEY"], env["FS_S3_SECRET_KEY"], "fileshare")
    asyncio.run(store.delete(f"{p.account}/{p.consumer}/{p.conversation}/{p.file_id}/final"))
    r = get_content(client, p.file_id, client.auth(p.account, "agent", "agent-1"))
    assert r.status_code == 410 and error_code(r) == "gone"
    head = client.http.head(content_url(client, p.file_id), headers=client.auth(p.account, "agent", "agent-1"))
    assert head.status_code == 410


def test_head_refuses_a_forgotten_consumers_file_and_a_forged_header_without_decrypting(client, stack):
    """HEAD answers from the final blob's header: still 410 once the consumer key is gone, 500 when the
    header's wrapped data key was edited, and the body is never decrypted for it."""
    forged = publish_photo(client)
    auth = client.auth(forged.account, "agent", "agent-1")
    blob = final_blob(client, forged)
    blob.write_bytes(with_forged_data_key(blob.read_bytes()))
    before = scrape(stack.env)
    head = client.http.head(content_url(client, forged.file_id), headers=auth)
    assert head.status_code == 500, head.headers
    assert sample(scrape(stack.env), "fileshare_decrypts_total", what="file") == sample(
        before, "fileshare_decrypts_total", what="file"
    )

    p = publish_photo(client)
    auth = client.auth(p.account, "agent", "agent-1")
    env = client.env
    keys = S3ObjectStore(
        env["FS_S3_ENDPOINT"],
        env["FS_S3_ACCESS_KEY"],
        env["FS_S3_SECRET_KEY"],
        env.get("FS_S3_KEY_BUCKET", "fileshare-keys"),
    )
    listed = asyncio.run(keys.list(f"{p.account}/{p.consumer}/"))
    assert listed
    for o in listed:  # the keys are shredded, the blobs not yet erased (a forget half-way)
        asyncio.run(keys.delete(o.key))
    assert client.http.head(content_url(client, p.file_id), headers=auth).status_code == 410
    assert get_content(client, p.file_id, auth).status_code == 410


# --- transcript ---


def test_transcript_oldest_first_for_the_conversations_people_only(client):
    where = new_conversation(client)
    account, conversation, consumer = where
    first = publish_photo(client, where=where, data=small_photo(seed=1), caption="first")
    second = publish_photo(client, where=where, data=small_photo(seed=2), caption="second")
    url = f"{client.delivery_url}/v1/conversations/{conversation}/messages"

    for headers in (
        client.auth(account, "agent", "agent-9"),
        client.auth(account, "agent_manager", "m"),
        client.auth(account, "bot", "b"),
        client.auth(account, "admin", "ad"),
        client.auth(account, "consumer", consumer),
    ):
        r = client.http.get(url, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["conversation_id"] == conversation
        assert [m["file_id"] for m in body["messages"]] == [first.file_id, second.file_id]
        m = body["messages"][0]
        assert m["content"]["type"] == "hosted_file" and m["content"]["caption"] == "first"
        assert m["content"]["download_path"] == f"/v1/files/{first.file_id}/content"
        assert m["content"]["preview"]

    other_consumer = client.http.get(url, headers=client.auth(account, "consumer", unique("consumer")))
    assert other_consumer.status_code == 403
    other_account = client.http.get(url, headers=client.auth(unique("acct"), "agent", "a"))
    assert other_account.status_code == 404
    assert client.http.get(url).status_code == 401
    unknown = client.http.get(
        f"{client.delivery_url}/v1/conversations/{unique('conv')}/messages", headers=client.auth(account, "agent", "a")
    )
    assert unknown.status_code == 404


# --- metrics ---


def test_delivery_metrics_count_messages_downloads_and_latency(client, stack):
    before = scrape(stack.env)
    p = publish_photo(client)
    auth = client.auth(p.account, "agent", "agent-1")
    r = get_content(client, p.file_id, auth)
    assert r.status_code == 200
    get_content(client, p.file_id, client.auth(p.account, "consumer", unique("consumer")))
    after = scrape(stack.env)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("fileshare_messages_published_total") >= 1
    assert delta("fileshare_upload_to_publish_seconds_count") >= 1
    assert delta("fileshare_upload_to_publish_seconds_sum") > 0
    assert delta("fileshare_downloads_total", result="ok") == 1
    assert delta("fileshare_downloads_total", result="forbidden") == 1
    assert delta("fileshare_served_bytes_total") == len(r.content)
    assert ("fileshare_duplicates_suppressed_total", ()) in after


# --- a 5 MB-class image ---


def noisy_png(width: int, height: int) -> bytes:
    img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)
    return out.getvalue()


def test_large_final_image_downloads_whole(client):
    where = new_conversation(client, max_image_dimension=4096)
    original = noisy_png(1400, 1150)
    assert 4_500_000 < len(original) <= 5 * 1024 * 1024
    p = publish_photo(client, where=where, data=original, filename="big.png")
    r = get_content(client, p.file_id, client.auth(p.account, "agent", "agent-1"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert len(r.content) > 4_000_000 and int(r.headers["content-length"]) == len(r.content)
    served = Image.open(io.BytesIO(r.content))
    assert served.size == (1400, 1150)
    assert served.convert("RGB").tobytes() == Image.open(io.BytesIO(original)).convert("RGB").tobytes()


# --- the internal publication lookup (upload's re-drive asks it after a lost log) ---


def publication(client, file_id: str, headers: dict):
    return client.http.get(f"{client.delivery_url}/internal/v1/files/{file_id}/publication", headers=headers)


def test_a_service_learns_that_delivery_published_a_file(client, photo):
    service = {"Authorization": f"Bearer {mint_service_token(client.env['FS_AUTH_SECRET'], 'upload')}"}
    r = publication(client, photo.file_id, service)
    assert r.status_code == 200 and r.json() == {"file_id": photo.file_id, "published": True}
    missing = publication(client, str(uuid.uuid4()), service)
    assert missing.status_code == 404 and error_code(missing) == "not_found"


@pytest.mark.parametrize("role", ["platform", "admin", "agent"])
def test_a_user_token_cannot_ask_the_internal_lookup(client, photo, role):
    r = publication(client, photo.file_id, client.auth(photo.account, role, f"{role}-9"))
    assert r.status_code == 401 and error_code(r) == "unauthenticated"


def test_a_service_token_is_no_user_token(client, photo):
    token = mint_service_token(client.env["FS_AUTH_SECRET"], "upload")
    r = get_content(client, photo.file_id, {"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and not r.content.startswith(IMAGE_SIGNATURES)
