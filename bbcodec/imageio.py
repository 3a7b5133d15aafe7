"""Reading and writing images exactly, so that compression is lossless.

bbcodec codes an image as an (H, W, C) array of uint8 planes. This module turns
an image file into such planes plus everything needed to write the same image
back (:class:`Image`), and writes it back. The invariant: every pixel of every
channel comes back exactly, at any size; anything that cannot be kept exactly
is refused with an :class:`~bbcodec.errors.UnsupportedImageError` whose message
is one line, never silently altered.

Modes kept exactly (Pillow's names; planes in brackets):

* ``1`` [one plane of 0/1], ``L``, ``LA``, ``RGB``, ``RGBA`` (colour under
  zero alpha included), ``P`` [palette indices, palette kept as bytes],
  ``PA`` [indices, alpha];
* ``CMYK`` (e.g. Adobe JPEG), ``YCbCr`` and ``LAB`` as their 4/3 planes; only
  TIFF can store these, so they are written as TIFF.

Refused: more than 8 bits per channel (16-bit PNG, TIFF and PPM are detected
from the file itself, because Pillow silently narrows 16-bit RGB/RGBA and
turns 16-bit grey+alpha into RGBA), modes ``I``, ``F``, ``I;16*``,
premultiplied ``La``/``RGBa``, TIFFs whose extra samples Pillow would drop,
animated or multi-frame files, images larger than ``max_pixels`` (checked from
the declared size before decoding), truncated, damaged and non-image files,
and formats outside :data:`INPUT_FORMATS` (other Pillow plugins have not been
checked for silent narrowing).

Pixels are taken exactly as decoded: no EXIF orientation or other transform is
applied. Samples of fewer than 8 bits (2-bit grey, 5-6-5 BMP, PPM with
maxval < 255) are scaled up by Pillow, which is one-to-one, so nothing is lost.

Metadata (:attr:`Image.metadata`, every value bytes so that a container can
store it as a section): ``icc_profile``, ``exif`` (always starting with
``Exif\\0\\0``), ``xmp``, and as UTF-8 JSON ``dpi`` ([x, y]), ``transparency``
(an int, an [r, g, b] list, or a hex string of per-palette-entry alphas), and
for PNG ``text`` (key -> text, or {"text", "lang", "tkey"} for iTXt),
``gamma``, ``srgb``, ``chromaticity``. What each output format carries is in
:data:`FORMAT_METADATA`; other metadata (JPEG comments, other TIFF tags, other
PNG chunks) is not kept. ``transparency`` decides which pixels are visible, so
it is treated as part of the pixels: always written, even when stripping.

:func:`write_image` writes the image's source format when that format keeps
it exactly (:func:`output_format`, :data:`LOSSLESS_FORMATS`), else PNG (or
TIFF, or TGA for a palette with alpha), and reads the result back to check it
before anything reaches the target. :func:`read_image` does the same check
once (unless ``verify=False``), so an image it accepts can always be written
back exactly; it costs one encode and one decode of the image.

An image may carry the exact bytes of the file it came from
(:attr:`Image.original`, set when a ``.bbc`` kept a file byte for byte rather
than coding its pixels); :func:`write_image` then writes those bytes when asked
for the file's own format. :func:`lossy_coding` tells which files store their
pixels lossily (JPEG, lossy WebP, JPEG inside TIFF): their pixels are exact
once decoded, but the file itself is smaller than any lossless code of them.
"""
from __future__ import annotations

import io
import json
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import PngImagePlugin, UnidentifiedImageError, features

from bbcodec.errors import BBCodecError, UnsupportedImageError

MAX_PIXELS = 1 << 26
"""Default limit on width * height for :func:`read_image` (decompression bombs).
Pillow's own limit (2 * ``PIL.Image.MAX_IMAGE_PIXELS``) applies too."""

PLAIN_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
"""The mode of plain planes (grey, RGB, RGBA) by their number: how arrays of pixels (``.npz``, MNIST) are read."""
CHANNELS = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "RGBA": 4, "CMYK": 4}
"""The supported modes and their number of planes."""

