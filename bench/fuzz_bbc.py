"""Benchmark: fuzz the .bbc decoder with mutated files; every one must fail cleanly or decode.

Seed files: the golden files (``tests/golden``, made with the committed tiny
model), a few more made here with that model (bits-back RGB, grey, RGBA with
BB-ANS, a palette image with metadata, a stored image) and, when the shipped
default model is installed, one of its files. Each case mutates one seed file
in one of these ways (:class:`Mutator`):

* raw bytes: bit flips, truncations (at every structural boundary and at random
  points), appended junk, splices of two files, a changed prefix (magic,
  version, header size);
* re-signed, so that the mutation gets past every CRC and reaches the parser
  and the decoder: a header field set to a hostile value (huge, negative, zero,
  wrong type, NaN, nested, another model's hash, ...) or removed; lying
  dimensions combined with a lying seed prefix and tiling; payload words
  flipped, cut, extended or taken from another file; palette and metadata
  sections replaced with junk or hostile JSON; the section table edited; the
  header's bytes (JSON text, or the binary fields of a format version 2 header)
  edited byte by byte; a stored file's pixels changed and
  its pixel checksum recomputed (a valid file, which must decode).

Every case runs in this process the way ``bbcodec decompress`` runs it:
``bbcodec.info``, then ``bbcodec.decompress`` and writing the image to memory
in its output format (``bbcodec.write_image``). The outcome is ``decoded``, or
``refused`` with a BBCodecError whose message is one line, or a failure:
another exception (``CRASH``), a message of several lines, or more than
``--timeout`` seconds (``TIMEOUT``, raised by an interval timer). Each case's
wall time and peak resident memory (``VmHWM``, reset before each case through
``/proc/self/clear_refs``; memory that an earlier case freed but the allocator
kept still counts, so these are upper bounds) are recorded, and the slowest and
most memory-hungry cases run again, each alone in a fresh process, for exact
figures (``fresh_process``). A sample of the cases then goes
through the real command in subprocesses, under an address-space limit: one
``bbcodec test`` over many files, and single ``bbcodec decompress`` runs that
must exit with status 1 and one stderr line and leave no output file.

    OMP_NUM_THREADS=1 nice -n 10 python bench/fuzz_bbc.py [--cases 12000] [--seed 0] [--cli 300]

Writes ``bench/results/fuzz_bbc.json`` (keeping its ``earlier_runs`` entry);
exits 1 if any case failed.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

GOLDEN = ROOT / "tests" / "golden"
RESULT = ROOT / "bench" / "results" / "fuzz_bbc.json"
HEADER_KEYS = ["width", "height", "channels", "mode", "palette_mode", "source_format", "model", "pixel_checksum",
               "method", "coder", "grid_bits", "untouched_seed_words", "sections"]
METADATA_KEYS = ["transparency", "text", "dpi", "gamma", "srgb", "chromaticity", "icc_profile", "exif", "xmp"]


# -- seed files ------------------------------------------------------------------------------------------


def seed_files(model_path: Path, with_default: bool = True) -> dict[str, bytes]:
    """name -> .bbc bytes: the golden files and files made here (tiny model, and the default model if asked)."""
    import bbcodec
    from bbcodec import imageio
    from bbcodec.coding.image import CoderSettings
    from fixtures.samples import binary_pixels, noise_pixels, palette

    seeds = {path.name: path.read_bytes() for path in sorted(GOLDEN.glob("*.bbc"))}
    model = str(model_path)
    made = {
        "made-rgb.bbc": (imageio.Image(binary_pixels(32, 32, 3, seed=11), "RGB"), CoderSettings(tile=8)),
        "made-grey.bbc": (imageio.Image(binary_pixels(24, 40, 1, seed=12), "L"), CoderSettings(tile=8)),
        "made-rgba-bbans.bbc": (imageio.Image(binary_pixels(17, 23, 4, seed=13), "RGBA"),
                                CoderSettings(coder="bbans", tile=8)),
        "made-palette.bbc": (imageio.Image(binary_pixels(20, 20, 1, seed=14, high=3), "P", palette(4), "RGB",
                                           "PNG", {"text": b'{"k":"v"}', "transparency": b"1"}),
                             CoderSettings(tile=8)),
        "made-stored.bbc": (imageio.Image(noise_pixels(5, 6, 3, seed=15), "RGB", format="PNG",
                                          metadata={"dpi": b"[72,72]", "gamma": b"0.45455"}), CoderSettings()),
        "made-1x1.bbc": (imageio.Image(noise_pixels(1, 1, 1, seed=16, high=2), "1"), CoderSettings()),
    }
    for name, (image, settings) in made.items():
        seeds[name] = bbcodec.compress(image, model=model, settings=settings)
    if with_default:
        y, x = np.mgrid[0:64, 0:64]
        smooth = np.stack([(x * 3 + y) % 256, (y * 2) % 256, (x + 2 * y) % 256], -1).astype(np.uint8)
        data = bbcodec.compress(imageio.Image(smooth, "RGB"), model="default")
        if bbcodec.info(data)["method"] == "bits-back":
            seeds["default-model-rgb.bbc"] = data
    return seeds


# -- mutations -------------------------------------------------------------------------------------------


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def assemble(header: dict, sections: list[tuple[str, bytes]], table=None, version: int = 1) -> bytes:
    """A .bbc file of format version 1 (its JSON header carries any value) from a header (``table`` overrides
    its section table) with a valid header CRC."""
    header = dict(header)
    header["sections"] = table if table is not None else [[n, len(d), _crc(d)] for n, d in sections]
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return header_blob(text, version) + b"".join(d for _, d in sections)


def header_blob(text: bytes, version: int = 1) -> bytes:
    """The framing of a format version 1 file around a header's JSON ``text``, its CRC valid."""
    from bbcodec import container

    size, crc = len(text).to_bytes(4, "little"), _crc(text).to_bytes(4, "little")
    return container.MAGIC + bytes([version]) + size + text + crc


