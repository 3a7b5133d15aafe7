"""The ``.bbc`` file format: magic, version, a header, named binary sections.

Version 3, written since 2026-12-07 (issue 20: small files), has a binary header (fixed-size integers
little-endian)::

    magic        4 bytes   b"\\xbbBBC"
    version      1 byte    3
    present      varint    which optional fields follow: bit 0 source format, 1 palette mode, 2 model,
                           3 pixel checksum, 4 image checksum, 5 coder settings, 6 grid bits, 7 seed
                           prefix words, 8 entropy coder, 9 float platform, 10 pixel calibration,
                           11 pixel level sets
    fields       width, height, channels (varints), mode, method (one byte each), then the optional
                 fields present, in the order of their bits: source format (one byte, or ESCAPE and a
                 text), palette mode (one byte), model (the first DIGEST_BYTES bytes of its hash),
                 pixel and image checksums (their first DIGEST_BYTES bytes), coder settings (coder, tile,
                 max batch, arithmetic, start: one byte, two varints, two bytes), grid bits and seed
                 prefix words (varints), entropy coder (one byte, or ESCAPE and a text), float platform
                 (a text), pixel calibration (a varint count and one byte each:
                 bbcodec.coding.calibration, its copy weights included), pixel level sets (the same:
                 bbcodec.coding.level_sets)
    section count varint
    sections     per section: its name (one byte; ESCAPE and a text: the KEY of ``meta.KEY``), its
                 size (varint) and its CRC-32 (4 bytes)
    header CRC   4 bytes   CRC-32 of every byte above, the magic included
    sections     the section bytes, in the order of the table

Varints are unsigned LEB128 (at most 10 bytes; header fields below 2^32); a text is its UTF-8 length (a
varint, at most :data:`MAX_TEXT`) and its bytes, printable. The one-byte values index the tables
:data:`METHODS`, :data:`MODES`, :data:`SOURCE_FORMATS`, :data:`PALETTE_MODES`, :data:`CODERS`,
:data:`ARITHMETICS`, :data:`STARTS`, :data:`ENTROPY_CODERS` and :data:`SECTIONS`, which only ever grow at the
end. A file of raw pixels has no model and no pixel checksum: its image checksum covers the pixels (the
``payload`` section); a bits-back file of a single batch of tiles has no stack checkpoints (the decoder's
free passes cover it). A 1x1 RGB image stored raw takes 34 bytes (version 2: 74; version 1: 341); the header
of a bits-back CIFAR image 58 (version 2: 104; version 1: about 520).

Version 2, written before it and read as before, is version 3 with 16-byte digests, the
entropy coder as a text, and the model and pixel checksum in stored files too.

Version 1, written until then and read as before (all integers little-endian)::

    magic        4 bytes   b"\\xbbBBC"
    version      1 byte    1
    header size  4 bytes   n (at most MAX_HEADER_BYTES)
    header       n bytes   UTF-8 JSON object, keys sorted
    header CRC   4 bytes   CRC-32 of the header bytes
    sections     the byte strings listed in header["sections"] as [name, size, crc32], in order

Every version reads into the same JSON header (:func:`read_header`), which is what the rest of bbcodec
sees: the binary versions' digests as hex strings (the model as the first digits of its hash:
:meth:`Header.names_model`; checksums compared by their first digits: :func:`digest_matches`), their
section table as version 1's ``sections`` list. Version 1 carries any JSON; the binary versions only the
fields and values bbcodec writes (:func:`to_bytes` refuses others).

The header names the model by the hash of its weights, the geometry, the image
mode, the coder settings and the pixel checksum that the decoder verifies.
:class:`Header` is the one place that says what its fields mean: their types,
which ones decoding needs, the tiling they ask for and the image checksum over
them. The rest of bbcodec (the API, ``bbcodec info``, the command's progress
bars) reads a header through it, never through the raw JSON.
Sections carry the ANS payload, the stack checkpoints (``stack``), the
palette and metadata (ICC profile, EXIF, text chunks) byte for byte, or the
file given itself (``original``: :data:`METHODS`). Everything is checked before it is used: a file that is
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
it); the pixel count itself is limited by :data:`MAX_PIXELS`. The command line never
writes such a file (it checks with :func:`work_limit_problem` before coding
and picks the batch size so that a pass stays within the limit). They are
module attributes that a program may raise to read an unusual file, as
Pillow's ``MAX_IMAGE_PIXELS``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import struct
import typing
from dataclasses import dataclass, field

from bbcodec.errors import CorruptDataError
from bbcodec.tiling import TileLayout
from bbcodec.wire import (MAX_TEXT, Bytes, Choice, Digest, Malformed, Number, Object, Reader, Text, crc32, is_int,
                          varint)

MAGIC = b"\xbbBBC"
MAX_PIXELS = 1 << 28
"""Most sub-pixels (height x width x channels) a header may declare."""
FORMAT_VERSION = 3
"""The version :func:`to_bytes` writes; :func:`read_header` reads it and versions 1 and 2."""
MAX_HEADER_BYTES = 1 << 20
MAX_TILE_BATCHES = 1 << 15
"""Most network passes (batches of tiles) a bits-back file may ask of the decoder, all planes together.
The default tiling (64x64 tiles, batches of up to 16) of a 2^26-pixel RGBA image takes about 2,100."""
MAX_CALIBRATION = 448
"""Most bytes a calibration of the pixel likelihood takes (rows, copies, buckets, error feedback):
:mod:`bbcodec.coding.calibration`."""
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
_PREFIX = struct.Struct("<4sBI")  # version 1: magic, version, header size
MODEL_ID_BYTES = 16
"""Version 2 names the model by the first 16 bytes of its hash (:meth:`Header.names_model`), as archives do."""
DIGEST_BYTES = 8
"""Version 3 keeps the first 8 bytes of the model's hash and of the pixel and image checksums: a wrong model
or a damaged image passes unnoticed once in 2^64 (zstd's frame checksum keeps 4 bytes)."""


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


METHODS = ("bits-back", "stored", "original")
"""How the pixels are kept: coded by the model, raw (when the code would be larger), or as the exact bytes
of the file given (section :data:`ORIGINAL`, when the code would be larger than that file, or the file is lossy)."""
ORIGINAL = "original"
"""The section holding the file given, byte for byte (method ``original``)."""
IMAGE_FIELDS = ("width", "height", "channels", "mode", "palette_mode", "source_format", "pixel_checksum")
"""The header fields that, with the palette and metadata sections, shape the decoded output."""
META_PREFIX = "meta."
"""Sections named ``meta.KEY`` carry the image's metadata item KEY byte for byte."""
_ALWAYS_WRITTEN = {"palette_mode", "source_format"}  # written as null when the image has none
_BITS_BACK_NEEDS = ("model", "coder", "untouched_seed_words", "pixel_checksum")


@dataclass(frozen=True)
class Header:
    """The meaning of a .bbc header: every field has its JSON type or is None (absent).

    :meth:`from_json` reads a header that is to be decoded and refuses one
    that lacks what decoding needs; :meth:`readable` keeps what is readable
    of a damaged one, for display and the work limits; :meth:`to_json` gives
    the fields bbcodec writes. Fields not named here are ignored on reading.
    """

    width: int | None = None
    height: int | None = None
    channels: int | None = None
    mode: str | None = None
    palette_mode: str | None = None
    source_format: str | None = None
    model: str | None = None
    pixel_checksum: str | None = None
    method: str | None = None
    coder: dict | None = None
    """The coder settings (``bbcodec.coding.image.CoderSettings`` as a JSON object): bits-back files only."""
    grid_bits: int | None = None
    untouched_seed_words: int | None = None
    entropy_coder: str | None = None
    float_platform: str | None = None
    image_checksum: str | None = None
    pixel_calibration: list | None = None
    """The per-image calibration of the pixel likelihood (``CoderSettings.calibration``): bits-back files that
    have one."""
    pixel_level_sets: list | None = None
    """The values each plane takes, for planes that take few (``CoderSettings.level_sets``): bits-back files
    that have some."""

    def __post_init__(self):
        for name in _FIELD_TYPES:
            if not _has_type(getattr(self, name), _FIELD_TYPES[name]):
                raise CorruptDataError(f"corrupt .bbc header (field {name!r})")

    @classmethod
    def readable(cls, header: dict) -> "Header":
        """The fields of a raw header that have their type; the others (and unknown keys) dropped."""
        return cls(**{k: v for k, v in header.items() if k in _FIELD_TYPES and _has_type(v, _FIELD_TYPES[k])})

    @classmethod
    def from_json(cls, header: dict) -> "Header":
        """A header to decode: every known field of its type, a plausible size, a known method and, for
        bits-back, the model, coder settings and seed prefix; CorruptDataError with one line if not."""
        typed = cls(**{k: v for k, v in header.items() if k in _FIELD_TYPES})
        typed._check_decodable()
        return typed

    def _check_decodable(self) -> None:
        for name in ("height", "width", "channels", "mode"):
            if getattr(self, name) is None:
                raise CorruptDataError(f"corrupt .bbc header (field {name!r})")
        if self.subpixels is None:
            raise CorruptDataError(f"corrupt .bbc header (implausible size {self.width}x{self.height}x{self.channels})")
        if self.method not in METHODS:
            raise CorruptDataError(f"unsupported coding method {self.method!r}")
        for name in _BITS_BACK_NEEDS if self.method == "bits-back" else ():
            if getattr(self, name) is None:
                raise CorruptDataError(f"corrupt .bbc header (field {name!r})")
        if self.method == "stored" and self.pixel_checksum is None and self.image_checksum is None:
            raise CorruptDataError("corrupt .bbc header (field 'pixel_checksum')")

    @property
    def subpixels(self) -> int | None:
        """height x width x channels, if they are plausible (positive, at most 4 channels, MAX_PIXELS in all)."""
        dims = (self.height, self.width, self.channels)
        if None in dims or min(dims) <= 0 or self.channels > 4 or dims[0] * dims[1] * dims[2] > MAX_PIXELS:
            return None
        return dims[0] * dims[1] * dims[2]

    @property
    def coder_name(self) -> str | None:
        """The bits-back coder named in the coder settings (``bitswap``, ``bbans``), if any."""
        name = (self.coder or {}).get("coder")
        return name if isinstance(name, str) else None

    def coder_settings(self) -> dict:
        """The coder settings as keyword arguments; files from before the ``arithmetic`` field are float,
        those from before ``start`` start with bits back."""
        return {"arithmetic": "float", "start": "bits-back", **(self.coder or {}),
                "calibration": tuple(self.pixel_calibration or ()),
                "level_sets": tuple(self.pixel_level_sets or ())}

    def layout(self) -> TileLayout | None:
        """The tile layout of a bits-back header whose tiling fields are well formed, else None (decoding
        refuses bad ones with its own message)."""
        if self.method != "bits-back" or self.coder is None:
            return None
        values = [self.height, self.width, self.channels, self.coder.get("tile"), self.coder.get("max_batch")]
        if not all(is_int(v) and v > 0 for v in values) or values[0] * values[1] > 1 << 40 or values[3] < 2:
            return None
        if values[2] > 4:  # a plane group per channel: billions of channels would be billions of groups
            return None
        return TileLayout(*values)

    def names_model(self, digest: str) -> bool:
        """Whether the model of this hash is the one the header names: by the whole hash (version 1) or
        its first bytes (MODEL_ID_BYTES in version 2, DIGEST_BYTES in version 3), never by a shorter prefix."""
        return digest_matches(self.model, digest)

    def to_json(self) -> dict:
        """The fields as bbcodec writes them (absent ones left out, except those written as null)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None or f.name in _ALWAYS_WRITTEN}

    def with_image_checksum(self, sections: dict[str, bytes]) -> "Header":
        """This header with the image checksum of ``sections`` (see :func:`image_checksum`), as version 3
        keeps it."""
        return dataclasses.replace(self, image_checksum=short_digest(image_checksum(self.to_json(), sections)))

    def image_matches(self, sections: dict[str, bytes]) -> bool:
        """Whether the image checksum, where the file has one, covers these fields and sections."""
        return self.image_checksum is None or digest_matches(self.image_checksum,
                                                             image_checksum(self.to_json(), sections))


_FIELD_TYPES = {name: next(kind for kind in typing.get_args(hint) if kind is not type(None))
                for name, hint in typing.get_type_hints(Header).items()}
"""Each field's JSON type, from its annotation (``int | None``: int)."""


def _has_type(value, kind) -> bool:
    if value is None:
        return True
    if kind is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return isinstance(value, kind) and not isinstance(value, bool)


def short_digest(digest: str) -> str:
    """The first DIGEST_BYTES bytes of a hex digest: what version 3 keeps of a hash or checksum."""
    return digest[:2 * DIGEST_BYTES]


def digest_matches(kept: str | None, digest: str) -> bool:
    """Whether a digest kept in a header (whole, or its first bytes: at least DIGEST_BYTES) is ``digest``'s."""
    return isinstance(kept, str) and len(kept) >= 2 * DIGEST_BYTES and digest.startswith(kept)


def metadata_of(sections: dict[str, bytes]) -> dict[str, bytes]:
    """The image's metadata items from the ``meta.KEY`` sections."""
    return {k[len(META_PREFIX):]: v for k, v in sections.items() if k.startswith(META_PREFIX)}


def image_checksum(header: dict, sections: dict[str, bytes]) -> str:
    """A checksum over everything that shapes the output besides the coded pixels: size, mode, palette,
    source format and metadata, the pixel checksum and a kept original file, and in a file without a pixel checksum
    (raw pixels, version 3) the pixels themselves. Files written since it exists carry it as
    ``image_checksum``, which the decoder verifies, so that no field or section can be changed (CRCs
    recomputed) without the change being caught; older files have only the pixel checksum."""
    covered = ("palette", ORIGINAL) if header.get("pixel_checksum") is not None else ("palette", ORIGINAL, "payload")
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([header.get(key) for key in IMAGE_FIELDS]).encode())
    for name in sorted(k for k in sections if k in covered or k.startswith(META_PREFIX)):
        for part in (name.encode(), sections[name]):
            digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()


