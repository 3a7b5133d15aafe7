"""Corrupt and hostile .bbc files: every one fails with one clear line, quickly, and leaves nothing behind.

The corpus is made here, from a small bits-back file and a stored file made with the tiny test model,
and from the golden files: truncations at every field boundary and at random points, bit flips in
the header and in the payload, wrong magic, unknown versions, lying sizes (100000x100000 and others),
an empty file, files of another model, and header fields or sections edited and re-signed (CRCs
recomputed) so that the parser and the decoder, not only the CRCs, are tested. Most cases run through
the API the way ``bbcodec decompress`` uses it; a representative subset runs through the real command
in a subprocess under an address-space limit. A sample of the mutations of ``bench/fuzz_bbc.py``
(which runs 10,000 and more) runs here too.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import bbcodec
from bbcodec import api, container, imageio, zoo
from bbcodec.coding.image import CoderSettings
from bbcodec.errors import BBCodecError, CorruptDataError
from bbcodec.modelfile import model_hash
from fixtures.golden import must_decode_here
from fixtures.samples import BITS_BACK_SETTINGS, binary_pixels, noise_pixels

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
CASE_SECONDS = 20  # a hang guard per case, far above what any case takes


def load_fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_bbc", ROOT / "bench" / "fuzz_bbc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = load_fuzzer()


@pytest.fixture(autouse=True)
def user_models(tmp_path, monkeypatch, model_file) -> Path:
    """The tiny test model and the golden model installed, so that files find their model by hash."""
    folder = tmp_path / "user-models"
    folder.mkdir()
    (folder / "tiny.safetensors").write_bytes(model_file.read_bytes())
    (folder / "golden.safetensors").write_bytes((GOLDEN / "tiny.safetensors").read_bytes())
    monkeypatch.setenv("BBCODEC_MODELS", str(folder))
    monkeypatch.delenv("BBCODEC_DEBUG", raising=False)
    return folder


@pytest.fixture(scope="module")
def base_files(model_file) -> dict[str, bytes]:
    """name -> .bbc bytes: two files made here with the tiny model, as bbcodec writes them (format version 3,
    ``-v3``) and as it wrote them before (version 1), and the golden files this machine decodes (a
    float-arithmetic golden file from another kind of machine is no valid base here: ``fixtures.golden``)."""
    bits_back = bbcodec.compress(imageio.Image(binary_pixels(32, 32, 3, seed=21), "RGB"), model=str(model_file),
                                 settings=BITS_BACK_SETTINGS)
    stored = bbcodec.compress(imageio.Image(noise_pixels(9, 7, 3, seed=22), "RGB", format="PNG",
                                            metadata={"text": b'{"a":"b"}'}), model=str(model_file))
    assert api.info(bits_back)["method"] == "bits-back" and api.info(stored)["method"] == "stored"
    assert container.format_version(bits_back) == container.format_version(stored) == container.FORMAT_VERSION == 3
    digest = model_hash(model_file.read_bytes())
    files = {"made-bits-back.bbc": as_version_1(bits_back, digest), "made-stored.bbc": as_version_1(stored, digest)}
    golden = {path.name: path.read_bytes() for path in sorted(GOLDEN.glob("*.bbc"))}
    files.update({name: data for name, data in golden.items() if must_decode_here(api.info(data))})
    files.update({"made-bits-back-v3.bbc": bits_back, "made-stored-v3.bbc": stored})
    return files


class Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise Hang()


def decode_like_the_cli(data: bytes) -> float:
    """Decode and write the way ``bbcodec decompress`` does; returns the seconds taken (hang guard)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    start = time.perf_counter()
    try:
        fuzz.decode_like_the_cli(data)
    except Hang:
        pytest.fail(f"no answer within {CASE_SECONDS} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return time.perf_counter() - start


def assert_refused(data: bytes, *fragments: str, label: str = "") -> str:
    """A BBCodecError (CorruptDataError for damage) whose message is one line, or a test failure."""
    with pytest.raises(BBCodecError) as caught:
        decode_like_the_cli(data)
        pytest.fail(f"{label}: decoded")
    message = str(caught.value)
    assert message and "\n" not in message and len(message) < 400, (label, message)
    for fragment in fragments:
        assert fragment in message, (label, message)
    return message


def resigned(data: bytes, header_changes=None, section_changes=None, drop=(), version=None) -> bytes:
    """``data`` edited and re-signed, in its own format version unless ``version`` says: version 1 carries any
    JSON value, versions 2 and 3 only what bbcodec writes (ValueError for the rest)."""
    box = container.from_bytes(data)
    header = {k: v for k, v in box.header.items() if k != "sections"}
    header.update(header_changes or {})
    sections = {k: v for k, v in box.sections.items() if k not in drop}
    sections.update(section_changes or {})
    return container.to_bytes(container.Container(header, sections), version or container.format_version(data))


def as_version_1(data: bytes, model: str) -> bytes:
    """A file as bbcodec wrote it in format version 1: the same fields, the model named by its whole hash."""
    return resigned(data, {"model": model}, version=1)


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


# -- the corpus ------------------------------------------------------------------------------------------


def raw_damage(data: bytes, rng: np.random.Generator) -> dict[str, bytes]:
    """Damage that the container's framing and CRCs must catch."""
    header, offset = container.read_header(data)
    cases = {f"cut-at-{cut}": data[:cut] for cut in fuzz.boundaries(data)}
    cases.update({f"cut-random-{cut}": data[:cut] for cut in rng.integers(0, len(data), 6)})
    cases.update({f"flip-header-{i}": flip(data, int(i), int(b))
                  for i, b in zip(rng.integers(0, offset, 8), rng.integers(0, 8, 8))})
    cases.update({f"flip-payload-{i}": flip(data, int(i), int(b))
                  for i, b in zip(rng.integers(offset, len(data), 8), rng.integers(0, 8, 8))})
    cases.update({
        "empty": b"",
        "magic-png": b"\x89PNG" + data[4:],
        "magic-zeros": b"\0\0\0\0" + data[4:],
        **{f"version-{version}": data[:4] + bytes([version]) + data[5:]
           for version in (0, 1, 2, 3, 4, 255) if version != container.format_version(data)},
        "header-size-huge": data[:5] + (0xFFFFFFFF).to_bytes(4, "little") + data[9:],
        "header-size-zero": data[:5] + bytes(4) + data[9:],
        "header-size-one-more": data[:5] + (offset - 12).to_bytes(4, "little") + data[9:],
        "trailing-byte": data + b"\0",
        "doubled": data + data,
        "magic-only": container.MAGIC,
        "text": b"hello, world\n",
        "png-file": b"\x89PNG\r\n\x1a\n" + bytes(40),
    })
    return cases


def resigned_damage(data: bytes, other_model_hash: str) -> dict[str, bytes]:
    """Header and section edits with every CRC recomputed: only the parser and decoder can see them. A file
    of a binary format version gets those that it can carry; the JSON-level ones are version 1 files."""
    header = container.from_bytes(data).header
    payload = container.from_bytes(data).sections["payload"]

    def edited(*edit, **edits) -> bytes | None:
        try:
            return resigned(data, *edit, **edits)
        except ValueError:  # a value that a binary format version has no code for
            return None

    cases = {
        "lying-100000x100000": edited({"width": 100000, "height": 100000}),
        "lying-65536x65536": edited({"width": 65536, "height": 65536}),
        "lying-8192x8192-rgba": edited({"width": 8192, "height": 8192, "channels": 4, "mode": "RGBA"}),
        "lying-4096x4096": edited({"width": 4096, "height": 4096}),
        "lying-1x100000000": edited({"width": 1, "height": 100_000_000}),
        "lying-zero-width": edited({"width": 0}),
        "lying-negative": edited({"height": -32}),
        "lying-float": edited({"width": 32.0}),
        "lying-huge-int": edited({"width": 10 ** 40}),
        "lying-channels-5": edited({"channels": 5}),
        "lying-channels-2^32": edited({"channels": (1 << 32) - 1}),  # one plane group each: found by fuzzing
        "lying-channels-2^38": edited({"channels": 1 << 38}),
        "lying-channels-0": edited({"channels": 0}),
        "mode-unknown": edited({"mode": "HSV"}),
        "mode-for-other-planes": edited({"mode": "L"}),
        "mode-palette-without-palette": edited({"mode": "P", "channels": 1}),
        "method-unknown": edited({"method": "zstd"}),
        "method-missing": edited({"method": None}),
        "checksum-wrong": edited({"pixel_checksum": "0" * len(header.get("pixel_checksum") or "0" * 16)}),
        "checksum-missing": edited({"pixel_checksum": None}),
        "model-other": edited({"model": other_model_hash}),
        "model-unknown": edited({"model": "ab" * 32}),
        "model-empty": edited({"model": ""}),
        "source-format-int": edited({"source_format": 5}),
        "source-format-list": edited({"source_format": ["PNG"]}),
        "newline-in-method": edited({"method": "bits\nback"}),
        "megabyte-method": edited({"method": "x" * 500_000}),
        "nested-width": edited({"width": [[[[[[[[32]]]]]]]]}),
        "payload-empty": edited(section_changes={"payload": b""}),
        "payload-odd-length": edited(section_changes={"payload": payload[:-1]}),
        "payload-zero-top-word": edited(section_changes={"payload": payload[:-4] + bytes(4)}),
        "payload-junk": edited(section_changes={"payload": np.random.default_rng(5).bytes(4000)}),
        "payload-missing": edited(drop=("payload",)),
        "palette-junk": edited(section_changes={"palette": b"\x01\x02"}),
        "metadata-deep-json": edited(section_changes={"meta.transparency": b"[" * 50000 + b"]" * 50000}),
        "metadata-text-deep-json": edited({"source_format": "PNG"},
                                          {"meta.text": b'{"k":' + b"[" * 50000 + b"]" * 50000 + b"}"}),
        "metadata-gamma-infinite": edited({"source_format": "PNG"}, {"meta.gamma": b"1e999"}),
        "metadata-dpi-junk": edited({"source_format": "PNG"}, {"meta.dpi": b'"x"'}),
        "metadata-text-not-dict": edited({"source_format": "PNG"}, {"meta.text": b"[1,2]"}),
        "deep-json-header": fuzz.header_blob(b'{"sections":[],"w":' + b"[" * 100000 + b"]" * 100000 + b"}"),
        "header-not-object": fuzz.header_blob(b"[1,2,3]"),
        "header-no-sections": fuzz.header_blob(b'{"width":1}'),
        "header-invalid-utf8": fuzz.header_blob(b'{"sections":[],"a":"\xff\xfe"}'),
        "section-twice": fuzz.assemble({k: v for k, v in header.items() if k != "sections"},
                                       [("payload", payload), ("payload", payload)]),
        "section-size-lies": fuzz.assemble({k: v for k, v in header.items() if k != "sections"},
                                           [("payload", payload)], table=[["payload", 1 << 50, 0]]),
        "section-entry-bad": fuzz.assemble({k: v for k, v in header.items() if k != "sections"},
                                           [("payload", payload)], table=[["payload", True, 0]]),
    }
    if header.get("method") == "bits-back":
        coder = header["coder"]
        cases.update({
            "coder-tile-7": edited({"coder": {**coder, "tile": 7}}),
            "coder-tile-text": edited({"coder": {**coder, "tile": "8"}}),
            "coder-tile-float": edited({"coder": {**coder, "tile": 8.5}}),
            "coder-unknown": edited({"coder": {**coder, "coder": "magic"}}),
            "coder-extra-field": edited({"coder": {**coder, "x": 1}}),
            "coder-not-dict": edited({"coder": [1]}),
            "coder-arithmetic-auto": edited({"coder": {**coder, "arithmetic": "auto"}}),
            "coder-start-unknown": edited({"coder": {**coder, "start": "no-bits-back-first-02"}}),
            "coder-start-beyond-the-chain": edited({"coder": {**coder, "start": "no-bits-back-first-999999"}}),
            "entropy-coder-other": edited({"entropy_coder": "constriction 9.9"}),
            "seed-words-negative": edited({"untouched_seed_words": -1}),
            "seed-words-huge": edited({"untouched_seed_words": 1 << 60}),
            "seed-words-zero": edited({"untouched_seed_words": 0}),
            "work-limit-tiny-tiles": edited({"width": 8192, "height": 8192, "channels": 1, "mode": "L",
                                             "coder": {**coder, "tile": 8, "max_batch": 1}}),
            "work-limit-huge-batches": edited({"width": 4096, "height": 4096,
                                               "coder": {**coder, "tile": 1024, "max_batch": 16}}),
            # batches of 16 (a small file may have been coded in batches of one, which the work limit refuses
            # first): the limit on a payload without checkpoints is what refuses it
            "lying-size-real-seed-prefix": edited({"width": 2048, "height": 2048,
                                                   "coder": {**coder, "max_batch": 16}}),
        })
    return {name: blob for name, blob in cases.items() if blob is not None}


def corpus(base_files, other_model_hash) -> dict[str, bytes]:
    rng = np.random.default_rng(2024)
    cases = {}
    for name, data in base_files.items():
        for case, blob in raw_damage(data, rng).items():
            cases[f"{name}/{case}"] = blob
    for name in ("made-bits-back.bbc", "made-stored.bbc", "rgba-bbans-exact.bbc", "palette-alphas-exact.bbc",
                 "made-bits-back-v3.bbc", "made-stored-v3.bbc"):
        for case, blob in resigned_damage(base_files[name], other_model_hash).items():
            cases[f"{name}/{case}"] = blob
    return cases


@pytest.fixture(scope="module")
def hostile(base_files, other_model_file) -> dict[str, bytes]:
    return corpus(base_files, model_hash(other_model_file.read_bytes()))


# -- through the API -------------------------------------------------------------------------------------

# Stored files need no model, and since format version 3 carry no pixel checksum (their image checksum covers the
# pixels): a changed model name or a removed pixel checksum leaves them valid, and they must still decode exactly.
STILL_VALID = {"made-stored.bbc/model-other", "made-stored.bbc/model-unknown", "made-stored.bbc/model-empty",
               "made-stored-v3.bbc/model-other", "made-stored-v3.bbc/model-unknown",
               "made-stored.bbc/checksum-missing", "made-stored-v3.bbc/checksum-missing",
               "palette-alphas-exact.bbc/mode-palette-without-palette"}  # it is a palette image


def test_base_files_decode(base_files):
    for data in base_files.values():
        decode_like_the_cli(data)


def test_every_hostile_file_is_refused_with_one_line(hostile, base_files):
    """Every case raises a BBCodecError with a one-line message within the hang guard, or is one of the few
    edits that leave a valid file, which then decodes to the original pixels."""
    assert len(hostile) > 400
    for name, data in hostile.items():
        if name in STILL_VALID:
            original = bbcodec.decompress(base_files[name.split("/")[0]])
            assert np.array_equal(bbcodec.decompress(data).pixels, original.pixels)
            continue
        assert_refused(data, label=name)


def test_damage_is_corrupt_data_error(hostile):
    """Damage is CorruptDataError (what callers catch for "this file is damaged"); the other BBCodecErrors are
    a model that is not installed, and damaged metadata, which only writing the image refuses."""
    for name, data in hostile.items():
        if name in STILL_VALID:
            continue
        with pytest.raises(BBCodecError) as caught:
            decode_like_the_cli(data)
        if "not installed" in str(caught.value):
            continue
        if "/metadata-" in name:  # intact pixels with damaged metadata: decompress or writing refuses
            assert isinstance(caught.value, CorruptDataError) or str(caught.value).startswith("cannot write"), \
                (name, caught.value)
        else:
            assert isinstance(caught.value, CorruptDataError), (name, caught.value)


@pytest.mark.parametrize("case, fragment", [
    ("cut-at-0", "not a .bbc file"),
    ("empty", "not a .bbc file"),
    ("magic-png", "bad magic"),
    ("version-4", "version 4"),
    ("header-size-huge", "implausible size"),
    ("lying-100000x100000", "network passes"),
    ("lying-1x100000000", "network passes"),
    ("lying-zero-width", "implausible size"),
    ("work-limit-tiny-tiles", "network passes"),
    ("work-limit-huge-batches", "pixels in one network pass"),
    ("lying-size-real-seed-prefix", "checkpoints"),  # refused before any work since issue 18
    ("model-other", "needs model"),
    ("model-unknown", "not installed"),
    ("deep-json-header", "not JSON"),
    ("megabyte-method", "bbcodec writes none"),
    ("newline-in-method", "bbcodec writes none"),
    ("source-format-int", "format"),
    ("metadata-deep-json", "transparency"),
    ("metadata-gamma-infinite", "metadata"),  # the image checksum catches it first
    ("section-twice", "twice"),
    ("entropy-coder-other", "constriction 9.9"),
])
def test_messages_say_what_is_wrong(hostile, case, fragment):
    assert_refused(hostile[f"made-bits-back.bbc/{case}"], fragment)


@pytest.mark.parametrize("case, fragment", [
    ("cut-at-0", "not a .bbc file"),
    ("cut-at-9", "truncated .bbc file (header)"),
    ("version-4", "version 4"),
    ("trailing-byte", "trailing bytes"),
    ("lying-100000x100000", "network passes"),
    ("lying-1x100000000", "network passes"),
    ("lying-zero-width", "implausible size"),
    ("lying-channels-5", "implausible size"),
    ("lying-channels-2^32", "implausible size"),
    ("work-limit-tiny-tiles", "network passes"),
    ("work-limit-huge-batches", "pixels in one network pass"),
    ("lying-size-real-seed-prefix", "checkpoints"),
    ("model-other", "needs model"),
    ("model-unknown", "not installed"),
    ("metadata-deep-json", "transparency"),
    ("metadata-gamma-infinite", "metadata"),
    ("entropy-coder-other", "constriction 9.9"),
    ("payload-missing", "payload"),
])
def test_messages_say_what_is_wrong_in_format_version_3(hostile, case, fragment):
    """The damage and the lies a version 3 header can carry get the messages they get in version 1: the work
    limits and the decoder's checks work on the header's fields, whatever the version."""
    assert_refused(hostile[f"made-bits-back-v3.bbc/{case}"], fragment)


def test_a_file_from_another_model(base_files, model_file, other_model_file):
    """Decoded with another model, or naming another (installed) model: refused, never other pixels. (A chain
    without bits back throughout may decode under another untrained model whose pixel distributions at the
    prior's modes are the same: the pixel checksum then passes on the right pixels; this file has bits back.)"""
    data = base_files["made-bits-back.bbc"]
    with pytest.raises(CorruptDataError, match="made with model"):
        bbcodec.decompress(data, model=str(other_model_file))
    golden_hash = json.loads((GOLDEN / "golden.json").read_text())["model_hash"]
    with_bits_back = bbcodec.compress(imageio.Image(binary_pixels(32, 32, 3, seed=21), "RGB"), model=str(model_file),
                                      settings=CoderSettings(tile=8, start="bits-back"))
    assert api.info(with_bits_back)["coder"]["start"] == "bits-back"
    assert_refused(resigned(with_bits_back, {"model": golden_hash}))  # the golden model decodes the payload: garbage


def test_work_limits_can_be_lifted_for_a_trusted_file(base_files):
    data = resigned(base_files["made-bits-back.bbc"], {"width": 4096, "height": 4096,
                                                        "coder": {**api.info(base_files["made-bits-back.bbc"])["coder"],
                                                                  "tile": 1024, "max_batch": 16}})
    with pytest.raises(container.WorkLimitError):
        container.from_bytes(data)
    with container.limits_lifted():
        container.from_bytes(data)  # parsed; decoding it would then be refused by the payload itself
    with pytest.raises(container.WorkLimitError):
        container.from_bytes(data)


def test_work_count_matches_the_tiling():
    """The limits count passes arithmetically (a 2^26-pixel image has a million 8x8 tiles); the count must be
    exactly what the image coder does."""
    from bbcodec.tiling import TileLayout, plan, plane_groups

    rng = np.random.default_rng(3)
    for _ in range(300):
        height, width = (int(v) for v in rng.integers(1, 300, 2))
        tile, max_batch = int(rng.choice([8, 16, 24, 64, 100])), int(rng.integers(1, 20))
        channels = int(rng.integers(1, 5))
        batches = plan(height, width, tile, max_batch)
        expected = (len(batches) * len(plane_groups(channels)),
                    max(len(b) * b[0].height * b[0].width for b in batches))
        layout = TileLayout(height, width, channels, tile, max_batch)
        assert layout.work() == expected
        steps = list(layout.steps())
        assert len(steps) == expected[0] and sum(len(batch) for _, batch in steps) == layout.tile_count


def test_default_tiling_of_the_largest_image_is_within_the_limits():
    from bbcodec.tiling import TileLayout

    default = CoderSettings().resolve(zoo.load()[0])   # the shipped default's own tile
    assert container.work_limit_problem(default.layout(8192, 8192, 4)) is None
    assert container.work_limit_problem(TileLayout(8192, 8192, 4, 32, 16)) is None
    for tile in (8, 16, 64, 256, 512, 1024):
        batch = container.batch_limit(tile, 16)
        assert container.work_limit_problem(TileLayout(1024, 1024, 3, tile, batch)) is None


def test_a_fuzz_sample(model_file):
    """400 mutations from bench/fuzz_bbc.py (it runs 10,000 and more), all refused with one line or decoded."""
    seeds = fuzz.seed_files(GOLDEN / "tiny.safetensors", with_default=False)
    hashes = [api.info(seeds["rgb-bitswap.bbc"])["model"], "0" * 64]
    mutate = fuzz.Mutator(seeds, hashes, np.random.default_rng(7))
    outcomes = {}
    for _ in range(400):
        kind, seed, data = mutate()
        try:
            decode_like_the_cli(data)
            outcome = "decoded"
        except BBCodecError as error:
            assert str(error) and "\n" not in str(error), (kind, seed, str(error))
            outcome = "refused"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("refused", 0) > 250


@pytest.mark.parametrize("case", ["no-seed-prefix", "palette-alphas-exact.bbc/lying-size-real-seed-prefix"])
def test_lying_size_fails_fast(base_files, hostile, case):
    """A small file that claims a larger image fails as soon as its payload runs out (the decoder's stack
    floor, bbcodec/coding/ans.py), not after decoding the whole claimed image (for a 2^26-pixel RGBA claim
    with a seed prefix of 0 words that took about two hours with the logistic-pixel ``mnist`` model)."""
    if case == "no-seed-prefix":
        coder = {**api.info(base_files["made-bits-back.bbc"])["coder"], "tile": 64, "max_batch": 16}
        data = resigned(base_files["made-bits-back.bbc"], {"width": 512, "height": 512, "channels": 1, "mode": "L",
                                                            "untouched_seed_words": 0, "coder": coder})
    else:
        data = hostile[case]
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        with pytest.raises(CorruptDataError):
            bbcodec.decompress(data)
    except Hang:
        pytest.fail("still decoding after 2 s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- issue 20: the binary header of format version 2 ----------------------------------------------------------


def leb128(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def crc32(data: bytes) -> bytes:
    return (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little")


PIXEL = bytes([10, 20, 30])
PIXEL_CHECKSUM = bytes.fromhex(api.pixel_checksum(np.frombuffer(PIXEL, np.uint8).reshape(1, 1, 3)))
RGB, STORED, PAYLOAD, META, ESCAPE = 5, 1, 0, 255, 255  # codes of format version 2 (see bbcodec.container)


def v2_file(present: bytes = b"\x08", fields: bytes | None = None, table: bytes | None = None,
            sections: bytes = PIXEL) -> bytes:
    """A version 2 file of one RGB pixel stored raw (presence bit 3: the pixel checksum) with any part replaced,
    its header CRC computed."""
    if fields is None:
        fields = b"\x01\x01\x03" + bytes([RGB, STORED]) + PIXEL_CHECKSUM
    if table is None:
        table = b"\x01" + bytes([PAYLOAD]) + leb128(len(PIXEL)) + crc32(PIXEL)
    header = container.MAGIC + b"\x02" + present + fields + table
    return header + crc32(header) + sections


def with_width(width: bytes) -> bytes:
    return v2_file(fields=width + b"\x01\x03" + bytes([RGB, STORED]) + PIXEL_CHECKSUM)


def with_source_format(code: bytes) -> bytes:
    """The file with a source format (presence bit 0) of these bytes."""
    return v2_file(b"\x09", b"\x01\x01\x03" + bytes([RGB, STORED]) + code + PIXEL_CHECKSUM)


def sections_table(*entries: tuple[bytes, bytes]) -> bytes:
    """A section table of (name code, section bytes) entries."""
    return leb128(len(entries)) + b"".join(code + leb128(len(data)) + crc32(data) for code, data in entries)


V2_HOSTILE = {  # name -> (file, what the message says)
    "number-of-11-bytes": (with_width(b"\x80" * 10 + b"\x01"), "longer than 10 bytes"),
    "number-past-64-bits": (with_width(b"\xff" * 9 + b"\x7f"), "out of range"),
    "width-of-2^32": (with_width(leb128(1 << 32)), "out of range"),
    "width-of-zero": (with_width(b"\x00"), "implausible size"),
    "unknown-mode": (v2_file(fields=b"\x01\x01\x03" + bytes([10, STORED]) + PIXEL_CHECKSUM), "unknown value 10"),
    "unknown-method": (v2_file(fields=b"\x01\x01\x03" + bytes([RGB, 3]) + PIXEL_CHECKSUM), "unknown value 3"),
    "unknown-presence-bit": (v2_file(leb128(1 << 11 | 8)), "unknown fields"),
    "presence-bits-of-11-bytes": (v2_file(b"\x88" + b"\x80" * 9 + b"\x01"), "longer than 10 bytes"),
    "unknown-source-format": (with_source_format(b"\x0b"), "unknown value 11"),
    "text-longer-than-max-text": (with_source_format(bytes([ESCAPE]) + leb128(201) + b"A" * 201), "more than 200"),
    "text-past-the-end": (with_source_format(bytes([ESCAPE]) + leb128(150) + b"PNG"), "truncated .bbc file"),
    "text-of-2^60-bytes": (with_source_format(bytes([ESCAPE]) + leb128(1 << 60)), "more than 200"),
    "text-with-control-characters": (with_source_format(bytes([ESCAPE]) + b"\x03a\nb"), "control characters"),
    "text-not-utf8": (with_source_format(bytes([ESCAPE]) + b"\x02\xff\xfe"), "not UTF-8"),
    "unknown-section": (v2_file(table=sections_table((b"\x07", PIXEL))), "unknown value 7"),
    "meta-key-with-control-characters": (v2_file(table=sections_table((bytes([PAYLOAD]), PIXEL),
                                                                      (bytes([META]) + b"\x02a\x00", b""))),
                                         "control characters"),
    "section-twice": (v2_file(table=sections_table((bytes([PAYLOAD]), PIXEL), (bytes([PAYLOAD]), PIXEL)),
                              sections=PIXEL * 2), "twice"),
    "section-count-of-2^60": (v2_file(table=leb128(1 << 60) + bytes([PAYLOAD]) + b"\x03" + crc32(PIXEL),
                                      sections=b"")[:-4], "truncated .bbc file (header)"),
    "section-larger-than-the-file": (v2_file(table=b"\x01" + bytes([PAYLOAD]) + leb128(1 << 62) + crc32(PIXEL)),
                                     "truncated .bbc file (section 'payload')"),
    "section-checksum-wrong": (v2_file(sections=b"\x00" + PIXEL[1:]), "checksum mismatch"),
    "header-checksum-wrong": (v2_file()[:-7] + bytes([v2_file()[-7] ^ 1]) + PIXEL, "checksum mismatch"),
    "no-header-checksum": (v2_file()[:-7], "truncated .bbc file (header)"),
    "trailing-byte": (v2_file() + b"\x00", "trailing bytes"),
    "header-over-a-mebibyte": (v2_file(table=sections_table(*[(bytes([META]) + b"\x01k", b"")] * 150_000)),
                               "implausible size"),
}


def test_the_hand_made_version_2_file_decodes():
    assert bbcodec.decompress(v2_file()).pixels.tobytes() == PIXEL


@pytest.mark.parametrize("case", sorted(V2_HOSTILE))
def test_a_hostile_version_2_header_is_corrupt_data_with_one_line(case):
    data, fragment = V2_HOSTILE[case]
    with pytest.raises(CorruptDataError) as caught:
        decode_like_the_cli(data)
    message = str(caught.value)
    assert fragment in message and "\n" not in message and len(message) < 200, message


def test_every_cut_and_bit_flip_of_a_small_version_3_file_is_corrupt_data(base_files, model_file):
    """Every truncation and every single-bit flip of a 1x1 stored file, and of a bits-back file's header:
    CorruptDataError in one line, nothing else, and nothing decoded (every byte is under a CRC)."""
    tiny = bbcodec.compress(imageio.Image(noise_pixels(1, 1, 3, seed=23), "RGB", format="PNG"), model=str(model_file))
    bits_back = base_files["made-bits-back-v3.bbc"]
    for data, end in ((tiny, len(tiny)), (bits_back, container.read_header(bits_back)[1])):
        damaged = [data[:cut] for cut in range(end)] + [flip(data, index, bit) for index in range(end)
                                                       for bit in range(8)]
        for blob in damaged:
            with pytest.raises(CorruptDataError) as caught:
                bbcodec.decompress(blob)
            assert str(caught.value) and "\n" not in str(caught.value)


# -- through the command, in a subprocess ------------------------------------------------------------------

CLI_CASES = ["made-bits-back.bbc/" + case for case in (
    "empty", "cut-at-9", "flip-payload-", "magic-png", "version-255", "header-size-huge", "lying-100000x100000",
    "lying-4096x4096", "work-limit-tiny-tiles", "lying-size-real-seed-prefix", "model-other", "model-unknown",
    "deep-json-header", "megabyte-method", "payload-junk", "payload-zero-top-word", "metadata-deep-json",
    "metadata-gamma-infinite", "source-format-int", "section-size-lies", "seed-words-huge")] + [
    "made-stored.bbc/lying-8192x8192-rgba", "made-stored.bbc/checksum-wrong", "rgba-bbans-exact.bbc/coder-tile-float",
    "palette-alphas-exact.bbc/palette-junk", "made-bits-back-v3.bbc/cut-at-9", "made-bits-back-v3.bbc/flip-header-",
    "made-bits-back-v3.bbc/lying-100000x100000", "made-stored-v3.bbc/checksum-wrong"]
MEMORY_LIMIT = 3 << 30


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def test_the_command_refuses_each_with_one_line_and_leaves_nothing(hostile, tmp_path, user_models):
    """``bbcodec decompress`` over a representative subset, in one process under a 3 GiB address-space
    limit: exit status 1, exactly one stderr line per file naming it, no traceback, no output, no
    temporary file; then ``bbcodec test`` over the same files."""
    work = tmp_path / "work"
    work.mkdir()
    names = []
    for index, case in enumerate(CLI_CASES):
        if case not in hostile:  # a case with a random suffix: take the first of its kind
            case = next(name for name in hostile if name.startswith(case))
        name = f"{index:02d}-{case.split('/')[1]}.png.bbc"
        (work / name).write_bytes(hostile[case])
        names.append(name)
    before = {name: (work / name).read_bytes() for name in names}
    env = dict(os.environ, OMP_NUM_THREADS="1", BBCODEC_MODELS=str(user_models), PYTHONPATH=str(ROOT))
    env.pop("BBCODEC_DEBUG", None)
    for command in (["decompress", "--rm"], ["test"]):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "bbcodec_cli.main", *command, *names], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300, preexec_fn=_limit_memory)
        assert time.perf_counter() - start < 300
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == len(names), done.stderr
        for name, line in zip(names, lines):
            assert line.startswith(f"bbcodec: {name}: ") and len(line) < 450, line
        assert sorted(os.listdir(work)) == sorted(names)  # no output, no temporary file, inputs kept
        assert all((work / name).read_bytes() == data for name, data in before.items())


# -- issue 18, item 6: everything that shapes the output is checked ---------------------------------------


@pytest.fixture(scope="module")
def described_file(model_file) -> bytes:
    """A new file of an RGBA image with metadata: it carries the image checksum."""
    image = imageio.Image(noise_pixels(6, 5, 4, seed=31), "RGBA", format="PNG",
                          metadata={"text": b'{"Comment":"kept"}', "icc_profile": b"icc bytes"})
    data = bbcodec.compress(image, model=str(model_file))
    assert "image_checksum" in api.info(data)
    return data


FORGED_DESCRIPTIONS = {  # edit -> what the refusal says (the first four decoded before issue 18)
    "mode CMYK": (dict(header_changes={"mode": "CMYK"}), "mode, size, palette or metadata"),
    "source format": (dict(header_changes={"source_format": "TIFF"}), "mode, size, palette or metadata"),
    "metadata garbage": (dict(section_changes={"meta.text": b'{"Comment":"forged"}'}), "metadata"),
    "metadata dropped": (dict(drop=("meta.icc_profile",)), "metadata"),
    "metadata added": (dict(section_changes={"meta.exif": b"Exif\0\0MM\0*"}), "metadata"),
    "size": (dict(header_changes={"width": 10, "height": 3}), "checksum"),
    "palette added": (dict(section_changes={"palette": bytes(768)}), "palette"),
}


@pytest.mark.parametrize("change", sorted(FORGED_DESCRIPTIONS))
def test_a_forged_image_description_is_caught(described_file, change):
    """With the CRCs recomputed, a relabelled mode or garbage metadata used to decode and write an output."""
    edit, fragment = FORGED_DESCRIPTIONS[change]
    assert_refused(resigned(described_file, **edit), fragment, label=change)


def test_files_without_the_image_checksum_keep_their_pixel_check(described_file):
    """Files written before the image checksum existed decode as before (the golden files are such files);
    raw pixels without either checksum (format version 3 writes only the image checksum for them) are refused."""
    box = container.from_bytes(described_file)
    header = {k: v for k, v in box.header.items() if k not in ("sections", "image_checksum")}
    assert header["method"] == "stored" and "pixel_checksum" not in header
    with pytest.raises(CorruptDataError, match="pixel_checksum"):
        bbcodec.decompress(container.to_bytes(container.Container(header, box.sections)))
    pixels = bbcodec.decompress(described_file).pixels
    old = container.to_bytes(container.Container({**header, "pixel_checksum": api.pixel_checksum(pixels)},
                                                 box.sections), version=2)
    assert bbcodec.decompress(old).mode == "RGBA"
    assert all("image_checksum" not in api.info(path.read_bytes()) for path in GOLDEN.glob("*.bbc"))


# -- issue 18, item 3: the work a payload can cause ---------------------------------------------------------


@pytest.fixture(scope="module")
def many_batches(model_file) -> bytes:
    """A bits-back file of 8x8 tiles coded one per batch: 16 network passes."""
    settings = CoderSettings(tile=8, max_batch=1)
    data = bbcodec.compress(imageio.Image(binary_pixels(32, 32, 1, seed=41), "L"), model=str(model_file),
                            settings=settings)
    assert api.info(data)["method"] == "bits-back"
    return data


def random_payload(data: bytes, seed: int = 0) -> bytes:
    """``data`` with its payload replaced by random words of the same length (a valid top word)."""
    payload = container.from_bytes(data).sections["payload"]
    words = np.random.default_rng(seed).integers(0, 1 << 32, len(payload) // 4, dtype=np.uint64).astype("<u4")
    words[-1] |= np.uint32(1 << 31)
    return resigned(data, section_changes={"payload": words.tobytes()})


def test_a_forged_payload_is_caught_after_one_batch(many_batches):
    """Random payload words under a real header (CRCs recomputed) used to be decoded until they ran out."""
    for seed in range(5):
        tiles = []
        with pytest.raises(CorruptDataError, match="damaged|ends early"):
            bbcodec.decompress(random_payload(many_batches, seed), progress=tiles.append)
        assert sum(tiles) <= 1, tiles


def test_checkpoints_that_do_not_fit_are_refused_before_any_work(many_batches):
    stack = container.from_bytes(many_batches).sections[container.CHECKPOINTS]
    for changed in (stack[:-4], stack + stack[-4:], stack[:-1], stack[:-4] + (1 << 30).to_bytes(4, "little")):
        tiles = []
        with pytest.raises(CorruptDataError, match="checkpoints"):
            bbcodec.decompress(resigned(many_batches, section_changes={container.CHECKPOINTS: changed}),
                               progress=tiles.append)
        assert tiles == []


def test_without_checkpoints_the_payload_must_pay_for_the_passes(many_batches, monkeypatch):
    """A file without checkpoints (older files, or a forger who removed them) may ask for FREE_PASSES passes
    plus one per PAYLOAD_BYTES_PER_PASS bytes of payload; more is a work-limit refusal, before any work."""
    legacy = resigned(many_batches, drop=(container.CHECKPOINTS,))
    assert bbcodec.decompress(legacy).mode == "L"  # 16 passes: within the free passes
    monkeypatch.setattr(container, "FREE_PASSES", 4)
    with pytest.raises(container.WorkLimitError, match="pays for at most"):
        bbcodec.decompress(legacy)
    with container.limits_lifted():
        assert bbcodec.decompress(legacy).mode == "L"
    assert bbcodec.decompress(many_batches).mode == "L"  # with checkpoints: the general limits only


def test_every_golden_file_is_within_the_payload_limit():
    """Files written before checkpoints existed: none of the committed ones is refused by the limit on what a
    payload without checkpoints may ask for (``from_bytes`` applies it; golden files made since carry them)."""
    paths = sorted(GOLDEN.glob("*.bbc")) + sorted((GOLDEN / "zoo").glob("*.bbc"))
    without = [path.name for path in paths
               if container.CHECKPOINTS not in container.from_bytes(path.read_bytes()).sections]
    assert len(without) >= 10, without
