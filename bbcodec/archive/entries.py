"""The members of an archive chunk: checked names, image descriptions, and series of counting names.

A run of images whose names count up (``x/0007``, ``x/0008``, ...) with the
same description is one :class:`Entry`, so the 10,000 digits of an MNIST file
cost a few bytes of entries, not 10,000 names. Names are relative paths that
unpacking can never take outside its folder (:func:`check_name`), checked
when writing and again when reading.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from bbcodec import container, imageio
from bbcodec.archive.layout import MAX_CHUNK_SUBPIXELS, MAX_ENTRIES_BYTES
from bbcodec.errors import BBCodecError
from bbcodec.wire import Choice, Malformed, Reader, text, varint

_DIGITS = re.compile(r"^(.*?)([0-9]+)([^0-9]*)$")



class ArchiveError(BBCodecError):
    """An archive that cannot be written as asked (a bad name, a lossy image)."""


@dataclass(frozen=True)
class Member:
    """One image of an archive and its name (a relative path with ``/`` between folders)."""

    name: str
    image: imageio.Image


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


_DESCRIPTION_FLAGS = ("palette_mode", "format", "palette", "metadata", "kept")
"""The presence bits of a description; ``kept``: the image is its file's bytes, kept in the chunk."""


def describe(image: imageio.Image, kept: bool = False) -> bytes:
    """Everything but the pixels that rebuilds ``image``: mode, size, palette, source format, metadata; and
    whether the chunk keeps its file's bytes instead of coding its pixels (``kept``)."""
    present = sum(1 << i for i, name in enumerate(_DESCRIPTION_FLAGS[:4]) if getattr(image, name)) | kept << 4
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
            parts += [text(key), varint(len(value)), value]
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
    kept: bool = False

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
        return cls(mode, width, height, palette_mode, source_format, palette, metadata, bool(present & 16))


def entries_of(members: list[Member], kept: frozenset = frozenset()) -> list[Entry]:
    """The entries of these members in order (those at the indices ``kept`` kept as their files): runs of
    counting names with one description become series."""
    entries: list[Entry] = []
    for index, member in enumerate(members):
        description = describe(member.image, index in kept)
        if entries and entries[-1].extends(member.name, description):
            entries[-1] = entries[-1].grown()
        else:
            entries.append(Entry(member.name, description))
    return entries


def entries_bytes(entries: list[Entry]) -> bytes:
    parts = [varint(len(entries))]
    for entry in entries:
        parts += [text(entry.prefix), varint(entry.digits)]
        if entry.digits:
            parts += [varint(entry.first), varint(entry.count), text(entry.suffix)]
        parts.append(entry.description)
    return b"".join(parts)


def read_entries(data: bytes) -> list[tuple[str, Description]]:
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
