"""Phone photos end to end: an account that lists HEIC and WebP gets them published as JPEG (PNG
when transparent), upright and without metadata; an account that does not list them gets 415."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests import imagecorpus as corpus
from tests import phonecorpus as phone
from tests.support import unique
from tests.upload_matrix import ACCEPTED_LISTS, CONTENT_TYPE_OF, expected_for_type, type_cells

PHOTO_TYPES = ["image/jpeg", "image/png", "image/gif"]


@pytest.fixture(scope="module")
def accounts(client):
    """(account listing HEIC and WebP, photos-only account, account listing HEIC only), each with
    an open conversation."""
    made = []
    for accepted in ([*PHOTO_TYPES, "image/heic", "image/webp"], None, ["image/heic"]):
        account, conv = unique("acct"), unique("conv")
        if accepted is None:
            client.enable_account(account)  # the default list
        else:
            client.enable_account(account, accepted_types=accepted)
        client.open_conversation(account, conv, unique("consumer"))
        made.append((account, conv))
    return made


def published(client, account: str, conv: str, data: bytes, filename: str) -> tuple[dict, httpx.Response]:
    r = client.upload(account, conv, data, filename=filename)
    assert r.status_code == 202, r.text
    file_id = r.json()["file_id"]
    status = client.wait_status(file_id, account, timeout=90)
    assert status["status"] == "published", status
    download = client.download(file_id, account)
    assert download.status_code == 200, download.text
    return status, download


def test_a_heic_from_an_iphone_is_published_as_an_upright_jpeg_without_exif(client, accounts):
    account, conv = accounts[0]
    data = phone.oriented_heic(6)  # stored sideways, EXIF orientation 6 + GPS + camera + author (EXIF and XMP)
    assert phone.AUTHOR.encode() in data and corpus.CAMERA_MAKE.encode() in data

    status, download = published(client, account, conv, data, "IMG_0001.HEIC")

    assert download.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(download.content))
    assert image.format == "JPEG" and image.size == corpus.MARKED_SIZE == (status["width"], status["height"])
    for quadrant, colour in corpus.QUADRANTS.items():
        assert corpus.close(corpus.quadrant_colour(image, quadrant), colour), quadrant
    assert len(image.getexif()) == 0 and "exif" not in image.info and "xmp" not in image.info
    for secret in (phone.AUTHOR, phone.XMP_AUTHOR, corpus.CAMERA_MAKE, corpus.CAMERA_MODEL):
        assert secret.encode() not in download.content


def test_a_webp_with_transparency_is_published_as_a_png_with_its_alpha(client, accounts):
    account, conv = accounts[0]

    _, download = published(client, account, conv, phone.webp_with_alpha(), "screenshot.webp")

    assert download.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(download.content))
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (96, 64))
    assert (image.getpixel((5, 40))[3], image.getpixel((90, 40))[3]) == (0, 255)
    assert abs(image.getpixel((90, 5))[3] - 128) <= 2


def test_an_animated_webp_is_published_as_its_first_frame(client, accounts):
    account, conv = accounts[0]
    _, download = published(client, account, conv, phone.animated_webp(), "sticker.webp")
    image = Image.open(io.BytesIO(download.content))
    assert (download.headers["content-type"], getattr(image, "n_frames", 1)) == ("image/jpeg", 1)
    assert corpus.close(image.getpixel((5, 5)), corpus.FIRST_FRAME_COLOUR, 12)


def test_a_heic_bomb_is_rejected_as_too_large(client, accounts):
    account, conv = accounts[0]
    r = client.upload(account, conv, phone.heic_declaring(20_000, 20_000), filename="bomb.heic")
    assert r.status_code == 202, r.text
    status = client.wait_status(r.json()["file_id"], account, timeout=90)
    assert (status["status"], status["reason"]) == ("rejected", "image_too_large"), status


def test_heic_and_webp_are_415_for_an_account_that_does_not_list_them(client, accounts):
    heic, webp = phone.oriented_heic(1), phone.webp_with_alpha()
    (_, _), (photos_only, photos_conv), (heic_only, heic_conv) = accounts
    for account, conv, data, name in (
        (photos_only, photos_conv, heic, "a.heic"),
        (photos_only, photos_conv, webp, "b.webp"),
        (heic_only, heic_conv, webp, "c.webp"),
        # Decided by the content, not by the name or the declared type.
        (photos_only, photos_conv, heic, "renamed.jpg"),
        (heic_only, heic_conv, corpus.to_jpeg(corpus.photo(64, 48)), "d.jpg"),
    ):
        r = client.upload(account, conv, data, filename=name, content_type="image/jpeg")
        assert r.status_code == 415, (account, name, r.text)
        assert r.json()["error"]["code"] == "unsupported_type"
    assert client.capabilities(photos_only, photos_conv)["accepted_types"] == PHOTO_TYPES
    assert client.capabilities(heic_only, heic_conv)["accepted_types"] == ["image/heic"]
    # The account listing HEIC only takes it.
    status, download = published(client, heic_only, heic_conv, heic, "IMG_0002.HEIC")
    assert download.headers["content-type"] == "image/jpeg"


CONTENT_OF = {
    "jpeg": lambda: corpus.to_jpeg(corpus.photo(32, 24)),
    "png": lambda: corpus.to_png(corpus.photo(32, 24)),
    "gif": lambda: corpus.to_gif(corpus.photo(32, 24)),
    "heic": lambda: phone.heic(corpus.photo(32, 24)),
    "webp": phone.webp_with_alpha,
    "svg": lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>',
    "bmp": lambda: b"BM" + bytes(60),
}


def test_every_type_against_every_accepted_list_over_http(client):
    """The oracle's table (tests/upload_matrix.py) against the running service: each file sent
    under one name and declared type, so only its content can decide."""
    assert set(CONTENT_OF) == set(CONTENT_TYPE_OF)
    conversations = {}
    for accepted in ACCEPTED_LISTS:
        account, conv = unique("tacct"), unique("tconv")
        client.enable_account(account, accepted_types=list(accepted))
        client.open_conversation(account, conv, unique("consumer"))
        conversations[accepted] = (account, conv)
    contents = {kind: make() for kind, make in CONTENT_OF.items()}
    answers = {}
    for kind, accepted in type_cells():
        account, conv = conversations[accepted]
        r = client.upload(account, conv, contents[kind], filename="photo.jpg", content_type="image/jpeg")
        answers[kind, accepted] = (r.status_code, None if r.status_code == 202 else r.json()["error"]["code"])
    wrong = {cell: answer for cell, answer in answers.items() if answer != expected_for_type(*cell)}
    assert not wrong, wrong
