"""The public Python API: compress and decompress images, read file headers.

    import bbcodec
    data = bbcodec.compress("photo.png")             # bytes of a .bbc file
    image = bbcodec.decompress(data)                  # bbcodec.imageio.Image, exact pixels
    bbcodec.imageio.write_image(image, "photo.png")
    bbcodec.info(data)                                # the header, without decoding

Every file names its model by hash and carries a checksum of the pixels, which
:func:`decompress` verifies. A .bbc is never larger than what it was given plus
its header: an image file that the model would code larger than the file, or
whose format is lossy (JPEG, lossy WebP), is kept byte for byte
(``method: "original"``; decompressing gives back the identical file), and an
image given as pixels that the model would code larger than those pixels is
stored raw (``method: "stored"``), as zstd does.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from bbcodec import container, imageio, zoo
from bbcodec.container import META_PREFIX, Header, digest_matches, short_digest
from bbcodec.coding.ans import ENTROPY_CODER, WORD_BITS
from bbcodec.coding import calibration, level_sets
from bbcodec.coding.chain import EncodedChain, leading_batches
from bbcodec.coding.image import CoderSettings, decode_image, encode_image
from bbcodec.errors import CorruptDataError, UnsupportedImageError
from bbcodec.portability import decode_hint, float_platform
from bbcodec.tiling import TileLayout

PIXEL_METADATA = {"transparency"}
SINGLE_BATCH_SHARE = 0.02
"""Where the initial bits are more than this share of a bits-back payload (or the chain started without bits back), the
image is coded again in batches of one tile and without bits back throughout where those could pay (see
:func:`_encoded`), and the smallest code kept (the header's ``max_batch`` and ``start``). Tile batches double (1, 2,
4, ...) so that large images code fast, and each batch's bits-back pops are paid by what the batches before it
pushed; where the pixels cost little next to the latents' posterior entropy (drawings, screens, small images), a
batch twice the size of the last pops more than the last pushed, and the difference comes from the seed as initial
bits (``waterloo/horiz.png`` with a two-level polyphase model: 17,891 bytes, 4,973 in batches of one). In batches of
one each pop is paid by the push just before it; without bits back nothing is popped, and where the latents' KL
outweighs what they tell the pixels that is smaller still (``waterloo/circles.png`` with the default of 2026-12-07:
0.48 -> 0.08 bits per sub-pixel)."""


def pixel_checksum(pixels: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def _image_and_file(source, original: bytes | None) -> tuple[imageio.Image, bytes | None]:
    """The image to code and the file it came from, if known."""
    if isinstance(source, imageio.Image):
        return source, original
    data = imageio.source_bytes(source)
    return imageio.read_image(data), data


def compress(source, *, model: str = zoo.AUTO_MODEL, settings: CoderSettings = CoderSettings(),
             strip_metadata: bool = False, device: str = "cpu", progress=None, stats: dict | None = None,
             original: bytes | None = None, calibrate: bool = True) -> bytes:
    """Compress an image file (path, bytes or file object) or :class:`~bbcodec.imageio.Image` to .bbc bytes.

    ``original`` is the file an Image was read from, if any. Given the file, the result is never
    larger than it plus a header: when the .bbc of the model's code (or of the raw pixels) would not be
    smaller than the file, or the file codes its pixels lossily (:func:`bbcodec.imageio.lossy_coding`),
    the .bbc keeps the file byte for byte (``method: "original"``) and :func:`decompress` gives it back
    (:attr:`Image.original`). With ``strip_metadata`` a file is never kept as it is: a lossy one is
    refused, a lossless one falls back to raw pixels as an Image given without its file does.

    With ``calibrate`` (and ``settings`` without a ``calibration`` and ``level_sets``) the encoder fits the
    pixel likelihood to the image (:mod:`bbcodec.coding.calibration`) and codes planes that take few values
    among them (:mod:`bbcodec.coding.level_sets`): a few bytes in the header, where they pay for themselves
    (an image with level sets is coded twice, its calibration chosen with and without them: :func:`_fitted`).

    ``model`` is a model name, file or hash (:func:`bbcodec.zoo.load`), or ``"auto"``: the default model, and for
    a small image each of the shipped models made for them, the smallest file kept (:func:`bbcodec.zoo.choices`);
    ``progress(tiles)`` is called as tiles are coded (:func:`coding_layout`'s ``tile_count`` gives the total).
    ``stats``, if given, is filled with the file's ``method`` and the coder's accounting, in bits:
    ``payload_bits`` (what a bits-back or stored file stores), ``net_bits`` (the stack's growth,
    what bits-back promises) and ``initial_bits`` (the seed bits the first pops consumed), all for
    the bits-back code even when the file falls back to stored pixels or the original file (None
    for a lossy file, which is never coded).
    """
    image, original = _image_and_file(source, original)
    lossy = imageio.lossy_coding(original) if original is not None else None
    if lossy and strip_metadata:
        raise UnsupportedImageError(f"{lossy} files are kept byte for byte, never re-encoded, so their "
                                    "metadata cannot be stripped")
    if lossy:
        chosen, coded = _kept_file(image, original), {"payload_bits": None, "net_bits": None, "initial_bits": None}
    else:
        names = zoo.choices(model, image.height * image.width)   # the progress bar follows the first
        chosen, coded = min((_coded_file(image, name, settings, strip_metadata, device,
                                         progress if index == 0 else None, calibrate)
                             for index, name in enumerate(names)), key=lambda pair: len(pair[0]))
        if original is not None and not strip_metadata and len(chosen) >= len(original):
            chosen = _kept_file(image, original)  # the code does not beat the file: the file itself
    if stats is not None:
        stats.update(coded, method=info(chosen)["method"])
    return chosen


def coding_layout(image: imageio.Image, *, model: str = zoo.AUTO_MODEL,
                  settings: CoderSettings = CoderSettings()) -> TileLayout:
    """How :func:`compress` tiles ``image`` with ``model`` and ``settings`` (an ``auto`` tile: the model's)."""
    return settings.for_encoding(zoo.load(model)[0]).layout(image.height, image.width, image.channels)


def _image_header(image: imageio.Image, **fields) -> Header:
    """A header describing the image (size, mode, palette mode, source format) and ``fields``."""
    return Header(width=image.width, height=image.height, channels=image.channels, mode=image.mode,
                  palette_mode=image.palette_mode, source_format=image.format, **fields)


def _kept_file(image: imageio.Image, original: bytes) -> bytes:
    """A .bbc that keeps the image's file byte for byte."""
    return _file(_image_header(image, method="original"), {container.ORIGINAL: original})


def _coded_file(image: imageio.Image, model: str, settings: CoderSettings, strip_metadata: bool, device: str,
                progress, calibrate: bool) -> tuple[bytes, dict]:
    """A .bbc of the image's pixels coded by the model (or raw, if that is smaller), and the coder's accounting."""
    net, digest = zoo.load(model)
    net = net.to(device)
    pixels = image.pixels
    settings = settings.for_encoding(net)
    settings = replace(settings, tile=_covering_tile(settings.tile, image.height, image.width))
    problem = container.work_limit_problem(settings.layout(image.height, image.width, image.channels))
    if problem:  # never write a file that the decoder's default limits would refuse
        raise UnsupportedImageError(problem)
    tries = _fitted(net, pixels, settings) if calibrate else [settings]   # the progress bar follows the first
    coded = [_encoded(net, pixels, tried, progress if index == 0 else None) for index, tried in enumerate(tries)]
    encoded, settings = min(coded, key=lambda pair: pair[0].stored_bits + 8 * _side_bytes(pair[1]))
    described = {}  # what both kinds of file carry besides the pixels
    if image.palette is not None:
        described["palette"] = image.palette
    # Transparency decides which pixels are visible: it is part of the image, kept even when stripping.
    kept = {k: v for k, v in image.metadata.items() if not strip_metadata or k in PIXEL_METADATA}
    described.update({META_PREFIX + key: value for key, value in kept.items()})
    coded_header = _image_header(image, method="bits-back", model=digest,
                                 pixel_checksum=short_digest(pixel_checksum(pixels)),
                                 coder=replace(settings, start=encoded.start).to_dict(), grid_bits=net.config.grid_bits,
                                 untouched_seed_words=encoded.untouched_seed_words, entropy_coder=ENTROPY_CODER,
                                 # only this kind of machine is sure to reproduce float probabilities
                                 float_platform=float_platform(device) if settings.arithmetic == "float" else None,
                                 pixel_calibration=list(settings.calibration) or None,
                                 pixel_level_sets=list(settings.level_sets) or None)
    coded = {"payload": encoded.payload.astype("<u4").tobytes()}
    if len(encoded.stack_words) > 1:  # one batch is one of the decoder's free passes
        coded[container.CHECKPOINTS] = np.asarray(encoded.stack_words, dtype="<u4").tobytes()
    chosen = _file(coded_header, {**coded, **described})
    if len(chosen) > pixels.nbytes:  # a file of raw pixels (checked by the image checksum) could be smaller
        chosen = min(chosen, _file(_image_header(image, method="stored"), {"payload": pixels.tobytes(), **described}),
                     key=len)
    accounting = {"payload_bits": encoded.stored_bits, "net_bits": encoded.net_bits,
                  "initial_bits": encoded.initial_bits}
    return chosen, accounting


def _side_bytes(settings: CoderSettings) -> int:
    """The header bytes of the side information that the encoder's tries differ in: calibration and level sets."""
    return len(settings.calibration) + len(settings.level_sets)


def _covering_tile(tile: int, height: int, width: int) -> int:
    """``tile``, or where it covers the whole image, the smallest power of two from 64 up that does: the same one
    tile (and no whole-tile sample for a calibration below 64 pixels, as with 64), a header byte less for
    images up to 64 pixels."""
    side = 64
    while side < max(height, width):
        side *= 2
    return min(tile, side) if tile >= max(height, width) else tile


def _fitted(net, pixels: np.ndarray, settings: CoderSettings) -> list[CoderSettings]:
    """The settings with the image's level sets and calibration where ``settings`` has none: chosen for the
    pixels as they are coded (among the level sets); where there are level sets, also with the calibration
    chosen for the pixels as they are, since the sample can mislead (USC-SIPI's gray21.512.png: 0.229 against
    0.086 bits per sub-pixel), so that the encoder keeps the smaller code of the two; and for an image small enough
    (:data:`~bbcodec.coding.calibration.SIDE_SHARE`), also without the level sets (their estimate misleads on
    MNIST digits under the mnist model: files 3.8 % larger) and with each calibration shipped for the model."""
    if not settings.level_sets:
        settings = replace(settings, level_sets=level_sets.choose(net, pixels))
    if settings.calibration:
        return [settings]
    sets = settings.plane_level_sets(net, pixels.shape[2])
    tries = [replace(settings, calibration=calibration.choose(net, pixels, settings.tile, sets))]
    if sets is not None:
        tries.append(replace(settings, calibration=calibration.choose(net, pixels, settings.tile)))
        if len(settings.level_sets) > calibration.SIDE_SHARE * pixels.size:
            tries.append(replace(tries[-1], level_sets=()))
    shipped = calibration.presets_worth_trying([tried.calibration for tried in tries], net.calibration_presets,
                                               pixels.size)
    return tries + [replace(settings, calibration=named) for named in shipped]


def _file(header: Header, sections: dict[str, bytes]) -> bytes:
    """The .bbc bytes of a header and its sections, the image checksum added."""
    return container.to_bytes(container.Container(header.with_image_checksum(sections).to_json(), sections))


def _encoded(net, pixels: np.ndarray, settings: CoderSettings, progress) -> tuple[EncodedChain, CoderSettings]:
    """The image's chain and the settings that made it: as ``settings`` ask or, where the latents cost more than they
    return (:data:`SINGLE_BATCH_SHARE`), the smallest of that, (with ``start`` auto) no bits back throughout and
    batches of one tile. No bits back throughout is not tried where ``start`` auto has coded the first batch alone
    without bits back: it found the second batch cheaper with bits back than without (trying it and batches of one
    anyway made photos 041-049, USC-SIPI misc and Waterloo 0.007-0.012 % smaller for 72 % more coding time;
    bench/README.md, "Coded once"). Batches of one only save initial bits (the stack's growth, one posterior sample
    per latent, does not depend on the batches), so they are tried only where there are some to save."""
    encoded = encode_image(net, pixels, settings, progress)
    batches = len(encoded.stack_words)
    leading = leading_batches(encoded.start, batches)
    tries = [(encoded, settings)]
    if encoded.initial_bits <= SINGLE_BATCH_SHARE * encoded.stored_bits and leading == 0 or batches == 1:
        return encoded, settings   # one batch: its start was chosen both ways already
    if settings.start == "auto" and leading != 1 and leading < batches:   # (all of them: it is that chain)
        throughout = replace(settings, start="no-bits-back-throughout")
        tries.append((encode_image(net, pixels, throughout), throughout))
    if settings.max_batch > 1 and min(tried.stored_bits for tried, _ in tries) > encoded.net_bits + WORD_BITS:
        single = replace(settings, max_batch=1)
        tries.append((encode_image(net, pixels, single), single))
    return min(tries, key=lambda tried: tried[0].stored_bits)


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

    The pixel checksum and, in files written since it exists, the image checksum are verified. The model is found
    by the hash in the file (its first bytes in format versions 2 and 3) unless ``model`` names one (``"auto"``, a
    choice of :func:`compress`, names none).
    """
    box = container.from_bytes(_bbc_bytes(source))
    header = Header.from_json(box.header)
    if header.method == "original":
        return _kept_image(header, box.sections)
    payload = box.sections.get("payload", b"")
    if header.method == "stored":
        if len(payload) != header.subpixels:
            raise CorruptDataError("corrupt .bbc file (stored pixels have the wrong size)")
        pixels = np.frombuffer(payload, dtype=np.uint8).reshape(header.height, header.width, header.channels).copy()
    else:
        pixels = _decode_bits_back(header, payload, _checkpoints(box.sections), model, device, progress)
    if header.pixel_checksum is not None and not digest_matches(header.pixel_checksum, pixel_checksum(pixels)):
        raise CorruptDataError("decoded pixels do not match the file's checksum" + _hint(header, device))
    metadata = container.metadata_of(box.sections)
    try:
        image = imageio.Image(pixels=pixels, mode=header.mode, palette=box.sections.get("palette"),
                              palette_mode=header.palette_mode, format=header.source_format, metadata=metadata)
    except UnsupportedImageError as error:
        raise CorruptDataError(f"corrupt .bbc file ({error})") from None
    if not header.image_matches(box.sections):
        raise CorruptDataError("the image's mode, size, palette or metadata (or stored pixels) do not match the file's checksum")
    return image


def _kept_image(header: Header, sections: dict[str, bytes]) -> imageio.Image:
    """The image of a file kept byte for byte, carrying those bytes, once its checksum is verified."""
    original = sections.get(container.ORIGINAL)
    if original is None or header.image_checksum is None or not header.image_matches(sections):
        raise CorruptDataError("corrupt .bbc file (the kept file does not match its checksum)")
    try:
        image = imageio.read_image(original, verify=False)
    except UnsupportedImageError as error:
        raise CorruptDataError(f"cannot read the kept {header.source_format} file: {error}") from None
    if (image.height, image.width, image.channels, image.mode, image.format) != (
            header.height, header.width, header.channels, header.mode, header.source_format):
        raise CorruptDataError("corrupt .bbc file (the kept file's image does not match the header)")
    return replace(image, original=original)


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
    if "auto" in (settings.coder, settings.arithmetic, settings.start):
        raise CorruptDataError("corrupt .bbc header (coder settings)")
    return settings


def _decode_bits_back(header: Header, payload, checkpoints, model, device, progress):
    net, loaded = zoo.load(model) if model and model != zoo.AUTO_MODEL else zoo.by_hash(header.model)
    if not header.names_model(loaded):
        raise CorruptDataError(f"this file was made with model {header.model[:16]}, not {loaded[:16]}")
    settings = _coder_settings(header)
    made_with = header.entropy_coder or ENTROPY_CODER
    if made_with != ENTROPY_CODER:
        raise CorruptDataError(f"this file needs {made_with} to decode; this installation has {ENTROPY_CODER}")
    if len(payload) % 4:
        raise CorruptDataError("corrupt .bbc file (payload is not whole words)")
    encoded = EncodedChain(np.frombuffer(payload, dtype="<u4").astype(np.uint32), header.untouched_seed_words,
                           stack_words=checkpoints, start=settings.start)
    try:
        return decode_image(net.to(device), encoded, header.height, header.width, header.channels, settings,
                            progress)
    except CorruptDataError as error:
        raise CorruptDataError(str(error) + _hint(header, device)) from None
    except Exception as error:  # constriction or shape errors on data that passed the checksums
        raise CorruptDataError(f"cannot decode payload: {error}{_hint(header, device)}") from None
