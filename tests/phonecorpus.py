"""Phone-format test photos made in code: HEIC with pillow-heif (as an iPhone writes them: pixels
stored as the sensor saw them, an `irot`/`imir` transform, the EXIF orientation, GPS and the
author), WebP with Pillow (alpha, animation, EXIF). Nothing is downloaded.

pillow-heif's encoder is called directly (from_pillow/from_bytes), so the tests never register
its Pillow plugin: the code under test must do that itself.
"""

from __future__ import annotations

import io

import pillow_heif
from PIL import Image

from tests import imagecorpus as corpus

AUTHOR = "Jane Q. Photographer"
XMP_AUTHOR = "Xavier Metadata"
SEQUENCE_COLOURS = ((200, 20, 20), (20, 200, 20), (20, 20, 200))


def author_exif(orientation: int = 1) -> Image.Exif:
    exif = corpus.camera_exif(orientation)
    exif[0x013B] = AUTHOR  # Artist
    exif[0x8298] = f"(c) {AUTHOR}"  # Copyright
    return exif


def author_xmp() -> bytes:
    return (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator><rdf:Seq><rdf:li>'
        + XMP_AUTHOR.encode()
        + b"</rdf:li></rdf:Seq></dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>"
    )


def heic(image: Image.Image, **params) -> bytes:
    """HEIC of `image` as it is (pixels as given); params go to the encoder (exif, xmp, quality...)."""
    out = io.BytesIO()
    pillow_heif.from_pillow(image).save(out, quality=90, **params)
    return out.getvalue()


def oriented_heic(orientation: int, upright: Image.Image | None = None) -> bytes:
    """The upright picture stored turned as a sensor saw it, with EXIF orientation N (libheif's
    encoder writes it as the HEIF transform too), the camera's GPS, the author in EXIF and XMP."""
    stored = corpus.stored_for_orientation(upright if upright is not None else corpus.marked(), orientation)
    return heic(stored, exif=author_exif(orientation).tobytes(), xmp=author_xmp())


def transparent_rgba(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """Opaque green on the right, a fully transparent left half, a half-transparent band."""
    image = Image.new("RGBA", size, (30, 200, 40, 255))
    image.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    image.paste((220, 30, 30, 128), (size[0] // 2, 0, size[0], size[1] // 4))
    return image


def heic_with_alpha() -> bytes:
    return heic(transparent_rgba())


def heic_with_opaque_alpha() -> bytes:
    """An alpha channel that is 255 everywhere: nothing is transparent."""
    return heic(corpus.marked().convert("RGBA"))


def heic_sequence(primary_index: int = 1) -> bytes:
    """Three pictures of distinct colours in one file; the one shown is `primary_index`."""
    pictures = pillow_heif.HeifFile()
    for colour in SEQUENCE_COLOURS:
        pictures.add_from_pillow(Image.new("RGB", (64, 48), colour))
    out = io.BytesIO()
    pictures.save(out, quality=90, primary_index=primary_index)
    return out.getvalue()


def heic_declaring(width: int, height: int) -> bytes:
    """A small HEIC whose image-spatial-extents (`ispe`) boxes claim width x height: what a
    decompression bomb's header says before any pixel is decoded."""
    data = bytearray(heic(corpus.photo(64, 48)))
    at = data.find(b"ispe")
    while at != -1:
        data[at + 8 : at + 16] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
        at = data.find(b"ispe", at + 4)
    return bytes(data)


def webp(image: Image.Image, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, "WEBP", **params)
    return out.getvalue()


def webp_with_alpha() -> bytes:
    return webp(transparent_rgba(), lossless=True)


def oriented_webp(orientation: int) -> bytes:
    stored = corpus.stored_for_orientation(corpus.marked(), orientation)
    return webp(stored, quality=90, exif=author_exif(orientation).tobytes(), xmp=author_xmp())


def animated_webp(frames: int = 6, size: tuple[int, int] = (120, 90)) -> bytes:
    """An animation whose first frame is corpus.FIRST_FRAME_COLOUR."""
    images = [
        Image.new("RGB", size, corpus.FIRST_FRAME_COLOUR if n == 0 else (20, 20 + 30 * n, 200)) for n in range(frames)
    ]
    out = io.BytesIO()
    images[0].save(out, "WEBP", save_all=True, append_images=images[1:], duration=80, loop=0, quality=90)
    return out.getvalue()


def webp_declaring(width: int, height: int) -> bytes:
    """A lossless WebP (VP8L) whose header claims width x height (at most 16384 each)."""
    data = bytearray(webp(Image.new("RGB", (8, 8), (1, 2, 3)), lossless=True))
    assert data[12:16] == b"VP8L", "a simple lossless file: one VP8L chunk"
    bits = int.from_bytes(data[21:25], "little")
    bits = (bits & ~0xFFFFFFF) | (width - 1) | ((height - 1) << 14)
    data[21:25] = bits.to_bytes(4, "little")
    return bytes(data)
