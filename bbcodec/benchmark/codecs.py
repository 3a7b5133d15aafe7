"""The classical lossless codecs the benchmark runs beside bbcodec, and measuring one on an image."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from bbcodec import classical


@dataclass(frozen=True)
class Codec:
    """A classical codec as the benchmark runs it: a command-line key and an encode/decode pair."""

    key: str
    name: str
    settings: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]


CLASSICAL_KEYS = {"PNG": "png", "WebP": "webp", "JPEG XL": "jxl", "JPEG 2000": "j2k"}
"""Display name (as :mod:`bbcodec.classical` names them) -> command-line key."""

EXTRA_CODECS = {
    # key: (name, settings, imagecodecs flag)
    "jxl-e9": ("JPEG XL e9", "imagecodecs/libjxl, lossless, effort 9", "JPEGXL"),
    "jpegls": ("JPEG-LS", "imagecodecs/CharLS, lossless (near 0)", "JPEGLS"),
    "jpegxr": ("JPEG XR", "imagecodecs/jxrlib, lossless (level 1.0)", "JPEGXR"),
    "qoi": ("QOI", "imagecodecs/qoi (grey as RGB)", "QOI"),
    "avif": ("AVIF", "imagecodecs/libavif, lossless (level 100, speed 0); slow", "AVIF"),
}

ALL_KEYS = ["png", "webp", "jxl", "jxl-e9", "j2k", "jpegls", "jpegxr", "qoi", "avif"]
DEFAULT_KEYS = [k for k in ALL_KEYS if k != "avif"]
"""Measured unless told otherwise; AVIF lossless is left out by default (about 30 s per megapixel here)."""


def _plane(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels


def _hwc(array: np.ndarray) -> np.ndarray:
    return array[..., None] if array.ndim == 2 else array


def _extra_codec(key: str, imagecodecs) -> Codec:
    name, settings, _ = EXTRA_CODECS[key]
    ic = imagecodecs

    def encode(pixels: np.ndarray) -> bytes:
        if key == "jxl-e9":
            return ic.jpegxl_encode(_plane(pixels), lossless=True, effort=9)
        if key == "jpegls":
            return ic.jpegls_encode(_plane(pixels), level=0)
        if key == "jpegxr":
            return ic.jpegxr_encode(_plane(pixels), level=1.0)
        if key == "qoi":  # QOI has no grey: a lone plane goes as three equal channels
            return ic.qoi_encode(np.ascontiguousarray(np.repeat(pixels, 3, axis=2)) if pixels.shape[2] == 1 else pixels)
        return ic.avif_encode(_plane(pixels), level=100, speed=0)

    decoder = {"jxl-e9": ic.jpegxl_decode, "jpegls": ic.jpegls_decode, "jpegxr": ic.jpegxr_decode,
               "qoi": ic.qoi_decode, "avif": ic.avif_decode}[key]
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
    base, base_notes = classical.available_codecs()
    by_key = {CLASSICAL_KEYS[c.name]: Codec(CLASSICAL_KEYS[c.name], c.name, c.settings, c.encode, c.decode)
              for c in base if c.name in CLASSICAL_KEYS}
    notes = [n for n in base_notes if any(name in n and key in keys for name, key in CLASSICAL_KEYS.items())]
    extras = [k for k in keys if k in EXTRA_CODECS]
    if extras:
        try:
            import imagecodecs
        except ImportError:
            imagecodecs = None
            names = ", ".join(EXTRA_CODECS[k][0] for k in extras)
            notes.append(f"{names} skipped: imagecodecs is not installed (pip install 'bbcodec[bench]')")
        for key in extras if imagecodecs is not None else []:
            if getattr(imagecodecs, EXTRA_CODECS[key][2]).available:
                by_key[key] = _extra_codec(key, imagecodecs)
            else:
                notes.append(f"{EXTRA_CODECS[key][0]} skipped: not built into this imagecodecs")
    codecs = [by_key[k] for k in keys if k in by_key]
    return codecs, notes


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
