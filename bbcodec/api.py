"""The public Python API: compress and decompress images, read file headers.

    import bbcodec
    data = bbcodec.compress("photo.png")             # bytes of a .bbc file
    image = bbcodec.decompress(data)                  # bbcodec.imageio.Image, exact pixels
    bbcodec.imageio.write_image(image, "photo.png")
    bbcodec.info(data)                                # the header, without decoding

Every file names its model by hash and carries a checksum of the pixels, which
:func:`decompress` verifies. An image that the model would code larger than
its raw pixels is stored raw instead (``method: "stored"``), as zstd does.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from bbcodec import container, imageio, zoo
from bbcodec.container import META_PREFIX, Header
from bbcodec.coding.ans import ENTROPY_CODER
from bbcodec.coding.chain import EncodedChain
from bbcodec.coding.image import CoderSettings, decode_image, encode_image
from bbcodec.errors import CorruptDataError, UnsupportedImageError
from bbcodec.portability import decode_hint, float_platform

PIXEL_METADATA = {"transparency"}


def pixel_checksum(pixels: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def _to_image(source) -> imageio.Image:
    return source if isinstance(source, imageio.Image) else imageio.read_image(source)


def compress(source, *, model: str = zoo.DEFAULT_MODEL, settings: CoderSettings = CoderSettings(),
             strip_metadata: bool = False, device: str = "cpu", progress=None, stats: dict | None = None) -> bytes:
    """Compress an image (path, bytes, file object or :class:`~bbcodec.imageio.Image`) to .bbc bytes.

    ``model`` is a model name, file or hash (:func:`bbcodec.zoo.load`);
    ``progress(tiles)`` is called as tiles are coded
    (``settings.layout(height, width, channels).tile_count`` gives the total).
    ``stats``, if given, is filled with the coder's accounting, in bits:
    ``method``, ``payload_bits`` (what the file stores), ``net_bits`` (the
    stack's growth, what bits-back promises) and ``initial_bits`` (the seed
    bits the first pops consumed), all for the bits-back code even when the
    file falls back to stored pixels.
    """
    image = _to_image(source)
    net, digest = zoo.load(model)
    net = net.to(device)
    pixels = image.pixels
    settings = settings.resolve()
    problem = container.work_limit_problem(settings.layout(image.height, image.width, image.channels))
    if problem:  # never write a file that the decoder's default limits would refuse
        raise UnsupportedImageError(problem)
    encoded = encode_image(net, pixels, settings, progress)
    header = Header(width=image.width, height=image.height, channels=image.channels, mode=image.mode,
                    palette_mode=image.palette_mode, source_format=image.format, model=digest,
                    pixel_checksum=pixel_checksum(pixels), method="stored")
    sections = {}
    if encoded.stored_bits // 8 < pixels.nbytes:
        header = replace(header, method="bits-back", coder=settings.to_dict(), grid_bits=net.config.grid_bits,
                         untouched_seed_words=encoded.untouched_seed_words, entropy_coder=ENTROPY_CODER,
                         # only this kind of machine is sure to reproduce float probabilities
                         float_platform=float_platform(device) if settings.arithmetic == "float" else None)
        sections["payload"] = encoded.payload.astype("<u4").tobytes()
        sections[container.CHECKPOINTS] = np.asarray(encoded.stack_words, dtype="<u4").tobytes()
    else:
        sections["payload"] = pixels.tobytes()
    if stats is not None:
        stats.update(method=header.method, payload_bits=encoded.stored_bits,
                     net_bits=encoded.net_bits, initial_bits=encoded.initial_bits)
    if image.palette is not None:
        sections["palette"] = image.palette
    # Transparency decides which pixels are visible: it is part of the image, kept even when stripping.
    kept = {k: v for k, v in image.metadata.items() if not strip_metadata or k in PIXEL_METADATA}
    sections.update({META_PREFIX + key: value for key, value in kept.items()})
    header = header.with_image_checksum(sections)
    return container.to_bytes(container.Container(header.to_json(), sections))


def _bbc_bytes(source) -> bytes:
    """The bytes of a .bbc file given as bytes, a path or a binary file object."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "read"):
        return source.read()
    return Path(source).read_bytes()


