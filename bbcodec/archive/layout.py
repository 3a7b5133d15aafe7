"""The archive format's constants, its header, and what writer and reader share: a chunk's coding steps and digest.

See :mod:`bbcodec.archive` for the layout.
"""
from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from bbcodec import container
from bbcodec.coding.chain import FIRST_PREFIX, STARTS, seed_length
from bbcodec.coding.image import CoderSettings, batch_shape, cut_batch, paste_batch, tile_views
from bbcodec.errors import CorruptDataError
from bbcodec.wire import Choice, Malformed, Reader, crc32, text, varint

MAGIC = b"\xbbBBA"
VERSION = 4


@dataclass(frozen=True)
class ChunkFormat:
    """What differs between archive versions inside a chunk."""

    digest_bytes: int   # the BLAKE2b digest of the entries and images
    deflate_bits: int   # zlib's wbits for the entries and the stack sizes: 15 a zlib stream, -15 raw deflate
    grows_batches: bool  # whether runs of images of one shape share batches (chain_steps)
    stores_batches: bool = False  # whether the encoder chose those batches and the chunk lists them
    calibrates: bool = False  # whether a bits-back chunk carries a calibration of the pixel likelihood


FORMATS = {1: ChunkFormat(16, 15, False), 2: ChunkFormat(8, -15, True), 3: ChunkFormat(8, -15, True, True),
           4: ChunkFormat(8, -15, True, True, True)}
"""Every archive version a reader reads: version 2 (2026-12-07) has a shorter digest, no zlib framing (a
digit's chunk is some 30 bytes smaller) and growing batches; version 3 (2026-12-07) batches as large as the
stack pays for, chosen while coding and listed in the chunk (:func:`grouped_steps`); version 4 (2026-12-07) one
calibration of the pixel likelihood for each chunk's images
(:func:`bbcodec.coding.calibration.choose_for_images`; none where it does not pay)."""
CHUNK_MAGIC = b"BBCK"
END_MAGIC = b"BBCE"
SUFFIX = ".bba"
DEFAULT_CHUNK_SUBPIXELS = 1 << 21
"""Sub-pixels per chunk unless asked otherwise: about 2,700 MNIST digits or 680 CIFAR images."""
MAX_CHUNK_SUBPIXELS = 1 << 26
"""Most sub-pixels a chunk may declare (a reader's memory), and so the largest image an archive holds."""
MAX_ENTRIES_BYTES = 1 << 24
"""Most bytes the entries of one chunk may decompress to. A chunk also holds at most
:data:`bbcodec.container.MAX_TILE_BATCHES` images (each is at least one network pass)."""
METHODS = ("bits-back", "stored")
"""How a chunk keeps its images: on a bits-back chain, or raw (when the chain would be larger)."""

@dataclass(frozen=True)
class ArchiveHeader:
    """What every chunk of an archive is coded with: the model (by hash prefix) and the coder settings."""

    model: str
    settings: CoderSettings
    grid_bits: int
    entropy_coder: str
    version: int = VERSION

    @property
    def format(self) -> ChunkFormat:
        return FORMATS[self.version]

    def to_bytes(self) -> bytes:
        s = self.settings
        data = b"".join([MAGIC, bytes([self.version]), bytes.fromhex(self.model[:2 * container.MODEL_ID_BYTES]),
                         CODER.write(s.coder), varint(s.tile), varint(s.max_batch), ARITHMETIC.write(s.arithmetic),
                         varint(self.grid_bits), text(self.entropy_coder)])
        return data + struct.pack("<I", crc32(data))

    @classmethod
    def read(cls, data) -> tuple["ArchiveHeader", int]:
        if bytes(data[:4]) != MAGIC:
            raise CorruptDataError("not a bbcodec archive (bad magic)")
        if len(data) < 5 or data[4] not in FORMATS:
            raise CorruptDataError(f"unsupported archive version {data[4] if len(data) > 4 else None}"
                                   if len(data) > 4 else "truncated archive (header)")
        reader = Reader(data, 5, 1024, "truncated archive (header)", "corrupt archive header")
        try:
            model = reader.take(container.MODEL_ID_BYTES).hex()
            coder, tile, max_batch = CODER.read(reader), reader.uint(1 << 16), reader.uint(1 << 16)
            arithmetic, grid_bits, entropy_coder = ARITHMETIC.read(reader), reader.uint(64), reader.text()
            settings = CoderSettings(coder, tile, max_batch, arithmetic)
        except (Malformed, ValueError) as problem:
            raise CorruptDataError(f"corrupt archive header ({problem})") from None
        end = reader.offset
        if len(data) < end + 4 or struct.unpack_from("<I", data, end)[0] != crc32(data[:end]):
            raise CorruptDataError("corrupt archive header (checksum mismatch)")
        return cls(model, settings, grid_bits, entropy_coder, data[4]), end + 4


