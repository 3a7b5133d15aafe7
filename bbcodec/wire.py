"""The binary fields of bbcodec's formats: LEB128 varints, short texts, one-byte choices, digests, CRCs.

A reader takes fields front to back and refuses anything bbcodec would not
write (a number out of range, a text with control characters, an unknown
choice) with :class:`Malformed`; the format that uses it says where. Used by
the ``.bbc`` header (:mod:`bbcodec.container`) and archives
(:mod:`bbcodec.archive`).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from bbcodec.errors import CorruptDataError

MAX_TEXT = 200
"""The longest text (UTF-8 bytes) a field holds."""
ESCAPE = 255
"""A :class:`Choice` byte that says a text follows instead of a table index."""
UINT32 = 1 << 32
HEX = frozenset("0123456789abcdef")


def crc32(data) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Malformed(Exception):
    """A value that cannot be read; the message says why, the caller where."""


class Reader:
    """Bytes read front to back from ``offset`` up to ``limit`` (or their end).

    Running past the end of the data raises CorruptDataError(``truncated``),
    past ``limit`` CorruptDataError(``too_long``): the caller's words for its
    format; a value that cannot be read raises :class:`Malformed`.
    """

    def __init__(self, data, offset: int, limit: int, truncated: str, too_long: str):
        self.data, self.offset = data, offset
        self.end = min(len(data), limit)
        self.truncated, self.too_long = truncated, too_long

    def take(self, size: int) -> bytes:
        """The next ``size`` bytes."""
        if size > self.end - self.offset:
            raise CorruptDataError(self.truncated if self.end == len(self.data) else self.too_long)
        self.offset += size
        return bytes(self.data[self.offset - size:self.offset])

    def uint(self, limit: int = 1 << 64) -> int:
        """An unsigned LEB128 number of at most 10 bytes, below ``limit``."""
        value = 0
        for shift in range(0, 70, 7):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if value >= limit:
                    raise Malformed(f"{value} is out of range")
                return value
        raise Malformed("a number longer than 10 bytes")

    def text(self) -> str:
        """A printable UTF-8 text of at most MAX_TEXT bytes, after its length."""
        size = self.uint()
        if size > MAX_TEXT:
            raise Malformed(f"a text of {size} bytes, more than {MAX_TEXT}")
        try:
            text = self.take(size).decode()
        except UnicodeDecodeError:
            raise Malformed("a text that is not UTF-8") from None
        if not text.isprintable():
            raise Malformed("a text with control characters")
        return text


def varint(value: int) -> bytes:
    """An unsigned number as LEB128: 7 bits a byte, low bits first, the top bit set on all but the last."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def text(value) -> bytes:
    """A printable text as its UTF-8 length (a varint) and bytes."""
    data = value.encode() if isinstance(value, str) and value.isprintable() else None
    if data is None or len(data) > MAX_TEXT:
        raise ValueError("not a printable text of at most MAX_TEXT bytes")
    return varint(len(data)) + data


@dataclass(frozen=True)
class Number:
    """An unsigned integer below 2^32 (every integer header field bbcodec writes is), as a varint."""

    def write(self, value) -> bytes:
        if not (is_int(value) and 0 <= value < UINT32):
            raise ValueError("not an integer from 0 to 2^32 - 1")
        return varint(value)

    def read(self, reader: Reader) -> int:
        return reader.uint(UINT32)


@dataclass(frozen=True)
class Choice:
    """One of ``names`` as its index in one byte. With ``escape``, a string that starts with it and is not
    one of the names: ESCAPE, then the rest of the string as a text."""

    names: tuple
    escape: str | None = None

    def write(self, value) -> bytes:
        if value in self.names:
            return bytes([self.names.index(value)])
        if self.escape is None or not isinstance(value, str) or not value.startswith(self.escape):
            raise ValueError("not one of the known values")
        return bytes([ESCAPE]) + text(value[len(self.escape):])

    def read(self, reader: Reader):
        code = reader.take(1)[0]
        if code < len(self.names):
            return self.names[code]
        if code != ESCAPE or self.escape is None:
            raise Malformed(f"unknown value {code}")
        return self.escape + reader.text()


@dataclass(frozen=True)
class Text:
    """A free string, as a text."""

    def write(self, value) -> bytes:
        return text(value)

    def read(self, reader: Reader) -> str:
        return reader.text()


@dataclass(frozen=True)
class Digest:
    """A lowercase hex string of ``size`` bytes, as those bytes; with ``prefix``, the first ``size`` bytes
    of a longer one (the model's hash)."""

    size: int = 16
    prefix: bool = False

    def write(self, value) -> bytes:
        digits = 2 * self.size
        if not (isinstance(value, str) and set(value) <= HEX
                and (len(value) == digits or self.prefix and len(value) > digits)):
            raise ValueError(f"not {digits}{' or more' if self.prefix else ''} lowercase hex digits")
        return bytes.fromhex(value[:digits])

    def read(self, reader: Reader) -> str:
        return reader.take(self.size).hex()


@dataclass(frozen=True)
class Bytes:
    """A list of at most ``limit`` integers 0..255, as a varint count and one byte each."""

    limit: int = 64

    def write(self, value) -> bytes:
        if not (isinstance(value, (list, tuple)) and len(value) <= self.limit
                and all(is_int(v) and 0 <= v < 256 for v in value)):
            raise ValueError(f"not a list of at most {self.limit} integers 0..255")
        return varint(len(value)) + bytes(value)

    def read(self, reader: Reader) -> list:
        return list(reader.take(reader.uint(self.limit + 1)))


@dataclass(frozen=True)
class Object:
    """A JSON object of known keys, each value in its codec, in this order; a value read as None is absent."""

    parts: tuple

    def write(self, value) -> bytes:
        if not isinstance(value, dict) or not set(value) <= {key for key, _ in self.parts}:
            raise ValueError("not an object of the known keys")
        return b"".join(codec.write(value.get(key)) for key, codec in self.parts)

    def read(self, reader: Reader) -> dict:
        values = [(key, codec.read(reader)) for key, codec in self.parts]
        return {key: value for key, value in values if value is not None}
