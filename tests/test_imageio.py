"""bbcodec.imageio: every supported image is read and written back exactly; the rest is refused."""
from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from PIL import PngImagePlugin

from bbcodec import imageio
from bbcodec.errors import BBCodecError, UnsupportedImageError

DATA = Path(__file__).resolve().parent.parent / "data"
SIZES = [(1, 1), (1, 50), (50, 1), (33, 31), (7, 1000), (1000, 7)]  # (height, width)


# -- helpers -------------------------------------------------------------------------------------


def pil_image(mode: str, height: int, width: int, seed: int = 0, entries: int = 37) -> PILImage.Image:
    """A random Pillow image of ``mode`` (palette of ``entries`` random colours for P/PA)."""
    rng = np.random.default_rng(seed)
    if mode == "1":
        bits = rng.integers(0, 2, (height, width), dtype=np.uint8)
        return PILImage.frombytes("1", (width, height), bits.tobytes(), "raw", "1;8")
    high = entries if mode in ("P", "PA") else 256
    pixels = rng.integers(0, high, (height, width, imageio.CHANNELS[mode]), dtype=np.uint8)
    if mode == "PA":
        pixels[..., 1] = rng.integers(0, 256, (height, width), dtype=np.uint8)
    im = PILImage.frombytes(mode, (width, height), pixels.tobytes())
    if mode in ("P", "PA"):
        im.putpalette(rng.integers(0, 256, 3 * entries, dtype=np.uint8).tobytes())
    return im


def pil_pixels(im: PILImage.Image) -> np.ndarray:
    return np.array(im, dtype=np.uint8).reshape(im.height, im.width, imageio.CHANNELS[im.mode])


def save(im: PILImage.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def written(image: imageio.Image, **options) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    fmt = imageio.write_image(image, buffer, **options)
    return fmt, buffer.getvalue()


def assert_same(a: imageio.Image, b: imageio.Image, metadata: bool = True) -> None:
    assert a.mode == b.mode
    assert a.pixels.shape == b.pixels.shape and a.pixels.dtype == b.pixels.dtype == np.uint8
    assert np.array_equal(a.pixels, b.pixels)
    assert (a.palette, a.palette_mode) == (b.palette, b.palette_mode)
    if metadata:
        assert a.metadata == b.metadata


def round_trip(data: bytes, expect_format: str | None = None) -> imageio.Image:
    """read(write(read(data))) equals read(data) in pixels, mode, palette and metadata."""
    first = imageio.read_image(data)
    fmt, out = written(first)
    assert fmt == imageio.output_format(first)
    if expect_format:
        assert fmt == expect_format
    second = imageio.read_image(out)
    assert_same(first, second)
    assert second.format == fmt
    return first


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width: int, height: int, depth: int, colour_type: int, rows: bytes | None = None) -> bytes:
    """A PNG built byte by byte (Pillow cannot write 16-bit colour or absurd sizes)."""
    if rows is None:  # filter byte 0, then a ramp of sample bytes, on every row
        row_bytes = width * {0: 1, 2: 3, 4: 2, 6: 4}[colour_type] * depth // 8
        rows = (b"\0" + (bytes(range(256)) * (row_bytes // 256 + 1))[:row_bytes]) * height
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def handmade_tiff_rgb16(width: int = 3, height: int = 2) -> bytes:
    """An uncompressed little-endian TIFF with 16 bits per RGB sample."""
    entries = [  # (tag, type, count, value); type 3 = SHORT, 4 = LONG
        (256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, 122), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, 128), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, width * height * 6),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3 and count == 1
        else struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in entries)
    ifd += struct.pack("<I", 0)
    assert 8 + len(ifd) == 122
    pixels = np.arange(width * height * 3, dtype="<u2") * 1000
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16) + pixels.tobytes()


# -- round trips ---------------------------------------------------------------------------------