def boundaries(data: bytes) -> list[int]:
    """Offsets where a field of the file ends: magic, version, header size, header, CRC, each section."""
    from bbcodec import container

    header, offset = container.read_header(data)
    cuts = [0, 1, 3, 4, 5, 7, 9, offset - 4, offset - 1, offset]
    for _, size, _ in header["sections"]:
        offset += size
        cuts += [offset - 1, offset]
    return sorted({c for c in cuts if 0 <= c < len(data)})


def interesting_values(rng: np.random.Generator, hashes: list[str]):
    """A hostile value for a header field."""
    pool = [0, 1, -1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 64, 255, 256, 1023, 1024, 4096, 8191, 8192, 16383,
            65535, 65536, 100000, 1 << 26, (1 << 31) - 1, 1 << 31, 1 << 32, 1 << 53, 1 << 63, 1 << 64, 10 ** 30,
            -(1 << 31), 0.5, 32.0, 1e308, -0.0, float("nan"), float("inf"), True, False, None, "", "x", "32", "RGB",
            "L", "P", "PA", "1", "LA", "RGBA", "CMYK", "YCbCr", "LAB", "I;16", "F", "bitswap", "bbans", "stored",
            "bits-back", "PNG", "JPEG", "GIF", "TIFF", "WEBP", "../etc/passwd", "line\nbreak", "\x00", "é" * 3,
            "x" * 5000, [], [1], [1, 2, 3], {}, {"coder": "bitswap"}, [[[[[]]]]], "00" * 16, "f" * 64]
    value = pool[int(rng.integers(len(pool)))]
    if rng.random() < 0.15:
        value = hashes[int(rng.integers(len(hashes)))]
        if rng.random() < 0.3:
            value = value[: int(rng.integers(0, 20))]
    elif rng.random() < 0.1:
        value = int(rng.integers(-(1 << 40), 1 << 40))
    return value