def info(source) -> dict:
    """The header of a .bbc file (bytes, path or file object), checked, without decoding the pixels."""
    header, _ = container.read_header(_bbc_bytes(source))
    return header


def decompress(source, *, model: str | None = None, device: str = "cpu", progress=None) -> imageio.Image:
    """Decode a .bbc file (bytes, path or file object) to an :class:`~bbcodec.imageio.Image`.

    The pixel checksum and, in files written since it exists, the image checksum are verified. The model is found by the hash in the file
    unless ``model`` names one.
    """
    box = container.from_bytes(_bbc_bytes(source))
    header = Header.from_json(box.header)
    payload = box.sections.get("payload", b"")
    if header.method == "stored":
        if len(payload) != header.subpixels:
            raise CorruptDataError("corrupt .bbc file (stored pixels have the wrong size)")
        pixels = np.frombuffer(payload, dtype=np.uint8).reshape(header.height, header.width, header.channels).copy()
    else:
        pixels = _decode_bits_back(header, payload, _checkpoints(box.sections), model, device, progress)
    if pixel_checksum(pixels) != header.pixel_checksum:
        raise CorruptDataError("decoded pixels do not match the file's checksum" + _hint(header, device))
    metadata = {k[len(META_PREFIX):]: v for k, v in box.sections.items() if k.startswith(META_PREFIX)}
    try:
        image = imageio.Image(pixels=pixels, mode=header.mode, palette=box.sections.get("palette"),
                              palette_mode=header.palette_mode, format=header.source_format, metadata=metadata)
    except UnsupportedImageError as error:
        raise CorruptDataError(f"corrupt .bbc file ({error})") from None
    if not header.image_matches(box.sections):
        raise CorruptDataError("the image's mode, size, palette or metadata do not match the file's checksum")
    return image


def _hint(header: Header, device) -> str:
    return decode_hint(header.to_json(), device)


def _checkpoints(sections: dict[str, bytes]):
    """The stack sizes a file records after each batch (None in files from before they existed)."""
    if container.CHECKPOINTS not in sections:
        return None
    data = sections[container.CHECKPOINTS]
    if len(data) % 4:
        raise CorruptDataError("corrupt .bbc file (stack checkpoints are not whole words)")
    return np.frombuffer(data, dtype="<u4").tolist()


def _coder_settings(header: Header) -> CoderSettings:
    try:
        settings = CoderSettings(**header.coder_settings())
    except (TypeError, ValueError):
        raise CorruptDataError("corrupt .bbc header (coder settings)") from None
    if settings.arithmetic == "auto":
        raise CorruptDataError("corrupt .bbc header (coder settings)")
    return settings


def _decode_bits_back(header: Header, payload, checkpoints, model, device, progress):
    net, loaded = zoo.load(model) if model else zoo.by_hash(header.model)
    if loaded != header.model:
        raise CorruptDataError(f"this file was made with model {header.model[:16]}, not {loaded[:16]}")
    settings = _coder_settings(header)
    made_with = header.entropy_coder or ENTROPY_CODER
    if made_with != ENTROPY_CODER:
        raise CorruptDataError(f"this file needs {made_with} to decode; this installation has {ENTROPY_CODER}")
    if len(payload) % 4:
        raise CorruptDataError("corrupt .bbc file (payload is not whole words)")
    encoded = EncodedChain(np.frombuffer(payload, dtype="<u4").astype(np.uint32), header.untouched_seed_words,
                           stack_words=checkpoints)
    try:
        return decode_image(net.to(device), encoded, header.height, header.width, header.channels, settings,
                            progress)
    except CorruptDataError as error:
        raise CorruptDataError(str(error) + _hint(header, device)) from None
    except Exception as error:  # constriction or shape errors on data that passed the checksums
        raise CorruptDataError(f"cannot decode payload: {error}{_hint(header, device)}") from None
