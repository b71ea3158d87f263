"""Sanitizer behaviour: what comes out carries nothing but upright pixels."""

import io
import zipfile

import pytest
from PIL import Image

from shared.images import ImageLimits, ImageRejected, sanitize_image
from tests import imagecorpus as corpus
from tests.imagecorpus import (
    METADATA_INFO_KEYS,
    PIXEL_ONLY_PNG_CHUNKS,
    close,
    jpeg_markers,
    opened,
    png_chunk_types,
)

LIMITS = ImageLimits()
APP1_TO_APP15_AND_COM = set(range(0xE1, 0xF0)) | {0xFE}


def rejected(data: bytes, expected_type: str, limits: ImageLimits = LIMITS, **kwargs) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        sanitize_image(data, expected_type, limits, **kwargs)
    return caught.value


# ---------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("target", [None, 800])
def test_every_exif_orientation_comes_out_upright(orientation, target):
    result = sanitize_image(corpus.oriented_jpeg(orientation), "image/jpeg", LIMITS, target)

    image = opened(result.data)
    assert (result.width, result.height) == image.size == corpus.MARKED_SIZE
    for quadrant, colour in corpus.QUADRANTS.items():
        assert close(corpus.quadrant_colour(image, quadrant), colour), (orientation, quadrant)
    assert 0x0112 not in image.getexif()  # no orientation left to apply twice


def test_big_rotated_photo_is_upright_at_reduced_scale():
    # 4000x3000 stored sideways (orientation 6): upright it is portrait.
    result = sanitize_image(corpus.jpeg_12mp(), "image/jpeg", LIMITS, target_max_dimension=800)
    assert (result.width, result.height) == (600, 800)


# ---------------------------------------------------------------- metadata and polyglots


def test_camera_and_gps_tags_and_all_other_jpeg_metadata_are_gone():
    data = corpus.jpeg_with_all_metadata()
    assert corpus.CAMERA_MAKE.encode() in data and corpus.COMMENT in data

    out = sanitize_image(data, "image/jpeg", LIMITS).data

    assert not set(jpeg_markers(out)) & APP1_TO_APP15_AND_COM  # no EXIF/XMP/ICC/IPTC/comment segment
    image = opened(out)
    assert len(image.getexif()) == 0
    assert not METADATA_INFO_KEYS & set(image.info)
    for secret in (corpus.CAMERA_MAKE.encode(), b"Secret", corpus.COMMENT, b"Spy Guy", b"sRGB"):
        assert secret not in out


def test_png_text_chunks_exif_and_icc_are_gone():
    out = sanitize_image(corpus.png_with_text_chunks(), "image/png", LIMITS).data
    assert set(png_chunk_types(out)) <= PIXEL_ONLY_PNG_CHUNKS
    assert b"Secret" not in out and b"secret" not in out


def test_animated_gif_comment_and_loop_extensions_are_gone():
    out = sanitize_image(corpus.animated_gif(), "image/gif", LIMITS).data
    assert corpus.COMMENT not in out and b"NETSCAPE2.0" not in out


def test_jpeg_html_polyglot_loses_its_payload():
    data = corpus.jpeg_html_polyglot()
    out = sanitize_image(data, "image/jpeg", LIMITS).data
    assert b"<script" not in out and b"<html" not in out
    assert out.endswith(b"\xff\xd9")  # nothing after the end of image


def test_png_zip_polyglot_loses_its_payload():
    data = corpus.png_zip_polyglot()
    assert zipfile.is_zipfile(io.BytesIO(data))

    out = sanitize_image(data, "image/png", LIMITS).data

    assert not zipfile.is_zipfile(io.BytesIO(out))
    assert corpus.ZIP_MEMBER.encode() not in out
    png_chunk_types(out)  # asserts nothing follows IEND


@pytest.mark.parametrize("where", ["comment", "trailer"])
def test_eicar_carried_in_a_jpeg_does_not_survive(where):
    data = corpus.jpeg_with_eicar(where)
    assert corpus.EICAR in data
    assert corpus.EICAR not in sanitize_image(data, "image/jpeg", LIMITS).data


