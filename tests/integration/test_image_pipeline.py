"""End to end: what the sanitizer and resizer do to hostile and unusual photos on the
running stack (real clamd with the test EICAR signature)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests import imagecorpus as corpus
from tests.support import sample, scrape, unique, wait_until


@pytest.fixture(scope="module")
def conversation(client):
    account, conv, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account)
    client.open_conversation(account, conv, consumer)
    return account, conv


def send(client, conversation, data: bytes, filename: str = "photo.jpg") -> tuple[str, dict]:
    account, conv = conversation
    r = client.upload(account, conv, data, filename=filename)
    assert r.status_code == 202, r.text
    file_id = r.json()["file_id"]
    return file_id, client.wait_status(file_id, account, timeout=90)


def downloaded(client, conversation, file_id: str) -> bytes:
    r = client.download(file_id, conversation[0])
    assert r.status_code == 200, r.text
    return r.content


@pytest.mark.parametrize("where", ["comment", "trailer"])
def test_eicar_inside_an_image_is_rejected_as_malware(client, conversation, where):
    def malware_count() -> float:
        return sample(scrape(client.env, "sanitizer"), "fileshare_files_rejected_total", reason="malware_detected")

    before = malware_count()
    file_id, status = send(client, conversation, corpus.jpeg_with_eicar(where))
    assert (status["status"], status["reason"]) == ("rejected", "malware_detected")
    assert "EICAR" in status["detail"]
    assert client.download(file_id, conversation[0]).status_code == 404
    # The operator's dashboard counts it (once the sanitizer resumes after the broker's ack).
    wait_until(lambda: malware_count() == before + 1, timeout=10, what="fileshare_files_rejected_total to count it")
    assert malware_count() == before + 1


@pytest.mark.parametrize(
    "make, reason",
    [
        (corpus.png_header_bomb, "image_too_large"),
        (corpus.jpeg_header_bomb, "image_too_large"),
        (corpus.truncated_jpeg, "corrupt_image"),
        (corpus.truncated_png, "corrupt_image"),
    ],
)
def test_bombs_and_broken_files_are_rejected_with_their_reason(client, conversation, make, reason):
    _, status = send(client, conversation, make())
    assert (status["status"], status["reason"]) == ("rejected", reason), status


def test_scan_bombs_are_refused_before_decoding_and_a_photo_beside_them_is_published(client, conversation):
    """Four senders each send a JPEG with 3,000 progressive scans (each held a sanitizer
    worker for the whole 10 s decode limit before) while a normal photo goes to another conversation."""
    account, _ = conversation
    bomb = corpus.progressive_scan_bomb(scans=3000)
    bomb_conversations = [unique("conv") for _ in range(4)]
    for conv in bomb_conversations:
        client.open_conversation(account, conv, unique("consumer"))
    elsewhere = unique("conv")
    client.open_conversation(account, elsewhere, unique("consumer"))

    bombs = [client.upload(account, conv, bomb, filename="bomb.jpg") for conv in bomb_conversations]
    assert [r.status_code for r in bombs] == [202] * 4, [r.text for r in bombs]
    photo = client.upload(
        account, elsewhere, corpus.to_jpeg(corpus.photo(640, 480), progressive=True), filename="ok.jpg"
    )
    assert photo.status_code == 202, photo.text

    assert client.wait_status(photo.json()["file_id"], account, timeout=90)["status"] == "published"
    for r in bombs:
        status = client.wait_status(r.json()["file_id"], account, timeout=90)
        # Refused by the scan count, not cut off by the decode time limit: no worker was held.
        assert (status["status"], status["reason"]) == ("rejected", "image_too_large"), status
        assert "more than 100 scans" in status["detail"], status


def test_polyglot_payloads_do_not_survive(client, conversation):
    for data in (corpus.jpeg_html_polyglot(), corpus.png_zip_polyglot()):
        file_id, status = send(client, conversation, data)
        assert status["status"] == "published", status
        content = downloaded(client, conversation, file_id)
        assert b"<script" not in content and b"PK\x03\x04" not in content
        image = Image.open(io.BytesIO(content))
        image.load()


def test_animated_gif_arrives_as_a_static_gif(client, conversation):
    file_id, status = send(client, conversation, corpus.animated_gif(), filename="anim.gif")
    assert status["status"] == "published", status
    image = Image.open(io.BytesIO(downloaded(client, conversation, file_id)))
    assert image.format == "GIF" and getattr(image, "n_frames", 1) == 1


def test_account_dimension_is_honoured_and_small_photos_are_not_upscaled(client):
    account, conv, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account, max_image_dimension=400)
    client.open_conversation(account, conv, consumer)
    big, status = send(client, (account, conv), corpus.to_jpeg(corpus.photo(1600, 1200)))
    assert (status["width"], status["height"]) == (400, 300)
    assert Image.open(io.BytesIO(downloaded(client, (account, conv), big))).size == (400, 300)
    small, status = send(client, (account, conv), corpus.to_png(corpus.photo(300, 200)), filename="s.png")
    assert Image.open(io.BytesIO(downloaded(client, (account, conv), small))).size == (300, 200)


def test_message_carries_a_small_jpeg_preview(client, conversation):
    import base64

    from shared.contract.topics import MESSAGE_PUBLISHED

    file_id, _ = send(client, conversation, corpus.to_jpeg(corpus.photo(2000, 1500)))
    [message] = client.read_topic(MESSAGE_PUBLISHED, lambda e: e.file_id == file_id)
    preview = base64.b64decode(message.content.preview)
    assert 0 < len(preview) <= 30 * 1024
    assert Image.open(io.BytesIO(preview)).format == "JPEG"


def test_preview_crosses_the_internal_topic_encrypted(client, conversation):
    """file.resized carries the preview to delivery sealed under the consumer's key: no plaintext
    image bytes on that topic (message.published carries it by contract, see docs/security.md)."""
    import base64
    import json

    from shared.contract.topics import FILE_RESIZED, MESSAGE_PUBLISHED

    file_id, _ = send(client, conversation, corpus.to_jpeg(corpus.photo(1200, 900)))
    [message] = client.read_topic(MESSAGE_PUBLISHED, lambda e: e.file_id == file_id)
    preview = base64.b64decode(message.content.preview)
    [resized] = client.read_topic(FILE_RESIZED, lambda e: e.file_id == file_id)
    wire = json.loads(resized.to_bytes())
    assert "preview" not in wire and wire["preview_sealed"]
    sealed = base64.b64decode(wire["preview_sealed"])
    assert not sealed.startswith(b"\xff\xd8") and preview[200:264] not in sealed
    assert len(sealed) > len(preview)  # the whole preview, plus header and tag
