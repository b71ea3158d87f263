"""HEIC/HEIF and WebP photos from phones: decoded under the same limits as the others, upright,
without any metadata, written as JPEG (PNG when something is transparent), first picture only."""

import subprocess
import sys

import pytest

from shared.images import ImageLimits, ImageRejected, ImageWorkerPool, resize_image, sanitize_image, sniff_content_type
from shared.images.formats import SNIFF_BYTES
from tests import imagecorpus as corpus
from tests import phonecorpus as phone
from tests.imagecorpus import METADATA_INFO_KEYS, close, jpeg_markers, opened

LIMITS = ImageLimits()
APP1_TO_APP15_AND_COM = set(range(0xE1, 0xF0)) | {0xFE}


def rejected(data: bytes, expected_type: str, limits: ImageLimits = LIMITS, **kwargs) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        sanitize_image(data, expected_type, limits, **kwargs)
    return caught.value


def assert_upright(image) -> None:
    assert image.size == corpus.MARKED_SIZE
    for quadrant, colour in corpus.QUADRANTS.items():
        assert close(corpus.quadrant_colour(image, quadrant), colour), quadrant


def assert_no_metadata(data: bytes) -> None:
    image = opened(data)
    assert len(image.getexif()) == 0
    assert not METADATA_INFO_KEYS & set(image.info)
    for secret in (phone.AUTHOR, phone.XMP_AUTHOR, corpus.CAMERA_MAKE, corpus.CAMERA_MODEL):
        assert secret.encode() not in data
    if image.format == "JPEG":
        assert not set(jpeg_markers(data)) & APP1_TO_APP15_AND_COM  # no EXIF/XMP/ICC/comment segment


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (phone.oriented_heic(1), "image/heic"),
        (phone.heic_sequence(), "image/heic"),
        (phone.webp_with_alpha(), "image/webp"),
        (phone.animated_webp(), "image/webp"),
    ],
)
def test_phone_formats_are_recognised_by_content(data, content_type):
    assert sniff_content_type(data[:SNIFF_BYTES]) == content_type


# ---------------------------------------------------------------- HEIC


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("target", [None, 800])
def test_a_heic_comes_out_as_an_upright_jpeg_without_its_exif_gps_or_author(orientation, target):
    data = phone.oriented_heic(orientation)
    assert phone.AUTHOR.encode() in data and phone.XMP_AUTHOR.encode() in data  # the threat is in the file

    result = sanitize_image(data, "image/heic", LIMITS, target)

    assert result.content_type == "image/jpeg"
    image = opened(result.data)
    assert image.format == "JPEG" and (result.width, result.height) == image.size
    assert_upright(image)
    assert_no_metadata(result.data)


def test_a_heic_with_transparency_becomes_a_png_keeping_its_alpha():
    result = sanitize_image(phone.heic_with_alpha(), "image/heic", LIMITS, 800)
    image = opened(result.data)
    assert (result.content_type, image.format, image.mode) == ("image/png", "PNG", "RGBA")
    assert image.getpixel((5, 40))[3] == 0  # the transparent half
    assert image.getpixel((90, 40))[3] == 255  # the opaque half
    assert abs(image.getpixel((90, 5))[3] - 128) <= 2  # the half-transparent band
    assert_no_metadata(result.data)


def test_a_heic_whose_alpha_channel_is_all_opaque_is_a_jpeg():
    result = sanitize_image(phone.heic_with_opaque_alpha(), "image/heic", LIMITS)
    assert (result.content_type, opened(result.data).mode) == ("image/jpeg", "RGB")


def test_a_heic_holding_several_pictures_becomes_its_primary_one():
    for primary in (0, 1):
        result = sanitize_image(phone.heic_sequence(primary_index=primary), "image/heic", LIMITS)
        image = opened(result.data)
        assert getattr(image, "n_frames", 1) == 1
        assert close(image.convert("RGB").getpixel((10, 10)), phone.SEQUENCE_COLOURS[primary], 12), primary


def test_heic_bombs_are_refused_from_the_header_before_libheif_decodes_a_pixel():
    # Declared 10000x10000 (under libheif's own limit), showing a small crop: refused by ours.
    assert rejected(phone.heic_declaring(10_000, 10_000), "image/heic").reason == "image_too_large"
    # Declared beyond what libheif itself accepts.
    assert rejected(phone.heic_declaring(60_000, 60_000), "image/heic").reason == "image_too_large"


def test_the_pixel_and_frame_limits_are_the_configured_ones_for_heic():
    data = phone.heic(corpus.photo(100, 100))
    assert rejected(data, "image/heic", ImageLimits(max_pixels=9_999)).reason == "image_too_large"
    assert sanitize_image(data, "image/heic", ImageLimits(max_pixels=10_000)).width == 100
    assert rejected(phone.heic_sequence(), "image/heic", ImageLimits(max_frames=2)).reason == "image_too_large"
    assert sanitize_image(phone.heic_sequence(), "image/heic", ImageLimits(max_frames=3)).width == 64


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.9, 0.99])
def test_a_truncated_heic_is_corrupt(keep):
    data = phone.heic(corpus.photo(320, 240))  # the coded picture is the file's last box
    assert rejected(corpus.truncated(data, keep), "image/heic").reason == "corrupt_image"


