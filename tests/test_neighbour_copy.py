"""Copy or escape (bbcodec/neighbour_copy.py): sub-pixels that repeat a decoded neighbour, coded exactly."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import bbcodec
from bbcodec import imageio
from bbcodec.coding import calibration
from bbcodec.coding.image import CoderSettings
from bbcodec.distributions import DiscretizedLaplace
from bbcodec.errors import CorruptDataError
from bbcodec.models.export import load_model, save_model
from bbcodec.neighbour_copy import (CONTEXTS, COPY_WEIGHTS, CopyOrLaplace, CopyPyramid, copy_pyramid,
                                    distinct_neighbours)
from conftest import TINY_CONFIG, make_model
from roundtrip import check_roundtrip
from test_exact import resigned
from test_polyphase import LINEAR, make_polyphase

STEPS = 7
LAPLACE = STEPS * calibration.ROW
COPIES = calibration.COPY_ROW * (STEPS - 1)  # copy weights of the steps with decoded neighbours


def drawing(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Flat rectangles of a few colours on a white page, with one-pixel lines: what screens and charts hold."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (6, channels))
    pixels = np.full((height, width, channels), 255, dtype=np.uint8)
    for colour in colours:
        top, left = rng.integers(0, height - 8), rng.integers(0, width - 8)
        pixels[top:top + rng.integers(4, 24), left:left + rng.integers(4, 24)] = colour
        pixels[rng.integers(0, height), :] = colour
    return pixels


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("copy") / "polyphase.safetensors"
    save_model(make_polyphase(seed=5, config=LINEAR.replace(residual_coupling=True)), path)
    return path


def test_distinct_neighbours_are_sorted_with_their_counts():
    neighbours = torch.tensor([[7, 3], [3, 3], [7, 3], [9, 3]], dtype=torch.uint8)  # 4 neighbours of 2 pixels
    values, counts, distinct = distinct_neighbours(neighbours)
    assert distinct.tolist() == [3, 1]
    assert values[:, 0].tolist()[:3] == [3, 7, 9] and counts[:, 0].tolist() == [1, 2, 1, 0]
    assert values[0, 1] == 3 and counts[:, 1].tolist() == [4, 0, 0, 0]


def test_copies_and_escapes_round_trip_at_the_cost_log_prob_says(rng):
    """Most sub-pixels repeat a neighbour, the rest are anything; the coder pays what log_prob counts."""
    neighbours = torch.randint(0, 4, (4, 2, 3, 16, 16), generator=rng, dtype=torch.uint8) * 60
    pick = torch.randint(0, 4, (2, 3, 16, 16), generator=rng)
    x = neighbours.gather(0, pick[None]).squeeze(0)
    noise = torch.rand((2, 3, 16, 16), generator=rng) < 0.2
    x[noise] = torch.randint(0, 256, (int(noise.sum()),), generator=rng, dtype=torch.uint8)
    laplace = DiscretizedLaplace(torch.zeros(2, 3, 16, 16), torch.full((2, 3, 16, 16), 0.3),
                                 torch.full((2, 3, 16, 16), 0.5), residual=True)
    # by context (first channel, earlier channel copyable, not) and distinct values; three distinct: Laplace only
    weights = (COPY_WEIGHTS[14], COPY_WEIGHTS[12], 0.0, COPY_WEIGHTS[8]) * 2 + (COPY_WEIGHTS[4],) * 4
    distribution = CopyOrLaplace(laplace, neighbours, weights)
    coded = check_roundtrip([distribution], [x])
    counted = float(-distribution.log_prob(x).sum()) / math.log(2.0)
    assert abs(coded - counted) < 0.01 * counted + 64


@pytest.mark.parametrize("arithmetic", ["exact", "float"])
@pytest.mark.parametrize("channels", [3, 1])
def test_a_drawing_copies_its_neighbours_and_round_trips(model_path, arithmetic, channels):
    image = imageio.Image(drawing(64, 96, channels), "RGB" if channels == 3 else "L")
    settings = CoderSettings(tile=32, arithmetic=arithmetic)
    chosen = bbcodec.info(bbcodec.compress(image, model=str(model_path), settings=settings))["pixel_calibration"]
    if calibration.BUCKET_MARK in chosen:   # the bucket factors, where they pay, are not what this test is about
        chosen = chosen[:chosen.index(calibration.BUCKET_MARK)]
    assert chosen[LAPLACE] == calibration.COPY_MARK and len(chosen) == LAPLACE + 1 + calibration.COPY_ROW * STEPS
    sizes = {}
    # the coarsest image copying too; as files made before it could (no row for it); no copies at all
    for name, values in (("copy", chosen), ("coarsest without", chosen[:LAPLACE + 1] + chosen[-COPIES:]),
                         ("laplace only", chosen[:LAPLACE])):
        data = bbcodec.compress(image, model=str(model_path), settings=CoderSettings(
            tile=32, arithmetic=arithmetic, calibration=tuple(values)))
        assert np.array_equal(bbcodec.decompress(data, model=str(model_path)).pixels, image.pixels)
        sizes[name] = len(data)
    assert max(sizes["copy"], sizes["coarsest without"]) < 0.8 * sizes["laplace only"]
    # a grey plane this small pays most of what its coarsest image saves as initial bits (the latents' first
    # pops take more of the seed where the pixels push less; bench/README.md), so only colour shows it here
    assert channels == 1 or sizes["copy"] < 0.9 * sizes["coarsest without"]


@pytest.mark.parametrize("arithmetic", ["exact", "float"])
def test_a_likelihood_that_sees_no_decoded_pixel_copies_in_pyramid_order(tmp_path, arithmetic):
    """A Markov model's pixels are independent given the latents: coded as a pyramid, a drawing copies."""
    path = tmp_path / "laplace.safetensors"
    save_model(make_model(3, TINY_CONFIG.replace(pixel_distribution="laplace", channel_coupling=True)), path)
    image = imageio.Image(drawing(64, 96), "RGB")
    settings = CoderSettings(tile=32, arithmetic=arithmetic)
    data = bbcodec.compress(image, model=str(path), settings=settings)
    chosen = bbcodec.info(data)["pixel_calibration"]
    assert chosen[calibration.ROW] == calibration.COPY_MARK and len(chosen) == calibration.ROW + 1 + calibration.COPY_ROW
    assert np.array_equal(bbcodec.decompress(data, model=str(path)).pixels, image.pixels)
    # what the pixels cost given the latents (a file this small from an untrained model is mostly initial bits)
    tiles = torch.from_numpy(image.pixels).permute(2, 0, 1).unfold(1, 32, 32).unfold(2, 32, 32)
    tiles = tiles.permute(1, 2, 0, 3, 4).reshape(-1, 3, 32, 32)
    with torch.no_grad():
        likelihood = load_model(str(path)).likelihood_given(tiles)
        copied, laplace_only = (-likelihood.calibrated(calibration.rows(tuple(values))).log_prob(tiles).sum()
                                for values in (chosen, chosen[:calibration.ROW]))
    assert copied < 0.8 * laplace_only


