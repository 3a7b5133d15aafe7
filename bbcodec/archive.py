"""Archives: many images on bits-back chains, in chunks that decode on their own.

Bits-back coding (Townsend, Bird & Barber, ICLR 2019) pays its initial bits
once per chain: an image coded alone pays them alone, images coded one after
another on one stack share them, because each image's pops take bits that the
images before it pushed. An archive puts many images on such chains, about
``chunk_subpixels`` sub-pixels each. A chunk is one chain: its images coded in
order, each exactly as :func:`bbcodec.coding.image.encode_image` codes it (its
tiles and plane groups), on one stack. One image is extracted by decoding its
chunk alone, and a damaged chunk loses its own images only: the chunk size
trades rate (one chain start per chunk) against the work of extracting one
image (bench/README.md, "Archives").

Layout (varints are LEB128, texts their UTF-8 length and bytes: :mod:`bbcodec.wire`)::

    header   b"\\xbbBBA", version 1, model id (the first 16 bytes of its hash), coder, tile, max batch,
             arithmetic (one byte, two varints, one byte), grid bits, entropy coder (text), CRC-32
    chunk    b"BBCK", body size (varint), body, CRC-32 of the body
             body: entries size, zlib-compressed entries; method (bits-back or stored); for bits-back
             the untouched seed words, the start kept, the stack size after each batch; the payload
             (size, bytes); a BLAKE2b-128 digest of the entries and every image's pixels
    end      b"BBCE", chunks, images (varints), CRC-32 of the end record

Entries name the chunk's images and describe them (mode, size, palette,
source format, metadata). A run of images whose names count up (``x/0007``,
``x/0008``, ...) with the same description is one *series* entry, so the
10,000 digits of an MNIST file cost a few bytes of entries, not 10,000 names.

Everything is checked before use: the header and every chunk by CRC, sizes
against the limits before any memory is taken, names so that unpacking never
writes outside its folder, and every decoded image by its chunk's digest. A
damaged chunk is reported and skipped (the reader finds the next chunk by its
magic), so what is intact stays readable.
"""
from __future__ import annotations

import hashlib
import re
import struct
import zlib
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

import numpy as np

from bbcodec import container, imageio, zoo
from bbcodec.coding.ans import ENTROPY_CODER
from bbcodec.coding.chain import STARTS, EncodedChain, decode_steps, encode_steps
from bbcodec.coding.image import CoderSettings, batch_shape, coding_model, cut_batch, paste_batch, tile_views
from bbcodec.errors import BBCodecError, CorruptDataError, UnsupportedImageError
from bbcodec.safeio import write_all
from bbcodec.wire import Choice, Malformed, Reader, crc32, varint, text as wire_text

MAGIC = b"\xbbBBA"
VERSION = 1
CHUNK_MAGIC = b"BBCK"
END_MAGIC = b"BBCE"
SUFFIX = ".bba"
DEFAULT_CHUNK_SUBPIXELS = 1 << 21
"""Sub-pixels per chunk unless asked otherwise: about 2,700 MNIST digits or 680 CIFAR images."""
MAX_CHUNK_SUBPIXELS = 1 << 26
"""Most sub-pixels a chunk may declare (a reader's memory); a larger image is a chunk of its own."""
MAX_ENTRIES_BYTES = 1 << 24
"""Most bytes the entries of one chunk may decompress to. A chunk also holds at most
:data:`bbcodec.container.MAX_TILE_BATCHES` images (each is at least one network pass)."""
METHODS = ("bits-back", "stored")
_DIGITS = re.compile(r"^(.*?)([0-9]+)([^0-9]*)$")


class ArchiveError(BBCodecError):
    """An archive that cannot be written as asked (a bad name, a lossy image)."""


@dataclass(frozen=True)
class Member:
    """One image of an archive and its name (a relative path with ``/`` between folders)."""

    name: str
    image: imageio.Image


