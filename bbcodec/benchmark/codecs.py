"""The classical lossless codecs measured beside bbcodec: one registry, and measuring one on an image.

Each codec is an ``encode(pixels) -> bytes`` / ``decode(bytes) -> pixels``
pair on (H, W, C) uint8 arrays with C in {1, 3, 4}. PNG and WebP come from
Pillow; the others from the optional ``imagecodecs`` package
(``pip install "bbcodec[bench]"``). A codec that is not installed is skipped
with a note, never an error. Every measurement decodes the bytes and checks
the pixels, so a lossy setting cannot pass as lossless.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Codec:
    """A classical codec as the benchmark runs it: a command-line key and an encode/decode pair."""

    key: str
    name: str
    settings: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]


PILLOW_CODECS = {
    # key: (name, settings, Pillow format, save options)
    "png": ("PNG", "Pillow, optimize, level 9", "PNG", {"optimize": True, "compress_level": 9}),
    "webp": ("WebP", "Pillow, lossless, method 6, quality 100", "WEBP",
             {"lossless": True, "method": 6, "quality": 100, "exact": True}),
}
IMAGECODECS_CODECS = {
    # key: (name, settings, imagecodecs flag and function prefix, encode options)
    "jxl": ("JPEG XL", "imagecodecs/libjxl, lossless, effort 7", "jpegxl", {"lossless": True, "effort": 7}),
    "jxl-e9": ("JPEG XL e9", "imagecodecs/libjxl, lossless, effort 9", "jpegxl", {"lossless": True, "effort": 9}),
    "j2k": ("JPEG 2000", "imagecodecs/OpenJPEG, reversible", "jpeg2k", {"level": 0, "reversible": True}),
    "jpegls": ("JPEG-LS", "imagecodecs/CharLS, lossless (near 0)", "jpegls", {"level": 0}),
    "jpegxr": ("JPEG XR", "imagecodecs/jxrlib, lossless (level 1.0)", "jpegxr", {"level": 1.0}),
    "qoi": ("QOI", "imagecodecs/qoi (grey as RGB)", "qoi", {}),
    "avif": ("AVIF", "imagecodecs/libavif, lossless (level 100, speed 0); slow", "avif", {"level": 100, "speed": 0}),
}
NO_GREY = {"qoi"}
"""Codecs without a grey mode: a lone plane is given to them as three equal channels."""

ALL_KEYS = ["png", "webp", "jxl", "jxl-e9", "j2k", "jpegls", "jpegxr", "qoi", "avif"]
DEFAULT_KEYS = [k for k in ALL_KEYS if k != "avif"]
"""Measured unless told otherwise; AVIF lossless is left out by default (about 30 s per megapixel here)."""


def _plane(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels


def _hwc(array: np.ndarray) -> np.ndarray:
    return array[..., None] if array.ndim == 2 else array


def pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return _hwc(np.asarray(image))


def _pillow_codec(key: str) -> Codec:
    name, settings, fmt, options = PILLOW_CODECS[key]

    def encode(pixels: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(_plane(pixels), {1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]).save(buffer, fmt, **options)
        return buffer.getvalue()

    return Codec(key, name, settings, encode, lambda data: pil_decode(data))


def _imagecodecs_codec(key: str, imagecodecs) -> Codec:
    name, settings, prefix, options = IMAGECODECS_CODECS[key]
    encoder, decoder = getattr(imagecodecs, f"{prefix}_encode"), getattr(imagecodecs, f"{prefix}_decode")

    def encode(pixels: np.ndarray) -> bytes:
        if key in NO_GREY and pixels.shape[2] == 1:
            pixels = np.ascontiguousarray(np.repeat(pixels, 3, axis=2))
        return encoder(_plane(pixels), **options)

    return Codec(key, name, settings, encode, lambda data: _hwc(decoder(data)))


def parse_codec_keys(text: str | None) -> list[str]:
    """``"png,webp"``, ``"default"``, ``"all"`` or ``"none"`` -> codec keys (ValueError for unknown ones)."""
    if text is None or text.strip().lower() in ("", "default"):
        return list(DEFAULT_KEYS)
    keys = []
    for word in (w.strip().lower() for w in text.split(",")):
        if word == "all":
            keys += ALL_KEYS
        elif word == "default":
            keys += DEFAULT_KEYS
        elif word == "none":
            continue
        elif word in ALL_KEYS:
            keys.append(word)
        elif word:
            raise ValueError(f"unknown codec {word!r} (choose from {', '.join(ALL_KEYS)}, default, all, none)")
    return list(dict.fromkeys(keys))


def classical_codecs(keys=None) -> tuple[list[Codec], list[str]]:
    """(the requested classical codecs that can run here, notes on those that cannot).

    A codec whose package is not installed is skipped with a note, never an
    error: PNG and WebP need only Pillow; the others need the optional
    ``imagecodecs`` (``pip install "bbcodec[bench]"``).
    """
    keys = list(DEFAULT_KEYS if keys is None else keys)
    by_key = {key: _pillow_codec(key) for key in keys if key in PILLOW_CODECS}
    wanted = [key for key in keys if key in IMAGECODECS_CODECS]
    notes = []
    try:
        import imagecodecs
    except ImportError:
        imagecodecs = None
        if wanted:
            names = ", ".join(IMAGECODECS_CODECS[k][0] for k in wanted)
            notes.append(f"{names} skipped: imagecodecs is not installed (pip install 'bbcodec[bench]')")
    for key in wanted if imagecodecs is not None else []:
        if getattr(imagecodecs, IMAGECODECS_CODECS[key][2].upper()).available:
            by_key[key] = _imagecodecs_codec(key, imagecodecs)
        else:
            notes.append(f"{IMAGECODECS_CODECS[key][0]} skipped: not built into this imagecodecs")
    return [by_key[k] for k in keys if k in by_key], notes


def same_pixels(decoded: np.ndarray, pixels: np.ndarray) -> bool:
    """Whether a codec decoded exactly ``pixels`` (three equal channels count as one grey plane)."""
    if pixels.shape[2] == 1 and decoded.ndim == 3 and decoded.shape[2] == 3 and decoded.shape[:2] == pixels.shape[:2] \
            and (decoded == decoded[..., :1]).all():
        decoded = decoded[..., :1]  # codecs without a grey mode return three equal channels
    return decoded.shape == pixels.shape and np.array_equal(decoded, pixels)


def measure_classical(codec: Codec, pixels: np.ndarray) -> tuple[int, float, float, bool, str]:
    """(bytes, encode s, decode s, exact, error) for one image; never raises for a codec's failure."""
    try:
        start = time.perf_counter()
        data = codec.encode(pixels)
        middle = time.perf_counter()
        decoded = codec.decode(data)
        end = time.perf_counter()
    except Exception as error:  # a codec that cannot code this image is a failure, reported
        return 0, 0.0, 0.0, False, f"{type(error).__name__}: {error}"
    exact = same_pixels(np.asarray(decoded), pixels)
    return len(data), middle - start, end - middle, exact, "" if exact else "decoded pixels differ"
