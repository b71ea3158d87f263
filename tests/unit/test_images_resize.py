"""Resizer behaviour: the account's size, never upscaled, a small preview; through the whole path."""

import pytest
from PIL import Image

from shared.images import ImageLimits, ImageRejected, resize_image, sanitize_image
from shared.images import resize as resize_module
from shared.images import sanitize as sanitize_module
from shared.images.decoding import decode_first_frame, open_trusted
from tests import imagecorpus as corpus
from tests.imagecorpus import PIXEL_ONLY_PNG_CHUNKS, close, jpeg_markers, opened, png_chunk_types

LIMITS = ImageLimits()


def pipeline(data: bytes, content_type: str, max_dimension: int, hint: bool = True):
    """sanitizer then resizer, as the services chain them (with or without the size hint)."""
    sanitized = sanitize_image(data, content_type, LIMITS, max_dimension if hint else None)
    return resize_image(sanitized.data, sanitized.content_type, max_dimension)


@pytest.mark.parametrize("hint", [True, False])
@pytest.mark.parametrize(
    ("data", "content_type", "max_dimension", "expected_size"),
    [
        (corpus.jpeg_12mp, "image/jpeg", 800, (600, 800)),  # stored sideways, EXIF orientation 6
        (corpus.jpeg_12mp, "image/jpeg", 400, (300, 400)),
        (corpus.jpeg_4mp, "image/jpeg", 400, (400, 300)),
        (corpus.png_2mp, "image/png", 400, (400, 300)),
        (corpus.rgba_png, "image/png", 400, (400, 300)),
        (corpus.grayscale_jpeg, "image/jpeg", 400, (400, 280)),
        (lambda: corpus.animated_gif(size=(900, 450)), "image/gif", 400, (400, 200)),
        (corpus.line_800x1, "image/png", 400, (400, 1)),
    ],
)
def test_longer_side_becomes_the_accounts_dimension_with_aspect_kept(
    data, content_type, max_dimension, expected_size, hint
):
    result = pipeline(data(), content_type, max_dimension, hint)
    image = opened(result.data)
    assert (result.width, result.height) == image.size == expected_size
    assert result.content_type == content_type
    assert image.format == {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}[content_type]


@pytest.mark.parametrize(
    ("data", "content_type", "size"),
    [
        (lambda: corpus.to_jpeg(corpus.photo(320, 240)), "image/jpeg", (320, 240)),
        (corpus.palette_transparent_png, "image/png", (120, 80)),
        (corpus.animated_gif, "image/gif", (480, 360)),
        (lambda: corpus.one_pixel("png"), "image/png", (1, 1)),
        (corpus.line_800x1, "image/png", (800, 1)),
    ],
)
def test_small_images_are_never_upscaled(data, content_type, size):
    result = pipeline(data(), content_type, 800)
    assert (result.width, result.height) == opened(result.data).size == size


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (corpus.jpeg_12mp, "image/jpeg"),
        (corpus.png_2mp, "image/png"),
        (corpus.palette_transparent_png, "image/png"),
        (corpus.animated_gif, "image/gif"),
        (lambda: corpus.one_pixel("gif"), "image/gif"),
        (corpus.line_800x1, "image/png"),
    ],
)
def test_preview_is_a_small_jpeg(data, content_type):
    result = pipeline(data(), content_type, 800)
    preview = opened(result.preview)
    assert preview.format == "JPEG"
    assert len(result.preview) <= 30 * 1024
    assert max(preview.size) == min(64, max(result.width, result.height))
    assert not set(jpeg_markers(result.preview)) & (set(range(0xE1, 0xF0)) | {0xFE})


def test_preview_shows_transparent_areas_as_white():
    result = pipeline(corpus.palette_transparent_png(), "image/png", 800)
    assert close(opened(result.preview).getpixel((5, 5)), (255, 255, 255), 10)


def test_final_jpeg_is_progressive_and_clean():
    result = pipeline(corpus.jpeg_with_all_metadata(), "image/jpeg", 400, hint=False)
    image = opened(result.data)
    assert image.info.get("progressive") or image.info.get("progression")
    assert not set(jpeg_markers(result.data)) & (set(range(0xE1, 0xF0)) | {0xFE})
    assert len(image.getexif()) == 0


def test_final_png_is_clean_after_a_real_resize():
    result = pipeline(corpus.png_with_text_chunks(), "image/png", 100, hint=False)
    assert set(png_chunk_types(result.data)) <= PIXEL_ONLY_PNG_CHUNKS


def test_downscaled_palette_png_keeps_transparency():
    result = pipeline(corpus.palette_transparent_png(), "image/png", 60)
    image = opened(result.data).convert("RGBA")
    assert image.size == (60, 40)
    assert image.getpixel((3, 3))[3] == 0
    assert close(image.getpixel((55, 5)), (255, 0, 0, 255), 10)