# -- names and entries ---------------------------------------------------------------------------------------
def check_name(name: str) -> str:
    """``name`` if unpacking it stays inside the target folder, else ArchiveError: a relative path of
    printable parts, none empty, ``.`` or ``..``."""
    parts = name.split("/")
    if not name or len(name.encode()) > 200 or not name.isprintable() or "\\" in name or ":" in name or any(
            part in ("", ".", "..") for part in parts):
        raise ArchiveError(f"{name!r:.80} cannot name an archive member (a relative path of at most 200 bytes, "
                           "folders split by '/', no '..', '\\' or ':')")
    return name


@dataclass(frozen=True)
class Entry:
    """Images of one description: one named image, or a series ``prefix + number + suffix`` counting up from
    ``first`` (``digits`` wide, zero-padded)."""

    prefix: str
    description: bytes
    digits: int = 0
    first: int = 0
    count: int = 1
    suffix: str = ""

    def names(self) -> list[str]:
        if not self.digits:
            return [self.prefix]
        return [f"{self.prefix}{number:0{self.digits}d}{self.suffix}"
                for number in range(self.first, self.first + self.count)]

    def extends(self, name: str, description: bytes) -> bool:
        """Whether ``name`` with ``description`` is the next image of this series (or would start one)."""
        pattern = _counting(name)
        if description != self.description or pattern is None:
            return False
        if self.digits:
            return pattern == (self.prefix, self.suffix, self.digits, self.first + self.count)
        mine = _counting(self.prefix)
        return mine is not None and pattern == (*mine[:3], mine[3] + 1)

    def grown(self) -> "Entry":
        """This entry with the next name (for which :meth:`extends` holds) added."""
        if self.digits:
            return replace(self, count=self.count + 1)
        prefix, suffix, digits, number = _counting(self.prefix)
        return Entry(prefix, self.description, digits, number, 2, suffix)


def _counting(name: str) -> tuple[str, str, int, int] | None:
    """(prefix, suffix, digits, number) of a name with a number in it (its last run of ASCII digits)."""
    match = _DIGITS.match(name)
    if match is None or len(match.group(2)) > 18:
        return None
    prefix, number, suffix = match.groups()
    return prefix, suffix, len(number), int(number)


_DESCRIPTION_FLAGS = ("palette_mode", "format", "palette", "metadata")


def describe(image: imageio.Image) -> bytes:
    """Everything but the pixels that rebuilds ``image``: mode, size, palette, source format, metadata."""
    present = sum(1 << i for i, name in enumerate(_DESCRIPTION_FLAGS) if getattr(image, name))
    parts = [_MODE.write(image.mode), varint(image.width), varint(image.height), bytes([present])]
    if image.palette_mode:
        parts.append(_PALETTE_MODE.write(image.palette_mode))
    if image.format:
        parts.append(_SOURCE_FORMAT.write(image.format))
    if image.palette:
        parts += [varint(len(image.palette)), image.palette]
    if image.metadata:
        parts.append(varint(len(image.metadata)))
        for key, value in image.metadata.items():
            parts += [wire_text(key), varint(len(value)), value]
    return b"".join(parts)


_MODE = Choice(container.MODES)
_PALETTE_MODE = Choice(container.PALETTE_MODES)
_SOURCE_FORMAT = Choice(container.SOURCE_FORMATS, escape="")


@dataclass(frozen=True)
class Description:
    """An image's mode, size, palette, source format and metadata, as :func:`describe` wrote them."""

    mode: str
    width: int
    height: int
    palette_mode: str | None = None
    format: str | None = None
    palette: bytes | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, imageio.CHANNELS[self.mode]

    def image(self, pixels: np.ndarray) -> imageio.Image:
        return imageio.Image(pixels, self.mode, self.palette, self.palette_mode, self.format, dict(self.metadata))

    @classmethod
    def read(cls, reader: Reader) -> "Description":
        mode, width, height = _MODE.read(reader), reader.uint(1 << 31), reader.uint(1 << 31)
        if not (width and height) or width * height > container.MAX_PIXELS:
            raise Malformed(f"an image of {width}x{height} pixels")
        present = reader.take(1)[0]
        if present >> len(_DESCRIPTION_FLAGS):
            raise Malformed(f"unknown description flags {present:#x}")
        palette_mode = _PALETTE_MODE.read(reader) if present & 1 else None
        source_format = _SOURCE_FORMAT.read(reader) if present & 2 else None
        palette = reader.take(reader.uint(1 << 12)) if present & 4 else None
        metadata = {}
        for _ in range(reader.uint(1 << 10) if present & 8 else 0):
            key = reader.text()
            metadata[key] = reader.take(reader.uint(MAX_ENTRIES_BYTES))
        return cls(mode, width, height, palette_mode, source_format, palette, metadata)


