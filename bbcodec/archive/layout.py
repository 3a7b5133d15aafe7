"""The archive format's constants, its header, and what writer and reader share: a chunk's coding steps and digest.

See :mod:`bbcodec.archive` for the layout.
"""
from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from bbcodec import container
from bbcodec.coding.chain import FIRST_PREFIX, STARTS
from bbcodec.coding.image import CoderSettings, tile_views
from bbcodec.errors import CorruptDataError
from bbcodec.wire import Choice, Malformed, Reader, crc32, text, varint

MAGIC = b"\xbbBBA"
VERSION = 1
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

    def to_bytes(self) -> bytes:
        s = self.settings
        data = b"".join([MAGIC, bytes([VERSION]), bytes.fromhex(self.model[:2 * container.MODEL_ID_BYTES]),
                         CODER.write(s.coder), varint(s.tile), varint(s.max_batch), ARITHMETIC.write(s.arithmetic),
                         varint(self.grid_bits), text(self.entropy_coder)])
        return data + struct.pack("<I", crc32(data))

    @classmethod
    def read(cls, data) -> tuple["ArchiveHeader", int]:
        if bytes(data[:4]) != MAGIC:
            raise CorruptDataError("not a bbcodec archive (bad magic)")
        if len(data) < 5 or data[4] != VERSION:
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
        return cls(model, settings, grid_bits, entropy_coder), end + 4


CODER = Choice(container.CODERS)
ARITHMETIC = Choice(("exact", "float"))
START = Choice(STARTS[:2], escape=FIRST_PREFIX)



def chain_steps(model, shapes: list[tuple[int, int, int]], settings: CoderSettings):
    """(coder view, plane group, tiles, image index) of every batch of a chunk's images, in coding order."""
    return [(view, group, batch, index) for index, shape in enumerate(shapes)
            for view, group, batch in tile_views(model, settings.layout(*shape))]


def content_digest(entries: bytes, contents: list) -> bytes:
    """The digest of a chunk: its entries, then each member's pixels (an array) or kept file (bytes), in order."""
    digest = hashlib.blake2b(entries, digest_size=16)
    for content in contents:
        digest.update(content if isinstance(content, bytes) else np.ascontiguousarray(content).tobytes())
    return digest.digest()


def stack_sizes_bytes(sizes) -> bytes:
    """The stack's size after each batch of a chunk (what the decoder checks batch by batch), compactly: the
    count, then the zlib-compressed changes from one size to the next as zigzag varints (a 28x28 digit grows
    the stack by some 40 words: one byte, where its size would take three)."""
    previous, deltas = 0, []
    for size in sizes:
        delta, previous = int(size) - previous, int(size)
        deltas.append(varint(delta << 1 if delta >= 0 else (-delta << 1) - 1))
    packed = zlib.compress(b"".join(deltas), 9)
    return varint(len(sizes)) + varint(len(packed)) + packed


def read_stack_sizes(reader: Reader) -> list[int]:
    """The sizes :func:`stack_sizes_bytes` wrote (at most MAX_TILE_BATCHES of them); Malformed if damaged."""
    count = reader.uint(container.MAX_TILE_BATCHES + 1)
    inflater = zlib.decompressobj()
    data = inflater.decompress(reader.take(reader.uint(1 << 32)), 10 * count)
    if inflater.unconsumed_tail or not inflater.eof:
        raise Malformed("stack sizes larger than their count allows, or cut short")
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

