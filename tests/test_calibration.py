"""Per-image scale calibration (bbcodec.coding.calibration): chosen by the encoder, stored, applied exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bbcodec
from bbcodec import container, imageio
from bbcodec.coding import calibration
from bbcodec.coding.image import CoderSettings
from bbcodec.distributions import DiscretizedLaplace
from bbcodec.errors import CorruptDataError
from bbcodec.models.export import save_model
from test_exact import resigned, smooth_pixels
from test_polyphase import LINEAR, make_polyphase
from test_topdown import SMALL as TOPDOWN
from bbcodec.models.topdown_vae import TopDownVAE

STEPS = 7  # the two-level polyphase likelihood: the coarsest image and three phases on each of two levels


@pytest.fixture(scope="module")
def model():
    return make_polyphase(seed=5, config=LINEAR.replace(residual_coupling=True))


@pytest.fixture(scope="module")
def model_path(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "polyphase.safetensors"
    save_model(model, path)
    return path


def test_factors_are_exact_binary_fractions_from_a_half_to_two():
    assert calibration.SCALE_FACTORS[0] == 0.5 and calibration.SCALE_FACTORS[-1] == 2.0
    assert calibration.SCALE_FACTORS[calibration.NEUTRAL] == 1.0
    assert all((f * 64).is_integer() for f in calibration.SCALE_FACTORS)
    assert list(calibration.SCALE_FACTORS) == sorted(set(calibration.SCALE_FACTORS))


def test_scaled_likelihoods_multiply_each_steps_scales_per_channel(model, rng):
    x = torch.randint(0, 256, (2, 3, 16, 16), generator=rng, dtype=torch.uint8)
    factors = torch.tensor([[0.5, 1.0, 2.0]] * STEPS, dtype=torch.float64)
    factors[3] = torch.tensor([1.25, 0.75, 1.0])
    with torch.no_grad():
        likelihood = model.likelihood_given(x)
        plain, scaled = likelihood.terms(x), likelihood.scaled(factors).terms(x)
    for step, ((before, values), (after, _)) in enumerate(zip(plain, scaled)):
        assert torch.allclose(after.scale, before.scale * factors[step].view(1, 3, 1, 1).float())
        assert torch.equal(after.mean, before.mean)
    laplace = DiscretizedLaplace(torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2))
    assert torch.equal(laplace.scaled(factors[3:4]).scale[0, :, 0, 0], factors[3].float())
    with pytest.raises(ValueError, match="steps x channels"):
        likelihood.scaled(factors[:2])


def test_a_model_whose_scales_are_too_wide_gets_smaller_factors(model):
    """An untrained model predicts scales of about half the pixel range; a smooth image wants far smaller."""
    scales = calibration.choose(model, smooth_pixels(64, 96), tile=32)
    assert len(scales) == STEPS * 3
    assert max(scales) < calibration.NEUTRAL


def test_nothing_is_chosen_where_it_cannot_pay_or_apply(model, tiny_model):
    assert calibration.choose(model, smooth_pixels(20, 30), tile=32) == ()   # no whole tile
    assert calibration.choose(tiny_model, smooth_pixels(64, 64), tile=32) == ()  # logistic pixels


@pytest.mark.parametrize("arithmetic", ["exact", "float"])
@pytest.mark.parametrize("channels", [3, 1])
def test_calibrated_files_round_trip_and_are_smaller(model_path, arithmetic, channels):
    pixels = smooth_pixels(64, 64)[..., :channels] if channels == 3 else smooth_pixels(64, 64, channels=1)
    image = imageio.Image(np.ascontiguousarray(pixels), "RGB" if channels == 3 else "L")
    settings = CoderSettings(tile=32, arithmetic=arithmetic)
    plain = bbcodec.compress(image, model=str(model_path), settings=settings, calibrate=False)
    calibrated = bbcodec.compress(image, model=str(model_path), settings=settings)
    header = bbcodec.info(calibrated)
    assert len(header["pixel_scales"]) == STEPS * 3 and "pixel_scales" not in bbcodec.info(plain)
    assert len(calibrated) < len(plain)
    assert np.array_equal(bbcodec.decompress(calibrated, model=str(model_path)).pixels, image.pixels)


def test_the_top_down_family_is_calibrated_too(tmp_path):
    torch.manual_seed(2)
    path = tmp_path / "topdown.safetensors"
    save_model(TopDownVAE(TOPDOWN.replace(pixel_distribution="laplace", channel_coupling=True)).eval(), path)
    image = imageio.Image(smooth_pixels(64, 64), "RGB")
    data = bbcodec.compress(image, model=str(path), settings=CoderSettings(tile=32))
    assert "pixel_scales" in bbcodec.info(data)
    assert np.array_equal(bbcodec.decompress(data, model=str(path)).pixels, image.pixels)


@pytest.mark.parametrize("scales, message", [
    ([200] * 21, "coder settings"),                      # an index past the table
    ([8] * 20, "does not fit"),                          # not whole rows of three channels
    ([8] * 9, "does not fit"),                           # three steps, the model has seven
    ([3] * 21, "damaged|checksum"),                      # other factors: another decode, caught
])
def test_a_forged_calibration_is_corrupt_data(model_path, scales, message):
    image = imageio.Image(smooth_pixels(64, 64), "RGB")
    data = bbcodec.compress(image, model=str(model_path), settings=CoderSettings(tile=32))
    with pytest.raises(CorruptDataError, match=message):
        bbcodec.decompress(resigned(data, pixel_scales=scales), model=str(model_path))


def test_the_field_holds_at_most_64_bytes():
    header = {"width": 1, "height": 1, "channels": 3, "mode": "RGB", "method": "stored", "pixel_scales": [1] * 65}
    with pytest.raises(ValueError, match="at most 64"):
        container.to_bytes(container.Container(header, {"payload": b"abc"}))
