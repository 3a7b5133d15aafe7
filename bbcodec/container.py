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
Sections carry the ANS payload, the stack checkpoints (``stack``), the
palette and metadata (ICC profile, EXIF, text chunks) byte for byte. Everything is checked before it is used: a file that is
truncated, altered or from an unknown version raises CorruptDataError with a
one-line message.

Work bounded by the payload. A forged payload (random words under a real header,
CRCs recomputed) kept the decoder busy until the words ran out, which for a
model that codes small tiles one at a time took about half a CPU second per KB.
Files now carry the stack's size after each batch (section ``stack``), and the
decoder checks every batch against it, so that such a payload is refused
after one batch. A file without it must pay for its network passes with its
payload: at most :data:`FREE_PASSES` plus one per :data:`PAYLOAD_BYTES_PER_PASS`
bytes (a real file of a photo has tens of KB per pass); beyond that it is a
:class:`WorkLimitError`, which ``--no-limits`` lifts for a trusted file.

Work limits. A header decides how much work decoding takes (the image size and
the tiling), and a hostile header costs its author nothing. :func:`from_bytes`
therefore refuses a bits-back file whose tiling would take more than
:data:`MAX_TILE_BATCHES` network passes or put more than
:data:`MAX_BATCH_PIXELS` pixels in one pass (the decoder's memory grows with
it); the pixel count itself is limited by the API. The command line never
writes such a file (it checks with :func:`work_limit_problem` before coding
and picks the batch size so that a pass stays within the limit). They are
module attributes that a program may raise to read an unusual file, as
Pillow's ``MAX_IMAGE_PIXELS``.
"""
from __future__ import annotations

import contextlib
import json
import struct
import zlib
from dataclasses import dataclass, field

from bbcodec.errors import CorruptDataError

MAGIC = b"\xbbBBC"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 20
MAX_TILE_BATCHES = 1 << 15
"""Most network passes (batches of tiles) a bits-back file may ask of the decoder, all planes together.
The default tiling (64x64 tiles, batches of up to 16) of a 2^26-pixel RGBA image takes about 2,100."""
MAX_BATCH_PIXELS = 1 << 20
"""Most pixels in one pass (tile height x tile width x tiles in the batch), e.g. 16 tiles of 256x256 or
one of 1024x1024 (the default: 16 of 64x64). A pass of this size takes a few seconds with the default
model and about 25 s with a logistic-pixel model such as ``mnist``, in under 1 GB (measured on 1 CPU thread)."""
CHECKPOINTS = "stack"
"""The section of the stack's size after each batch (uint32 words), which the decoder checks batch by batch."""
FREE_PASSES = 64
PAYLOAD_BYTES_PER_PASS = 4096
"""A bits-back file without stack checkpoints (written before they existed, or with them removed) may ask for
at most FREE_PASSES network passes plus one per PAYLOAD_BYTES_PER_PASS bytes of payload."""
_PREFIX = struct.Struct("<4sBI")


class WorkLimitError(CorruptDataError):
    """A file whose header asks for more decoding work than the limits allow (see the module doc)."""


@contextlib.contextmanager
def limits_lifted():
    """Within this block, :func:`from_bytes` reads files over the work limits (for files one trusts)."""
    global MAX_TILE_BATCHES, MAX_BATCH_PIXELS, FREE_PASSES
    saved = MAX_TILE_BATCHES, MAX_BATCH_PIXELS, FREE_PASSES
    MAX_TILE_BATCHES = MAX_BATCH_PIXELS = FREE_PASSES = 1 << 62
    try:
        yield
    finally:
        MAX_TILE_BATCHES, MAX_BATCH_PIXELS, FREE_PASSES = saved


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
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise CorruptDataError("corrupt .bbc header (not JSON)") from None
    if not isinstance(header, dict) or not isinstance(header.get("sections"), list):
        raise CorruptDataError("corrupt .bbc header (no section table)")
    return header, end + 4


def from_bytes(data: bytes) -> Container:
    """Parse and check a whole file: header, every section's size and CRC, and the work limits."""
    header, offset = read_header(data)
    if not _plain_strings(header):
        raise CorruptDataError("corrupt .bbc header (text longer than a line, control characters or deep "
                               "nesting: bbcodec writes none of these)")
    problem = _header_work_problem(header)
    if problem:
        raise WorkLimitError(f"refusing to decode: {problem}")
    sections = {}
    for entry in header["sections"]:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and all(_is_int(v) and v >= 0 for v in entry[1:])):
            raise CorruptDataError("corrupt .bbc header (bad section entry)")
        name, size, crc = entry
        if name in sections:
            raise CorruptDataError(f"corrupt .bbc header (section {name!r} twice)")
        chunk = data[offset:offset + size]
        if len(chunk) != size:
            raise CorruptDataError(f"truncated .bbc file (section {name!r})")
        if _crc(chunk) != crc:
            raise CorruptDataError(f"corrupt .bbc file (section {name!r} checksum mismatch)")
        sections[name] = chunk
        offset += size
    if offset != len(data):
        raise CorruptDataError("corrupt .bbc file (trailing bytes)")
    problem = _payload_work_problem(header, sections)
    if problem:
        raise WorkLimitError(f"refusing to decode: {problem}")
    return Container(header, sections)


