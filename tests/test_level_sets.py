"""Per-image level sets (bbcodec.coding.level_sets): chosen where they pay, coded exactly, refused when forged."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import bbcodec
from bbcodec import container, imageio
from bbcodec.coding import level_sets
from bbcodec.coding.image import CoderSettings
from bbcodec.distributions import DiscretizedLaplace, level_ranks
from bbcodec.errors import CorruptDataError
from roundtrip import check_roundtrip
from test_exact import resigned, smooth_pixels
from test_polyphase import LINEAR, make_polyphase

EVERY_FOURTH = torch.arange(0, 256, 4)


def sparse_pixels(height: int, width: int, channels: int = 3) -> np.ndarray:
    """Smooth pixels that take every fourth value only, as a scan stretched from 6 bits does."""
    return np.ascontiguousarray(smooth_pixels(height, width, channels) & 0xFC)


def test_ranks_of_every_value_are_the_values_themselves():
    centre, scale = torch.tensor([-3.0, 0.0, 17.25, 254.5, 300.0], dtype=torch.float64), torch.full((5,), 2.5,
                                                                                                    dtype=torch.float64)
    rank_centre, rank_scale = level_ranks(torch.arange(256), centre, scale)
    assert torch.equal(rank_centre, centre) and torch.equal(rank_scale, scale)


def test_ranks_of_every_fourth_value_are_a_quarter_of_the_distances():
    centre, scale = torch.tensor([40.0, 41.0, 130.0], dtype=torch.float64), torch.full((3,), 8.0, dtype=torch.float64)
    rank_centre, rank_scale = level_ranks(EVERY_FOURTH, centre, scale)
    assert torch.equal(rank_centre, torch.tensor([10.0, 10.25, 32.5], dtype=torch.float64))
    assert torch.allclose(rank_scale, scale / 4, rtol=0.05)


def laplace(channels: int, seed: int = 0) -> DiscretizedLaplace:
    gen = torch.Generator().manual_seed(seed)
    mean = torch.rand(2, channels, 6, 5, generator=gen, dtype=torch.float64) * 2 - 1
    return DiscretizedLaplace(mean, 0.02 + 0.1 * torch.rand(2, channels, 6, 5, generator=gen, dtype=torch.float64))


def test_pixels_round_trip_among_their_level_sets_and_cost_less():
    sets = (EVERY_FOURTH, None, torch.tensor([7]))   # every fourth value, all values, one value
    x = laplace(3).sample(torch.Generator().manual_seed(1))
    x[:, 0] &= 0xFC
    x[:, 2] = 7
    whole, restricted = laplace(3), laplace(3).restricted(sets)
    bits = check_roundtrip([restricted], [x])
    assert bits < check_roundtrip([whole], [x])
    assert bits == pytest.approx(-restricted.log_prob(x).sum().item() / math.log(2), rel=0.02, abs=32)
    assert torch.equal(restricted.log_prob(x)[:, 2], torch.zeros_like(x[:, 2], dtype=torch.float64))


def test_a_value_outside_its_level_set_is_refused():
    x = torch.full((2, 1, 6, 5), 5, dtype=torch.uint8)
    with pytest.raises(ValueError, match="outside channel 0's level set"):
        check_roundtrip([laplace(1).restricted((EVERY_FOURTH,))], [x])


def test_sets_are_chosen_only_where_they_save_more_than_their_bytes(tiny_model):
    model = make_polyphase(seed=5, config=LINEAR)
    pixels = sparse_pixels(64, 64, 4)
    pixels[..., 1] = smooth_pixels(64, 64, 1, seed=3)[..., 0]   # a plane of every value: no set
    stored = level_sets.choose(model, pixels)
    assert stored[0] == 0b1101 and len(stored) == 1 + 3 * level_sets.MASK_BYTES
    sets = level_sets.parse(stored, 4)
    assert sets[1] is None
    for plane in (0, 2, 3):
        assert torch.equal(sets[plane], torch.from_numpy(np.unique(pixels[..., plane]).astype(np.int64)))
    assert level_sets.choose(model, smooth_pixels(64, 64)) == ()        # every value taken
    assert level_sets.choose(model, sparse_pixels(4, 4)) == ()          # too few pixels to pay
    assert level_sets.choose(tiny_model, sparse_pixels(64, 64)) == ()   # logistic pixels


@pytest.mark.parametrize("stored, message", [
    ((0b1,) + (0,) * 32, "empty"),                 # a set without values
    ((0b10000,) + (255,) * 32, "flags"),           # a plane the image does not have
    ((0b1,) + (255,) * 31, "flags"),               # a mask cut short
])
def test_malformed_sets_are_refused(stored, message):
    with pytest.raises(ValueError, match=message):
        level_sets.parse(stored, 3)


@pytest.mark.parametrize("arithmetic", ["exact", "float"])
@pytest.mark.parametrize("channels, mode", [(3, "RGB"), (1, "L"), (4, "RGBA")])
def test_files_with_level_sets_round_trip_and_are_smaller(coupled_polyphase_file, arithmetic, channels, mode,
                                                          monkeypatch):
    image = imageio.Image(sparse_pixels(64, 64, channels), mode)
    settings = CoderSettings(tile=32, arithmetic=arithmetic)
    with_sets = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=settings)
    assert len(bbcodec.info(with_sets)["pixel_level_sets"]) == 1 + channels * level_sets.MASK_BYTES
    assert np.array_equal(bbcodec.decompress(with_sets, model=str(coupled_polyphase_file)).pixels, image.pixels)
    monkeypatch.setattr(level_sets, "choose", lambda model, pixels: ())
    without = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=settings)
    assert "pixel_level_sets" not in bbcodec.info(without)
    assert len(with_sets) < len(without)


def test_forged_level_sets_are_corrupt_data(coupled_polyphase_file, tiny_model):
    image = imageio.Image(sparse_pixels(64, 64), "RGB")
    data = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=CoderSettings(tile=32))
    stored = bbcodec.info(data)["pixel_level_sets"]
    fewer = stored[:1] + [b & 0x0F for b in stored[1:]]   # values the image takes left out: another decode
    for values, message in ((fewer, "damaged|checksum|outside"), (stored[:-1], "level sets"),
                            ([0b1000] + stored[1:33], "level sets")):
        with pytest.raises(CorruptDataError, match=message):
            bbcodec.decompress(resigned(data, pixel_level_sets=values), model=str(coupled_polyphase_file))
    with pytest.raises(CorruptDataError, match="level sets for a likelihood"):   # logistic pixels
        CoderSettings(**container.Header.from_json(bbcodec.info(data)).coder_settings()).plane_level_sets(tiny_model, 3)


def test_the_field_holds_a_set_for_each_of_four_planes():
    header = {"width": 1, "height": 1, "channels": 3, "mode": "RGB", "method": "stored",
              "pixel_level_sets": [1] * 130}
    with pytest.raises(ValueError, match="at most 129"):
        container.to_bytes(container.Container(header, {"payload": b"abc"}))


def test_a_small_image_is_also_coded_without_level_sets_that_do_not_pay(coupled_polyphase_file, monkeypatch):
    """An estimate that says a plane's set pays can be wrong (MNIST digits under the mnist model); where the set's
    bytes are a large share of the image's, compress also codes it without and keeps the smaller file, header
    bytes counted."""
    from bbcodec import api

    every_value = (1,) + (255,) * level_sets.MASK_BYTES   # a set of all 256 values saves nothing
    monkeypatch.setattr(api.level_sets, "choose", lambda net, pixels: every_value)
    image = imageio.Image(smooth_pixels(32, 32, channels=1), "L")
    data = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=CoderSettings(tile=32))
    header = bbcodec.info(data)
    assert header["method"] == "bits-back" and "pixel_level_sets" not in header
    assert np.array_equal(bbcodec.decompress(data, model=str(coupled_polyphase_file)).pixels, image.pixels)