# ---------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("data", "claimed"),
    [
        (corpus.to_png(corpus.photo(32, 32)), "image/jpeg"),
        (corpus.to_jpeg(corpus.photo(32, 32)), "image/gif"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "image/png"),
        (b"BM" + b"\x00" * 64, "image/jpeg"),
        (b"", "image/jpeg"),
    ],
)
def test_content_that_is_not_the_claimed_type_is_unsupported(data, claimed):
    assert rejected(data, claimed).reason == "unsupported_type"


def test_phone_jpeg_with_a_multi_picture_index_is_accepted_as_jpeg():
    main, second = corpus.photo(320, 240), corpus.photo(160, 120, seed=9)
    out = io.BytesIO()
    main.save(out, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(out.getvalue())).format == "MPO"

    result = sanitize_image(out.getvalue(), "image/jpeg", LIMITS)

    assert (result.width, result.height) == (320, 240)
    assert opened(result.data).format == "JPEG"


# ---------------------------------------------------------------- bombs and broken files


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (corpus.png_header_bomb(60000, 60000), "image/png"),
        (corpus.png_header_bomb(8000, 8000), "image/png"),  # 64 MP: under Pillow's own bomb guard
        (corpus.gif_header_bomb(), "image/gif"),
        (corpus.jpeg_header_bomb(), "image/jpeg"),
    ],
)
def test_header_bombs_are_refused_before_any_pixel_is_decoded(data, content_type):
    # The pixel data behind these headers is junk: had the decoder started, the
    # answer would be corrupt_image (or a MemoryError), not image_too_large.
    error = rejected(data, content_type)
    assert error.reason == "image_too_large"


def test_pillow_bomb_warning_is_an_error_even_under_a_generous_pixel_limit():
    # 100 MP is over Pillow's MAX_IMAGE_PIXELS (~89.5 MP), so Image.open only *warns*
    # (DecompressionBombWarning; it raises from 2x that). Our own limit is out of the way
    # here: the warning itself must stop the file, before the junk IDAT is decoded
    # (which would end as corrupt_image).
    data = corpus.png_header_bomb(10000, 10000)
    error = rejected(data, "image/png", ImageLimits(max_pixels=10**9))
    assert error.reason == "image_too_large"
    assert "DecompressionBomb" in error.detail or "decompression bomb" in error.detail.lower()


def test_the_pixel_limit_is_the_configured_one():
    data = corpus.to_jpeg(corpus.photo(100, 100))
    assert rejected(data, "image/jpeg", ImageLimits(max_pixels=9_999)).reason == "image_too_large"
    assert sanitize_image(data, "image/jpeg", ImageLimits(max_pixels=10_000)).width == 100


def test_too_many_frames_are_refused():
    error = rejected(corpus.animated_gif(frames=12), "image/gif", ImageLimits(max_frames=5))
    assert error.reason == "image_too_large"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (corpus.truncated_jpeg(), "image/jpeg"),
        (corpus.truncated_png(), "image/png"),
        (corpus.truncated(corpus.to_gif(corpus.photo(320, 240))), "image/gif"),
        (b"\xff\xd8\xff\xe0" + b"\x13" * 500, "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "image/png"),
    ],
)
def test_truncated_and_corrupt_files_are_refused(data, content_type):
    assert rejected(data, content_type).reason == "corrupt_image"


def test_truncated_jpeg_is_refused_at_reduced_scale_too():
    assert rejected(corpus.truncated_jpeg(), "image/jpeg", target_max_dimension=100).reason == "corrupt_image"


# ---------------------------------------------------------------- modes and shapes


def test_animated_gif_becomes_its_first_frame_as_a_static_gif():
    result = sanitize_image(corpus.animated_gif(), "image/gif", LIMITS)
    image = opened(result.data)
    assert image.format == "GIF"
    assert getattr(image, "n_frames", 1) == 1
    assert close(image.convert("RGB").getpixel((5, 5)), corpus.FIRST_FRAME_COLOUR, 10)