class Mutator:
    """Mutated .bbc files from seed files; every mutation is one of :attr:`KINDS` and deterministic in ``rng``."""

    KINDS = ["bit-flips", "truncation-boundary", "truncation-random", "appended-junk", "splice", "prefix",
             "header-field", "header-field-removed", "coder-field", "lying-geometry", "payload-words",
             "payload-length", "payload-swap", "palette-section", "metadata-section", "section-table",
             "header-json-bytes", "stored-resigned", "nested-json", "wrong-model"]

    def __init__(self, seeds: dict[str, bytes], hashes: list[str], rng: np.random.Generator):
        from bbcodec import container

        self.rng, self.hashes = rng, hashes
        self.names = sorted(seeds)
        self.raw = seeds
        self.parsed = {}
        for name in self.names:
            box = container.from_bytes(seeds[name])
            header = {k: v for k, v in box.header.items() if k != "sections"}
            self.parsed[name] = (header, list(box.sections.items()))

    def __call__(self) -> tuple[str, str, bytes]:
        """(kind, seed name, mutated bytes)."""
        kind = self.KINDS[int(self.rng.integers(len(self.KINDS)))]
        name = self.names[int(self.rng.integers(len(self.names)))]
        return kind, name, getattr(self, "_" + kind.replace("-", "_"))(name)

    # helpers
    def _pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def _copy(self, name):
        header, sections = self.parsed[name]
        return json.loads(json.dumps(header)), list(sections)

    def _junk(self, size: int) -> bytes:
        return self.rng.bytes(size)

    # raw byte mutations (the CRCs see most of them)
    def _bit_flips(self, name):
        data = bytearray(self.raw[name])
        for _ in range(int(self.rng.integers(1, 9))):
            position = int(self.rng.integers(len(data)))
            data[position] ^= 1 << int(self.rng.integers(8))
        return bytes(data)

    def _truncation_boundary(self, name):
        data = self.raw[name]
        return data[: self._pick(boundaries(data))]

    def _truncation_random(self, name):
        data = self.raw[name]
        return data[: int(self.rng.integers(len(data)))]

    def _appended_junk(self, name):
        return self.raw[name] + self._junk(int(self.rng.integers(1, 64)))

    def _splice(self, name):
        a, b = self.raw[name], self.raw[self._pick(self.names)]
        return a[: int(self.rng.integers(len(a) + 1))] + b[int(self.rng.integers(len(b) + 1)):]

    def _prefix(self, name):
        data = bytearray(self.raw[name])
        choice = int(self.rng.integers(4))
        if choice == 0:
            data[int(self.rng.integers(4))] ^= 1 << int(self.rng.integers(8))  # magic
        elif choice == 1:
            data[4] = int(self.rng.integers(256))  # version
        elif choice == 2:
            data[5:9] = int(self.rng.integers(0, 1 << 32)).to_bytes(4, "little")  # header size
        else:
            return b"" if self.rng.random() < 0.5 else self._junk(int(self.rng.integers(1, 40)))
        return bytes(data)

    # re-signed mutations: valid CRCs, so the parser and the decoder see them
    def _header_field(self, name):
        header, sections = self._copy(name)
        header[self._pick(HEADER_KEYS[:-1])] = interesting_values(self.rng, self.hashes)
        return assemble(header, sections)

    def _header_field_removed(self, name):
        header, sections = self._copy(name)
        header.pop(self._pick(HEADER_KEYS[:-1]), None)
        return assemble(header, sections)

    def _coder_field(self, name):
        header, sections = self._copy(name)
        coder = header.get("coder") if isinstance(header.get("coder"), dict) else {"coder": "bitswap", "tile": 64,
                                                                                     "max_batch": 16}
        key = self._pick(["coder", "tile", "max_batch", "extra"])
        coder[key] = self._pick([8, 9, 16, 64, 1024, 1025, 7, 0, -8, 1, 256, 257, 10 ** 9, 8.0, "8", None,
                                 "bitswap", "bbans", "nope", True])
        header["coder"] = coder
        if self.rng.random() < 0.3:
            header["method"] = "bits-back"
        return assemble(header, sections)

    def _lying_geometry(self, name):
        """The worst kind of header: a small file that claims a large image, a seed prefix and tiling chosen
        to keep the decoder's checks quiet for as long as possible."""
        header, sections = self._copy(name)
        sizes = [1, 2, 7, 33, 64, 100, 257, 512, 1000, 1024, 2048, 4096, 8192, 16384, 65535, 100000, 1 << 20]
        header["width"], header["height"] = self._pick(sizes), self._pick(sizes)
        if self.rng.random() < 0.5:
            header["channels"] = int(self.rng.integers(1, 5))
            header["mode"] = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[header["channels"]]
        if self.rng.random() < 0.6:
            header["untouched_seed_words"] = self._pick([0, 1, 2, 3])
        if self.rng.random() < 0.4:
            header["coder"] = {"coder": self._pick(["bitswap", "bbans"]), "tile": self._pick([8, 16, 64, 256, 1024]),
                               "max_batch": self._pick([1, 2, 16, 256])}
        if self.rng.random() < 0.3:
            header["method"] = "bits-back"
        return assemble(header, sections)

    def _payload(self, sections) -> tuple[int, bytes]:
        for index, (section, data) in enumerate(sections):
            if section == "payload":
                return index, data
        return -1, b""

    def _payload_words(self, name):
        header, sections = self._copy(name)
        index, payload = self._payload(sections)
        if index < 0 or not payload:
            return self._header_field(name)
        words = bytearray(payload)
        for _ in range(int(self.rng.integers(1, 5))):
            position = int(self.rng.integers(len(words)))
            words[position] ^= 1 << int(self.rng.integers(8))
        if self.rng.random() < 0.2:
            words[-4:] = b"\0\0\0\0"  # a top word of zero
        sections[index] = ("payload", bytes(words))
        return assemble(header, sections)

    def _payload_length(self, name):
        header, sections = self._copy(name)
        index, payload = self._payload(sections)
        if index < 0:
            return self._header_field(name)
        choice = int(self.rng.integers(4))
        if choice == 0:
            payload = payload[: 4 * int(self.rng.integers(len(payload) // 4 + 1))]
        elif choice == 1:
            payload = payload[: int(self.rng.integers(len(payload) + 1))]
        elif choice == 2:
            payload = payload + self._junk(4 * int(self.rng.integers(1, 2000)))
        else:
            payload = payload[4 * int(self.rng.integers(len(payload) // 4 + 1)):]
        sections[index] = ("payload", payload)
        return assemble(header, sections)

    def _payload_swap(self, name):
        header, sections = self._copy(name)
        other = self.parsed[self._pick(self.names)][1]
        index, _ = self._payload(sections)
        _, payload = self._payload(other)
        if index < 0:
            return self._header_field(name)
        sections[index] = ("payload", payload)
        return assemble(header, sections)

    def _palette_section(self, name):
        header, sections = self._copy(name)
        sections = [(n, d) for n, d in sections if n != "palette"]
        if self.rng.random() < 0.8:
            size = self._pick([0, 1, 2, 3, 6, 9, 12, 767, 768, 769, 1024, 1025, 3000])
            sections.append(("palette", self._junk(size)))
        if self.rng.random() < 0.4:
            header["mode"], header["channels"] = self._pick([("P", 1), ("PA", 2), ("L", 1)])
            header["palette_mode"] = self._pick(["RGB", "RGBA", None, "L", 3])
        return assemble(header, sections)

    def _metadata_section(self, name):
        header, sections = self._copy(name)
        key = "meta." + self._pick(METADATA_KEYS + ["unknown", ""])
        values = [b"", b"{", b"null", b"[]", b"[1]", b"[1,2,3]", b"-1", b"1e999", b"NaN", b"Infinity", b'"zz"',
                  b'"ff00"', b"0", b"256", b"[0,0]", b"[1e308,1e308]", b'{"k":1}', b'{"k":{"text":1}}',
                  b'{"k":{"text":"a","lang":1,"tkey":""}}', b"[" * 5000 + b"]" * 5000, b"\xff\xfe",
                  b"Exif\0\0" + self._junk(40), self._junk(int(self.rng.integers(1, 3000)))]
        sections = [(n, d) for n, d in sections if n != key] + [(key, self._pick(values))]
        return assemble(header, sections)

    def _section_table(self, name):
        header, sections = self._copy(name)
        table = [[n, len(d), _crc(d)] for n, d in sections]
        choice = int(self.rng.integers(6))
        if not table or choice == 0:
            table.append(["extra", int(self.rng.integers(0, 1 << 40)), 0])
        elif choice == 1:
            table[int(self.rng.integers(len(table)))][1] += int(self.rng.integers(-3, 4)) or 1
        elif choice == 2:
            table[int(self.rng.integers(len(table)))][2] ^= 1
        elif choice == 3:
            table.append(list(table[0]))
            sections.append(sections[0])
        elif choice == 4:
            table[int(self.rng.integers(len(table)))] = self._pick([[], ["x"], ["x", -1, 0], [1, 2, 3], "payload",
                                                                    ["payload", 1.5, 0], ["payload", True, 0]])
        else:
            table = self._pick([{}, None, "x", 5, [[]] * 3])
        return assemble(header, sections, table=table)

    def _header_json_bytes(self, name):
        """A few bytes of the header edited, its CRC recomputed: JSON characters in a version 1 header, any
        byte in a version 2 one (after the version byte)."""
        from bbcodec import container

        data = self.raw[name]
        header, offset = container.read_header(data)
        version_1 = container.format_version(data) == 1
        start = 9 if version_1 else 5
        text = bytearray(data[start: offset - 4])
        for _ in range(int(self.rng.integers(1, 4))):
            position = int(self.rng.integers(len(text)))
            text[position] = self._pick(b'0123456789-.e"{}[],:ntf \\\x00\xff') if self.rng.random() < 0.7 \
                and version_1 else int(self.rng.integers(256))
        if version_1:
            return header_blob(bytes(text)) + data[offset:]
        signed = data[:start] + bytes(text)
        return signed + _crc(signed).to_bytes(4, "little") + data[offset:]

    def _stored_resigned(self, name):
        from bbcodec import api, container

        header, sections = self._copy(name)
        index, payload = self._payload(sections)
        if header.get("method") != "stored" or index < 0 or not payload:
            return self._payload_words(name)
        pixels = bytearray(payload)
        pixels[int(self.rng.integers(len(pixels)))] = int(self.rng.integers(256))
        array = np.frombuffer(bytes(pixels), np.uint8).reshape(header["height"], header["width"], header["channels"])
        header["pixel_checksum"] = api.pixel_checksum(array)
        sections[index] = ("payload", bytes(pixels))
        if "image_checksum" in header:  # files since issue 18: it covers the pixel checksum too
            header["image_checksum"] = container.image_checksum(header, dict(sections))
        return assemble(header, sections)

    def _nested_json(self, name):
        depth = self._pick([100, 1000, 10000, 200000])
        text = b'{"sections":[],"width":' + b"[" * depth + b"]" * depth + b"}"
        return header_blob(text)

    def _wrong_model(self, name):
        header, sections = self._copy(name)
        header["model"] = self._pick(self.hashes)
        return assemble(header, sections)


# -- running one case ------------------------------------------------------------------------------------


class CaseTimeout(BaseException):
    """Raised by the interval timer; a BaseException, so that no ``except Exception`` turns it into a refusal."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


def peak_rss_mib() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def decode_like_the_cli(data: bytes) -> str:
    """What ``bbcodec info`` and ``bbcodec decompress -c`` do with the bytes; returns the format written."""
    from bbcodec import api, imageio
    from bbcodec.errors import BBCodecError
    from bbcodec_cli.info import describe

    try:
        describe("x", data)
    except BBCodecError:
        pass
    image = api.decompress(data)
    fmt = imageio.output_format(image)
    imageio.write_image(image, io.BytesIO(), format=fmt)
    return fmt


def run_case(data: bytes, timeout: float) -> dict:
    from bbcodec.errors import BBCodecError

    reset_peak_rss()
    signal.setitimer(signal.ITIMER_REAL, timeout)
    start = time.perf_counter()
    try:
        decode_like_the_cli(data)
        outcome, message = "decoded", ""
    except CaseTimeout:
        outcome, message = "TIMEOUT", f"more than {timeout} s"
    except BBCodecError as error:
        message = str(error)
        outcome = "refused" if message and "\n" not in message else "MULTILINE"
        error_class = type(error).__name__
    except Exception as error:  # what this benchmark looks for
        outcome, message = "CRASH", f"{type(error).__name__}: {error}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - start
    record = {"outcome": outcome, "message": message, "seconds": seconds, "peak_mib": peak_rss_mib()}
    if outcome == "refused":
        record["error"] = error_class
    return record


def message_family(message: str) -> str:
    """A message with its numbers and quoted parts blanked, to count messages by kind."""
    import re

    family = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", message)
    family = re.sub(r"\d+", "N", family)
    family = re.sub(r"[0-9a-f]{8,}", "H", family)
    return family[:90]


# -- the command line, in subprocesses -------------------------------------------------------------------


def _limited(limit_bytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
        os.setsid()
    return apply


def cli_command() -> list[str]:
    return [sys.executable, "-m", "bbcodec_cli.main"]


def run_cli(args: list[str], cwd: Path, env: dict, timeout: float, memory_limit: int) -> dict:
    """Run ``bbcodec ARGS``; (exit status, stderr, wall seconds, peak RSS of the child in MiB)."""
    start = time.perf_counter()
    process = subprocess.Popen(cli_command() + args, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, preexec_fn=_limited(memory_limit))
    try:
        _, stderr = process.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        timed_out = True
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the largest child so far, an upper bound
    return {"status": process.returncode, "stderr": stderr.decode(errors="replace"), "timed_out": timed_out,
            "seconds": time.perf_counter() - start, "children_peak_mib": usage.ru_maxrss / 1024}


def cli_sample(cases: list[tuple[str, str, bytes]], model_dir: Path, timeout: float, memory_limit: int,
               singles: int) -> dict:
    """One ``bbcodec test`` over every sampled file, and ``bbcodec decompress`` alone on ``singles`` of them."""
    env = dict(os.environ, OMP_NUM_THREADS="1", BBCODEC_MODELS=str(model_dir), PYTHONPATH=str(ROOT))
    env.pop("BBCODEC_DEBUG", None)
    summary = {"files": len(cases), "problems": []}
    with tempfile.TemporaryDirectory(prefix="bbcodec-fuzz-") as folder:
        work = Path(folder)
        names = []
        for index, (kind, seed, data) in enumerate(cases):
            path = work / f"case{index:05d}.bbc"
            path.write_bytes(data)
            names.append(path.name)
        result = run_cli(["test", "-q", *names], work, env, timeout * len(names) + 120, memory_limit)
        lines = result["stderr"].splitlines()
        summary["test_command"] = {"status": result["status"], "error_lines": len(lines),
                                   "seconds": round(result["seconds"], 1), "timed_out": result["timed_out"]}
        if result["timed_out"] or "Traceback" in result["stderr"] or result["status"] not in (0, 1):
            summary["problems"].append({"command": "test", "status": result["status"],
                                        "stderr_tail": result["stderr"][-500:]})
        failing = {line.split(": ", 2)[1] for line in lines if line.startswith("bbcodec: ")}
        for line in lines:
            if not line.startswith("bbcodec: case"):
                summary["problems"].append({"command": "test", "line": line[:300]})
        singles_done, worst = 0, {"seconds": 0.0, "children_peak_mib": 0.0}
        for name in sorted(failing)[:singles]:
            out = work / (name + ".png")
            result = run_cli(["decompress", "-o", out.name, name], work, env, timeout + 60, memory_limit)
            singles_done += 1
            worst["seconds"] = max(worst["seconds"], round(result["seconds"], 2))
            worst["children_peak_mib"] = max(worst["children_peak_mib"], round(result["children_peak_mib"], 1))
            err = result["stderr"].splitlines()
            leftovers = [p.name for p in work.iterdir() if p.name.startswith(("." + out.name, out.name))]
            if (result["status"] != 1 or len(err) != 1 or not err[0].startswith(f"bbcodec: {name}: ")
                    or "Traceback" in result["stderr"] or leftovers or result["timed_out"]):
                summary["problems"].append({"command": "decompress", "file": name, "status": result["status"],
                                            "stderr": result["stderr"][-300:], "leftovers": leftovers})
        summary["decompress_singles"] = singles_done
        summary["decompress_worst"] = worst
        summary["failing_in_test_command"] = len(failing)
    return summary


# -- a case alone in a fresh process -----------------------------------------------------------------------


def fresh_process(data: bytes, timeout: float, extra: list[str]) -> dict:
    """Run one case alone (``--one``): its outcome, wall seconds and the process's peak resident memory."""
    with tempfile.NamedTemporaryFile(suffix=".bbc", delete=False) as handle:
        handle.write(data)
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", handle.name,
                               "--timeout", str(timeout), *extra], capture_output=True, text=True,
                              timeout=timeout + 300)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError) as error:
        return {"outcome": "NO-ANSWER", "message": type(error).__name__}
    finally:
        os.unlink(handle.name)


def run_one(path: Path, timeout: float, with_default: bool) -> None:
    """``--one FILE``: one case in this fresh process; prints its record as JSON."""
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _on_alarm)
    with tempfile.TemporaryDirectory(prefix="bbcodec-fuzz-models-") as models:
        os.environ["BBCODEC_MODELS"] = models
        install_models(Path(models))
        record = run_case(path.read_bytes(), timeout)
    record["peak_mib"] = round(peak_rss_mib(), 1)  # the whole process: Python, torch and the models included
    record["seconds"] = round(record["seconds"], 3)
    record["message"] = record["message"][:200]
    print(json.dumps(record))


def remeasure(cases: list[dict], timeout: float, extra: list[str]) -> dict:
    runs = []
    for case in cases:
        record = fresh_process(case.pop("data"), timeout, extra)
        runs.append({**case, "fresh": record})
    fresh = [r["fresh"] for r in runs if "seconds" in r["fresh"]]
    return {"cases": runs, "worst_seconds": max((r["seconds"] for r in fresh), default=None),
            "worst_peak_mib": max((r["peak_mib"] for r in fresh), default=None),
            "outcomes": dict(Counter(r["outcome"] for r in fresh))}


# -- main ------------------------------------------------------------------------------------------------


def install_models(folder: Path) -> tuple[Path, list[str]]:
    """The golden tiny model installed as a user model (so that files find it by hash); all known hashes."""
    from bbcodec import zoo

    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / "golden-tiny.safetensors"
    model_path.write_bytes((GOLDEN / "tiny.safetensors").read_bytes())
    hashes = [entry.hash for entry in zoo.installed()]
    return model_path, hashes + ["0" * 64, "not-a-hash"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--cli", type=int, default=300, help="cases also run through the command line")
    parser.add_argument("--cli-singles", type=int, default=40, help="of those, single decompress runs")
    parser.add_argument("--memory-limit-mib", type=int, default=3072, help="address-space limit of CLI runs")
    parser.add_argument("--no-default-model", action="store_true", help="no seed file of the shipped model")
    parser.add_argument("--fresh", type=int, default=10, help="slowest and heaviest cases re-run alone")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--remeasure", type=Path, metavar="DIR",
                        help="re-run the saved failures in DIR alone and record them in the result file")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    extra = []
    if args.one:
        run_one(args.one, args.timeout, not args.no_default_model)
        return 0
    if args.remeasure:
        cases = [{"saved_as": path.name, "data": path.read_bytes()} for path in sorted(args.remeasure.glob("*.bbc"))]
        result = json.loads(args.out.read_text())
        result["fresh_process_failures"] = remeasure(cases[: args.fresh], args.timeout, extra)
        args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(json.dumps({k: v for k, v in result["fresh_process_failures"].items() if k != "cases"}))
        return 0

    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _on_alarm)
    with tempfile.TemporaryDirectory(prefix="bbcodec-fuzz-models-") as models:
        os.environ["BBCODEC_MODELS"] = models
        model_path, hashes = install_models(Path(models))
        seeds = seed_files(model_path, with_default=not args.no_default_model)
        rng = np.random.default_rng(args.seed)
        mutate = Mutator(seeds, hashes, rng)
        baseline = run_case(seeds[sorted(seeds)[0]], args.timeout)
        outcomes, by_kind, families, failures, slowest = Counter(), {}, Counter(), [], []
        crash_dir = Path(tempfile.mkdtemp(prefix="bbcodec-fuzz-failures-"))
        cli_cases, cli_every = [], max(1, args.cases // max(1, args.cli))
        start = time.perf_counter()
        worst_peak = {"peak_mib": 0.0}
        heavy_time, heavy_memory = [], []
        for index in range(args.cases):
            kind, seed, data = mutate()
            record = run_case(data, args.timeout)
            outcome = record["outcome"]
            label = f"refused ({record['error']})" if outcome == "refused" else outcome
            outcomes[label] += 1
            by_kind.setdefault(kind, Counter())[label] += 1
            if outcome == "refused":
                families[message_family(record["message"])] += 1
            summary = {"case": index, "kind": kind, "seed_file": seed, "bytes": len(data),
                       "seconds": round(record["seconds"], 3), "peak_mib": round(record["peak_mib"], 1),
                       "outcome": outcome, "message": record["message"][:200]}
            slowest = sorted(slowest + [summary], key=lambda r: -r["seconds"])[:10]
            if record["peak_mib"] > worst_peak["peak_mib"]:
                worst_peak = summary
            keep = {**summary, "data": data}
            heavy_time = sorted(heavy_time + [keep], key=lambda r: -r["seconds"])[: args.fresh]
            heavy_memory = sorted(heavy_memory + [keep], key=lambda r: -r["peak_mib"])[: args.fresh]
            if outcome not in ("decoded", "refused"):
                path = crash_dir / f"case{index:05d}-{kind}.bbc"
                path.write_bytes(data)
                failures.append({**summary, "saved_as": path.name})
            # The command line sees cases that ended in-process (one that hangs there hangs there too).
            if outcome in ("decoded", "refused") and index % cli_every == 0 and len(cli_cases) < args.cli:
                cli_cases.append((kind, seed, data))
            if (index + 1) % 1000 == 0:
                print(f"{index + 1} cases, {time.perf_counter() - start:.0f} s, {dict(outcomes)}", flush=True)
        in_process_seconds = time.perf_counter() - start
        chosen = {case["case"]: case for case in heavy_time + heavy_memory}
        fresh = remeasure(list(chosen.values()), args.timeout, extra) if args.fresh else {}
        cli = cli_sample(cli_cases, Path(models), args.timeout, args.memory_limit_mib << 20, args.cli_singles) \
            if args.cli else {}
    result = {
        "script": "bench/fuzz_bbc.py",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads 1",
        "seed_files": {name: len(data) for name, data in sorted(seeds.items())},
        "cases": args.cases,
        "outcomes": dict(sorted(outcomes.items())),
        "failures": len(failures),
        "failure_list": failures[:50],
        "failures_saved_in": f"<temporary folder>/{crash_dir.name}" if failures else None,
        "outcomes_by_kind": {kind: dict(sorted(c.items())) for kind, c in sorted(by_kind.items())},
        "refusal_messages": dict(families.most_common(40)),
        "in_process_seconds": round(in_process_seconds, 1),
        "baseline_peak_mib": round(baseline["peak_mib"], 1),
        "worst_seconds": slowest[0]["seconds"] if slowest else None,
        "slowest_cases": slowest,
        "worst_peak_mib": round(worst_peak["peak_mib"], 1),
        "worst_peak_case": worst_peak,
        "fresh_process": fresh,
        "cli": cli,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    if "earlier_runs" in previous:
        result["earlier_runs"] = previous["earlier_runs"]
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("cases", "outcomes", "failures", "worst_seconds", "worst_peak_mib")},
                     indent=1))
    if cli:
        print(json.dumps({k: v for k, v in cli.items() if k != "problems"}), "problems:", len(cli["problems"]))
    if failures:
        print(f"the failing files are in {crash_dir}")
    ok = not failures and not (cli and cli["problems"])
    if not failures and Path(crash_dir).exists():
        os.rmdir(crash_dir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
