"""The typed .bbc header (bbcodec.container.Header): it reads every file made before it and writes the same JSON."""
from __future__ import annotations

from pathlib import Path

import pytest

from bbcodec import container
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