def to_bytes(container: Container, version: int = FORMAT_VERSION) -> bytes:
    """The bytes of a .bbc file in format ``version`` (the default; 1 for files of the old format). The
    header's ``sections`` entry, if any, is replaced by the sections' own table. ValueError for a header
    that the version cannot carry (versions 2 and 3: a field or section bbcodec does not write, a value of
    another type or range than bbcodec writes)."""
    header = {k: v for k, v in container.header.items() if k != "sections"}
    table = [[name, len(data), crc32(data)] for name, data in container.sections.items()]
    return _HEADER_WRITERS[version](header, table) + b"".join(container.sections.values())


def _v1_header(header: dict, table: list) -> bytes:
    """Magic, version 1, the JSON header with its section table, and the JSON's CRC."""
    header_bytes = json.dumps({**header, "sections": table}, sort_keys=True, separators=(",", ":")).encode()
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ValueError("container header too large")
    return _PREFIX.pack(MAGIC, 1, len(header_bytes)) + header_bytes + struct.pack("<I", crc32(header_bytes))


def read_header(data: bytes) -> tuple[dict, int]:
    """Parse and check the header; returns it and the offset where the sections begin. The header is JSON
    whatever the version (see the module doc), with the section table as ``sections``."""
    if len(data) < _PREFIX.size:  # no file of either version is shorter
        raise CorruptDataError("not a .bbc file (too short)")
    if data[:len(MAGIC)] != MAGIC:
        raise CorruptDataError("not a .bbc file (bad magic)")
    version = format_version(data)
    if version not in _HEADER_READERS:
        raise CorruptDataError(f"unsupported .bbc format version {version} (this bbcodec reads "
                               f"{' and '.join(map(str, _HEADER_READERS))})")
    return _HEADER_READERS[version](data)


