"""Property-based tests (hypothesis): random images round-trip exactly, random bytes never crash the parser.

Images: every mode, sizes from 1x1 up, contents from noise to flat, both coders and several tile
sizes, through the path a user takes (the image written as a file, read back, compressed,
decompressed, written again), with the tiny test model. Examples are derandomized (the same ones on
every run) and few, so that the suite stays fast; ``bench/roundtrip_all.py`` does the large run.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import bbcodec
from bbcodec import container, imageio
from bbcodec.coding.image import CoderSettings
from bbcodec.errors import BBCodecError, CorruptDataError

MODES = ["1", "L", "LA", "RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB"]
CONTENTS = ["noise", "flat", "gradient", "binary", "few-values"]
FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def pixels_for(content: str, height: int, width: int, planes: int, seed: int, high: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if content == "noise":
        return rng.integers(0, high, (height, width, planes), dtype=np.uint8)
    if content == "flat":
        return np.full((height, width, planes), rng.integers(0, high), dtype=np.uint8)
    if content == "gradient":
        y, x = np.mgrid[0:height, 0:width]
        ramp = (x * 7 + y * 3)[..., None] + np.arange(planes) * 40
        return (ramp % high).astype(np.uint8)
    if content == "binary":
        return (rng.integers(0, 2, (height, width, planes)) * (high - 1)).astype(np.uint8)
    return rng.choice(np.array([0, high // 3, high - 1], dtype=np.uint8), (height, width, planes))


@st.composite
def images(draw) -> imageio.Image:
    mode = draw(st.sampled_from(MODES))
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    content = draw(st.sampled_from(CONTENTS))
    seed = draw(st.integers(0, 2**16))
    planes = imageio.CHANNELS[mode]
    palette = palette_mode = None
    if mode in ("P", "PA"):
        entries = draw(st.integers(1, 256))
        palette_mode = draw(st.sampled_from(["RGB", "RGBA"]))
        palette = np.random.default_rng(seed).integers(0, 256, entries * len(palette_mode), dtype=np.uint8).tobytes()
        pixels = pixels_for(content, height, width, planes, seed, 256)
        pixels[..., 0] = (pixels[..., 0].astype(np.int64) % entries).astype(np.uint8)
    else:
        pixels = pixels_for(content, height, width, planes, seed, 2 if mode == "1" else 256)
    return imageio.Image(pixels, mode, palette, palette_mode)


def same(a: imageio.Image, b: imageio.Image) -> bool:
    return (a.mode == b.mode and a.pixels.shape == b.pixels.shape and np.array_equal(a.pixels, b.pixels)
            and a.palette == b.palette and a.palette_mode == b.palette_mode)


@FAST
@given(image=images(), coder=st.sampled_from(["bitswap", "bbans"]), tile=st.sampled_from([8, 16, 64]))
def test_any_image_round_trips_through_files(model_file, image, coder, tile):
    try:
        imageio.output_format(image)
    except BBCodecError:  # no file format stores it (a PA image whose palette is not 256 colours): no user has it
        assume(False)
    written = io.BytesIO()
    fmt = imageio.write_image(image, written)  # the file a user has
    source = imageio.read_image(written.getvalue())
    assert same(source, image), fmt
    data = bbcodec.compress(source, model=str(model_file), settings=CoderSettings(coder=coder, tile=tile))
    back = bbcodec.decompress(data, model=str(model_file))
    assert same(back, image)
    assert back.metadata == source.metadata
    again = io.BytesIO()
    imageio.write_image(back, again)
    assert same(imageio.read_image(again.getvalue()), image)


@FAST
@given(height=st.integers(1, 3000), width=st.integers(1, 3000), channels=st.integers(1, 4),
       tile=st.integers(8, 1024), max_batch=st.integers(1, 256))
def test_work_is_counted_exactly(height, width, channels, tile, max_batch):
    from bbcodec.tiling import TileLayout, plan, plane_groups

    assume(-(-height // tile) * -(-width // tile) <= 20000)
    batches = plan(height, width, tile, max_batch)
    expected = (len(batches) * len(plane_groups(channels)), max(len(b) * b[0].height * b[0].width for b in batches))
    assert TileLayout(height, width, channels, tile, max_batch).work() == expected


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(blob):
    for data in (blob, container.MAGIC + b"\x01" + blob, container.MAGIC + b"\x02" + blob):
        try:
            container.from_bytes(data)
        except CorruptDataError as error:
            assert "\n" not in str(error)
        try:
            bbcodec.info(data)
        except CorruptDataError as error:
            assert "\n" not in str(error)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(header=st.dictionaries(st.sampled_from(["width", "height", "channels", "mode", "method", "coder", "model",
                                               "pixel_checksum", "untouched_seed_words", "palette_mode",
                                               "source_format", "x"]), JSON, max_size=8),
       sections=st.dictionaries(st.sampled_from(["payload", "palette", "meta.text", "meta.dpi", "meta.gamma",
                                                 "meta.transparency", "other"]), st.binary(max_size=64), max_size=4))
def test_any_signed_header_is_decoded_or_refused_with_one_line(header, sections):
    """Headers of random JSON with valid CRCs (format version 1 carries any JSON): the decoder (no model
    needed for most) refuses or decodes."""
    data = container.to_bytes(container.Container(header, sections), version=1)
    try:
        image = bbcodec.decompress(data)
    except BBCodecError as error:
        assert str(error) and "\n" not in str(error)
        return
    try:
        imageio.write_image(image, io.BytesIO())
    except BBCodecError as error:
        assert "\n" not in str(error)


@FAST
@given(cut=st.integers(0, 10**6))
def test_every_truncation_of_a_valid_file_is_refused(model_file, cut):
    data = _valid_file(str(model_file))
    cut %= len(data)
    with pytest.raises(CorruptDataError):
        bbcodec.decompress(data[:cut], model=str(model_file))


_VALID = {}


def _valid_file(model: str) -> bytes:
    if model not in _VALID:
        from fixtures.samples import BITS_BACK_SETTINGS, binary_pixels

        _VALID[model] = bbcodec.compress(imageio.Image(binary_pixels(32, 32, 3), "RGB"), model=model,
                                         settings=BITS_BACK_SETTINGS)
    return _VALID[model]
