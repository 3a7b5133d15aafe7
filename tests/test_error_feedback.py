"""Error feedback (bbcodec.error_feedback): features from the decoded neighbours' residuals, applied exactly, chosen
where they pay, refused when forged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bbcodec
from bbcodec import error_feedback, imageio
from bbcodec.coding import calibration
from bbcodec.coding.image import CoderSettings
from bbcodec.distributions import DiscretizedLaplace
from bbcodec.errors import CorruptDataError
from roundtrip import check_roundtrip
from test_exact import resigned

STEPS = 7   # the two-level polyphase likelihood of the test model
NEUTRAL = ((0.0,) * 3, ((1.0,) * error_feedback.ENERGY_BUCKETS,) * 3)


def patchy_pixels(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A gradient with noise that is strong in some 8x8 blocks and absent in others, and a slow wave on top:
    residuals whose size and sign the neighbours tell."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    loud = rng.integers(0, 2, (height // 8 + 1, width // 8 + 1))[y // 8, x // 8]
    base = 128 + 40 * np.sin(x / 5.0) * np.cos(y / 7.0)
    noise = rng.normal(0, 16, (height, width, channels)) * loud[..., None]
    return np.clip(base[..., None] + np.arange(channels) * 20 - 20 + noise, 0, 255).astype(np.uint8)


def test_features_average_the_residuals_of_the_decoded_neighbours():
    # phase 2 sees two phase-0 pixels (energy only) and four diagonal phase-1 pixels (energy and bias)
    phase0 = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    phase1 = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    phase0[:, 0], phase1[:, 0], phase1[:, 1] = 0.5, 2.0, -3.0
    energy, bias = error_feedback.features([phase0, phase1], 2, 3, 3)
    assert energy[0, 0, 1, 1] == (2 * 0.5 + 4 * 2.0) / 6
    assert bias[0, 0, 1, 1] == -3.0
    energy, bias = error_feedback.features([phase0], 1, 3, 3)   # phase 1: no neighbour at its own level
    assert energy[0, 0, 1, 1] == 0.5 and bias is None


def laplace(seed: int = 0) -> DiscretizedLaplace:
    gen = torch.Generator().manual_seed(seed)
    mean = torch.rand(2, 3, 6, 5, generator=gen, dtype=torch.float64) * 2 - 1
    return DiscretizedLaplace(mean, 0.02 + 0.1 * torch.rand(2, 3, 6, 5, generator=gen, dtype=torch.float64))


def test_a_row_moves_the_centres_by_its_weights_and_scales_each_energy_bucket():
    distribution, x = laplace(), torch.randint(0, 256, (2, 3, 6, 5), dtype=torch.uint8)
    energy = torch.rand(2, 1, 6, 5, dtype=torch.float64) * 4
    bias = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    unchanged = error_feedback.apply(distribution, energy, bias, NEUTRAL)
    assert torch.equal(unchanged.log_prob(x), distribution.log_prob(x))
    factors = tuple(tuple(2.0 ** (bucket - 4) for bucket in range(error_feedback.ENERGY_BUCKETS)) for _ in range(3))
    moved = error_feedback.apply(distribution, energy, bias, ((0.5, 0.0, -0.25), factors))
    for channel, weight in enumerate((0.5, 0.0, -0.25)):
        assert torch.equal(moved.centre(channel, x), distribution.centre(channel, x) + weight * bias[:, channel])
    bucket = torch.bucketize(energy, torch.tensor(error_feedback.ENERGY_EDGES, dtype=torch.float64))
    assert torch.equal(moved.scale, distribution.scale * 2.0 ** (bucket - 4))


def fed_back_rows(weight: float) -> list[tuple]:
    """A calibration of seven steps that changes nothing but the error feedback of every step after the first."""
    factors = tuple(tuple(1.0 + bucket / 8 for bucket in range(error_feedback.ENERGY_BUCKETS)) for _ in range(3))
    plain = ((1.0,) * 3, (0.0,) * 3, None, None)
    return [plain + (None,)] + [plain + (((weight,) * 3, factors),)] * (STEPS - 1)


@pytest.mark.parametrize("weight", [0.0, 0.75])
def test_fed_back_pixels_round_trip(coupled_polyphase, weight):
    x = torch.from_numpy(patchy_pixels(32, 32).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        likelihood = coupled_polyphase.eval().likelihood_given(x)
        fed = likelihood.calibrated(fed_back_rows(weight))
        check_roundtrip([fed], [x], seed_len=64)
        assert not torch.equal(fed.log_prob(x), likelihood.log_prob(x))


def test_rows_parse_and_forged_rows_are_refused():
    steps = calibration.NEUTRAL * STEPS
    row = tuple(calibration._NEUTRAL_FEEDBACK)
    rows = calibration.rows(steps + (calibration.FEEDBACK_MARK,) + row * (STEPS - 1))
    assert rows[0][4] is None and all(r[4] == NEUTRAL for r in rows[1:])
    for forged in (row * (STEPS - 2), row * (STEPS - 1) + (0,), (len(error_feedback.BIASES),) + row[1:] + row * 5):
        with pytest.raises(ValueError, match="error feedback"):
            calibration.rows(steps + (calibration.FEEDBACK_MARK,) + forged)
    with pytest.raises(ValueError, match="error feedback"):   # one step: no pixel sees a decoded one
        calibration.rows(calibration.NEUTRAL + (calibration.FEEDBACK_MARK,))


@pytest.mark.parametrize("arithmetic", ["exact", "float"])
@pytest.mark.parametrize("channels, mode", [(3, "RGB"), (1, "L")])
def test_files_with_error_feedback_round_trip_and_are_smaller(coupled_polyphase_file, arithmetic, channels, mode,
                                                               monkeypatch):
    # a lone plane saves a third of what three do for the same bytes: a larger image pays for them
    image = imageio.Image(patchy_pixels(64, 96) if channels == 3 else patchy_pixels(128, 128, 1), mode)
    settings = CoderSettings(tile=32, arithmetic=arithmetic)
    fed = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=settings)
    assert calibration.FEEDBACK_MARK in bbcodec.info(fed)["pixel_calibration"]
    assert np.array_equal(bbcodec.decompress(fed, model=str(coupled_polyphase_file)).pixels, image.pixels)
    monkeypatch.setattr(calibration, "_choose_feedback", lambda *args: ((), 0.0))
    without = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=settings)
    assert calibration.FEEDBACK_MARK not in bbcodec.info(without).get("pixel_calibration", ())
    assert len(fed) < len(without)


def test_forged_error_feedback_is_corrupt_data(coupled_polyphase_file):
    image = imageio.Image(patchy_pixels(64, 96), "RGB")
    data = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=CoderSettings(tile=32))
    stored = bbcodec.info(data)["pixel_calibration"]
    start = stored.index(calibration.FEEDBACK_MARK) + 1
    other = stored[:start] + [(i + 1) % len(error_feedback.BIASES) for i in stored[start:]]
    for values, message in ((stored[:-1], "error feedback"), (other, "damaged|checksum")):
        with pytest.raises(CorruptDataError, match=message):
            bbcodec.decompress(resigned(data, pixel_calibration=values), model=str(coupled_polyphase_file))
