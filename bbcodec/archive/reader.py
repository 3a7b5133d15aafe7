"""Reading an archive: finding its chunks (skipping damaged ones), listing members, decoding a chunk."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from bbcodec import container, imageio, zoo
from bbcodec.archive.entries import Description, read_entries
from bbcodec.archive.layout import (CHUNK_MAGIC, END_MAGIC, MAX_ENTRIES_BYTES, METHODS, START, ArchiveHeader,
                                    chain_steps, content_digest, grouped_seed_length, grouped_steps, image_steps,
                                    inflated, read_batch_sizes, read_calibration, read_stack_sizes)
from bbcodec.coding.ans import ENTROPY_CODER
from bbcodec.coding.chain import EncodedChain, decode_steps
from bbcodec.coding.image import check_coder, coding_model
from bbcodec.errors import CorruptDataError, UnsupportedImageError
from bbcodec.wire import Malformed, Reader, crc32

@dataclass
class Chunk:
    """One chunk as found in the archive: where its body lies and its members, or why it cannot be read."""

    index: int
    offset: int
    body: slice | None = None
    members: list[tuple[str, Description]] = field(default_factory=list)
    entries: bytes = b""
    problem: str | None = None


class Archive:
    """An archive read from bytes (or a memory map): its header, its chunks, their members.

    Opening checks the header and every chunk's CRC and entries; a damaged chunk is listed in
    :attr:`problems` and its members are missing, the others stay readable. Images are decoded with
    ``model`` (a name, file or hash) if given, else with the installed model whose hash the header names.
    """

    def __init__(self, data, *, model: str | None = None, device: str = "cpu"):
        self.data, self.model, self.device = data, model, device
        self._coder = None
        self.header, offset = ArchiveHeader.read(data)
        self.chunks: list[Chunk] = []
        self.problems: list[str] = []
        self.complete = False
        self._scan(offset)
        self._where = {name: position for position, chunk in enumerate(self.chunks) for name, _ in chunk.members}

    def _scan(self, offset: int) -> None:
        """Find the chunks and the end record from ``offset``, skipping (and reporting) damaged stretches."""
        data, found = self.data, 0
        while offset < len(data):
            magic = bytes(data[offset:offset + 4])
            if magic == END_MAGIC and self._read_end(offset):
                return
            if magic == CHUNK_MAGIC:
                chunk = self._read_chunk(found, offset)
                found += 1
                if chunk.problem is None:
                    self.chunks.append(chunk)
                    offset = chunk.body.stop + 4
                    continue
                self.problems.append(f"chunk {found} (byte {offset}) is damaged ({chunk.problem}): its images "
                                     "are lost")
            else:
                self.problems.append(f"unreadable bytes at {offset}")
            offset = self._next_magic(offset + 1)
        self.problems.append("truncated archive: the end record is missing (images after the last chunk "
                             "read may be lost)")

    def _next_magic(self, offset: int) -> int:
        found = [i for i in (self.data.find(CHUNK_MAGIC, offset), self.data.find(END_MAGIC, offset)) if i >= 0]
        return min(found) if found else len(self.data)

    def _read_end(self, offset: int) -> bool:
        reader = Reader(self.data, offset + 4, offset + 64, "truncated", "bad end record")
        try:
            chunks, images = reader.uint(1 << 40), reader.uint(1 << 40)
            crc = struct.unpack("<I", reader.take(4))[0]
        except (Malformed, CorruptDataError):
            return False
        if crc != crc32(bytes(self.data[offset:reader.offset - 4])):
            return False
        if reader.offset != len(self.data):
            self.problems.append(f"{len(self.data) - reader.offset} bytes after the end record")
        found = sum(len(c.members) for c in self.chunks)
        if (chunks, images) != (len(self.chunks), found):
            self.problems.append(f"the archive had {chunks} chunk(s) and {images} image(s); {len(self.chunks)} "
                                 f"chunk(s) and {found} image(s) are readable")
        self.complete = not self.problems
        return True

    def _read_chunk(self, index: int, offset: int) -> Chunk:
        chunk = Chunk(index, offset)
        reader = Reader(self.data, offset + 4, len(self.data), "truncated", "truncated")
        try:
            size = reader.uint(1 << 40)
            start = reader.offset
            if start + size + 4 > len(self.data):
                raise Malformed("truncated")
            body = bytes(self.data[start:start + size])
            if struct.unpack_from("<I", self.data, start + size)[0] != crc32(body):
                raise Malformed("checksum mismatch")
            chunk.body = slice(start, start + size)
            body_reader = Reader(body, 0, size, "truncated", "truncated")
            compressed = body_reader.take(body_reader.uint(size + 1))
            chunk.entries = inflated(compressed, self.header.format.deflate_bits, MAX_ENTRIES_BYTES, "entries")
            chunk.members = read_entries(chunk.entries)
        except (Malformed, CorruptDataError) as problem:
            chunk.problem = str(problem)
        return chunk

    # -- members -----------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every readable member's name, in archive order."""
        return [name for chunk in self.chunks for name, _ in chunk.members]

    def extract(self, name: str) -> imageio.Image:
        """One member's image (decoding its chunk only). KeyError for a name the readable chunks lack."""
        if name not in self._where:
            raise KeyError(name)
        return dict(self.decode_chunk(self.chunks[self._where[name]]))[name]

    def __iter__(self) -> Iterator[tuple[str, imageio.Image]]:
        for chunk in self.chunks:
            yield from self.decode_chunk(chunk)

    def decode_chunk(self, chunk: Chunk):
        """[(name, image)] of one chunk, decoded and checked against its digest (CorruptDataError if not)."""
        body = bytes(self.data[chunk.body])
        reader = Reader(body, 0, len(body), f"chunk {chunk.index + 1}: truncated", "truncated")
        coded = [index for index, (_, description) in enumerate(chunk.members) if not description.kept]
        shapes = [chunk.members[index][1].shape for index in coded]
        try:
            reader.take(reader.uint(len(body) + 1))  # the entries, read already
            method = reader.take(1)[0]
            if method >= len(METHODS):
                raise Malformed(f"unknown method {method}")
            if METHODS[method] == "bits-back":
                untouched, start = reader.uint(1 << 40), START.read(reader)
                form = self.header.format
                stack = read_stack_sizes(reader, form.deflate_bits)
                sizes = read_batch_sizes(reader, form.deflate_bits) if form.stores_batches else None
                calibration = read_calibration(reader) if form.calibrates else ()
            payload = reader.take(reader.uint(len(body) + 1))
            files = {index: reader.take(reader.uint(len(body) + 1))
                     for index, (_, description) in enumerate(chunk.members) if description.kept}
            digest = reader.take(self.header.format.digest_bytes)
        except Malformed as problem:
            raise CorruptDataError(f"chunk {chunk.index + 1}: corrupt ({problem})") from None
        if METHODS[method] == "stored" or not coded:
            pixels = _split_stored(payload, shapes, chunk.index)
        else:
            encoded = EncodedChain(_words(payload, chunk.index), untouched, stack_words=stack, start=start)
            pixels = self._decode(encoded, shapes, sizes, calibration, chunk.index)
        contents = dict(zip(coded, pixels)) | files
        if content_digest(chunk.entries, [contents[i] for i in range(len(chunk.members))], len(digest)) != digest:
            raise CorruptDataError(f"chunk {chunk.index + 1}: decoded images do not match its checksum "
                                   "(a damaged archive, or another model or machine than the archive's)")
        try:
            return [(name, _kept_image(description, contents[i]) if description.kept
                     else description.image(contents[i])) for i, (name, description) in enumerate(chunk.members)]
        except UnsupportedImageError as error:
            raise CorruptDataError(f"chunk {chunk.index + 1}: corrupt ({error})") from None

    def _coding_model(self):
        """The archive's model as its chunks are decoded with, loaded and checked once per archive."""
        if self._coder is None:
            header, model = self.header, self.model
            if header.entropy_coder != ENTROPY_CODER:
                raise CorruptDataError(f"this archive needs {header.entropy_coder} to decode; this installation "
                                       f"has {ENTROPY_CODER}")
            net, digest = zoo.load(model) if model else zoo.by_hash(header.model)
            if not digest.startswith(header.model):
                raise CorruptDataError(f"this archive was made with model {header.model[:16]}, not {digest[:16]}")
            check_coder(net, header.settings.coder, CorruptDataError)
            self._coder = coding_model(net.to(self.device), header.settings.arithmetic)
        return self._coder

    def _decode(self, encoded: EncodedChain, shapes, sizes: list[int] | None, calibration: tuple, index: int):
        header, settings = self.header, replace(self.header.settings, calibration=calibration)
        for shape in shapes:
            problem = container.work_limit_problem(settings.layout(*shape))
            if problem:
                raise container.WorkLimitError(f"chunk {index + 1}: refusing to decode: {problem}")
        coder = self._coding_model()
        seed = None
        try:
            if sizes is None:
                steps = chain_steps(coder, shapes, settings, header.format.grows_batches)
            else:
                units, max_batch = image_steps(coder, shapes, settings), settings.max_batch
                steps, seed = grouped_steps(units, sizes, max_batch), grouped_seed_length(units, max_batch)
        except (Malformed, CorruptDataError) as problem:
            raise CorruptDataError(f"chunk {index + 1}: corrupt ({problem})") from None
        try:
            decoded = decode_steps([(step.view, step.shape()) for step in steps], encoded, settings.coder,
                                   seed_length=seed)
        except CorruptDataError as error:
            raise CorruptDataError(f"chunk {index + 1}: {error}") from None
        except Exception as error:  # constriction or shape errors on data that passed the checksums
            raise CorruptDataError(f"chunk {index + 1}: cannot decode ({error})") from None
        pixels = [np.empty(shape, dtype=np.uint8) for shape in shapes]
        for step, tiles in zip(steps, decoded):
            step.paste(pixels, tiles)
        return pixels


def _words(payload: bytes, index: int) -> np.ndarray:
    if len(payload) % 4:
        raise CorruptDataError(f"chunk {index + 1}: corrupt (payload is not whole words)")
    return np.frombuffer(payload, dtype="<u4").astype(np.uint32)


def _split_stored(payload: bytes, shapes, index: int) -> list[np.ndarray]:
    sizes = [int(np.prod(shape)) for shape in shapes]
    if len(payload) != sum(sizes):
        raise CorruptDataError(f"chunk {index + 1}: corrupt (stored pixels have the wrong size)")
    offsets = np.cumsum([0] + sizes)
    return [np.frombuffer(payload, np.uint8, size, int(offset)).reshape(shape).copy()
            for size, offset, shape in zip(sizes, offsets, shapes)]


def _kept_image(description: Description, data: bytes) -> imageio.Image:
    """The image of a member kept as its file, carrying those bytes, if it is the image its entry describes."""
    image = imageio.read_image(data, verify=False)
    if (image.mode, image.width, image.height, image.format) != (description.mode, description.width,
                                                                 description.height, description.format):
        raise UnsupportedImageError("a kept file that is not the image its entry describes")
    return replace(image, original=data)

