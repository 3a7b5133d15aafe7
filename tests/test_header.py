"""The typed .bbc header (bbcodec.container.Header): it reads every file made before it and writes the same JSON;
format version 2 carries every field it has, with the codes it had when it was made."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# -- format version 2 ---------------------------------------------------------------------------------------

MODEL_DIGITS = 2 * container.MODEL_ID_BYTES
UINT32 = st.integers(0, (1 << 32) - 1)
TEXTS = st.text(max_size=60).filter(lambda text: text.isprintable() and len(text.encode()) <= container.MAX_TEXT)


def hex_digits(count: int):
    return st.text("0123456789abcdef", min_size=count, max_size=count)


HEADERS = st.builds(
    Header, width=UINT32, height=UINT32, channels=UINT32, mode=st.sampled_from(container.MODES),
    method=st.sampled_from(container.METHODS),
    source_format=st.none() | st.sampled_from(container.SOURCE_FORMATS) | TEXTS,
    palette_mode=st.none() | st.sampled_from(container.PALETTE_MODES),
    model=st.none() | hex_digits(64) | hex_digits(MODEL_DIGITS), pixel_checksum=st.none() | hex_digits(32),
    image_checksum=st.none() | hex_digits(32),
    coder=st.none() | st.fixed_dictionaries(
        {"coder": st.sampled_from(container.CODERS), "tile": UINT32, "max_batch": UINT32},
        optional={"arithmetic": st.sampled_from(image.ARITHMETIC),  # absent: a file from before the field
                  "start": st.sampled_from(chain.STARTS)}),
    grid_bits=st.none() | UINT32, untouched_seed_words=st.none() | UINT32, entropy_coder=st.none() | TEXTS,
    float_platform=st.none() | TEXTS)
"""Every header format version 2 can carry: each field absent or any value of what bbcodec writes."""


def version_2(header: Header, sections: dict[str, bytes] | None = None) -> bytes:
    return container.to_bytes(container.Container(header.to_json(), sections or {}), version=2)


def read_back(data: bytes) -> Header:
    raw, _ = container.read_header(data)
    return Header.readable({k: v for k, v in raw.items() if k != "sections"})


def with_model_id(header: Header) -> Header:
    """The header as version 2 gives it back: the model named by the first MODEL_ID_BYTES of its hash."""
    return dataclasses.replace(header, model=header.model and header.model[:MODEL_DIGITS])


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(header=HEADERS)
def test_every_header_round_trips_through_format_version_2(header):
    data = version_2(header)
    assert container.format_version(data) == 2
    assert read_back(data) == with_model_id(header)
    assert version_2(read_back(data)) == data  # one encoding per header


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.name)
def test_every_golden_header_round_trips_through_format_version_2(path):
    box = container.from_bytes(path.read_bytes())
    header = Header.from_json(box.header)
    again = container.from_bytes(version_2(header, box.sections))
    assert Header.from_json(again.header) == with_model_id(header) and again.sections == box.sections
    assert again.header["sections"] == box.header["sections"]


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(sections=st.dictionaries(st.sampled_from(container.SECTIONS) | TEXTS.map(lambda key: "meta." + key),
                                st.binary(max_size=40), max_size=6))
def test_every_section_table_round_trips_through_format_version_2(sections):
    header = Header(width=1, height=1, channels=1, mode="L", method="stored")
    box = container.from_bytes(version_2(header, sections))
    assert box.sections == sections and list(box.sections) == list(sections)


def test_format_version_2_writes_only_what_it_has_a_code_for():
    header = Header(width=1, height=1, channels=3, mode="RGB", method="stored").to_json()
    for changes in ({"mode": "HSV"}, {"method": "zip"}, {"width": -1}, {"width": 1 << 32}, {"height": "1"},
                    {"channels": True}, {"model": "ab" * 8}, {"model": "AB" * 32}, {"pixel_checksum": "0" * 31},
                    {"image_checksum": "0" * 33}, {"coder": {"coder": "bitswap", "tile": 8}},
                    {"coder": {"coder": "bitswap", "tile": 8, "max_batch": 1, "arithmetic": "auto"}},
                    {"coder": {"coder": "bitswap", "tile": 8, "max_batch": 1, "x": 1}},
                    {"entropy_coder": "x" * (container.MAX_TEXT + 1)}, {"float_platform": "two\nlines"},
                    {"source_format": 5}, {"palette_mode": "CMYK"}, {"x": 1}):
        with pytest.raises(ValueError, match="format version 2"):
            container.to_bytes(container.Container({**header, **changes}), version=2)
    with pytest.raises(ValueError, match="format version 2"):
        container.to_bytes(container.Container(header, {"other": b""}), version=2)
    assert container.to_bytes(container.Container(header, {"other": b""}), version=1)  # any name in version 1


def test_format_version_2_has_a_code_for_every_header_field():
    written = {name for name, _ in container._V2_REQUIRED + container._V2_OPTIONAL}
    assert written == {field.name for field in dataclasses.fields(Header)}


def test_the_codes_of_format_version_2_never_change():
    """A file stores a value's index in these tables: they may only grow at the end, and they cover every
    mode, source format, coder, arithmetic and start bbcodec has."""
    assert container.METHODS == ("bits-back", "stored", "original")
    assert container.MODES == ("1", "L", "P", "LA", "PA", "RGB", "YCbCr", "LAB", "RGBA", "CMYK")
    assert container.SOURCE_FORMATS == ("PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "TGA",
                                        "QOI")
    assert container.PALETTE_MODES == ("RGB", "RGBA")
    assert container.CODERS == ("bitswap", "bbans", "topdown")
    assert container.ARITHMETICS == ("exact", "float", None)
    assert container.STARTS == ("bits-back", "no-bits-back", None)
    assert container.SECTIONS == ("payload", "stack", "palette", "original")
    assert wire.ESCAPE == 255
    assert set(container.MODES) == set(imageio.CHANNELS)
    assert set(container.SOURCE_FORMATS) >= imageio.INPUT_FORMATS | set(imageio.LOSSLESS_FORMATS)
    assert set(container.CODERS) == set(bitsback.CODERS)
    assert set(container.ARITHMETICS) == {*image.ARITHMETIC, None}
    assert set(container.STARTS) == {*chain.STARTS, None}


def test_a_source_format_outside_the_table_is_written_as_text():
    header = Header(width=1, height=1, channels=1, mode="L", method="stored", source_format="XBM")
    assert read_back(version_2(header)).source_format == "XBM"


def test_a_version_2_file_names_its_model_by_the_first_bytes_of_its_hash():
    digest = "0123456789abcdef" * 4
    header = read_back(version_2(Header(width=1, height=1, channels=1, mode="L", method="stored", model=digest)))
    assert header.model == digest[:MODEL_DIGITS]
    assert header.names_model(digest) and not header.names_model("f" + digest[1:])
    assert Header(model=digest).names_model(digest)  # version 1: the whole hash
    assert not Header(model=digest[:16]).names_model(digest) and not Header().names_model(digest)