MAX_TEXT = 200


def _plain_strings(value, depth: int = 0) -> bool:
    """Every string in a header (keys too) is short and printable: bbcodec writes nothing else there, and
    the decoder's messages quote these strings."""
    if isinstance(value, str):
        return len(value) <= MAX_TEXT and value.isprintable()
    if isinstance(value, dict):
        return all(_plain_strings(k, depth) and _plain_strings(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return depth < 3 and all(_plain_strings(v, depth + 1) for v in value)
    return True


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _batch_sizes(count: int, max_batch: int) -> tuple[int, int]:
    """(number of batches, largest batch) of :func:`bbcodec.tiling.batch_sizes`, without listing them."""
    batches = largest = 0
    size = 1
    while count > 0 and size < max_batch:  # 1, 2, 4, ... below max_batch
        take = min(size, count)
        batches, largest, count, size = batches + 1, max(largest, take), count - take, size * 2
    if count > 0:
        batches += -(-count // max_batch)
        largest = max(largest, min(max_batch, count))
    return batches, largest


def tiling_work(height: int, width: int, channels: int, tile: int, max_batch: int) -> tuple[int, int]:
    """(network passes, most pixels in one pass) to code an image, as :mod:`bbcodec.coding.image` tiles it.

    Counted from the sizes alone (an image of 2^26 pixels has a million 8x8 tiles): the tiles of each
    shape are batched 1, 2, 4, ... up to ``max_batch`` (:func:`bbcodec.tiling.plan`), and RGB is one plane
    group, every other plane its own (:func:`bbcodec.coding.image.plane_groups`).
    """
    full_rows, last_row = divmod(height, tile)
    full_cols, last_col = divmod(width, tile)
    shapes = [(tile, tile, full_rows * full_cols), (tile, last_col, full_rows * bool(last_col)),
              (last_row, tile, bool(last_row) * full_cols), (last_row, last_col, bool(last_row and last_col))]
    groups = {3: 1, 4: 2}.get(channels, channels)
    passes = pixels = 0
    for tile_height, tile_width, count in shapes:
        if count:
            batches, largest = _batch_sizes(count, max_batch)
            passes += batches
            pixels = max(pixels, tile_height * tile_width * largest)
    return groups * passes, pixels


def work_limit_problem(height: int, width: int, channels: int, tile: int, max_batch: int) -> str | None:
    """Why coding an image this way would exceed :data:`MAX_TILE_BATCHES` or :data:`MAX_BATCH_PIXELS`, or None."""
    passes, pixels = tiling_work(height, width, channels, tile, max_batch)
    if passes > MAX_TILE_BATCHES:
        return (f"{width}x{height} pixels in {tile}x{tile} tiles take {passes} network passes, more than "
                f"the limit of {MAX_TILE_BATCHES} (bbcodec.container.MAX_TILE_BATCHES); use larger tiles")
    if pixels > MAX_BATCH_PIXELS:
        return (f"batches of {max_batch} {tile}x{tile} tiles put {pixels} pixels in one network pass, more "
                f"than the limit of {MAX_BATCH_PIXELS} (bbcodec.container.MAX_BATCH_PIXELS); use smaller tiles")
    return None


def batch_limit(tile: int, max_batch: int) -> int:
    """The largest batch size up to ``max_batch`` that keeps a pass of ``tile`` x ``tile`` tiles in the limit."""
    return max(1, min(max_batch, MAX_BATCH_PIXELS // (tile * tile)))


def _header_tiling(header: dict) -> list[int] | None:
    """[height, width, channels, tile, max_batch] of a bits-back header whose fields are well formed, else
    None (the API checks the fields and refuses bad ones with its own message)."""
    if header.get("method") != "bits-back" or not isinstance(header.get("coder"), dict):
        return None
    coder = header["coder"]
    values = [header.get("height"), header.get("width"), header.get("channels"), coder.get("tile"),
              coder.get("max_batch")]
    if not all(_is_int(v) and v > 0 for v in values) or values[0] * values[1] > 1 << 40 or values[3] < 2:
        return None
    return values


def _header_work_problem(header: dict) -> str | None:
    """The work limits for a bits-back header whose fields are well formed."""
    values = _header_tiling(header)
    return work_limit_problem(*values) if values else None


def _payload_work_problem(header: dict, sections: dict[str, bytes]) -> str | None:
    """Work that the payload cannot pay for, in a file without stack checkpoints (see the module doc)."""
    values = _header_tiling(header)
    if values is None or CHECKPOINTS in sections:
        return None
    passes = tiling_work(*values)[0]
    allowed = FREE_PASSES + len(sections.get("payload", b"")) // PAYLOAD_BYTES_PER_PASS
    if passes <= allowed:
        return None
    return (f"the header asks for {passes} network passes but its {len(sections.get('payload', b''))}-byte "
            f"payload, without stack checkpoints, pays for at most {allowed} (bbcodec.container.FREE_PASSES "
            f"+ one per {PAYLOAD_BYTES_PER_PASS} bytes): a damaged or forged file")
