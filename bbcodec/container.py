"""The ``.bbc`` file format: magic, version, a JSON header, named binary sections.

Layout (all integers little-endian)::

    magic        4 bytes   b"\\xbbBBC"
    version      1 byte    FORMAT_VERSION
    header size  4 bytes   n (at most MAX_HEADER_BYTES)
    header       n bytes   UTF-8 JSON object, keys sorted
    header CRC   4 bytes   CRC-32 of the header bytes
    sections     the byte strings listed in header["sections"] as [name, size, crc32], in order

The header names the model by the hash of its weights, the geometry, the image
mode, the coder settings and the pixel checksum that the decoder verifies.
Sections carry the ANS payload and metadata (ICC profile, EXIF, text chunks)
byte for byte. Everything is checked before it is used: a file that is
truncated, altered or from an unknown version raises CorruptDataError with a
one-line message.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field

from bbcodec.errors import CorruptDataError

MAGIC = b"\xbbBBC"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 20
_PREFIX = struct.Struct("<4sBI")


@dataclass
class Container:
    header: dict
    sections: dict[str, bytes] = field(default_factory=dict)


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def to_bytes(container: Container) -> bytes:
    header = dict(container.header)
    header["sections"] = [[name, len(data), _crc(data)] for name, data in container.sections.items()]
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ValueError("container header too large")
    parts = [_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes)), header_bytes,
             struct.pack("<I", _crc(header_bytes))]
    parts.extend(container.sections.values())
    return b"".join(parts)


def read_header(data: bytes) -> tuple[dict, int]:
    """Parse and check the header; returns it and the offset where the sections begin."""
    if len(data) < _PREFIX.size:
        raise CorruptDataError("not a .bbc file (too short)")
    magic, version, size = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CorruptDataError("not a .bbc file (bad magic)")
    if version != FORMAT_VERSION:
        raise CorruptDataError(f"unsupported .bbc format version {version} (this bbcodec reads {FORMAT_VERSION})")
    if size > MAX_HEADER_BYTES:
        raise CorruptDataError("corrupt .bbc header (implausible size)")
    end = _PREFIX.size + size
    if len(data) < end + 4:
        raise CorruptDataError("truncated .bbc file (header)")
    header_bytes = data[_PREFIX.size:end]
    if struct.unpack_from("<I", data, end)[0] != _crc(header_bytes):
        raise CorruptDataError("corrupt .bbc header (checksum mismatch)")
    try:
        header = json.loads(header_bytes)
    except ValueError:
        raise CorruptDataError("corrupt .bbc header (not JSON)") from None
    if not isinstance(header, dict) or not isinstance(header.get("sections"), list):
        raise CorruptDataError("corrupt .bbc header (no section table)")
    return header, end + 4


def from_bytes(data: bytes) -> Container:
    header, offset = read_header(data)
    sections = {}
    for entry in header["sections"]:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and all(isinstance(v, int) and v >= 0 for v in entry[1:])):
            raise CorruptDataError("corrupt .bbc header (bad section entry)")
        name, size, crc = entry
        chunk = data[offset:offset + size]
        if len(chunk) != size:
            raise CorruptDataError(f"truncated .bbc file (section {name!r})")
        if _crc(chunk) != crc:
            raise CorruptDataError(f"corrupt .bbc file (section {name!r} checksum mismatch)")
        sections[name] = chunk
        offset += size
    if offset != len(data):
        raise CorruptDataError("corrupt .bbc file (trailing bytes)")
    return Container(header, sections)