MODES = ["1", "L", "LA", "RGB", "RGBA", "P", "P+index", "P+alphas"]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[1]}x{s[0]}")
@pytest.mark.parametrize("case", MODES)
def test_png_round_trip_every_mode_and_size(case, size):
    mode = case.split("+")[0]
    im = pil_image(mode, *size, seed=len(case) + size[1])
    options = {}
    if case == "P+index":
        options["transparency"] = 5
    elif case == "P+alphas":
        options["transparency"] = bytes(range(0, 256, 7))[:37]
    image = round_trip(save(im, "PNG", **options), "PNG")
    assert image.mode == mode and image.format == "PNG"
    assert image.pixels.shape == (*size, imageio.CHANNELS[mode])
    assert image.pixels.flags.c_contiguous
    assert np.array_equal(image.pixels, pil_pixels(im))
    assert (image.height, image.width, image.channels) == (*size, imageio.CHANNELS[mode])
    if mode == "1":
        assert image.pixels.max() <= 1
    if mode == "P":
        assert image.palette == bytes(im.getpalette()) and image.palette_mode == "RGB"
    if "+" in case:
        assert json.loads(image.metadata["transparency"]) == (
            5 if case == "P+index" else options["transparency"].hex())
    else:
        assert "transparency" not in image.metadata


def test_colour_under_zero_alpha_is_kept():
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., :3] = np.arange(60, dtype=np.uint8).reshape(4, 5, 3) * 4 + 1
    rgba[1:3, 1:4, 3] = 255  # a few opaque pixels; the rest are invisible but coloured
    for fmt, options in [("PNG", {}), ("TIFF", {}), ("TGA", {}), ("WEBP", {"lossless": True, "exact": True})]:
        image = round_trip(save(PILImage.frombytes("RGBA", (5, 4), rgba.tobytes()), fmt, **options), fmt)
        assert np.array_equal(image.pixels, rgba), fmt


@pytest.mark.parametrize("fmt, mode", [
    ("BMP", "1"), ("BMP", "L"), ("BMP", "RGB"), ("PPM", "1"), ("PPM", "L"), ("PPM", "RGB"),
    ("TGA", "L"), ("TGA", "LA"), ("TGA", "RGBA"), ("TGA", "P"), ("GIF", "P"), ("WEBP", "RGB"),
    ("TIFF", "1"), ("TIFF", "LA"), ("TIFF", "RGBA"), ("TIFF", "PA"), ("TIFF", "CMYK"), ("TIFF", "YCbCr"),
    ("TIFF", "LAB"),
])
def test_lossless_sources_keep_their_format(fmt, mode):
    im = pil_image(mode, 9, 13, entries=256 if mode == "PA" else 8 if fmt == "GIF" else 37)
    image = round_trip(save(im, fmt, **({"lossless": True} if fmt == "WEBP" else {})), fmt)
    assert image.mode == mode and np.array_equal(image.pixels, pil_pixels(im))


def test_cmyk_jpeg_is_written_as_exact_tiff():
    data = save(pil_image("CMYK", 16, 24), "JPEG", quality=90)
    image = round_trip(data, "TIFF")
    with PILImage.open(io.BytesIO(data)) as im:
        assert image.mode == "CMYK" and np.array_equal(image.pixels, pil_pixels(im))


def test_palette_with_alpha_is_written_as_tga():
    im = pil_image("P", 5, 6, entries=4)
    im.putpalette(bytes(range(16)), "RGBA")
    image = round_trip(save(im, "TGA"), "TGA")
    assert image.palette_mode == "RGBA" and image.palette == bytes(range(16))
    assert imageio.output_format(image, "PNG") == "TGA"  # PNG would turn the palette into RGB + tRNS


def test_two_bit_grey_transparency_is_scaled_with_the_pixels():
    im = PILImage.frombytes("L", (4, 1), bytes([0, 85, 170, 255]))
    image = round_trip(save(im, "PNG", bits=2, transparency=2))
    assert image.pixels[0, :, 0].tolist() == [0, 85, 170, 255]
    assert json.loads(image.metadata["transparency"]) == 170  # Pillow itself reports 2


def test_palette_transparency_past_the_palette_is_dropped():
    palette = bytes(range(9))  # 3 colours
    image = round_trip(palette_png(palette, bytes([0, 1, 2]), trns=b"\x10\x20\x30\x40\x50"))
    assert json.loads(image.metadata["transparency"]) == "102030"  # the 4th and 5th alphas have no colour
    image = round_trip(palette_png(palette, bytes([0, 1, 2]), trns=b"\xff\xff\xff\x00"))
    assert "transparency" not in image.metadata  # only an entry past the palette was transparent
    image = round_trip(palette_png(palette, bytes([0, 1, 2]), trns=b"\xff\x00\xff\x80"))
    assert json.loads(image.metadata["transparency"]) == 1  # what PNG writes and Pillow reads back