INPUT_FORMATS = frozenset({"PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "TGA", "QOI"})
"""Pillow formats that :func:`read_image` accepts (checked for exact decoding)."""

LOSSLESS_FORMATS = {
    "PNG": frozenset({"1", "L", "LA", "RGB", "RGBA", "P"}),
    "TIFF": frozenset(CHANNELS),
    "BMP": frozenset({"1", "L", "RGB"}),
    "PPM": frozenset({"1", "L", "RGB"}),
    "TGA": frozenset({"1", "L", "LA", "RGB", "RGBA", "P"}),
    "GIF": frozenset({"P"}),  # palettes of 4, 8, ..., 256 entries only
    "WEBP": frozenset({"RGB", "RGBA"}),  # lossless and exact; RGBA only with some alpha < 255
}
"""Formats that :func:`write_image` can write exactly, and the modes for each."""

FORMAT_METADATA = {
    "PNG": frozenset({"icc_profile", "exif", "xmp", "text", "dpi", "gamma", "srgb", "chromaticity"}),
    "TIFF": frozenset({"icc_profile", "dpi"}),
    "WEBP": frozenset({"icc_profile", "exif", "xmp"}),
    "BMP": frozenset({"dpi"}),
    "GIF": frozenset(), "PPM": frozenset(), "TGA": frozenset(),
}
"""Metadata each output format carries (``transparency`` aside: see :func:`output_format`)."""

_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "PBM": "PPM", "PGM": "PPM", "PNM": "PPM"}
_MAX_SIDE = {"WEBP": 16383, "GIF": 65535, "TGA": 65535, "BMP": 2**31 - 1, "PNG": 2**31 - 1}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_HEADER = b"Exif\x00\x00"
_TIFF_HEADERS = (b"MM\x00*", b"II*\x00")
_XMP_KEY = "XML:com.adobe.xmp"
_PNG_PPM = 0.0254  # Pillow's dpi = pixels per metre * 0.0254 (PNG) and ppm / 39.3701 (BMP)


@dataclass(eq=False)
class Image:
    """An image as exact uint8 planes plus what is needed to write it back.

    Constructing one checks it (UnsupportedImageError): ``pixels`` (H, W, C) uint8 with C the
    mode's number of planes (:data:`CHANNELS`); mode 1 pixels 0 or 1; palette indices within the
    palette; metadata values bytes.
    """

    pixels: np.ndarray
    mode: str
    palette: bytes | None = None
    palette_mode: str | None = None
    format: str | None = None
    metadata: dict[str, bytes] = field(default_factory=dict)
    original: bytes | None = None
    """The exact bytes of the ``format`` file these pixels were decoded from, when they are kept."""

    def __post_init__(self):
        _validate(self)
        self.pixels = np.ascontiguousarray(self.pixels)

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]


def _refuse(message: str):
    raise UnsupportedImageError(" ".join(str(message).split()))


def _validate(image: Image) -> None:
    """Refuse an Image whose fields do not describe one exact image."""
    if image.mode not in CHANNELS:
        _refuse(f"image mode {image.mode!r} is not supported")
    pixels = image.pixels
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3:
        _refuse("pixels must be an (H, W, C) uint8 array")
    height, width, channels = pixels.shape
    if channels != CHANNELS[image.mode] or height < 1 or width < 1:
        _refuse(f"a {image.mode} image needs {CHANNELS[image.mode]} planes, not shape {pixels.shape}")
    if image.mode == "1" and pixels.max() > 1:
        _refuse("a mode 1 image has only pixel values 0 and 1")
    if image.format is not None and not (isinstance(image.format, str) and image.format.isprintable()
                                         and len(image.format) <= 16):
        _refuse("an image's source format is a short format name such as 'PNG'")
    if image.mode in ("P", "PA"):
        _validate_palette(image)
    elif image.palette is not None or image.palette_mode is not None:
        _refuse(f"a {image.mode} image has no palette")
    if not all(isinstance(k, str) and isinstance(v, bytes) for k, v in image.metadata.items()):
        _refuse("metadata must map names to bytes")
    if "transparency" in image.metadata:
        _validate_transparency(image)
    if image.original is not None and not (isinstance(image.original, bytes) and image.format):
        _refuse("an image's original file is bytes, and needs its format")