def entries_of(members: list[Member]) -> list[Entry]:
    """The entries of these members in order: runs of counting names with one description become series."""
    entries: list[Entry] = []
    for member in members:
        description = describe(member.image)
        if entries and entries[-1].extends(member.name, description):
            entries[-1] = entries[-1].grown()
        else:
            entries.append(Entry(member.name, description))
    return entries


def _entries_bytes(entries: list[Entry]) -> bytes:
    parts = [varint(len(entries))]
    for entry in entries:
        parts += [wire_text(entry.prefix), varint(entry.digits)]
        if entry.digits:
            parts += [varint(entry.first), varint(entry.count), wire_text(entry.suffix)]
        parts.append(entry.description)
    return b"".join(parts)


def _read_entries(data: bytes) -> list[tuple[str, Description]]:
    """(name, description) of every image of a chunk's entries, the total size checked as it grows."""
    reader = Reader(data, 0, len(data), "truncated entries", "truncated entries")
    members, subpixels = [], 0
    for _ in range(reader.uint(1 << 32)):
        prefix, digits = reader.text(), reader.uint(19)
        first, count, suffix = (reader.uint(10 ** 18), reader.uint(1 << 32), reader.text()) if digits else (0, 1, "")
        description = Description.read(reader)
        subpixels += count * int(np.prod(description.shape))
        if subpixels > MAX_CHUNK_SUBPIXELS or count == 0 or len(members) + count > container.MAX_TILE_BATCHES:
            raise Malformed("a chunk of more images or sub-pixels than the limits allow")
        for name in Entry(prefix, b"", digits, first, count, suffix).names():
            try:
                members.append((check_name(name), description))
            except ArchiveError:
                raise Malformed(f"a member name that would write outside the folder: {name!r:.60}") from None
    if reader.offset != len(data):
        raise Malformed("trailing bytes after the entries")
    return members


# -- the header --------------------------------------------------------------------------------------------
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
                         _CODER.write(s.coder), varint(s.tile), varint(s.max_batch), _ARITHMETIC.write(s.arithmetic),
                         varint(self.grid_bits), wire_text(self.entropy_coder)])
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
            coder, tile, max_batch = _CODER.read(reader), reader.uint(1 << 16), reader.uint(1 << 16)
            arithmetic, grid_bits, entropy_coder = _ARITHMETIC.read(reader), reader.uint(64), reader.text()
            settings = CoderSettings(coder, tile, max_batch, arithmetic)
        except (Malformed, ValueError) as problem:
            raise CorruptDataError(f"corrupt archive header ({problem})") from None
        end = reader.offset
        if len(data) < end + 4 or struct.unpack_from("<I", data, end)[0] != crc32(data[:end]):
            raise CorruptDataError("corrupt archive header (checksum mismatch)")
        return cls(model, settings, grid_bits, entropy_coder), end + 4


_CODER = Choice(container.CODERS)
_ARITHMETIC = Choice(("exact", "float"))
_START = Choice(STARTS[:2])


# -- writing -----------------------------------------------------------------------------------------------
@dataclass
class PackReport:
    """What :func:`pack` wrote: images, chunks, bytes, the sub-pixels coded and the chunks stored raw."""

    images: int = 0
    chunks: int = 0
    bytes: int = 0
    subpixels: int = 0
    stored_chunks: int = 0

    @property
    def bits_per_subpixel(self) -> float:
        return 8 * self.bytes / max(1, self.subpixels)


