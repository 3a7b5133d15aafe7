"""The typed .bbc header (bbcodec.container.Header): it reads every file made before it and writes the same JSON;
the binary format versions (2 and 3) carry every field it has, with the codes they had when they were made."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bbcodec
from bbcodec import container, imageio, wire
from bbcodec.coding import bitsback, chain, image
from bbcodec.container import Header
from bbcodec.errors import CorruptDataError
from bbcodec.tiling import TileLayout

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_FILES = sorted(GOLDEN.rglob("*.bbc"))


def raw_header(path: Path) -> dict:
    header, _ = container.read_header(path.read_bytes())
    return {k: v for k, v in header.items() if k != "sections"}


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.name)
def test_every_golden_header_reads_and_writes_back_the_same_fields(path):
    raw = raw_header(path)
    header = Header.from_json(raw)
    assert header.to_json() == raw
    assert Header.readable(raw) == header


def test_a_field_of_the_wrong_type_is_refused_and_dropped_for_display():
    raw = raw_header(GOLDEN / "rgb-bitswap-exact.bbc")
    for field, value in [("width", "wide"), ("channels", True), ("coder", 7), ("model", None), ("coder", {1: 2})]:
        changed = {**raw, field: value}
        with pytest.raises(CorruptDataError, match="field"):
            Header.from_json(changed)
        assert getattr(Header.readable(changed), field) is None


@pytest.mark.parametrize("change, fragment", [
    ({"width": 0}, "implausible size"), ({"channels": 5}, "implausible size"),
    ({"width": 1 << 20, "height": 1 << 20}, "implausible size"), ({"method": "zip"}, "unsupported coding method"),
])
def test_what_decoding_needs_is_checked(change, fragment):
    with pytest.raises(CorruptDataError, match=fragment):
        Header.from_json({**raw_header(GOLDEN / "rgb-bitswap-exact.bbc"), **change})


def test_a_stored_header_needs_no_coder_and_bits_back_needs_one():
    stored = raw_header(GOLDEN / "stored-rgb.bbc")
    assert Header.from_json(stored).layout() is None
    with pytest.raises(CorruptDataError, match="coder"):
        Header.from_json({**stored, "method": "bits-back"})


def test_the_tiling_of_a_header():
    header = Header.from_json(raw_header(GOLDEN / "rgb-bitswap-exact.bbc"))
    assert header.layout() == TileLayout(header.height, header.width, 3, 8, 16)
    assert Header.readable({"method": "bits-back", "width": 4, "height": 4, "channels": 3,
                            "coder": {"tile": 1, "max_batch": 1}}).layout() is None
    assert header.coder_name == "bitswap" and header.coder_settings()["arithmetic"] == "exact"
    old = Header.from_json(raw_header(GOLDEN / "rgb-bitswap.bbc"))
    assert old.coder_settings()["arithmetic"] == "float"  # files from before the field


def test_absent_optional_fields_are_written_only_where_bbcodec_always_wrote_them():
    header = Header(width=1, height=1, channels=1, mode="L", model="m", pixel_checksum="c", method="stored")
    assert header.to_json() == {"width": 1, "height": 1, "channels": 1, "mode": "L", "model": "m",
                                "pixel_checksum": "c", "method": "stored", "palette_mode": None,
                                "source_format": None}
    sections = {"palette": b"p", "meta.text": b"t", "payload": b"x"}
    signed = header.with_image_checksum(sections)
    assert signed.image_matches(sections) and not signed.image_matches({**sections, "meta.text": b"u"})
    assert header.image_matches({})  # no image checksum: nothing to check


# -- format versions 2 and 3 --------------------------------------------------------------------------------

BINARY_VERSIONS = (2, 3)
DIGEST_DIGITS = {2: 2 * container.MODEL_ID_BYTES, 3: 2 * container.DIGEST_BYTES}
"""Hex digits of the model id and checksums each binary version keeps."""
UINT32 = st.integers(0, (1 << 32) - 1)
TEXTS = st.text(max_size=60).filter(lambda text: text.isprintable() and len(text.encode()) <= container.MAX_TEXT)


def hex_digits(count: int):
    return st.text("0123456789abcdef", min_size=count, max_size=count)


def headers(version: int):
    """Every header this format version can carry: each field absent or any value of what bbcodec writes."""
    digits = DIGEST_DIGITS[version]
    return st.builds(
        Header, width=UINT32, height=UINT32, channels=UINT32, mode=st.sampled_from(container.MODES),
        method=st.sampled_from(container.METHODS),
        source_format=st.none() | st.sampled_from(container.SOURCE_FORMATS) | TEXTS,
        palette_mode=st.none() | st.sampled_from(container.PALETTE_MODES),
        model=st.none() | hex_digits(64) | hex_digits(digits), pixel_checksum=st.none() | hex_digits(digits),
        image_checksum=st.none() | hex_digits(digits),
        coder=st.none() | st.fixed_dictionaries(
            {"coder": st.sampled_from(container.CODERS), "tile": UINT32, "max_batch": UINT32},
            optional={"arithmetic": st.sampled_from(image.ARITHMETIC),  # absent: a file from before the field
                      "start": st.sampled_from(chain.STARTS) | st.builds(chain.start_named, UINT32)}),
        grid_bits=st.none() | UINT32, untouched_seed_words=st.none() | UINT32,
        entropy_coder=st.none() | st.sampled_from(container.ENTROPY_CODERS) | TEXTS, float_platform=st.none() | TEXTS)


def binary(header: Header, sections: dict[str, bytes] | None = None, version: int = container.FORMAT_VERSION) -> bytes:
    return container.to_bytes(container.Container(header.to_json(), sections or {}), version=version)


def read_back(data: bytes) -> Header:
    raw, _ = container.read_header(data)
    return Header.readable({k: v for k, v in raw.items() if k != "sections"})


def with_model_id(header: Header, version: int) -> Header:
    """The header as a binary version gives it back: the model named by the first bytes of its hash."""
    return dataclasses.replace(header, model=header.model and header.model[:DIGEST_DIGITS[version]])


@pytest.mark.parametrize("version", BINARY_VERSIONS)
def test_every_header_round_trips_through_the_binary_versions(version):
    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(header=headers(version))
    def round_trip(header):
        data = binary(header, version=version)
        assert container.format_version(data) == version
        assert read_back(data) == with_model_id(header, version)
        assert binary(read_back(data), version=version) == data  # one encoding per header

    round_trip()


@pytest.mark.parametrize("path", [p for p in GOLDEN_FILES if container.format_version(p.read_bytes()) <= 2],
                         ids=lambda p: p.name)
def test_every_golden_header_of_version_1_or_2_round_trips_through_format_version_2(path):
    box = container.from_bytes(path.read_bytes())
    header = Header.from_json(box.header)
    again = container.from_bytes(binary(header, box.sections, version=2))
    assert Header.from_json(again.header) == with_model_id(header, 2) and again.sections == box.sections
    assert again.header["sections"] == box.header["sections"]


@pytest.mark.parametrize("version", BINARY_VERSIONS)
def test_every_section_table_round_trips_through_the_binary_versions(version):
    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(sections=st.dictionaries(st.sampled_from(container.SECTIONS) | TEXTS.map(lambda key: "meta." + key),
                                    st.binary(max_size=40), max_size=6))
    def round_trip(sections):
        header = Header(width=1, height=1, channels=1, mode="L", method="stored")
        box = container.from_bytes(binary(header, sections, version))
        assert box.sections == sections and list(box.sections) == list(sections)

    round_trip()


@pytest.mark.parametrize("version", BINARY_VERSIONS)
def test_the_binary_versions_write_only_what_they_have_a_code_for(version):
    header = Header(width=1, height=1, channels=3, mode="RGB", method="stored").to_json()
    digits = DIGEST_DIGITS[version]
    for changes in ({"mode": "HSV"}, {"method": "zip"}, {"width": -1}, {"width": 1 << 32}, {"height": "1"},
                    {"channels": True}, {"model": "ab" * 4}, {"model": "AB" * 32}, {"pixel_checksum": "0" * (digits - 1)},
                    {"image_checksum": "0" * (digits + 1)}, {"coder": {"coder": "bitswap", "tile": 8}},
                    {"coder": {"coder": "bitswap", "tile": 8, "max_batch": 1, "arithmetic": "auto"}},
                    {"coder": {"coder": "bitswap", "tile": 8, "max_batch": 1, "x": 1}},
                    {"entropy_coder": "x" * (container.MAX_TEXT + 1)}, {"float_platform": "two\nlines"},
                    {"source_format": 5}, {"palette_mode": "CMYK"}, {"x": 1}):
        with pytest.raises(ValueError, match=f"format version {version}"):
            container.to_bytes(container.Container({**header, **changes}), version=version)
    with pytest.raises(ValueError, match=f"format version {version}"):
        container.to_bytes(container.Container(header, {"other": b""}), version=version)
    assert container.to_bytes(container.Container(header, {"other": b""}), version=1)  # any name in version 1


@pytest.mark.parametrize("version", BINARY_VERSIONS)
def test_the_binary_versions_have_a_code_for_every_header_field(version):
    """Version 3 writes every field; version 2, no longer written, those that existed while it was."""
    written = {name for name, _ in container._V2_REQUIRED + container._OPTIONAL[version]}
    newer = {name for name, _ in container._NEW_IN_V3} if version == 2 else set()
    assert written == {field.name for field in dataclasses.fields(Header)} - newer


def test_the_codes_of_the_binary_versions_never_change():
    """A file stores a value's index in these tables: they may only grow at the end, and they cover every
    mode, source format, coder, arithmetic and start bbcodec has."""
    assert container.METHODS == ("bits-back", "stored", "original")
    assert container.MODES == ("1", "L", "P", "LA", "PA", "RGB", "YCbCr", "LAB", "RGBA", "CMYK")
    assert container.SOURCE_FORMATS == ("PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "TGA",
                                        "QOI")
    assert container.PALETTE_MODES == ("RGB", "RGBA")
    assert container.CODERS == ("bitswap", "bbans", "topdown")
    assert container.ARITHMETICS == ("exact", "float", None)
    assert container.STARTS == ("bits-back", "no-bits-back", None, "no-bits-back-throughout")
    assert container.SECTIONS == ("payload", "stack", "palette", "original")
    assert container.ENTROPY_CODERS == ("constriction 0.5",)
    assert wire.ESCAPE == 255
    assert set(container.MODES) == set(imageio.CHANNELS)
    assert set(container.SOURCE_FORMATS) >= imageio.INPUT_FORMATS | set(imageio.LOSSLESS_FORMATS)
    assert set(container.CODERS) == set(bitsback.CODERS)
    assert set(container.ARITHMETICS) == {*image.ARITHMETIC, None}
    assert set(container.STARTS) == {*chain.STARTS, None}
    assert container.FIRST_PREFIX == chain.FIRST_PREFIX


@pytest.mark.parametrize("version", BINARY_VERSIONS)
def test_a_source_format_or_entropy_coder_outside_the_table_is_written_as_text(version):
    header = Header(width=1, height=1, channels=1, mode="L", method="stored", source_format="XBM",
                    entropy_coder="constriction 9.1")
    assert read_back(binary(header, version=version)) == header


@pytest.mark.parametrize("version", BINARY_VERSIONS)
def test_a_binary_file_names_its_model_by_the_first_bytes_of_its_hash(version):
    digest = "0123456789abcdef" * 4
    kept = DIGEST_DIGITS[version]
    header = read_back(binary(Header(width=1, height=1, channels=1, mode="L", method="stored", model=digest),
                              version=version))
    assert header.model == digest[:kept]
    assert header.names_model(digest) and not header.names_model("f" + digest[1:])
    assert Header(model=digest).names_model(digest)  # version 1: the whole hash
    shortest = 2 * container.DIGEST_BYTES
    assert Header(model=digest[:shortest]).names_model(digest)
    assert not Header(model=digest[:shortest - 1]).names_model(digest) and not Header().names_model(digest)


def test_checksums_are_compared_by_the_digits_a_file_keeps():
    digest = "fedcba9876543210" * 2
    assert container.digest_matches(digest, digest) and container.digest_matches(container.short_digest(digest), digest)
    assert not container.digest_matches(digest[:-1] + "1", digest)
    assert not container.digest_matches(digest[:2 * container.DIGEST_BYTES - 1], digest)  # too short to trust
    assert not container.digest_matches(None, digest)


def test_a_stored_header_needs_a_checksum_and_bits_back_a_pixel_checksum():
    stored = Header(width=1, height=1, channels=3, mode="RGB", method="stored")
    with pytest.raises(CorruptDataError, match="pixel_checksum"):
        Header.from_json(stored.to_json())
    assert Header.from_json(dataclasses.replace(stored, image_checksum="0" * 16).to_json())
    bits_back = Header.from_json(raw_header(GOLDEN / "rgb-bitswap-exact.bbc"))
    with pytest.raises(CorruptDataError, match="pixel_checksum"):
        Header.from_json({**bits_back.to_json(), "pixel_checksum": None})


def test_the_image_checksum_covers_raw_pixels_where_there_is_no_pixel_checksum():
    header = Header(width=1, height=1, channels=1, mode="L", method="stored")
    sections = {"payload": b"x"}
    signed = header.with_image_checksum(sections)
    assert signed.image_matches(sections) and not signed.image_matches({"payload": b"y"})
    with_pixels = dataclasses.replace(header, pixel_checksum="0" * 16).with_image_checksum(sections)
    assert with_pixels.image_matches({"payload": b"y"})  # a pixel checksum checks those


def test_small_files_of_version_3():
    """Issue 20: a 1x1 image in at most 40 bytes."""
    pixels = imageio.Image(pixels=np.array([[[10, 20, 30]]], np.uint8), mode="RGB")
    assert len(bbcodec.compress(pixels)) <= 40