CODER = Choice(container.CODERS)
ARITHMETIC = Choice(("exact", "float"))
START = Choice(STARTS[:2], escape=FIRST_PREFIX)



BATCH_GROWTH = (3, 20)
"""In version 2, a run of images of one shape, each one batch of tiles, shares batches: a batch holds at most
this share (3/20) of the tiles coded before it, at least one, at most ``max_batch`` (1, ..., 1, 2, 2, 3, ...,
16). A batch's bits-back pops are paid by what the batches before it pushed, so it may grow only as the stack
does: 80 MNIST digits in 28 batches decode 2.4 times as fast as in 80, at the same rate; a share of 1/4 costs
5 % (bench/README.md, "Growing batches")."""


@dataclass(frozen=True)
class ChainStep:
    """One batch of a chunk's chain: the model's view of it and its parts, (plane group, tiles, image index)
    each, in order."""

    view: object
    parts: tuple

    def shape(self) -> tuple[int, int, int, int]:
        group, batch, _ = self.parts[0]
        return (sum(len(tiles) for _, tiles, _ in self.parts), *batch_shape(group, batch)[1:])

    def cut(self, images: list[np.ndarray], device) -> torch.Tensor:
        """The batch from the chunk's (H, W, C) images."""
        return torch.cat([cut_batch(images[index], group, tiles, device) for group, tiles, index in self.parts])

    def paste(self, images: list[np.ndarray], decoded: torch.Tensor) -> None:
        """Write the decoded batch into the chunk's images: the inverse of :meth:`cut`."""
        for (group, tiles, index), part in zip(self.parts, decoded.split([len(t) for _, t, _ in self.parts])):
            paste_batch(images[index], group, tiles, part)


def image_steps(model, shapes: list[tuple[int, int, int]], settings: CoderSettings) -> list[tuple[ChainStep, bool]]:
    """Each image's own batches (its tiles and plane groups, calibrated by ``settings.calibration``) in coding
    order, and whether the image is that one batch alone (then it may share a batch with images of its shape)."""
    steps, rows = [], settings.calibration_rows(model)
    for index, shape in enumerate(shapes):
        views = list(tile_views(model, settings.layout(*shape), rows))
        steps += [(ChainStep(view, ((group, batch, index),)), len(views) == 1) for view, group, batch in views]
    return steps


def _joins(step: ChainStep, other: ChainStep) -> ChainStep | None:
    """``step`` and ``other`` as one batch (``step``'s view), or None where their batches differ in shape."""
    return ChainStep(step.view, step.parts + other.parts) if step.shape()[1:] == other.shape()[1:] else None