def pack(members: Iterable[Member], target, *, model: str = zoo.DEFAULT_MODEL,
         settings: CoderSettings = CoderSettings(), chunk_subpixels: int = DEFAULT_CHUNK_SUBPIXELS,
         device: str = "cpu", progress=None) -> PackReport:
    """Write an archive of ``members`` to ``target`` (a binary file object), chunk by chunk, in their order.

    A chunk is closed once it holds ``chunk_subpixels`` sub-pixels; an image never spans two chunks.
    ``progress(images)`` is called after each chunk. Raises ArchiveError for a member that an archive
    cannot hold (a bad or repeated name), UnsupportedImageError for an image the model cannot code.
    """
    if not 1 <= chunk_subpixels <= MAX_CHUNK_SUBPIXELS:
        raise ValueError(f"chunk_subpixels must be 1..{MAX_CHUNK_SUBPIXELS}")
    net, digest = zoo.load(model)
    net = net.to(device)
    settings = settings.resolve()
    header = ArchiveHeader(digest, settings, net.config.grid_bits, ENTROPY_CODER)
    report = PackReport()
    _write(target, header.to_bytes(), report)
    names: set[str] = set()
    chunk: list[Member] = []
    subpixels = passes = 0
    for member in members:
        if check_name(member.name) in names:
            raise ArchiveError(f"{member.name}: two members of one name")
        names.add(member.name)
        layout = settings.layout(*member.image.pixels.shape)
        problem = container.work_limit_problem(layout)
        if problem or member.image.pixels.size > MAX_CHUNK_SUBPIXELS:
            raise UnsupportedImageError(f"{member.name}: {problem or 'too large for an archive chunk'}")
        size, work = member.image.pixels.size, layout.work()[0]
        if chunk and (subpixels + size > chunk_subpixels or passes + work > container.MAX_TILE_BATCHES):
            _write_chunk(target, net, settings, chunk, report, progress)
            chunk, subpixels, passes = [], 0, 0
        chunk.append(member)
        subpixels, passes = subpixels + size, passes + work
    if chunk:
        _write_chunk(target, net, settings, chunk, report, progress)
    end = END_MAGIC + varint(report.chunks) + varint(report.images)
    _write(target, end + struct.pack("<I", crc32(end)), report)
    return report


def _write(target, data: bytes, report: PackReport) -> None:
    write_all(target, data)
    report.bytes += len(data)


def _chain_steps(model, shapes: list[tuple[int, int, int]], settings: CoderSettings):
    """(coder view, plane group, tiles, image index) of every batch of a chunk's images, in coding order."""
    return [(view, group, batch, index) for index, shape in enumerate(shapes)
            for view, group, batch in tile_views(model, settings.layout(*shape))]


def _content_digest(entries: bytes, pixels: list[np.ndarray]) -> bytes:
    digest = hashlib.blake2b(entries, digest_size=16)
    for image in pixels:
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.digest()


def _write_chunk(target, net, settings: CoderSettings, chunk: list[Member], report: PackReport, progress) -> None:
    entries = _entries_bytes(entries_of(chunk))
    pixels = [m.image.pixels for m in chunk]
    model = coding_model(net, settings.arithmetic)
    steps = [(view, cut_batch(pixels[index], group, batch, model.device))
             for view, group, batch, index in _chain_steps(model, [p.shape for p in pixels], settings)]
    encoded = encode_steps(steps, settings.coder, start=settings.start)
    raw = sum(p.size for p in pixels)
    if encoded.stored_bits // 8 < raw:
        coded = [bytes([0]), varint(encoded.untouched_seed_words), _START.write(encoded.start),
                 varint(len(encoded.stack_words))] + [varint(int(w)) for w in encoded.stack_words]
        payload = encoded.payload.astype("<u4").tobytes()
    else:
        coded, payload = [bytes([1])], b"".join(np.ascontiguousarray(p).tobytes() for p in pixels)
        report.stored_chunks += 1
    compressed = zlib.compress(entries, 9)
    body = b"".join([varint(len(compressed)), compressed, *coded, varint(len(payload)), payload,
                     _content_digest(entries, pixels)])
    _write(target, CHUNK_MAGIC + varint(len(body)) + body + struct.pack("<I", crc32(body)), report)
    report.chunks += 1
    report.images += len(chunk)
    report.subpixels += raw
    if progress:
        progress(len(chunk))