def test_bilevel_transparency_and_gif_transparency():
    image = round_trip(save(pil_image("1", 3, 5), "PNG", transparency=1), "PNG")
    assert json.loads(image.metadata["transparency"]) == 255  # Pillow's reading of a 1-bit tRNS
    image = round_trip(save(pil_image("P", 3, 5, entries=16), "GIF", transparency=3, optimize=False), "GIF")
    assert json.loads(image.metadata["transparency"]) == 3
    assert imageio.output_format(image, "BMP") == "PNG"  # BMP has no transparency


@pytest.mark.parametrize("name", ["chelsea.png", "camera.png"])
def test_sample_images_round_trip_exactly(name):
    path = DATA / name
    image = imageio.read_image(path)
    with PILImage.open(path) as im:
        assert np.array_equal(image.pixels, pil_pixels(im))
    again = imageio.read_image(written(image)[1])
    assert_same(image, again)


@settings(max_examples=25, deadline=None)
@given(mode=st.sampled_from(["1", "L", "LA", "RGB", "RGBA", "P"]), height=st.integers(1, 24),
       width=st.integers(1, 24), seed=st.integers(0, 2**16))
def test_random_images_round_trip(mode, height, width, seed):
    image = imageio.read_image(save(pil_image(mode, height, width, seed), "PNG"))
    assert_same(image, imageio.read_image(written(image)[1]))


# -- sources, targets, formats ------------------------------------------------------------------


def test_sources_and_targets(tmp_path):
    data = save(pil_image("RGB", 5, 7), "PNG")
    path = tmp_path / "in.png"
    path.write_bytes(data)
    images = [imageio.read_image(data), imageio.read_image(bytearray(data)), imageio.read_image(path),
              imageio.read_image(str(path)), imageio.read_image(io.BytesIO(data))]
    for image in images[1:]:
        assert_same(images[0], image)
    out = tmp_path / "out.png"
    assert imageio.write_image(images[0], out) == "PNG"
    assert_same(images[0], imageio.read_image(out))
    with open(tmp_path / "out2.png", "wb") as handle:
        imageio.write_image(images[0], handle)
    assert_same(images[0], imageio.read_image(tmp_path / "out2.png"))


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(BBCodecError, match="cannot read"):
        imageio.read_image(tmp_path / "nothing.png")


def test_requested_format_used_only_when_lossless():
    image = imageio.read_image(save(pil_image("RGB", 5, 7), "PNG"))
    fmt, data = written(image, format="BMP")
    assert fmt == "BMP" and data.startswith(b"BM")
    assert_same(image, imageio.read_image(data), metadata=False)
    assert imageio.output_format(image, "JPEG") == "PNG"
    assert imageio.output_format(image, "gif") == "PNG"
    assert imageio.output_format(image, "tif") == "TIFF"
    assert written(image, format="JPEG")[0] == "PNG"
    odd_palette = imageio.read_image(save(pil_image("P", 4, 4, entries=5), "PNG"))
    assert imageio.output_format(odd_palette, "GIF") == "PNG"  # GIF would pad the palette to 8
    opaque = imageio.read_image(save(PILImage.new("RGBA", (3, 3), (1, 2, 3, 255)), "PNG"))
    assert imageio.output_format(opaque, "WEBP") == "PNG"  # would read back as RGB


def test_jpeg_is_written_as_png_with_exact_pixels_and_metadata():
    exif = PILImage.Exif()
    exif[0x010F] = "bbcodec"
    exif[0x0112] = 6  # orientation: rotate 90; must NOT be applied
    icc = b"\0\0\2\0not really an ICC profile" * 9
    data = save(pil_image("RGB", 12, 20), "JPEG", quality=80, exif=exif.tobytes(), icc_profile=icc, dpi=(300, 300))
    image = round_trip(data, "PNG")
    with PILImage.open(io.BytesIO(data)) as im:
        assert np.array_equal(image.pixels, pil_pixels(im))
    assert image.format == "JPEG" and image.pixels.shape == (12, 20, 3)
    assert image.metadata["icc_profile"] == icc
    assert image.metadata["exif"].startswith(b"Exif\0\0")
    kept = PILImage.Exif()
    kept.load(image.metadata["exif"])
    assert kept[0x0112] == 6 and kept[0x010F] == "bbcodec"
    assert json.loads(image.metadata["dpi"]) == [300, 300]


