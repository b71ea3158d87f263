"""What one photo costs around the image work, read from the services' own metrics.

One photo (with a caption) goes upload → sanitizer → resizer → delivery, then is downloaded (GET)
and checked (HEAD). The S3 requests and decrypts it caused must stay within the numbers reached,
so a change that adds a round trip or a decrypt fails here."""

from __future__ import annotations

import io

from PIL import Image

from tests.support import scrape, unique

PIPELINE = ("upload", "sanitizer", "resizer", "delivery")
# Start-up and readiness requests, not caused by a photo.
NOT_PER_PHOTO = {"ping", "ensure_bucket", "lifecycle"}

# S3 requests per photo and service. upload: list the consumer's keys, get one, put the original
# (the caption is sealed under the same key). sanitizer and resizer: get their input and its key, put
# their output (the resizer seals the preview under that key). delivery: publish reads the final's
# header and its key (the preview and caption open under it); GET reads the final and its key;
# HEAD reads the header and the key.
S3_BUDGET = {"upload": 3, "sanitizer": 3, "resizer": 3, "delivery": 2 + 2 + 2}
# Decrypts per photo: the sanitizer its original, the resizer the sanitized image, delivery the
# final once for the download; delivery's publish opens only the sealed preview and caption.
FILE_DECRYPT_BUDGET = {"sanitizer": 1, "resizer": 1, "delivery": 1}
SEALED_DECRYPT_BUDGET = {"delivery": 2}


def photo(width: int = 1600, height: int = 1200) -> bytes:
    img = Image.merge(
        "RGB",
        [
            Image.linear_gradient("L").resize((width, height)),
            Image.effect_noise((width, height), 30),
            Image.linear_gradient("L").resize((width, height)),
        ],
    )
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def costs(env) -> dict[str, dict]:
    """Per service: S3 requests (per-photo operations only), decrypts and decrypted bytes by kind."""
    out = {}
    for service in PIPELINE:
        samples = scrape(env, service)
        cost = {"s3": 0.0, "file": 0.0, "sealed": 0.0, "file_bytes": 0.0}
        for (name, labels), value in samples.items():
            labels = dict(labels)
            if name == "fileshare_storage_requests_total" and labels["op"] not in NOT_PER_PHOTO:
                cost["s3"] += value
            elif name == "fileshare_decrypts_total":
                cost[labels["what"]] += value
            elif name == "fileshare_decrypted_bytes_total" and labels["what"] == "file":
                cost["file_bytes"] += value
        out[service] = cost
    return out


def send_and_fetch(client, account: str, data: bytes) -> tuple[str, bytes]:
    conversation, consumer = unique("conv"), unique("consumer")
    client.open_conversation(account, conversation, consumer)
    r = client.upload(account, conversation, data, caption="the cost of one photo")
    assert r.status_code == 202, r.text
    file_id = r.json()["file_id"]
    assert client.wait_status(file_id, account)["status"] == "published"
    got = client.download(file_id, account)
    assert got.status_code == 200 and got.content.startswith(b"\xff\xd8\xff")
    head = client.http.head(f"{client.delivery_url}/v1/files/{file_id}/content", headers=client.auth(account, "agent"))
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(got.content)
    return file_id, got.content


def test_one_photo_costs_at_most_the_s3_requests_and_decrypts_reached(client, stack):
    account = unique("acct")
    client.enable_account(account)
    data = photo()
    send_and_fetch(client, account, data)  # warm-up: each process's first request to a bucket looks up its region

    before = costs(stack.env)
    _, final = send_and_fetch(client, account, data)
    after = costs(stack.env)

    spent = {s: {k: after[s][k] - before[s][k] for k in after[s]} for s in PIPELINE}
    print("per photo:", spent)
    for service in PIPELINE:
        assert spent[service]["s3"] <= S3_BUDGET[service], (service, spent)
        assert spent[service]["file"] <= FILE_DECRYPT_BUDGET.get(service, 0), (service, spent)
        assert spent[service]["sealed"] <= SEALED_DECRYPT_BUDGET.get(service, 0), (service, spent)
    # Not vacuous: the photo was read where it had to be, and delivery decrypted the final image
    # exactly once (for the GET), not for the publish nor for the HEAD.
    assert spent["sanitizer"]["file"] == spent["resizer"]["file"] == 1, spent
    assert spent["delivery"]["file"] == 1 and 0 < spent["delivery"]["file_bytes"] < len(final) + 1024, spent