def format_version(data: bytes) -> int:
    """The format version a file declares (the byte after the magic); only :func:`read_header` checks it."""
    return data[len(MAGIC)]


def _read_v1(data: bytes) -> tuple[dict, int]:
    """The JSON header of a version 1 file and the offset of its sections."""
    size = _PREFIX.unpack_from(data)[2]
    if size > MAX_HEADER_BYTES:
        raise CorruptDataError("corrupt .bbc header (implausible size)")
    end = _PREFIX.size + size
    if len(data) < end + 4:
        raise CorruptDataError("truncated .bbc file (header)")
    header_bytes = data[_PREFIX.size:end]
    if struct.unpack_from("<I", data, end)[0] != crc32(header_bytes):
        raise CorruptDataError("corrupt .bbc header (checksum mismatch)")
    try:
        header = json.loads(header_bytes)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise CorruptDataError("corrupt .bbc header (not JSON)") from None
    if not isinstance(header, dict) or not isinstance(header.get("sections"), list):
        raise CorruptDataError("corrupt .bbc header (no section table)")
    return header, end + 4


# -- format versions 2 and 3 --------------------------------------------------------------------------------

MODES = ("1", "L", "P", "LA", "PA", "RGB", "YCbCr", "LAB", "RGBA", "CMYK")
SOURCE_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "TGA", "QOI")
PALETTE_MODES = ("RGB", "RGBA")
CODERS = ("bitswap", "bbans", "topdown")
ARITHMETICS = ("exact", "float", None)  # None: a file from before the field (float)
STARTS = ("bits-back", "no-bits-back", None, "no-bits-back-throughout")  # None: from before the field (bits back)
FIRST_PREFIX = "no-bits-back-first-"  # and a count: the start of a chain whose first batches are coded so (escaped)
SECTIONS = ("payload", CHECKPOINTS, "palette", ORIGINAL)
ENTROPY_CODERS = ("constriction 0.5",)  # version 3 only; version 2 writes the text
"""With :data:`METHODS`, the closed sets that the binary versions write as one byte, a value's index: they only ever
grow at the end. A source format outside its table, and ``meta.KEY`` sections, are written as
:data:`bbcodec.wire.ESCAPE` and a text."""