# -- reading -----------------------------------------------------------------------------------------------
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
        found = [i for i in (self._find(CHUNK_MAGIC, offset), self._find(END_MAGIC, offset)) if i >= 0]
        return min(found) if found else len(self.data)

    def _find(self, magic: bytes, offset: int) -> int:
        return self.data.find(magic, offset)

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
            inflater = zlib.decompressobj()
            chunk.entries = inflater.decompress(compressed, MAX_ENTRIES_BYTES)
            if inflater.unconsumed_tail or not inflater.eof:
                raise Malformed("entries larger than the limit or cut short")
            chunk.members = _read_entries(chunk.entries)
        except (Malformed, CorruptDataError, zlib.error) as problem:
            chunk.problem = str(problem)
        return chunk

    # -- members -----------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every readable member's name, in archive order."""
        return [name for chunk in self.chunks for name, _ in chunk.members]

    def members(self) -> list[tuple[str, Description]]:
        return [member for chunk in self.chunks for member in chunk.members]

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
        shapes = [description.shape for _, description in chunk.members]
        try:
            reader.take(reader.uint(len(body) + 1))  # the entries, read already
            method = reader.take(1)[0]
            if method >= len(METHODS):
                raise Malformed(f"unknown method {method}")
            if METHODS[method] == "bits-back":
                untouched, start = reader.uint(1 << 40), _START.read(reader)
                stack = [reader.uint(1 << 40) for _ in range(reader.uint(container.MAX_TILE_BATCHES + 1))]
            payload = reader.take(reader.uint(len(body) + 1))
            digest = reader.take(16)
        except Malformed as problem:
            raise CorruptDataError(f"chunk {chunk.index + 1}: corrupt ({problem})") from None
        if METHODS[method] == "stored":
            pixels = _split_stored(payload, shapes, chunk.index)
        else:
            encoded = EncodedChain(_words(payload, chunk.index), untouched, stack_words=stack, start=start)
            pixels = self._decode(encoded, shapes, chunk.index)
        if _content_digest(chunk.entries, pixels) != digest:
            raise CorruptDataError(f"chunk {chunk.index + 1}: decoded images do not match its checksum "
                                   "(a damaged archive, or another model or machine than the archive's)")
        try:
            return [(name, description.image(p)) for (name, description), p in zip(chunk.members, pixels)]
        except UnsupportedImageError as error:
            raise CorruptDataError(f"chunk {chunk.index + 1}: corrupt ({error})") from None

    def _decode(self, encoded: EncodedChain, shapes, index: int):
        header, model = self.header, self.model
        if header.entropy_coder != ENTROPY_CODER:
            raise CorruptDataError(f"this archive needs {header.entropy_coder} to decode; this installation "
                                   f"has {ENTROPY_CODER}")
        net, digest = zoo.load(model) if model else zoo.by_hash(header.model)
        if not digest.startswith(header.model):
            raise CorruptDataError(f"this archive was made with model {header.model[:16]}, not {digest[:16]}")
        for shape in shapes:
            problem = container.work_limit_problem(header.settings.layout(*shape))
            if problem:
                raise container.WorkLimitError(f"chunk {index + 1}: refusing to decode: {problem}")
        coder = coding_model(net.to(self.device), header.settings.arithmetic)
        steps = _chain_steps(coder, shapes, header.settings)
        batch_shapes = [(view, batch_shape(group, batch)) for view, group, batch, _ in steps]
        try:
            decoded = decode_steps(batch_shapes, encoded, header.settings.coder)
        except CorruptDataError as error:
            raise CorruptDataError(f"chunk {index + 1}: {error}") from None
        except Exception as error:  # constriction or shape errors on data that passed the checksums
            raise CorruptDataError(f"chunk {index + 1}: cannot decode ({error})") from None
        pixels = [np.empty(shape, dtype=np.uint8) for shape in shapes]
        for (_, group, batch, image), tiles in zip(steps, decoded):
            paste_batch(pixels[image], group, batch, tiles)
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