def _validate_transparency(image: Image) -> None:
    if image.mode not in ("1", "L", "RGB", "P"):
        _refuse(f"a {image.mode} image cannot have a transparency entry")
    try:
        value = _transparency(image)
    except (ValueError, RecursionError):  # bad JSON or hex; arrays nested thousands deep
        value = None
    if image.mode == "RGB":
        ok = isinstance(value, tuple) and len(value) == 3 and all(isinstance(v, int) for v in value)
    else:
        ok = isinstance(value, int) or (image.mode == "P" and isinstance(value, bytes))
    if not ok:
        _refuse(f"unusable transparency entry for a {image.mode} image")


def _is_number(value, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value < high


def _is_text_chunks(value) -> bool:
    def chunk(text) -> bool:
        if isinstance(text, dict):
            return set(text) == {"text", "lang", "tkey"} and all(isinstance(v, str) for v in text.values())
        return isinstance(text, str)
    return isinstance(value, dict) and all(chunk(v) for v in value.values())


_PNG_UNITS = 100000  # PNG stores gamma and chromaticity as 32-bit integers in these units
_METADATA_CHECKS = {
    "dpi": lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(d, 1e-9, 1e9) for d in v),
    "gamma": lambda v: _is_number(v, 0, 2**32 / _PNG_UNITS),
    "srgb": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 256,
    "chromaticity": lambda v: isinstance(v, list) and len(v) == 8 and all(_is_number(c, 0, 2**32 / _PNG_UNITS)
                                                                           for c in v),
    "text": _is_text_chunks,
}
"""The metadata stored as JSON, and what a value must be for the writers to store it (what reading makes)."""


def _metadata_problem(metadata: dict[str, bytes]) -> str | None:
    """What is wrong with the JSON metadata that a writer would use, or None."""
    for key, check in _METADATA_CHECKS.items():
        if key in metadata:
            try:
                value = json.loads(metadata[key])
            except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested thousands deep
                return f"damaged {key} metadata (not JSON)"
            if not check(value):
                return f"damaged {key} metadata (not what an image file stores)"
    return None


def _validate_palette(image: Image) -> None:
    if image.palette_mode not in ("RGB", "RGBA") or not isinstance(image.palette, bytes):
        _refuse("a palette image needs palette bytes and palette_mode 'RGB' or 'RGBA'")
    entries, rest = divmod(len(image.palette), len(image.palette_mode))
    if rest or not 1 <= entries <= 256:
        _refuse(f"a palette of {len(image.palette)} bytes is not 1 to 256 {image.palette_mode} entries")
    top = int(image.pixels[..., 0].max())
    if top >= entries:
        _refuse(f"palette image uses index {top} but its palette has only {entries} colours")


# -- reading ------------------------------------------------------------------------------------


def read_image(source, max_pixels: int = MAX_PIXELS, verify: bool = True) -> Image:
    """Read an image file (path, bytes or binary file object) exactly, or refuse it.

    Raises UnsupportedImageError (one-line message) for anything that cannot be
    kept exactly, and BBCodecError when a path cannot be read. With ``verify``
    the image is also encoded as :func:`output_format` and read back, so that
    what is accepted now is known to be writable exactly later.
    """
    data = source_bytes(source)
    if not data:
        _refuse("empty file, not an image")
    png_header = _check_png_header(data, max_pixels) if data.startswith(_PNG_SIGNATURE) else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(io.BytesIO(data)) as im:
                _check_opened(im, max_pixels)
                im.load()
                image = _from_pil(im, png_header)
    except UnsupportedImageError:
        raise
    except PILImage.DecompressionBombError as error:
        _refuse(f"image too large: {error}")
    except UnidentifiedImageError:
        _refuse("not an image file, or a format that cannot be read")
    except Exception as error:  # Pillow's plugins raise OSError, SyntaxError, ValueError, struct.error, ...
        _refuse(f"damaged or truncated image: {error or type(error).__name__}")
    if verify:
        fmt = output_format(image)
        _verify(image, encode(image, fmt), fmt)
    return image