_V2_REQUIRED = (("width", Number()), ("height", Number()), ("channels", Number()), ("mode", Choice(MODES)),
                ("method", Choice(METHODS)))
_V2_OPTIONAL = (
    ("source_format", Choice(SOURCE_FORMATS, escape="")), ("palette_mode", Choice(PALETTE_MODES)),
    ("model", Digest(MODEL_ID_BYTES, prefix=True)), ("pixel_checksum", Digest()), ("image_checksum", Digest()),
    ("coder", Object((("coder", Choice(CODERS)), ("tile", Number()), ("max_batch", Number()),
                       ("arithmetic", Choice(ARITHMETICS)), ("start", Choice(STARTS, escape=FIRST_PREFIX))))),
    ("grid_bits", Number()), ("untouched_seed_words", Number()), ("entropy_coder", Text()),
    ("float_platform", Text()),
    ("pixel_calibration", Bytes(limit=MAX_CALIBRATION)))
"""The header fields of version 2 and their codecs: the required ones, then those with a presence bit each
(bit i: the i-th), in the order they are written (the ones small files have first: one byte of presence
bits for a stored or kept file)."""
_SHORTER_IN_V3 = {"model": Digest(DIGEST_BYTES, prefix=True), "pixel_checksum": Digest(DIGEST_BYTES),
                  "image_checksum": Digest(DIGEST_BYTES), "entropy_coder": Choice(ENTROPY_CODERS, escape="")}