@pytest.mark.parametrize("height, width", [(16, 16), (7, 5), (2, 9), (1, 6)])
def test_a_copy_pyramid_round_trips_any_size_at_the_cost_log_prob_says(rng, height, width):
    colours = torch.tensor([[0, 0, 0], [255, 255, 255], [200, 30, 30]], dtype=torch.uint8)
    x = colours[torch.randint(0, 3, (2, height, width), generator=rng)].permute(0, 3, 1, 2).contiguous()
    x[:, :, height // 2:] = x[:, :, :1, :1]   # a flat lower half
    laplace = DiscretizedLaplace(torch.zeros(2, 3, height, width), torch.full((2, 3, height, width), 0.4),
                                 torch.full((2, 3, height, width), 0.5), residual=True)
    weights = (COPY_WEIGHTS[19], COPY_WEIGHTS[12], COPY_WEIGHTS[8], COPY_WEIGHTS[4]) * CONTEXTS
    distribution = copy_pyramid(laplace, weights)
    assert isinstance(distribution, CopyPyramid) == (min(height, width) >= 2)
    coded = check_roundtrip([distribution], [x])
    counted = float(-distribution.log_prob(x).sum()) / math.log(2.0)
    assert abs(coded - counted) < 0.01 * counted + 64
    if height == 16:   # a flat half costs next to nothing, the rest less than the Laplace alone
        assert counted < 0.5 * float(-laplace.log_prob(x).sum()) / math.log(2.0)


def test_a_photo_like_image_is_not_made_to_copy(model_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    chosen = calibration.choose(bbcodec.load_model(str(model_path))[0], pixels, tile=32)
    assert calibration.COPY_MARK not in chosen


@pytest.mark.parametrize("copy, message", [
    ([len(COPY_WEIGHTS)] * 72, "out of range"),   # a weight index past the table
    ([15] * 20, "rows of 6"),             # not a row for each step (or each step after the first)
    ([0, 0, 0, 15] * 18, "damaged|checksum|ends early"),  # other weights: another decode, caught by the checksum
])
def test_forged_copy_weights_are_corrupt_data(model_path, copy, message):
    image = imageio.Image(drawing(64, 64), "RGB")
    data = bbcodec.compress(image, model=str(model_path), settings=CoderSettings(tile=32))
    laplace = bbcodec.info(data)["pixel_calibration"][:LAPLACE]
    with pytest.raises(CorruptDataError, match=message):
        bbcodec.decompress(resigned(data, pixel_calibration=laplace + [calibration.COPY_MARK] + copy),
                           model=str(model_path))