def source_bytes(source) -> bytes:
    """The bytes of an image file given as a path, bytes or binary file object."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).read_bytes()
        except OSError as error:
            raise BBCodecError(f"cannot read {source}: {error.strerror or error}") from None
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("read_image needs a binary file object")
        return bytes(data)
    raise TypeError(f"read_image takes a path, bytes or a binary file object, not {type(source).__name__}")


def lossy_coding(data: bytes) -> str | None:
    """How an image file codes its pixels lossily ("JPEG", "lossy WebP", "JPEG-compressed TIFF"), or None
    for a file that stores them exactly (or that cannot be opened: :func:`read_image` says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(io.BytesIO(data)) as im:
                fmt, compression = im.format, im.info.get("compression")
    except Exception:
        return None
    if fmt in ("JPEG", "MPO"):
        return "JPEG"
    if fmt == "TIFF" and compression in ("jpeg", "tiff_jpeg"):
        return "JPEG-compressed TIFF"
    if fmt == "WEBP" and b"VP8 " in _riff_chunks(data):
        return "lossy WebP"
    return None


def _riff_chunks(data: bytes) -> list[bytes]:
    """The chunk names of a RIFF file (a WebP: ``VP8 `` lossy, ``VP8L`` lossless, ``ALPH``, ...)."""
    names, at = [], 12
    while at + 8 <= len(data) and len(names) < 1024:
        name, size = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
        names.append(name)
        at += 8 + size + (size & 1)
    return names


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        _refuse(f"image declares {width}x{height} pixels")
    if width * height > max_pixels:
        _refuse(f"image is {width}x{height} = {width * height} pixels, more than the limit of "
                f"{max_pixels} (possible decompression bomb)")


def _check_png_header(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(bit depth, colour type) from the IHDR chunk, which Pillow does not fully report."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        _refuse("damaged or truncated PNG file (no IHDR chunk)")
    width, height = struct.unpack(">II", data[16:24])
    _check_size(width, height, max_pixels)
    depth, colour_type = data[24], data[25]
    if depth > 8:
        _refuse(f"{depth}-bit images are not supported yet (PNG with {depth} bits per channel)")
    _check_png_chunks(data)
    return depth, colour_type


def _check_png_chunks(data: bytes) -> None:
    """Every chunk up to IEND is whole and matches its CRC (Pillow checks the CRCs of some chunks only):
    a file that says it is damaged is refused, not archived as if it were sound."""
    offset = len(_PNG_SIGNATURE)
    while True:
        if offset + 12 > len(data):
            _refuse("damaged or truncated PNG file (it ends before its IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, offset)
        end = offset + 8 + length
        if end + 4 > len(data):
            _refuse(f"damaged or truncated PNG file (chunk {kind.decode('latin-1')!r} ends early)")
        if zlib.crc32(data[offset + 4:end]) != struct.unpack_from(">I", data, end)[0]:
            _refuse(f"damaged PNG file (chunk {kind.decode('latin-1')!r} at byte {offset} fails its CRC check)")
        if kind == b"IEND":
            return
        offset = end + 4


def _check_opened(im, max_pixels: int) -> None:
    """Checks on the declared image, before any pixel is decoded."""
    if im.format not in INPUT_FORMATS:
        _refuse(f"{im.format} images are not supported (supported: {', '.join(sorted(INPUT_FORMATS))})")
    _check_size(im.width, im.height, max_pixels)
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        _refuse(f"animated or multi-frame images are not supported ({frames} frames)")
    if im.format == "PPM":
        _check_ppm(im)
    _check_mode(im.mode)
    if im.format == "TIFF":
        _check_tiff(im)


def _check_tiff(im) -> None:
    bits = im.tag_v2.get(258, (1,))
    bits = tuple(bits) if isinstance(bits, (tuple, list)) else (bits,)
    if max(bits) > 8:
        _refuse(f"{max(bits)}-bit images are not supported yet (TIFF with {max(bits)} bits per sample)")
    samples = im.tag_v2.get(277, 1)
    if im.mode in CHANNELS and samples != len(im.getbands()):
        _refuse(f"TIFF with {samples} samples per pixel would be read as {im.mode}, losing samples")
    covered = sum(max(0, min(x1, im.width) - x0) * max(0, min(y1, im.height) - y0)
                  for x0, y0, x1, y1 in (tile[1] for tile in im.tile))
    if covered < im.width * im.height:  # Pillow would leave the rest black
        _refuse(f"damaged or incomplete TIFF file (its strips and tiles hold {covered} of its "
                f"{im.width * im.height} pixels)")


def _check_ppm(im) -> None:
    args = im.tile[0].args if im.tile else None
    maxval = args[-1] if isinstance(args, tuple) and args and isinstance(args[-1], int) else 255
    if maxval > 255 or im.mode == "I":
        _refuse("16-bit images are not supported yet (PPM with more than 8 bits per sample)")


def _check_mode(mode: str) -> None:
    if mode in CHANNELS:
        return
    if mode.startswith("I;16"):
        _refuse("16-bit images are not supported yet")
    if mode == "I":
        _refuse("images with more than 8 bits per channel (mode I) are not supported yet")
    if mode == "F":
        _refuse("floating-point images are not supported")
    if mode in ("La", "RGBa"):
        _refuse(f"premultiplied-alpha images (mode {mode}) are not supported")
    _refuse(f"image mode {mode} is not supported")


def _from_pil(im, png_header) -> Image:
    mode = im.mode
    pixels = np.array(im, dtype=np.uint8).reshape(im.height, im.width, CHANNELS[mode])
    palette = palette_mode = None
    if mode in ("P", "PA"):
        palette = bytes(im.getpalette(None) or b"")
        palette_mode = im.im.getpalettemode()
    return Image(pixels, mode, palette, palette_mode, im.format, _read_metadata(im, png_header))


def _read_metadata(im, png_header) -> dict[str, bytes]:
    info, meta = im.info, {}
    if info.get("icc_profile"):
        meta["icc_profile"] = bytes(info["icc_profile"])
    exif = info.get("exif")
    if isinstance(exif, bytes) and exif.startswith(_TIFF_HEADERS):  # WebP: no Exif header
        exif = _EXIF_HEADER + exif
    if isinstance(exif, bytes) and exif.startswith(_EXIF_HEADER):  # not a PNG tEXt chunk named "exif"
        meta["exif"] = exif
    xmp = info.get("xmp")
    if xmp:
        meta["xmp"] = xmp.encode() if isinstance(xmp, str) else bytes(xmp)
    if im.format == "PNG":
        meta.update(_read_png_metadata(im, "icc_profile" in meta))
    transparency = _read_transparency(im, png_header)
    if transparency is not None:
        meta["transparency"] = _json(transparency)
    dpi = _read_dpi(im)
    if dpi is not None:
        meta["dpi"] = _json(dpi)
    return meta


def _read_png_metadata(im, has_icc: bool) -> dict[str, bytes]:
    meta, info = {}, im.info
    text = {}
    for key, value in im.text.items():
        if key == _XMP_KEY:
            continue
        if isinstance(value, PngImagePlugin.iTXt):
            text[key] = {"text": str(value), "lang": value.lang or "", "tkey": value.tkey or ""}
        else:
            text[key] = str(value)
    if text:
        meta["text"] = _json(text)
    if "gamma" in info:
        meta["gamma"] = _json(info["gamma"])
    if "srgb" in info and not has_icc:  # Pillow never writes sRGB next to an ICC profile
        meta["srgb"] = _json(info["srgb"])
    if "chromaticity" in info:
        meta["chromaticity"] = _json(list(info["chromaticity"]))
    return meta


def _read_transparency(im, png_header):
    value = im.info.get("transparency")
    if value is None or im.mode not in ("1", "L", "RGB", "P"):
        return None
    if isinstance(value, (tuple, list)):
        return [int(v) for v in value]
    if im.mode == "P":
        return _palette_alpha(value, len(im.getpalette() or ()) // 3)
    value = int(value)
    if png_header and png_header[1] == 0 and png_header[0] in (2, 4) and im.mode == "L":
        value = value * 255 // ((1 << png_header[0]) - 1)  # Pillow scales the pixels, not tRNS
    return value


def _palette_alpha(value, entries: int):
    """Palette transparency as PNG writes and Pillow reads it back: alphas or one transparent index.

    Alphas past the end of the palette, or an index past it, belong to no colour and are dropped.
    """
    if isinstance(value, int):
        return value if 0 <= value < entries else None
    alpha = bytes(value)[:entries]
    if not alpha:
        return None
    return alpha.index(0) if re.fullmatch(rb"\xff*\x00\xff*", alpha) else alpha.hex()


def _dpi_encoder(fmt):
    """How a format stores dpi (values that store the same are the same), or None."""
    if fmt == "PNG":
        return lambda d: int(d / _PNG_PPM + 0.5)
    if fmt == "BMP":
        return lambda d: int(d * 39.3701 + 0.5)
    if fmt == "TIFF":
        return np.float32  # what Pillow's written resolution reads back as
    return None


def _read_dpi(im):
    if im.format == "TIFF" and 282 not in im.tag_v2:
        return None  # Pillow reports dpi (1, 1) for a TIFF without resolution tags
    dpi = im.info.get("dpi")
    try:
        dpi = [float(v) for v in dpi]
    except (TypeError, ValueError):
        return None
    if len(dpi) != 2 or not all(0 < v < 1e9 for v in dpi):
        return None
    encode = _dpi_encoder(im.format)
    if im.format == "TIFF":
        dpi = [float(np.float32(v)) for v in dpi]  # one starting point for every value that stores the same
    return [_short_number(v, encode) for v in dpi]


def _short_number(value: float, encode=None):
    """The shortest decimal that a format stores as it stores ``value``: 2835 px/m reads as 72 dpi, not 72.009."""
    if encode is not None:
        for digits in range(1, 18):
            short = float(f"{value:.{digits}g}")
            if encode(short) == encode(value):
                value = short
                break
    return int(value) if float(value).is_integer() else value


def _json(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _transparency(image: Image):
    raw = image.metadata.get("transparency")
    if raw is None:
        return None
    value = json.loads(raw)
    if isinstance(value, str):
        return bytes.fromhex(value)
    return tuple(value) if isinstance(value, list) else value


# -- writing ------------------------------------------------------------------------------------


def output_format(image: Image, format: str | None = None) -> str:
    """The format :func:`write_image` uses: ``format`` or the source format when it keeps this image
    exactly, else PNG, else TIFF, else TGA. Raises UnsupportedImageError if none does."""
    wanted = format or image.format
    wanted = _ALIASES.get(wanted.upper(), wanted.upper()) if wanted else None
    if image.original is not None and wanted == image.format:
        return wanted  # the kept file itself
    for fmt in (wanted, "PNG", "TIFF", "TGA"):
        if fmt and _keeps_exactly(fmt, image):
            return fmt
    _refuse(f"no supported format can store this {image.mode} image exactly")


def _keeps_exactly(fmt: str, image: Image) -> bool:
    if image.mode not in LOSSLESS_FORMATS.get(fmt, ()):
        return False
    if max(image.height, image.width) > _MAX_SIDE.get(fmt, 2**32 - 1):
        return False
    transparency = _transparency(image)
    if transparency is not None and not (fmt == "PNG" or (fmt == "GIF" and isinstance(transparency, int))):
        return False
    if image.palette is not None:
        entries = len(image.palette) // len(image.palette_mode)
        if image.palette_mode != "RGB" and fmt != "TGA":
            return False
        if fmt == "GIF" and (entries < 4 or entries & (entries - 1)):  # GIF pads to a power of two
            return False
        if fmt == "TIFF" and entries != 256:  # TIFF pads to 256
            return False
    if fmt == "WEBP" and image.mode == "RGBA" and image.pixels[..., 3].min() == 255:
        return False  # an opaque RGBA WebP reads back as RGB
    return True


def write_image(image: Image, target, format: str | None = None, strip_metadata: bool = False) -> str:
    """Write ``image`` exactly to a path or binary file object; returns the format written.

    The format is :func:`output_format` (``format`` or the source format if lossless for this
    image, else PNG). Metadata the format carries is kept unless ``strip_metadata`` (transparency
    is always kept). The encoded file is read back and compared before it is written;
    UnsupportedImageError if it differs (nothing is written then).
    """
    fmt = output_format(image, format)
    data = encode(image, fmt, strip_metadata)
    _verify(image, data, fmt)
    if isinstance(target, (str, os.PathLike)):
        try:
            Path(target).write_bytes(data)
        except OSError as error:
            raise BBCodecError(f"cannot write {target}: {error.strerror or error}") from None
    else:
        target.write(data)
    return fmt


def encode(image: Image, fmt: str, strip_metadata: bool = False) -> bytes:
    """The bytes of ``image`` in format ``fmt`` (unchecked; :func:`write_image` checks them): the kept
    original file when it is in that format and nothing is to be stripped."""
    if image.original is not None and fmt == image.format and not strip_metadata:
        return image.original
    metadata = {} if strip_metadata else {k: v for k, v in image.metadata.items() if k in FORMAT_METADATA[fmt]}
    problem = _metadata_problem(metadata)
    if problem:
        _refuse(f"cannot write this {image.mode} image as {fmt}: {problem}")
    buffer = io.BytesIO()
    try:
        options = _SAVE_OPTIONS[fmt](image, metadata)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            to_pil(image).save(buffer, fmt, **options)
    except BBCodecError:
        raise
    except Exception as error:  # damaged metadata: bad JSON (even nested too deep), wrong types, huge numbers
        _refuse(f"cannot write this {image.mode} image as {fmt}: {error or type(error).__name__}")
    return buffer.getvalue()


def to_pil(image: Image) -> PILImage.Image:
    """A fresh Pillow image with the same pixels and palette (and no info: metadata goes as options)."""
    size = (image.width, image.height)
    if image.mode == "1":
        return PILImage.frombytes("1", size, image.pixels.tobytes(), "raw", "1;8")
    im = PILImage.frombytes(image.mode, size, image.pixels.tobytes())
    if image.palette is not None:
        im.putpalette(image.palette, image.palette_mode)
    return im


def _verify(image: Image, data: bytes, fmt: str) -> None:
    try:
        back = read_image(data, max_pixels=image.height * image.width, verify=False)
        same = (back.mode == image.mode and back.palette == image.palette
                and back.palette_mode == image.palette_mode and np.array_equal(back.pixels, image.pixels)
                and _transparency(back) == _transparency(image))
    except UnsupportedImageError:
        same = False
    if not same:
        _refuse(f"this {image.mode} image does not come back exactly when written as {fmt}")


def _common_options(metadata: dict, keys=("icc_profile", "exif", "xmp")) -> dict:
    options = {key: metadata[key] for key in keys if key in metadata}
    if "dpi" in metadata:
        options["dpi"] = tuple(json.loads(metadata["dpi"]))
    return options


def _png_options(image: Image, metadata: dict) -> dict:
    options = _common_options(metadata, ("icc_profile", "exif"))
    info = PngImagePlugin.PngInfo()
    if "gamma" in metadata:
        info.add(b"gAMA", struct.pack(">I", round(json.loads(metadata["gamma"]) * 100000)))
    if "srgb" in metadata:
        info.add(b"sRGB", bytes([json.loads(metadata["srgb"])]))
    if "chromaticity" in metadata:
        info.add(b"cHRM", struct.pack(">8I", *(round(v * 100000) for v in json.loads(metadata["chromaticity"]))))
    for key, value in json.loads(metadata.get("text", b"{}")).items():
        if isinstance(value, dict):
            info.add_itxt(key, value["text"], value["lang"], value["tkey"], zip=len(value["text"]) > 1024)
        else:
            info.add_text(key, value, zip=len(value) > 1024)
    if "xmp" in metadata:
        info.add_itxt(_XMP_KEY, metadata["xmp"], zip=len(metadata["xmp"]) > 1024)
    options["pnginfo"] = info
    transparency = _transparency(image)
    if transparency is not None:  # Pillow reads 1-bit tRNS as 0/255 but writes it as given
        options["transparency"] = int(bool(transparency)) if image.mode == "1" else transparency
    return options


def _tiff_options(image: Image, metadata: dict) -> dict:
    options = _common_options(metadata, ("icc_profile",))
    # libtiff turns compressed YCbCr into RGB when reading, so YCbCr stays uncompressed
    if features.check("libtiff") and image.mode != "YCbCr":
        options["compression"] = "tiff_deflate"
    return options


def _gif_options(image: Image, metadata: dict) -> dict:
    options = {"optimize": False}  # optimizing reorders the palette
    if _transparency(image) is not None:
        options["transparency"] = _transparency(image)
    return options


def _bmp_options(image: Image, metadata: dict) -> dict:
    return _common_options(metadata, ()) or {"dpi": (0, 0)}  # else Pillow writes 96 dpi


_SAVE_OPTIONS = {
    "PNG": _png_options,
    "TIFF": _tiff_options,
    "GIF": _gif_options,
    "BMP": _bmp_options,
    "WEBP": lambda image, metadata: {"lossless": True, "exact": True, **_common_options(metadata)},
    "PPM": lambda image, metadata: {},
    "TGA": lambda image, metadata: {},
}
