"""Classical lossless codecs, measured beside bbcodec on the same pixels.

Each codec is an ``encode(pixels) -> bytes`` / ``decode(bytes) -> pixels`` pair
on (H, W, C) uint8 arrays with C in {1, 3, 4}. PNG and WebP come from Pillow;
JPEG XL and JPEG 2000 from the optional ``imagecodecs`` package
(``pip install "bbcodec[bench]"``). A codec that is not installed is reported
as unavailable, never an error. Every measurement decodes the bytes and checks
the pixels, so a lossy setting cannot pass as lossless.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from bbcodec.errors import BBCodecError


@dataclass(frozen=True)
class ClassicalCodec:
    name: str
    settings: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]


def _pil_mode(channels: int) -> str:
    return {1: "L", 3: "RGB", 4: "RGBA"}[channels]


def _pil_encode(fmt: str, **options):
    def encode(pixels: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        array = pixels[..., 0] if pixels.shape[2] == 1 else pixels
        Image.fromarray(array, _pil_mode(pixels.shape[2])).save(buffer, fmt, **options)
        return buffer.getvalue()
    return encode


def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array


def _as_hwc(array: np.ndarray) -> np.ndarray:
    return array[..., None] if array.ndim == 2 else array


def available_codecs() -> tuple[list[ClassicalCodec], list[str]]:
    """(the codecs that can run here, notes on those that cannot)."""
    codecs = [
        ClassicalCodec("PNG", "Pillow, optimize, level 9", _pil_encode("PNG", optimize=True, compress_level=9), _pil_decode),
        ClassicalCodec("WebP", "Pillow, lossless, method 6, quality 100",
                       _pil_encode("WEBP", lossless=True, method=6, quality=100, exact=True), _pil_decode),
    ]
    notes = []
    try:
        import imagecodecs
    except ImportError:
        notes.append("JPEG XL and JPEG 2000 skipped: imagecodecs is not installed (pip install 'bbcodec[bench]')")
        return codecs, notes

    def jxl_encode(pixels):
        return imagecodecs.jpegxl_encode(pixels[..., 0] if pixels.shape[2] == 1 else pixels, lossless=True, effort=7)

    def j2k_encode(pixels):
        return imagecodecs.jpeg2k_encode(pixels[..., 0] if pixels.shape[2] == 1 else pixels, level=0, reversible=True)

    for name, settings, encode, decode, flag in (
        ("JPEG XL", "imagecodecs/libjxl, lossless, effort 7", jxl_encode, imagecodecs.jpegxl_decode, "JPEGXL"),
        ("JPEG 2000", "imagecodecs/OpenJPEG, reversible", j2k_encode, imagecodecs.jpeg2k_decode, "JPEG2K"),
    ):
        if getattr(imagecodecs, flag).available:
            codecs.append(ClassicalCodec(name, settings, encode, lambda data, d=decode: _as_hwc(d(data))))
        else:
            notes.append(f"{name} skipped: not built into this imagecodecs")
    return codecs, notes


@dataclass
class Measurement:
    bytes: int
    encode_seconds: float
    decode_seconds: float


def measure(codec: ClassicalCodec, pixels: np.ndarray) -> Measurement:
    """Encode, decode and verify one image."""
    start = time.perf_counter()
    data = codec.encode(pixels)
    middle = time.perf_counter()
    decoded = codec.decode(data)
    end = time.perf_counter()
    if pixels.shape[2] == 1 and decoded.shape[2] == 3 and (decoded == decoded[..., :1]).all():
        decoded = decoded[..., :1]  # WebP has no greyscale mode: grey comes back as three equal channels
    if decoded.shape != pixels.shape or not np.array_equal(decoded, pixels):
        raise BBCodecError(f"{codec.name} did not reproduce the pixels exactly")
    return Measurement(len(data), middle - start, end - middle)
