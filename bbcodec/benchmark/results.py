"""What a benchmark run measured (per codec, model, chain, archive and set), and its JSON file."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path


class Throughput:
    """Compress and decompress speed in MB/s of raw pixels (one byte per sub-pixel), from a result's
    ``subpixels``, ``encode_seconds`` and ``decode_seconds``."""

    @property
    def compress_mbps(self) -> float:
        return self.subpixels / 1e6 / self.encode_seconds if self.encode_seconds > 0 else math.nan

    @property
    def decompress_mbps(self) -> float:
        return self.subpixels / 1e6 / self.decode_seconds if self.decode_seconds > 0 else math.nan


@dataclass
class CodecResult(Throughput):
    """One codec on one set: totals over its images."""

    codec: str                     # display name
    key: str                       # "png", ..., or "bbcodec:<model>"
    settings: str
    images: int = 0
    subpixels: int = 0
    file_bytes: int = 0
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0
    verified: int = 0              # images decoded to exactly their pixels
    failures: int = 0

    @property
    def bits_per_subpixel(self) -> float:
        return 8.0 * self.file_bytes / self.subpixels if self.subpixels else math.nan

    def add(self, subpixels: int, size: int, encode_seconds: float, decode_seconds: float, exact: bool):
        self.images += 1
        self.subpixels += subpixels
        self.file_bytes += size
        self.encode_seconds += encode_seconds
        self.decode_seconds += decode_seconds
        self.verified += bool(exact)
        self.failures += not exact

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.update(bits_per_subpixel=self.bits_per_subpixel, compress_mbps=self.compress_mbps,
                    decompress_mbps=self.decompress_mbps)
        return data


@dataclass
class ModelResult(CodecResult):
    """A bbcodec model on one set: real files, and their size split up (all in bits).

    ``8 * file_bytes = nelbo + discretization + initial + fallback + container``:

    * ``nelbo_bits``: the model's −ELBO on the coded tiles (one posterior sample);
    * ``discretization_bits``: the code's net cost minus the −ELBO
      (latents coded on a grid, probabilities quantized by the coder, and,
      with exact arithmetic, the integer network's approximation of the float one;
      and batches coded without bits back, latents at the prior's modes: above the
      −ELBO for a chain's first batch, below it where a whole chain so coded beats
      the bound, so the term can be negative);
    * ``initial_bits``: the seed bits the first bits-back pops consumed;
    * ``fallback_bits``: raw pixels stored minus the bits-back payload, for
      the files stored raw because bits-back would have been larger (<= 0);
    * ``container_bits``: the file beyond its payload (header, checksums).
    """

    model_hash: str = ""
    nelbo_bits: float = 0.0
    net_bits: int = 0
    initial_bits: int = 0
    payload_bits: int = 0          # what the files' payloads hold (raw pixels for stored files)
    bits_back_bits: int = 0        # what the bits-back payloads were (stored files included)
    stored_files: int = 0

    @property
    def discretization_bits(self) -> float:
        return self.net_bits - self.nelbo_bits

    @property
    def fallback_bits(self) -> int:
        return self.payload_bits - self.bits_back_bits

    @property
    def container_bits(self) -> int:
        return 8 * self.file_bytes - self.payload_bits

    def split(self) -> dict:
        """The file's bits per sub-pixel, split up (the parts add up to ``file``)."""
        per = 1.0 / self.subpixels if self.subpixels else math.nan
        return {"nelbo": self.nelbo_bits * per, "discretization": self.discretization_bits * per,
                "initial": self.initial_bits * per, "fallback": self.fallback_bits * per,
                "container": self.container_bits * per, "file": self.bits_per_subpixel}

    def to_dict(self) -> dict:
        data = super().to_dict()
        data.update(discretization_bits=self.discretization_bits, fallback_bits=self.fallback_bits,
                    container_bits=self.container_bits, split_bits_per_subpixel=self.split())
        return data


