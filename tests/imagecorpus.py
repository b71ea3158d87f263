"""Test images generated in code, shared by the unit tests and bench/images.py.

Photos are photo-like (smooth gradients, shapes, sensor-like noise) so that codecs
and resamplers do realistic work; hostile files are crafted byte by byte.
"""

from __future__ import annotations

import io
import os
import random
import signal
import struct
import time
import zipfile
import zlib
from functools import cache

from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFilter

# The EICAR anti-virus test string (not a virus; every scanner detects it by design).
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

HTML_PAYLOAD = b"<html><body><script>alert('polyglot')</script></body></html>"
ZIP_MEMBER = "payload.txt"
ZIP_MEMBER_TEXT = b"hidden payload riding on a PNG"

# Quadrant colours of the upright reference picture (top-left, top-right, bottom-left, bottom-right).
QUADRANTS = {
    "top_left": (220, 30, 30),
    "top_right": (30, 200, 40),
    "bottom_left": (30, 50, 220),
    "bottom_right": (235, 220, 40),
}
MARKED_SIZE = (96, 64)  # upright width x height: landscape, so a missed rotation shows in the size


# ---------------------------------------------------------------- pixels


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """An RGB picture with gradients, soft shapes and fine noise: compresses like a photo."""
    rng = random.Random(seed)
    small = (max(1, width // 8), max(1, height // 8))
    red = Image.linear_gradient("L").resize(small)
    green = Image.radial_gradient("L").resize(small)
    blue = Image.linear_gradient("L").rotate(90).resize(small)
    base = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(base)
    for _ in range(12):
        x, y = rng.randrange(small[0]), rng.randrange(small[1])
        r = rng.randrange(1, max(2, min(small) // 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    base = base.filter(ImageFilter.GaussianBlur(1)).resize((width, height), Image.Resampling.BICUBIC)
    grain = Image.effect_noise((width, height), 10).convert("RGB")
    return ImageChops.add(base, grain, scale=1.0, offset=-128)


def marked(size: tuple[int, int] = MARKED_SIZE) -> Image.Image:
    """Upright reference: four solid quadrants, so any rotation or mirror is visible."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width // 2 - 1, height // 2 - 1), fill=QUADRANTS["top_left"])
    draw.rectangle((width // 2, 0, width - 1, height // 2 - 1), fill=QUADRANTS["top_right"])
    draw.rectangle((0, height // 2, width // 2 - 1, height - 1), fill=QUADRANTS["bottom_left"])
    draw.rectangle((width // 2, height // 2, width - 1, height - 1), fill=QUADRANTS["bottom_right"])
    return image


def quadrant_colour(image: Image.Image, quadrant: str) -> tuple[int, int, int]:
    """The colour at the centre of a quadrant of `image` (as RGB)."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    x = width // 4 if quadrant.endswith("left") else 3 * width // 4
    y = height // 4 if quadrant.startswith("top") else 3 * height // 4
    return rgb.getpixel((x, y))


# ---------------------------------------------------------------- encoders


def to_jpeg(image: Image.Image, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=params.pop("quality", 90), **params)
    return out.getvalue()


def to_png(image: Image.Image, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **params)
    return out.getvalue()


def to_gif(image: Image.Image, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, "GIF", **params)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG assembled by hand (valid CRCs), with whatever IDAT payload we choose."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def insert_after_soi(jpeg: bytes, segment: bytes) -> bytes:
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + segment + jpeg[2:]


def padded_jpeg(jpeg: bytes, size: int) -> bytes:
    """`jpeg` with comment segments after SOI, at least `size` - 65536 and at most `size` bytes: an
    upload of that size that the sanitizer (which drops comments) shrinks back."""
    count = max(0, size - len(jpeg)) // (65533 + 4)
    return insert_after_soi(jpeg, jpeg_segment(0xFE, b"c" * 65533) * count)


# ---------------------------------------------------------------- metadata-laden and oriented photos

# Transform that stores an upright picture so that a viewer applying EXIF orientation N
# shows it upright again (EXIF 2.32, tag 0x0112; Pillow's ROTATE_90 is counter-clockwise).
_STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # viewer rotates 90 degrees clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,  # viewer rotates 90 degrees counter-clockwise
}

GPS_IFD = 0x8825
CAMERA_MAKE = "SpyCam Industries"
CAMERA_MODEL = "Model X"


def camera_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = CAMERA_MAKE
    exif[0x0110] = CAMERA_MODEL
    exif[0x0131] = "FirmwareWithSecrets 1.0"
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (52.0, 22.0, 12.5)
    gps[3] = "E"
    gps[4] = (4.0, 53.0, 41.0)
    return exif


def stored_for_orientation(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores for `upright` when it writes EXIF orientation N."""
    method = _STORE_FOR_ORIENTATION[orientation]
    return upright.transpose(method) if method is not None else upright


def oriented_jpeg(orientation: int, upright: Image.Image | None = None) -> bytes:
    """A JPEG whose pixels are stored rotated/mirrored, with EXIF orientation + GPS + camera tags."""
    stored = stored_for_orientation(upright if upright is not None else marked(), orientation)
    return to_jpeg(stored, exif=camera_exif(orientation).tobytes())


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def icc_tag_table(profile: bytes) -> dict[bytes, tuple[int, int]]:
    """An ICC profile's tag table: signature -> (offset, size) (ICC.1:2010 section 7.3)."""
    (count,) = struct.unpack(">I", profile[128:132])
    entries = (struct.unpack(">4sII", profile[132 + 12 * n : 144 + 12 * n]) for n in range(count))
    return {signature: (offset, size) for signature, offset, size in entries}


def red_green_swapped_icc() -> bytes:
    """A valid non-sRGB RGB profile: sRGB with its red and green primaries (rXYZ/gXYZ tag
    entries) exchanged, so the value stored in the red channel is displayed as green and
    vice versa. Colour-managed, stored (200, 100, 50) is sRGB (100, 200, 50)."""
    profile = bytearray(srgb_icc())
    table = icc_tag_table(bytes(profile))
    for n in range(len(table)):
        entry = 132 + 12 * n
        signature = bytes(profile[entry : entry + 4])
        if signature in (b"rXYZ", b"gXYZ"):
            other = b"gXYZ" if signature == b"rXYZ" else b"rXYZ"
            profile[entry + 4 : entry + 12] = struct.pack(">II", *table[other])
    return bytes(profile)


SWAPPED_PROFILE_STORED = (200, 100, 50)  # what the file's pixels hold
SWAPPED_PROFILE_SRGB = (100, 200, 50)  # what they mean under red_green_swapped_icc()


def jpeg_with_swapped_primaries(size: tuple[int, int] = (64, 48)) -> bytes:
    return to_jpeg(Image.new("RGB", size, SWAPPED_PROFILE_STORED), quality=95, icc_profile=red_green_swapped_icc())


XMP_PACKET = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="Secret Photographer"/>'
    b"</rdf:RDF></x:xmpmeta>"
)
COMMENT = b"shot at 12 Secret Street"
IPTC_APP13 = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0c\x1c\x02\x50\x00\x07Spy Guy\x00"


def jpeg_with_all_metadata() -> bytes:
    """EXIF (GPS, camera), XMP, IPTC, a comment and an ICC profile: all must vanish."""
    data = to_jpeg(
        photo(640, 480),
        exif=camera_exif(1).tobytes(),
        icc_profile=srgb_icc(),
        comment=COMMENT,
        xmp=XMP_PACKET,
    )
    return insert_after_soi(data, jpeg_segment(0xED, IPTC_APP13))


def png_with_text_chunks() -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "Secret Photographer")
    info.add_text("Comment", "compressed secret", zip=True)
    info.add_itxt("Description", "international secret")
    return to_png(photo(320, 240), pnginfo=info, exif=camera_exif(1).tobytes(), icc_profile=srgb_icc())


# ---------------------------------------------------------------- polyglots and malware markers


def jpeg_html_polyglot() -> bytes:
    return to_jpeg(photo(320, 240)) + HTML_PAYLOAD


def png_zip_polyglot() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(ZIP_MEMBER, ZIP_MEMBER_TEXT)
    return to_png(photo(320, 240)) + archive.getvalue()


def jpeg_with_eicar(where: str = "comment") -> bytes:
    """EICAR inside a valid JPEG: in a COM segment ("comment") or after the end ("trailer")."""
    image = to_jpeg(photo(320, 240))
    if where == "trailer":
        return image + EICAR
    return insert_after_soi(image, jpeg_segment(0xFE, EICAR))


# ---------------------------------------------------------------- bombs and broken files


def png_header_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """IHDR claims width x height (valid CRC); the IDAT is junk, so only a header check can
    reject it as too large: any decoder that got to the pixels would fail as corrupt instead."""
    return raw_png(width, height, 8, 2, idat=b"\x00" * 64)


def gif_header_bomb(width: int = 65535, height: int = 65535) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0)  # global colour table, 2 entries
    palette = b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    pixels = b"\x02\x02\x44\x01\x00"  # a tiny LZW stream
    return b"GIF89a" + screen + palette + descriptor + pixels + b"\x3b"


def jpeg_header_bomb(width: int = 65500, height: int = 65500) -> bytes:
    """A small real JPEG whose SOF0 frame header is patched to claim width x height."""
    data = bytearray(to_jpeg(photo(64, 64)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def progressive_scan_bomb(scans: int = 60_000, width: int = 4096, height: int = 4096) -> bytes:
    """A valid-looking progressive JPEG (16.7 MP, under the pixel limit, ~2.5 MB) whose AC scan
    is repeated `scans` times. Each 42-byte scan makes libjpeg walk all 262144 blocks again
    (one EOB run per 16384 blocks), so decoding takes about a minute (libjpeg-turbo #284):
    only a time limit on the decoding process stops it."""
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    assert blocks % 16384 == 0
    quant = jpeg_segment(0xDB, b"\x00" + b"\x01" * 64)
    frame = jpeg_segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")  # SOF2, grey
    dc_table = jpeg_segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")  # '0' -> DC diff 0
    ac_table = jpeg_segment(0xC4, b"\x10" + bytes([0, 2] + [0] * 14) + b"\x00\xe0")  # '01' -> EOB14 run
    dc_scan = jpeg_segment(0xDA, b"\x01\x01\x00\x00\x00\x00") + b"\x00" * (blocks // 8)
    ac_scan = jpeg_segment(0xDA, b"\x01\x01\x00\x01\x3f\x00") + b"\x40\x00" * (blocks // 16384)
    return b"\xff\xd8" + quant + frame + dc_table + ac_table + dc_scan + ac_scan * scans + b"\xff\xd9"


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    return data[: int(len(data) * keep)]


def truncated_jpeg() -> bytes:
    return truncated(to_jpeg(photo(640, 480)))


def truncated_png() -> bytes:
    return truncated(to_png(photo(640, 480)))


# ---------------------------------------------------------------- awkward but valid images

FIRST_FRAME_COLOUR = (200, 20, 20)


def animated_gif(frames: int = 12, size: tuple[int, int] = (480, 360)) -> bytes:
    """An animation whose first frame is a red field with a moving white disc."""
    pictures = []
    for n in range(frames):
        colour = FIRST_FRAME_COLOUR if n == 0 else (20, 20 + 15 * n % 200, 200)
        frame = Image.new("RGB", size, colour)
        draw = ImageDraw.Draw(frame)
        x = 20 + n * (size[0] - 80) // max(1, frames - 1)
        draw.ellipse((x, size[1] // 2 - 30, x + 60, size[1] // 2 + 30), fill=(255, 255, 255))
        pictures.append(frame.quantize(64))
    out = io.BytesIO()
    pictures[0].save(out, "GIF", save_all=True, append_images=pictures[1:], duration=80, loop=0, comment=COMMENT)
    return out.getvalue()


def cmyk_jpeg() -> bytes:
    return to_jpeg(marked((192, 128)).convert("CMYK"))


def png_16bit_gray(size: tuple[int, int] = (256, 64)) -> bytes:
    """16-bit grayscale ramp: column x has value x * 257 (0..65535)."""
    width, height = size
    row = b"\x00" + b"".join(struct.pack(">H", x * 65535 // (width - 1)) for x in range(width))
    return raw_png(width, height, 16, 0, zlib.compress(row * height))


def png_16bit_rgb(colour: tuple[int, int, int] = (0xC000, 0x4000, 0x8000), size: tuple[int, int] = (64, 48)) -> bytes:
    width, height = size
    row = b"\x00" + struct.pack(">HHH", *colour) * width
    return raw_png(width, height, 16, 2, zlib.compress(row * height))


TRANSPARENT_INDEX = 0


def palette_transparent_png(size: tuple[int, int] = (120, 80)) -> bytes:
    """Palette PNG: index 0 transparent (left half), opaque red/blue on the right half."""
    width, height = size
    image = Image.new("P", size, TRANSPARENT_INDEX)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0, 0, 0] * 253)
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 2, 0, width - 1, height // 2 - 1), fill=1)
    draw.rectangle((width // 2, height // 2, width - 1, height - 1), fill=2)
    return to_png(image, transparency=TRANSPARENT_INDEX)


def rgba_png(size: tuple[int, int] = (1200, 900)) -> bytes:
    image = photo(*size).convert("RGBA")
    alpha = Image.linear_gradient("L").resize(size)
    image.putalpha(alpha)
    return to_png(image)


def grayscale_jpeg(size: tuple[int, int] = (1000, 700)) -> bytes:
    return to_jpeg(photo(*size).convert("L"))


def one_pixel(kind: str) -> bytes:
    image = Image.new("RGB", (1, 1), (10, 120, 250))
    return {"jpeg": to_jpeg, "png": to_png, "gif": to_gif}[kind](image)


def line_800x1() -> bytes:
    return to_png(Image.linear_gradient("L").resize((800, 1)))


# ---------------------------------------------------------------- the bench corpus


@cache
def jpeg_12mp() -> bytes:
    return to_jpeg(photo(4000, 3000, seed=12), quality=88, exif=camera_exif(6).tobytes())


@cache
def jpeg_4mp() -> bytes:
    return to_jpeg(photo(2310, 1732, seed=4), quality=88)


@cache
def png_2mp() -> bytes:
    return to_png(photo(1633, 1225, seed=2))


@cache
def gif_animated() -> bytes:
    return animated_gif()


BENCH_CORPUS = {
    "jpeg_12mp": ("image/jpeg", jpeg_12mp),
    "jpeg_4mp": ("image/jpeg", jpeg_4mp),
    "png_2mp": ("image/png", png_2mp),
    "gif_animated": ("image/gif", gif_animated),
}


# ---------------------------------------------------------------- inspecting encoded images


def jpeg_markers(data: bytes) -> list[int]:
    """Markers of the segments before the first scan (SOS), e.g. 0xE0 for APP0."""
    assert data[:2] == b"\xff\xd8"
    markers, pos = [], 2
    while pos < len(data):
        assert data[pos] == 0xFF, f"bad segment at {pos}"
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:
            return markers
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return markers


def png_chunk_types(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    kinds, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
        if kinds[-1] == b"IEND":
            assert pos == len(data), "bytes after IEND"
            break
    return kinds


PIXEL_ONLY_PNG_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
METADATA_INFO_KEYS = {"exif", "icc_profile", "xmp", "comment", "photoshop", "iptc", "dpi", "adobe"}


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def close(actual, expected, tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


# ---------------------------------------------------------------- misbehaving tasks for pool tests
# Module level in a light module: they pickle by reference and import fast in a worker.


def worker_pid() -> int:
    return os.getpid()


def hang_forever() -> None:
    while True:  # a decoder stuck in C code looks the same from outside
        time.sleep(60)


def touch_with_pid(path: str) -> None:
    """Write this worker's pid to `path`: the test can wait for "the task is running in a worker"
    instead of guessing with sleeps."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)  # appears complete or not at all


def hang_after_touching(path: str) -> None:
    """Hang like hang_forever, after touch_with_pid(path)."""
    touch_with_pid(path)
    hang_forever()


def finish_when_told(path: str, go: str) -> str:
    """touch_with_pid(path), then return "finished" once the file `go` exists (a decode the test
    can interrupt in the middle)."""
    touch_with_pid(path)
    while not os.path.exists(go):
        time.sleep(0.01)
    return "finished"


def hog_memory(nbytes: int) -> int:
    return len(bytearray(nbytes))


def die_abruptly() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fail_plainly() -> None:
    raise KeyError("not an image problem")