def test_cmyk_jpeg_becomes_rgb_with_the_right_colours():
    result = sanitize_image(corpus.cmyk_jpeg(), "image/jpeg", LIMITS)
    image = opened(result.data)
    assert image.mode == "RGB"
    for quadrant, colour in corpus.QUADRANTS.items():
        assert close(corpus.quadrant_colour(image, quadrant), colour), quadrant


@pytest.mark.parametrize("target", [None, 800])
def test_a_non_srgb_icc_profile_is_applied_to_the_pixels_then_dropped(target):
    data = corpus.jpeg_with_swapped_primaries()
    assert opened(data).info["icc_profile"] == corpus.red_green_swapped_icc()

    out = sanitize_image(data, "image/jpeg", LIMITS, target).data

    image = opened(out)
    assert "icc_profile" not in image.info and 0xE2 not in jpeg_markers(out)  # no APP2 (ICC) left
    assert close(image.getpixel((10, 10)), corpus.SWAPPED_PROFILE_SRGB, 8), image.getpixel((10, 10))


def test_16_bit_grayscale_png_becomes_8_bit_with_its_tones_scaled_not_clipped():
    image = opened(sanitize_image(corpus.png_16bit_gray(), "image/png", LIMITS).data)
    assert image.mode == "L"
    assert [image.getpixel((x, 10)) for x in (0, 64, 128, 255)] == pytest.approx([0, 64, 128, 255], abs=1)


def test_16_bit_rgb_png_becomes_8_bit_rgb():
    image = opened(sanitize_image(corpus.png_16bit_rgb(), "image/png", LIMITS).data)
    assert image.mode == "RGB"
    assert image.getpixel((3, 3)) == (0xC0, 0x40, 0x80)


def test_palette_png_keeps_its_transparency():
    image = opened(sanitize_image(corpus.palette_transparent_png(), "image/png", LIMITS).data).convert("RGBA")
    width, height = image.size
    assert image.getpixel((5, 5))[3] == 0  # transparent left half
    assert image.getpixel((width - 5, 5)) == (255, 0, 0, 255)
    assert image.getpixel((width - 5, height - 5)) == (0, 0, 255, 255)


def test_grayscale_jpeg_stays_grayscale():
    result = sanitize_image(corpus.grayscale_jpeg(), "image/jpeg", LIMITS, target_max_dimension=800)
    assert opened(result.data).mode == "L"
    assert (result.width, result.height) == (800, 560)


@pytest.mark.parametrize(("kind", "content_type"), [("jpeg", "image/jpeg"), ("png", "image/png"), ("gif", "image/gif")])
def test_one_pixel_images_are_processed(kind, content_type):
    result = sanitize_image(corpus.one_pixel(kind), content_type, LIMITS, target_max_dimension=800)
    assert (result.width, result.height) == (1, 1)
    assert close(opened(result.data).convert("RGB").getpixel((0, 0)), (10, 120, 250), 12)


def test_800x1_line_is_processed():
    result = sanitize_image(corpus.line_800x1(), "image/png", LIMITS, target_max_dimension=400)
    assert (result.width, result.height) == (400, 1)


def test_rgba_png_keeps_alpha():
    image = opened(sanitize_image(corpus.rgba_png(), "image/png", LIMITS, target_max_dimension=800).data)
    assert image.mode == "RGBA" and image.size == (800, 600)
    assert image.getpixel((400, 1))[3] < 10 and image.getpixel((400, 598))[3] > 245  # vertical alpha ramp


def test_sanitized_variant_keeps_the_type_family():
    for data, content_type, pillow_format in [
        (corpus.jpeg_4mp(), "image/jpeg", "JPEG"),
        (corpus.png_with_text_chunks(), "image/png", "PNG"),
        (corpus.animated_gif(), "image/gif", "GIF"),
    ]:
        result = sanitize_image(data, content_type, LIMITS)
        assert result.content_type == content_type
        assert opened(result.data).format == pillow_format


def test_refuses_to_work_if_pillow_protections_were_switched_off_process_wide(monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError):
        sanitize_image(corpus.truncated_jpeg(), "image/jpeg", LIMITS)