def test_downscaled_transparent_gif_keeps_transparency():
    source = Image.open(__import__("io").BytesIO(corpus.palette_transparent_png()))
    gif = corpus.to_gif(source.resize((240, 160)), transparency=corpus.TRANSPARENT_INDEX)
    image = opened(pipeline(gif, "image/gif", 120).data).convert("RGBA")
    assert image.size == (120, 80)
    assert image.getpixel((3, 3))[3] == 0
    assert close(image.getpixel((115, 5)), (255, 0, 0, 255), 10)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_survives_the_whole_path(orientation):
    upright = corpus.marked((1200, 800))
    result = pipeline(corpus.oriented_jpeg(orientation, upright), "image/jpeg", 400, hint=orientation % 2 == 0)
    image = opened(result.data)
    assert image.size == (400, 267)
    for quadrant, colour in corpus.QUADRANTS.items():
        assert close(corpus.quadrant_colour(image, quadrant), colour), (orientation, quadrant)


def test_resizer_also_opens_its_input_with_the_allowlist_and_limits():
    with pytest.raises(ImageRejected) as caught:
        resize_image(corpus.png_header_bomb(), "image/png", 800)
    assert caught.value.reason == "image_too_large"
    with pytest.raises(ImageRejected) as caught:
        resize_image(corpus.to_png(corpus.photo(10, 10)), "image/jpeg", 800)
    assert caught.value.reason == "unsupported_type"
    with pytest.raises(ImageRejected) as caught:
        resize_image(corpus.truncated_jpeg(), "image/jpeg", 800)
    assert caught.value.reason == "corrupt_image"


def test_input_that_did_not_come_from_the_sanitizer_is_re_encoded_not_passed_through():
    data = corpus.jpeg_with_all_metadata()  # 640x480: already under 800
    result = resize_image(data, "image/jpeg", 800)
    assert (result.width, result.height) == (640, 480)
    assert not set(jpeg_markers(result.data)) & (set(range(0xE1, 0xF0)) | {0xFE})
    assert corpus.CAMERA_MAKE.encode() not in result.data


# ---------------------------------------------------------------- speed: reduced-scale decode, no needless re-encode


@pytest.mark.parametrize(
    ("at_least", "decoded"),
    [
        (None, (4000, 3000)),  # no target: full size
        (2000, (2000, 1500)),  # 1/2
        (800, (1000, 750)),  # 1/4: the smallest DCT scale whose longer side is still >= 800
        (400, (500, 375)),  # 1/8, the smallest libjpeg offers
    ],
)
def test_a_jpeg_is_decoded_at_the_smallest_dct_scale_that_still_covers_the_target(at_least, decoded):
    image = decode_first_frame(open_trusted(corpus.jpeg_12mp(), "image/jpeg", LIMITS), at_least=at_least)
    assert image.size == decoded
    assert image.getbbox() is not None  # real pixels were decoded, not just a header


def decoded_sizes(monkeypatch, module) -> list[tuple[int, int]]:
    """Record the size of every frame `module` decodes (spying on its decode_first_frame)."""
    sizes = []

    def spy(image, at_least=None):
        decoded = decode_first_frame(image, at_least)
        sizes.append(decoded.size)
        return decoded

    monkeypatch.setattr(module, "decode_first_frame", spy)
    return sizes


def test_sanitizer_with_a_target_never_decodes_a_12_mp_jpeg_at_full_size(monkeypatch):
    sizes = decoded_sizes(monkeypatch, sanitize_module)
    result = sanitize_image(corpus.jpeg_12mp(), "image/jpeg", LIMITS, 800)
    assert sizes == [(1000, 750)]
    assert (result.width, result.height) == (600, 800)


def test_resizer_decodes_a_12_mp_jpeg_at_reduced_scale(monkeypatch):
    sizes = decoded_sizes(monkeypatch, resize_module)
    result = resize_image(corpus.jpeg_12mp(), "image/jpeg", 800)  # not the sanitizer's output: resized for real
    assert sizes == [(1000, 750)]
    assert (result.width, result.height) == (600, 800)


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (corpus.jpeg_12mp, True),  # the sanitizer already wrote the final 600x800 variant
        (lambda: corpus.to_jpeg(corpus.photo(320, 240)), False),  # small: nothing to resize
        (lambda: corpus.to_jpeg(corpus.photo(320, 240)), True),
    ],
)
def test_sanitizer_output_already_within_the_size_is_kept_byte_for_byte(monkeypatch, data, hint):
    sanitized = sanitize_image(data(), "image/jpeg", LIMITS, 800 if hint else None)
    sizes = decoded_sizes(monkeypatch, resize_module)

    result = resize_image(sanitized.data, "image/jpeg", 800)

    assert result.data == sanitized.data  # no decode + re-encode round trip (CPU and quality)
    assert (result.width, result.height) == (sanitized.width, sanitized.height)
    assert len(sizes) == 1 and max(sizes[0]) <= 64 * 2  # the only decode is the preview's, at reduced scale
    assert max(opened(result.preview).size) == 64