@dataclass
class ChainResult(Throughput):
    """Every image of a set coded on one bits-back chain (payload only, no container: the papers' count, and the
    calibration's bytes where it has one)."""

    codec: str
    model_hash: str
    coder: str
    batch: int                     # the largest number of images per step (steps grow 1, 2, 4, ...)
    images: int = 0
    subpixels: int = 0
    stored_bits: int = 0
    net_bits: int = 0
    initial_bits: int = 0
    nelbo_bits: float = 0.0
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0
    exact: bool = False
    calibration_bytes: int = 0     # one calibration for the whole chain, counted in stored_bits (none before it)

    @property
    def bits_per_subpixel(self) -> float:
        return self.stored_bits / self.subpixels if self.subpixels else math.nan

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        per = 1.0 / self.subpixels if self.subpixels else math.nan
        data.update(bits_per_subpixel=self.bits_per_subpixel, net_bits_per_subpixel=self.net_bits * per,
                    initial_bits_per_subpixel=self.initial_bits * per, nelbo_bits_per_subpixel=self.nelbo_bits * per,
                    compress_mbps=self.compress_mbps, decompress_mbps=self.decompress_mbps)
        return data


@dataclass
class ArchiveResult(Throughput):
    """Every image of a set packed into one archive (:mod:`bbcodec.archive`): all its bytes, header, entries and
    checksums included, read back and every image decoded and checked."""

    codec: str
    model_hash: str
    coder: str
    chunk_subpixels: int           # sub-pixels per chunk at most (a larger image is a chunk of its own)
    images: int = 0
    chunks: int = 0
    subpixels: int = 0
    bytes: int = 0
    stored_chunks: int = 0         # chunks stored raw because bits-back would have been larger
    encode_seconds: float = 0.0    # packing
    decode_seconds: float = 0.0    # reading the archive back and decoding every chunk
    exact: bool = False

    @property
    def bits_per_subpixel(self) -> float:
        return 8.0 * self.bytes / self.subpixels if self.subpixels else math.nan

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.update(bits_per_subpixel=self.bits_per_subpixel, compress_mbps=self.compress_mbps,
                    decompress_mbps=self.decompress_mbps)
        return data


@dataclass
class SetResult:
    name: str
    source: str
    kind: str
    images: int
    subpixels: int
    shapes: str
    codecs: list = field(default_factory=list)   # ModelResult first, then CodecResult
    chains: list = field(default_factory=list)   # ChainResult
    archives: list = field(default_factory=list)  # ArchiveResult
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in ("name", "source", "kind", "images", "subpixels", "shapes")}
        data["codecs"] = [c.to_dict() for c in self.codecs]
        data["chains"] = [c.to_dict() for c in self.chains]
        data["archives"] = [a.to_dict() for a in self.archives]
        data["notes"] = list(self.notes)
        return data


@dataclass
class Report:
    sets: list = field(default_factory=list)      # SetResult
    environment: dict = field(default_factory=dict)
    command: str = ""
    notes: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # one line per image that did not come back exactly

    def to_dict(self) -> dict:
        return {"format": "bbcodec-bench/1", "command": self.command, "environment": self.environment,
                "notes": self.notes, "failures": self.failures, "sets": [s.to_dict() for s in self.sets]}


def report_from_dict(data: dict) -> Report:
    """Read back what :meth:`Report.to_dict` (the JSON file) holds."""
    def fields(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    sets = []
    for s in data.get("sets", []):
        result = fields(SetResult, {k: v for k, v in s.items() if k not in ("codecs", "chains", "archives")})
        result.codecs = [fields(ModelResult if c["key"].startswith("bbcodec:") else CodecResult, c)
                         for c in s.get("codecs", [])]
        result.chains = [fields(ChainResult, c) for c in s.get("chains", [])]
        result.archives = [fields(ArchiveResult, a) for a in s.get("archives", [])]  # none in older files
        sets.append(result)
    return Report(sets, data.get("environment", {}), data.get("command", ""), data.get("notes", []),
                  data.get("failures", []))


def write_json(report: Report, path) -> None:
    import json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report.to_dict(), indent=1, allow_nan=True) + "\n")


def read_json(path) -> Report:
    import json

    return report_from_dict(json.loads(Path(path).read_text()))