def chain_steps(model, shapes: list[tuple[int, int, int]], settings: CoderSettings,
                grows_batches: bool = True) -> list[ChainStep]:
    """The batches of a chunk's images, in coding order: each image's own (:func:`image_steps`) or, with
    ``grows_batches`` (version 2), images of one shape and one batch each sharing batches (:data:`BATCH_GROWTH`)."""
    steps, before, growing = [], 0, None  # tiles in the steps before the last; the last, if it may grow
    for step, alone in image_steps(model, shapes, settings):
        if grows_batches and alone and growing is not None:
            limit = max(1, min(settings.max_batch, before * BATCH_GROWTH[0] // BATCH_GROWTH[1]))
            joined = _joins(growing, step)
            if joined is not None and joined.shape()[0] <= limit:
                steps[-1] = growing = joined
                continue
        before += steps[-1].shape()[0] if steps else 0
        steps.append(step)
        growing = step if grows_batches and alone else None
    return steps


def group_limits(units: list[tuple[ChainStep, bool]], max_batch: int) -> list[int]:
    """For each of :func:`image_steps`' batches, how many from it on may share one batch in version 3: images
    that are one batch alone, of one shape, at most ``max_batch`` tiles together."""
    shapes = [step.shape() if alone else None for step, alone in units]
    limits = []
    for first, shape in enumerate(shapes):
        count, tiles = 1, shape[0] if shape else 0
        while (shape and first + count < len(units) and shapes[first + count]
               and shapes[first + count][1:] == shape[1:] and tiles + shapes[first + count][0] <= max_batch):
            tiles += shapes[first + count][0]
            count += 1
        limits.append(count)
    return limits


def grouped_steps(units: list[tuple[ChainStep, bool]], sizes: list[int], max_batch: int) -> list[ChainStep]:
    """Version 3's batches: :func:`image_steps`' batches joined ``sizes[i]`` at a time, as the encoder chose
    (:func:`bbcodec.coding.chain.encode_growing`); Malformed if the sizes do not fit the units."""
    limits, steps, first = group_limits(units, max_batch), [], 0
    for size in sizes:
        if not 1 <= size <= (limits[first] if first < len(units) else 0):
            raise Malformed("batch sizes that do not fit the chunk's images")
        parts = tuple(part for step, _ in units[first:first + size] for part in step.parts)
        steps.append(ChainStep(units[first][0].view, parts))
        first += size
    if first != len(units):
        raise Malformed("batch sizes that do not cover the chunk's images")
    return steps


def grouped_seed_length(units: list[tuple[ChainStep, bool]], max_batch: int) -> int:
    """Version 3's seed: enough for a batch of ``max_batch`` tiles of any of the units' shapes (the batches are
    chosen while coding, after the seed)."""
    return max(seed_length(step.view, (max_batch, *step.shape()[1:])) for step, _ in units)


def content_digest(entries: bytes, contents: list, size: int) -> bytes:
    """The ``size``-byte digest of a chunk: its entries, then each member's pixels (an array) or kept file
    (bytes), in order."""
    digest = hashlib.blake2b(entries, digest_size=size)
    for content in contents:
        digest.update(content if isinstance(content, bytes) else np.ascontiguousarray(content).tobytes())
    return digest.digest()


def deflated(data: bytes, wbits: int) -> bytes:
    """``data`` compressed as a zlib stream (``wbits`` 15) or raw deflate (-15)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


def inflated(data: bytes, wbits: int, limit: int, what: str) -> bytes:
    """The inverse of :func:`deflated`, at most ``limit`` bytes; Malformed if larger or cut short."""
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit)
    except zlib.error as problem:
        raise Malformed(f"{what}: {problem}") from None
    if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        raise Malformed(f"{what} larger than the limit, or cut short")
    return out


def batch_sizes_bytes(sizes: list[int], wbits: int) -> bytes:
    """Version 3's batch sizes (images a batch, most of them small): the count, then the compressed varints."""
    packed = deflated(b"".join(varint(size) for size in sizes), wbits)
    return varint(len(sizes)) + varint(len(packed)) + packed


def read_batch_sizes(reader: Reader, wbits: int) -> list[int]:
    """The sizes :func:`batch_sizes_bytes` wrote (at most MAX_TILE_BATCHES of them); Malformed if damaged."""
    count = reader.uint(container.MAX_TILE_BATCHES + 1)
    data = inflated(reader.take(reader.uint(1 << 32)), wbits, 10 * count, "batch sizes")
    values = Reader(data, 0, len(data), "batch sizes cut short", "batch sizes cut short")
    sizes = [values.uint(container.MAX_TILE_BATCHES + 1) for _ in range(count)]
    if values.offset != len(data):
        raise Malformed("trailing bytes after the batch sizes")
    return sizes


def calibration_bytes(calibration: tuple[int, ...]) -> bytes:
    """Version 4's calibration of a bits-back chunk: its length, then its indices (bytes)."""
    return varint(len(calibration)) + bytes(calibration)


def read_calibration(reader: Reader) -> tuple[int, ...]:
    """The calibration :func:`calibration_bytes` wrote (its indices are checked when the chunk is decoded)."""
    return tuple(reader.take(reader.uint(container.MAX_CALIBRATION + 1)))


def stack_sizes_bytes(sizes, wbits: int) -> bytes:
    """The stack's size after each batch of a chunk (what the decoder checks batch by batch), compactly: the
    count, then the compressed changes from one size to the next as zigzag varints (a 28x28 digit grows
    the stack by some 40 words: one byte, where its size would take three)."""
    previous, deltas = 0, []
    for size in sizes:
        delta, previous = int(size) - previous, int(size)
        deltas.append(varint(delta << 1 if delta >= 0 else (-delta << 1) - 1))
    packed = deflated(b"".join(deltas), wbits)
    return varint(len(sizes)) + varint(len(packed)) + packed


def read_stack_sizes(reader: Reader, wbits: int) -> list[int]:
    """The sizes :func:`stack_sizes_bytes` wrote (at most MAX_TILE_BATCHES of them); Malformed if damaged."""
    count = reader.uint(container.MAX_TILE_BATCHES + 1)
    data = inflated(reader.take(reader.uint(1 << 32)), wbits, 10 * count, "stack sizes")
    deltas = Reader(data, 0, len(data), "stack sizes cut short", "stack sizes cut short")
    sizes, size = [], 0
    for _ in range(count):
        zigzag = deltas.uint(1 << 41)
        size += zigzag >> 1 if not zigzag & 1 else -((zigzag + 1) >> 1)
        if size < 0:
            raise Malformed("a negative stack size")
        sizes.append(size)
    if deltas.offset != len(data):
        raise Malformed("trailing bytes after the stack sizes")
    return sizes