_NEW_IN_V3 = (("pixel_level_sets", Bytes(limit=1 + 4 * 32)),)  # a flag byte, a 256-bit set for each of 4 planes
_OPTIONAL = {2: _V2_OPTIONAL,
             3: tuple((name, _SHORTER_IN_V3.get(name, codec)) for name, codec in _V2_OPTIONAL) + _NEW_IN_V3}
"""Each binary version's optional fields: version 3 has version 2's, some of them shorter, and fields of its own
(added at the end: files without them read as before)."""
_SECTION_NAME = Choice(SECTIONS, escape=META_PREFIX)


def _binary_header(version: int, header: dict, table: list) -> bytes:
    """Magic, version 2 or 3, the binary header with its section table, and the CRC of all of them."""
    unknown = sorted(set(header) - {name for name, _ in _V2_REQUIRED + _OPTIONAL[version]})
    if unknown:
        raise ValueError(f"format version {version} has no header field {unknown[0]!r}")
    present = sum(1 << index for index, (name, _) in enumerate(_OPTIONAL[version]) if header.get(name) is not None)
    parts = [MAGIC, bytes([version]), varint(present)]
    parts += [_written(version, name, codec, header.get(name)) for name, codec in _fields(version, present)]
    parts.append(varint(len(table)))
    for name, size, crc in table:
        parts += [_written(version, "section name", _SECTION_NAME, name), varint(size), struct.pack("<I", crc)]
    data = b"".join(parts)
    if len(data) > MAX_HEADER_BYTES:
        raise ValueError("container header too large")
    return data + struct.pack("<I", crc32(data))


def _fields(version: int, present: int) -> tuple:
    """The (name, codec) of the fields a binary header with these presence bits has, in their order."""
    return _V2_REQUIRED + tuple(field for index, field in enumerate(_OPTIONAL[version]) if present >> index & 1)


def _written(version: int, name: str, codec, value) -> bytes:
    """The value in its codec, or ValueError naming the field."""
    try:
        return codec.write(value)
    except ValueError as error:
        raise ValueError(f"cannot write {name} {value!r:.80} in .bbc format version {version}: {error}") from None