def test_a_heic_header_with_nothing_after_it_is_corrupt():
    assert rejected(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200), "image/heic").reason == (
        "corrupt_image"
    )


# ---------------------------------------------------------------- WebP


def test_a_webp_with_alpha_becomes_a_png_keeping_its_alpha():
    result = sanitize_image(phone.webp_with_alpha(), "image/webp", LIMITS, 800)
    image = opened(result.data)
    assert (result.content_type, image.format, image.mode) == ("image/png", "PNG", "RGBA")
    assert (image.getpixel((5, 40))[3], image.getpixel((90, 40))[3], image.getpixel((90, 5))[3]) == (0, 255, 128)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_webp_comes_out_as_an_upright_jpeg_without_its_exif_or_xmp(orientation):
    data = phone.oriented_webp(orientation)
    assert phone.AUTHOR.encode() in data and phone.XMP_AUTHOR.encode() in data

    result = sanitize_image(data, "image/webp", LIMITS, 800)

    assert result.content_type == "image/jpeg"
    assert_upright(opened(result.data))
    assert_no_metadata(result.data)


def test_an_animated_webp_becomes_its_first_frame_as_a_still_jpeg():
    result = sanitize_image(phone.animated_webp(), "image/webp", LIMITS)
    image = opened(result.data)
    assert (result.content_type, image.format, getattr(image, "n_frames", 1)) == ("image/jpeg", "JPEG", 1)
    assert close(image.getpixel((5, 5)), corpus.FIRST_FRAME_COLOUR, 12)


def test_webp_limits_pixels_frames_and_broken_files():
    assert rejected(phone.webp_declaring(8_000, 8_000), "image/webp").reason == "image_too_large"  # 64 M > 50 M
    assert rejected(phone.webp_declaring(16_000, 16_000), "image/webp").reason == "image_too_large"
    assert rejected(phone.animated_webp(frames=6), "image/webp", ImageLimits(max_frames=5)).reason == "image_too_large"
    for keep in (0.3, 0.7):
        assert rejected(corpus.truncated(phone.animated_webp(), keep), "image/webp").reason == "corrupt_image"
    assert rejected(b"RIFF\x00\x01\x00\x00WEBPVP8 " + bytes(100), "image/webp").reason == "corrupt_image"


# ---------------------------------------------------------------- what the pipeline sees


@pytest.mark.parametrize(
    ("data", "claimed"),
    [
        (phone.oriented_heic(1), "image/jpeg"),
        (phone.webp_with_alpha(), "image/png"),
        (corpus.to_jpeg(corpus.photo(8, 8)), "image/heic"),
        (corpus.to_png(corpus.photo(8, 8)), "image/webp"),
    ],
)
def test_content_that_is_not_the_claimed_type_is_unsupported(data, claimed):
    assert rejected(data, claimed).reason == "unsupported_type"


@pytest.mark.parametrize(
    ("data", "content_type", "published"),
    [
        (phone.oriented_heic(6, corpus.photo(1600, 1200)), "image/heic", "image/jpeg"),
        (phone.webp_with_alpha(), "image/webp", "image/png"),
    ],
)
def test_the_resizer_takes_the_sanitized_variant_as_its_output_type(data, content_type, published):
    sanitized = sanitize_image(data, content_type, LIMITS, 800)
    final = resize_image(sanitized.data, sanitized.content_type, 800)
    assert final.content_type == sanitized.content_type == published
    assert max(final.width, final.height) <= 800 and opened(final.data).format == published.split("/")[1].upper()


async def test_heic_and_webp_are_decoded_in_the_killable_workers():
    async with ImageWorkerPool(workers=1, timeout_seconds=30) as pool:
        heic = await pool.run(sanitize_image, phone.oriented_heic(6), "image/heic", LIMITS, 800)
        webp = await pool.run(sanitize_image, phone.webp_with_alpha(), "image/webp", LIMITS, 800)
        with pytest.raises(ImageRejected) as caught:
            await pool.run(sanitize_image, phone.heic_declaring(10_000, 10_000), "image/heic", LIMITS, 800)
    assert (heic.content_type, webp.content_type, caught.value.reason) == ("image/jpeg", "image/png", "image_too_large")
    assert_upright(opened(heic.data))


def test_importing_the_image_code_registers_no_heif_decoder_in_pillow():
    # The HEIF plugin joins Pillow's registry in the process that decodes (a worker), when it
    # first decodes a HEIC; a service importing shared.images keeps Pillow as it was.
    code = "import shared.images, shared.documents; from PIL import Image; Image.init(); print('HEIF' in Image.OPEN)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
