"""Flow chain files: many images of one size coded by a Flow++ model on one local bits-back stack.

A flow codes images with bits back through its dequantization noise
(:mod:`bbcodec.coding.flow_coder`), and the first images of a chain pay for
the noise they pop from seed words: about 17 bits per sub-pixel spread over
the chain (``FIRST_BITS`` plus the Gaussian's spread), so a flow codes sets of
images, never one alone.

Layout: ``MAGIC``, a version byte, the header's length (uint32, little
endian), the header (UTF-8 JSON), then the payload as little-endian uint32
words. The header names the model by its full hash, the float platform the
chain was coded on (it decodes only where the same float kernels run,
:mod:`bbcodec.portability`), the entropy coder, the images' count and shape,
the batch size, the grid plan and the seed, and a checksum of the pixels,
which :func:`decompress_images` verifies. Every field is checked before use:
a damaged or hostile file gets one :class:`~bbcodec.errors.CorruptDataError`.
"""
from __future__ import annotations

import hashlib
import json
import struct

import numpy as np

from bbcodec.coding.ans import ENTROPY_CODER
from bbcodec.coding.flow_coder import (BITS_RANGE, MAX_SIDE, FlowChain, check_fits,
                                       decode_images, encode_images, seed_length)
from bbcodec.container import MAX_PIXELS
from bbcodec.coding.local_bitsback import LocalBitsBackError
from bbcodec.errors import BBCodecError, CorruptDataError, shorten
from bbcodec.portability import float_platform

MAGIC = b"\xbbBBF"
VERSION = 1
MAX_HEADER_BYTES = 1 << 16
_PREFIX = struct.Struct("<4sBI")
_COUNTS = {"count": (1, MAX_PIXELS), "batch": (1, 1 << 16), "seed_words": (1, MAX_PIXELS),
           "untouched_seed_words": (0, MAX_PIXELS)}


def pixel_checksum(images: np.ndarray) -> str:
    digest = hashlib.blake2b(repr(images.shape).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


def compress_images(model, model_hash: str, images: np.ndarray, batch: int = 1, device: str = "cpu") -> bytes:
    """A flow chain file of uint8 images (N, H, W, C), all of one size."""
    chain = encode_images(model, images, batch)
    header = {"model": model_hash, "float_platform": float_platform(device), "entropy_coder": ENTROPY_CODER,
              "count": chain.count, "shape": list(chain.shape), "batch": chain.batch, "grid_bits": chain.grid_bits,
              "seed_words": chain.seed_words, "untouched_seed_words": chain.untouched_seed_words,
              "pixel_checksum": pixel_checksum(images)}
    text = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(MAGIC, VERSION, len(text)) + text + chain.payload.astype("<u4").tobytes()


def read_header(data: bytes) -> tuple[dict, bytes]:
    """(checked header, payload bytes) of a flow chain file."""
    if len(data) < _PREFIX.size:
        raise CorruptDataError("not a flow chain file (too short)")
    magic, version, length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CorruptDataError("not a flow chain file")
    if version != VERSION:
        raise CorruptDataError(f"flow chain format version {version} is not supported (this bbcodec reads {VERSION})")
    if length > min(MAX_HEADER_BYTES, len(data) - _PREFIX.size):
        raise CorruptDataError("corrupt flow chain file (its header runs past the file or its limit)")
    try:
        header = json.loads(data[_PREFIX.size:_PREFIX.size + length].decode())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise CorruptDataError("corrupt flow chain file (its header is not JSON)") from None
    _check(header)
    payload = data[_PREFIX.size + length:]
    if len(payload) % 4:
        raise CorruptDataError("corrupt flow chain file (its payload is not whole 32-bit words)")
    return header, payload


def _check(header) -> None:
    def integer(value, low, high):
        return type(value) is int and low <= value <= high

    if not isinstance(header, dict):
        raise CorruptDataError("corrupt flow chain file (its header is not an object)")
    for name in ("model", "float_platform", "entropy_coder", "pixel_checksum"):
        if not isinstance(header.get(name), str) or len(header[name]) > 512:
            raise CorruptDataError(f"corrupt flow chain file (bad {name})")
    for name, (low, high) in _COUNTS.items():
        if not integer(header.get(name), low, high):
            raise CorruptDataError(f"corrupt flow chain file (bad {name})")
    shape, bits = header.get("shape"), header.get("grid_bits")
    if not (isinstance(shape, list) and len(shape) == 3 and all(integer(v, 1, MAX_SIDE) for v in shape)):
        raise CorruptDataError("corrupt flow chain file (bad shape)")
    if header["count"] * int(np.prod(shape)) > MAX_PIXELS or header["untouched_seed_words"] > header["seed_words"]:
        raise CorruptDataError("corrupt flow chain file (too many pixels, or more seed than it has)")
    if header["seed_words"] > seed_length(header["batch"], int(np.prod(shape))):
        raise CorruptDataError("corrupt flow chain file (more seed words than a batch takes)")
    if not (isinstance(bits, list) and 2 <= len(bits) <= 1024 and all(integer(b, *BITS_RANGE) for b in bits)):
        raise CorruptDataError("corrupt flow chain file (bad grid plan)")


def decompress_images(data: bytes, model, model_hash: str, device: str = "cpu") -> np.ndarray:
    """The uint8 images (N, H, W, C) of a flow chain file, decoded with ``model`` and checked."""
    header, payload = read_header(data)
    if header["model"] != model_hash:
        raise BBCodecError(f"this flow chain needs model {header['model'][:16]}, not {model_hash[:16]}")
    if header["entropy_coder"] != ENTROPY_CODER:
        raise BBCodecError(f"this flow chain was coded with {header['entropy_coder']}; this bbcodec has "
                           f"{ENTROPY_CODER}")
    here = float_platform(device)
    if header["float_platform"] != here:
        raise BBCodecError(f"this flow chain decodes only where its float arithmetic runs: it was coded on "
                           f"{header['float_platform']}, this is {here}")
    chain = FlowChain(np.frombuffer(payload, dtype="<u4").astype(np.uint32), header["untouched_seed_words"],
                      header["seed_words"], header["grid_bits"], header["batch"], header["count"],
                      tuple(header["shape"]))
    check_fits(model, chain.shape, chain.batch, CorruptDataError)
    try:
        images = decode_images(model, chain)
    except (LocalBitsBackError, ValueError, RuntimeError, OverflowError) as error:
        raise CorruptDataError(f"corrupt flow chain ({shorten(error, 100)})") from None
    if pixel_checksum(images) != header["pixel_checksum"]:
        raise CorruptDataError("decoded pixels do not match the flow chain's checksum")
    return images