# -- metadata ------------------------------------------------------------------------------------


def png_with_metadata() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "a test")
    info.add_text("Comment", "long " * 400, zip=True)
    info.add_itxt("Description", "élan ☃", lang="fr", tkey="Légende")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    info.add(b"gAMA", struct.pack(">I", 45455))
    info.add(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000))
    exif = PILImage.Exif()
    exif[0x010F] = "bbcodec"
    return save(pil_image("RGB", 6, 8), "PNG", pnginfo=info, icc_profile=b"\0\1icc" * 30,
                exif=exif.tobytes(), dpi=(72, 72))


def test_metadata_is_kept():
    image = round_trip(png_with_metadata(), "PNG")
    meta = image.metadata
    assert meta["icc_profile"] == b"\0\1icc" * 30
    assert meta["exif"].startswith(b"Exif\0\0") and b"bbcodec" in meta["exif"]
    assert meta["xmp"] == b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"
    text = json.loads(meta["text"])
    assert text["Title"] == "a test" and text["Comment"] == "long " * 400
    assert text["Description"] == {"text": "élan ☃", "lang": "fr", "tkey": "Légende"}
    assert json.loads(meta["dpi"]) == [72, 72]  # not 72.009, Pillow's reading of 2835 px/m
    assert json.loads(meta["gamma"]) == 0.45455
    assert len(json.loads(meta["chromaticity"])) == 8
    assert all(isinstance(value, bytes) for value in meta.values())


def test_metadata_is_stripped_but_transparency_is_not():
    image = imageio.read_image(png_with_metadata())
    _, data = written(image, strip_metadata=True)
    assert imageio.read_image(data).metadata == {}
    indexed = imageio.read_image(save(pil_image("P", 3, 3), "PNG", transparency=2))
    again = imageio.read_image(written(indexed, strip_metadata=True)[1])
    assert again.metadata == {"transparency": b"2"}


# -- refusals ------------------------------------------------------------------------------------


def grey16_png() -> bytes:
    data = save(PILImage.frombytes("I;16", (3, 2), bytes(range(12))), "PNG")
    with PILImage.open(io.BytesIO(data)) as im:
        assert im.mode == "I;16"
    return data


def animated(fmt: str) -> bytes:
    frames = [PILImage.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    return save(frames[0], fmt, save_all=True, append_images=frames[1:])


def palette_png(palette: bytes, indices: bytes, trns: bytes | None = None) -> bytes:
    """A one-row 8-bit palette PNG, built by hand so that it may break the rules."""
    ihdr = struct.pack(">IIBBBBB", len(indices), 1, 8, 3, 0, 0, 0)
    extra = chunk(b"tRNS", trns) if trns is not None else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"PLTE", palette) + extra
            + chunk(b"IDAT", zlib.compress(b"\0" + indices)) + chunk(b"IEND", b""))