def _read_binary(data: bytes) -> tuple[dict, int]:
    """The header of a version 2 or 3 file as JSON (see the module doc) and the offset of its sections."""
    version = format_version(data)
    reader = Reader(data, len(MAGIC) + 1, MAX_HEADER_BYTES, "truncated .bbc file (header)", "corrupt .bbc header (implausible size)")
    present = _read(reader, "presence bits", Reader.uint)
    if present >> len(_OPTIONAL[version]):
        raise CorruptDataError(f"corrupt .bbc header (presence bits {present:#x}: unknown fields)")
    fields = {name: _read(reader, name, codec.read) for name, codec in _fields(version, present)}
    table = _read_table(reader)
    end = reader.offset
    if len(data) < end + 4:
        raise CorruptDataError("truncated .bbc file (header)")
    if struct.unpack_from("<I", data, end)[0] != crc32(data[:end]):
        raise CorruptDataError("corrupt .bbc header (checksum mismatch)")
    return {**Header(**fields).to_json(), "sections": table}, end + 4


def _read_table(reader: Reader) -> list:
    """The section table of a binary header, as version 1's: [name, size, crc32] for each section."""
    count = _read(reader, "section count", Reader.uint)
    return [[_read(reader, "section name", _SECTION_NAME.read), _read(reader, "section size", Reader.uint),
             struct.unpack("<I", reader.take(4))[0]] for _ in range(count)]


def _read(reader: Reader, name: str, read):
    """``read(reader)``, or CorruptDataError naming the field."""
    try:
        return read(reader)
    except Malformed as problem:
        raise CorruptDataError(f"corrupt .bbc header ({name}: {problem})") from None


_HEADER_WRITERS = {1: _v1_header, 2: functools.partial(_binary_header, 2), 3: functools.partial(_binary_header, 3)}
_HEADER_READERS = {1: _read_v1, 2: _read_binary, 3: _read_binary}


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
                and all(is_int(v) and v >= 0 for v in entry[1:])):
            raise CorruptDataError("corrupt .bbc header (bad section entry)")
        name, size, crc = entry
        if name in sections:
            raise CorruptDataError(f"corrupt .bbc header (section {name!r} twice)")
        chunk = data[offset:offset + size]
        if len(chunk) != size:
            raise CorruptDataError(f"truncated .bbc file (section {name!r})")
        if crc32(chunk) != crc:
            raise CorruptDataError(f"corrupt .bbc file (section {name!r} checksum mismatch)")
        sections[name] = chunk
        offset += size
    if offset != len(data):
        raise CorruptDataError("corrupt .bbc file (trailing bytes)")
    problem = _payload_work_problem(header, sections)
    if problem:
        raise WorkLimitError(f"refusing to decode: {problem}")
    return Container(header, sections)


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


def work_limit_problem(layout: TileLayout) -> str | None:
    """Why coding an image in this layout would exceed :data:`MAX_TILE_BATCHES` or :data:`MAX_BATCH_PIXELS`, or None."""
    passes, pixels = layout.work()
    tiling = f"{layout.tile}x{layout.tile} tiles"
    if passes > MAX_TILE_BATCHES:
        return (f"{layout.width}x{layout.height} pixels in {tiling} take {passes} network passes, more than "
                f"the limit of {MAX_TILE_BATCHES} (bbcodec.container.MAX_TILE_BATCHES); use larger tiles")
    if pixels > MAX_BATCH_PIXELS:
        return (f"batches of {layout.max_batch} {tiling} put {pixels} pixels in one network pass, more "
                f"than the limit of {MAX_BATCH_PIXELS} (bbcodec.container.MAX_BATCH_PIXELS); use smaller tiles")
    return None


def batch_limit(tile: int, max_batch: int) -> int:
    """The largest batch size up to ``max_batch`` that keeps a pass of ``tile`` x ``tile`` tiles in the limit."""
    return max(1, min(max_batch, MAX_BATCH_PIXELS // (tile * tile)))


def _header_work_problem(header: dict) -> str | None:
    """The work limits for a bits-back header whose fields are well formed."""
    layout = Header.readable(header).layout()
    return work_limit_problem(layout) if layout else None


def _payload_work_problem(header: dict, sections: dict[str, bytes]) -> str | None:
    """Work that the payload cannot pay for, in a file without stack checkpoints (see the module doc)."""
    layout = Header.readable(header).layout()
    if layout is None or CHECKPOINTS in sections:
        return None
    passes = layout.work()[0]
    allowed = FREE_PASSES + len(sections.get("payload", b"")) // PAYLOAD_BYTES_PER_PASS
    if passes <= allowed:
        return None
    return (f"the header asks for {passes} network passes but its {len(sections.get('payload', b''))}-byte "
            f"payload, without stack checkpoints, pays for at most {allowed} (bbcodec.container.FREE_PASSES "
            f"+ one per {PAYLOAD_BYTES_PER_PASS} bytes): a damaged or forged file")
