"""One photo through all five services on the embedded stack."""

from __future__ import annotations

import io

from PIL import Image

from shared.contract.topics import MESSAGE_PUBLISHED
from tests.support import unique

IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")


def camera_photo(width: int = 3000, height: int = 2000, orientation: int = 6) -> bytes:
    """A photo-like JPEG as a phone writes it: sideways pixels + EXIF orientation, GPS and camera tags."""
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 40)
    img = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "PhoneModel X"  # Model
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 12.5), 3: "E", 4: (4.0, 53.0, 41.0)}  # GPS IFD
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def test_photo_travels_the_whole_pipeline(client):
    account, conversation, consumer = unique("acct"), unique("conv"), unique("consumer")
    client.enable_account(account)
    client.open_conversation(account, conversation, consumer)
    original = camera_photo()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825), "the test photo must carry GPS tags"

    r = client.upload(account, conversation, original, caption="Here is the screenshot")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "uploaded" and body["status_url"] == f"/v1/files/{body['file_id']}"
    file_id = body["file_id"]

    status = client.wait_status(file_id, account)
    assert status["status"] == "published", status

    messages = client.read_topic(MESSAGE_PUBLISHED, lambda e: e.file_id == file_id)
    assert len(messages) == 1
    content = messages[0].content
    assert content.caption == "Here is the screenshot"
    assert (content.width, content.height) == (533, 800)
    assert content.download_path == f"/v1/files/{file_id}/content"

    r = client.download(file_id, account)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "private" in r.headers["cache-control"]
    photo = Image.open(io.BytesIO(r.content))
    assert photo.size == (533, 800), "orientation 6 applied, longer side 800"
    assert not photo.getexif(), "no EXIF at all (GPS, camera, orientation) in what the consumer gets"
    assert "exif" not in photo.info and "icc_profile" not in photo.info

    # Encrypted at rest: nothing under the data folder holds the photo's bytes or looks like an image.
    # The three variants are files of the data folder's S3 tree, so the scan below is not vacuous.
    bucket_dir = client.data_dir / "s3" / client.env.get("FS_S3_BUCKET", "fileshare")
    file_dir = bucket_dir / account / consumer / conversation / file_id
    stored = client.all_stored_files()
    for variant in ("original", "sanitized", "final"):
        blob = file_dir / variant
        assert blob.is_file() and blob.stat().st_size > 0, f"{variant} not stored at {blob}"
        assert blob in stored, f"{blob} escapes the scan below"
    probe = original[len(original) // 2 : len(original) // 2 + 64]
    for path in stored:
        data = path.read_bytes()
        assert not data.startswith(IMAGE_SIGNATURES), f"{path} is a plaintext image"
        assert probe not in data, f"{path} contains the original's bytes"
        assert r.content[1000:1064] not in data, f"{path} contains the final image's bytes"