def truncated_png() -> bytes:
    data = save(pil_image("RGB", 40, 40), "PNG")
    return data[: len(data) // 2]


def rgb16_png() -> bytes:
    data = handmade_png(3, 2, 16, 2)
    with PILImage.open(io.BytesIO(data)) as im:  # what this guards against: Pillow narrows silently
        assert im.mode == "RGB"
    return data


def rgb16_tiff() -> bytes:
    data = handmade_tiff_rgb16()
    with PILImage.open(io.BytesIO(data)) as im:
        assert im.mode == "RGB"
    return data


REFUSED = {
    "rgb16-png": (rgb16_png, "16-bit"),
    "rgba16-png": (lambda: handmade_png(3, 2, 16, 6), "16-bit"),
    "grey-alpha16-png": (lambda: handmade_png(3, 2, 16, 4), "16-bit"),  # Pillow would give RGBA
    "grey16-png": (grey16_png, "16-bit"),
    "rgb16-tiff": (rgb16_tiff, "16-bit"),
    "rgb16-ppm": (lambda: b"P6 2 1 65535\n" + bytes(range(12)), "16-bit"),
    "grey16-pgm": (lambda: save(PILImage.frombytes("I;16", (3, 2), bytes(range(12))), "PPM"), "16-bit"),
    "float-tiff": (lambda: save(PILImage.new("F", (3, 2), 0.5), "TIFF"), "floating-point"),
    "animated-gif": (lambda: animated("GIF"), "2 frames"),
    "animated-png": (lambda: animated("PNG"), "2 frames"),
    "multipage-tiff": (lambda: animated("TIFF"), "2 frames"),
    "truncated-png": (truncated_png, "truncated"),
    "truncated-jpeg": (lambda: save(pil_image("RGB", 40, 40), "JPEG")[:1500], "truncated"),
    "random-bytes": (lambda: np.random.default_rng(1).integers(0, 256, 1000, dtype=np.uint8).tobytes(),
                     "not an image"),
    "text-file": (lambda: b"hello, world\n", "not an image"),
    "empty": (lambda: b"", "empty"),
    "bomb": (lambda: handmade_png(100000, 100000, 8, 2, rows=b"\0" * 64), "100000x100000"),
    "no-ihdr": (lambda: b"\x89PNG\r\n\x1a\n" + chunk(b"IEND", b""), "IHDR"),
    "unsupported-format": (lambda: save(pil_image("RGB", 4, 4), "PCX"), "PCX"),
    "index-past-palette": (lambda: palette_png(bytes(6), bytes([0, 1, 5])), "index 5 but its palette has only 2"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_with_one_line_message(case):
    make, fragment = REFUSED[case]
    with pytest.raises(UnsupportedImageError) as caught:
        imageio.read_image(make())
    message = str(caught.value)
    assert message and "\n" not in message
    assert fragment in message


def test_non_png_bomb_is_refused_by_declared_size():
    data = save(pil_image("L", 300, 300), "BMP")
    with pytest.raises(UnsupportedImageError, match="300x300 = 90000 pixels"):
        imageio.read_image(data, max_pixels=300 * 299)


def test_invalid_images_are_refused():
    with pytest.raises(UnsupportedImageError):
        imageio.Image(np.zeros((2, 2, 3), np.uint8), "L")
    with pytest.raises(UnsupportedImageError):
        imageio.Image(np.zeros((2, 2, 1), np.uint16), "L")
    with pytest.raises(UnsupportedImageError):
        imageio.Image(np.full((2, 2, 1), 2, np.uint8), "1")
    with pytest.raises(UnsupportedImageError, match="index 4 .* 4 colours"):
        imageio.Image(np.full((2, 2, 1), 4, np.uint8), "P", bytes(12), "RGB")
    with pytest.raises(UnsupportedImageError):
        imageio.Image(np.zeros((2, 2, 1), np.uint8), "I")
    with pytest.raises(UnsupportedImageError, match="transparency"):
        imageio.Image(np.zeros((2, 2, 3), np.uint8), "RGB", metadata={"transparency": b"7"})
    damaged = imageio.Image(np.zeros((2, 2, 3), np.uint8), "RGB", format="PNG", metadata={"text": b"{not json"})
    with pytest.raises(UnsupportedImageError, match="cannot write"):
        written(damaged)


def test_damaged_files_never_escape_as_other_errors():
    rng = np.random.default_rng(7)
    sources = [save(pil_image("RGB", 12, 12), "PNG"), save(pil_image("P", 12, 12), "GIF", optimize=False),
               save(pil_image("RGB", 12, 12), "JPEG"), save(pil_image("RGBA", 12, 12), "TIFF"),
               save(pil_image("RGBA", 12, 12), "WEBP", lossless=True)]
    for data in sources:
        for _ in range(30):
            damaged = bytearray(data)
            for position in rng.integers(0, min(len(data), 160), 3):
                damaged[position] = rng.integers(0, 256)
            try:
                image = imageio.read_image(bytes(damaged))
            except UnsupportedImageError as error:
                assert "\n" not in str(error)
            else:  # decodable after all: then it must round trip like any other image
                assert_same(image, imageio.read_image(written(image)[1]))
