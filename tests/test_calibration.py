"""Per-image calibration of the pixel likelihood (bbcodec.coding.calibration): chosen, stored, applied exactly."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import bbcodec
from bbcodec import container, imageio, zoo
from bbcodec.coding import calibration
from bbcodec.coding.image import CoderSettings
from bbcodec.distributions import DiscretizedLaplace
from bbcodec.errors import BBCodecError, CorruptDataError
from bbcodec.models.export import save_model
from test_exact import resigned, smooth_pixels
from test_polyphase import LINEAR, make_polyphase
from test_topdown import SMALL as TOPDOWN
from bbcodec.models.topdown_vae import TopDownVAE

STEPS = 7  # the two-level polyphase likelihood: the coarsest image and three phases on each of two levels
SIZES = tuple(STEPS * calibration.ROW + extra + buckets + feedback
              for extra in (0, 1 + calibration.COPY_ROW * (STEPS - 1), 1 + calibration.COPY_ROW * STEPS)
              for buckets in (0, 1 + calibration.BUCKET_ROW * STEPS)
              for feedback in (0, 1 + calibration.FEEDBACK_ROW * (STEPS - 1)))
"""What the field can hold: Laplace rows; and copy weights for the steps with decoded neighbours, or for all;
and bucket factors; and error feedback."""


def test_factors_and_offsets_are_exact_binary_fractions():
    assert calibration.SCALE_FACTORS[0] == 0.25 and calibration.SCALE_FACTORS[-1] == 2.0
    assert calibration.OFFSETS[0] == -1.0 and calibration.OFFSETS[-1] == 1.0
    assert calibration.rows(calibration.NEUTRAL) == [((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), None, None, None)]
    assert all((f * 64).is_integer() for f in calibration.SCALE_FACTORS + calibration.OFFSETS)
    assert list(calibration.SCALE_FACTORS) == sorted(set(calibration.SCALE_FACTORS))


def test_a_calibrated_likelihood_scales_each_step_and_moves_later_channels_with_earlier_residuals(coupled_polyphase,
                                                                                                   rng):
    x = torch.randint(0, 256, (2, 3, 16, 16), generator=rng, dtype=torch.uint8)
    rows = [((0.5, 1.0, 2.0), (0.0, 0.0, 0.0), None, None, None)] * STEPS
    rows[3] = ((1.25, 0.75, 1.0), (0.5, -0.25, 1.0), None, None, None)
    with torch.no_grad():
        likelihood = coupled_polyphase.likelihood_given(x)
        plain, calibrated = likelihood.terms(x), likelihood.calibrated(rows).terms(x)
    for step, ((before, values), (after, _)) in enumerate(zip(plain, calibrated)):
        factors, (a, b, c), _, _, _ = rows[step]
        assert torch.allclose(after.scale, before.scale * torch.tensor(factors).view(1, 3, 1, 1))
        residual = [values[:, k].float() - before.centre(k, values) for k in (0, 1)]
        expected = [before.centre(0, values), before.centre(1, values) + a * residual[0],
                    before.centre(2, values) + b * residual[0] + c * residual[1]]
        for channel in range(3):
            assert torch.allclose(after.centre(channel, values), expected[channel], atol=1e-4)
    with pytest.raises(ValueError, match="2 steps"):
        likelihood.calibrated(rows[:2])


def test_a_model_whose_scales_are_too_wide_gets_smaller_factors(coupled_polyphase):
    """An untrained model predicts scales of about half the pixel range; a smooth image wants far smaller."""
    chosen = calibration.choose(coupled_polyphase, smooth_pixels(64, 96), tile=32)
    assert len(chosen) in SIZES
    assert max(max(factors) for factors, _, _, _, _ in calibration.rows(chosen)) < 1.0


def test_offsets_follow_residuals_that_are_alike_across_channels():
    """Pixels with the same noise in every channel: B's and G's residuals follow R's, so their offsets are
    large and positive (any likelihood that does not couple the channels leaves them there)."""
    rng = np.random.default_rng(1)
    pixels = np.repeat(rng.integers(100, 156, (64, 64, 1)), 3, axis=2).astype(np.uint8)
    pixels[..., 2] = (pixels[..., 2] + rng.integers(0, 2, (64, 64))).astype(np.uint8)
    model = make_polyphase(seed=6, config=LINEAR)
    rows = calibration.rows(calibration.choose(model, pixels, tile=32))
    assert all(offsets[0] >= 0.5 and offsets[1] + offsets[2] >= 0.5 for _, offsets, _, _, _ in rows[1:])


def test_nothing_is_chosen_where_it_cannot_pay_or_apply(coupled_polyphase, tiny_model):
    assert calibration.choose(coupled_polyphase, smooth_pixels(20, 30), tile=32) == ()   # no whole tile
    assert calibration.choose(tiny_model, smooth_pixels(64, 64), tile=32) == ()  # logistic pixels


@pytest.mark.parametrize("arithmetic", ["exact", "float"])
@pytest.mark.parametrize("channels", [3, 1])
def test_calibrated_files_round_trip_and_are_smaller(coupled_polyphase_file, arithmetic, channels):
    pixels = smooth_pixels(64, 64)[..., :channels] if channels == 3 else smooth_pixels(64, 64, channels=1)
    image = imageio.Image(np.ascontiguousarray(pixels), "RGB" if channels == 3 else "L")
    settings = CoderSettings(tile=32, arithmetic=arithmetic)
    plain = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=settings, calibrate=False)
    calibrated = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=settings)
    header = bbcodec.info(calibrated)
    assert len(header["pixel_calibration"]) in SIZES
    assert "pixel_calibration" not in bbcodec.info(plain)
    assert len(calibrated) < len(plain)
    assert np.array_equal(bbcodec.decompress(calibrated, model=str(coupled_polyphase_file)).pixels, image.pixels)


def test_the_top_down_family_is_calibrated_too(tmp_path):
    torch.manual_seed(2)
    path = tmp_path / "topdown.safetensors"
    save_model(TopDownVAE(TOPDOWN.replace(pixel_distribution="laplace", channel_coupling=True)).eval(), path)
    image = imageio.Image(smooth_pixels(64, 64), "RGB")
    data = bbcodec.compress(image, model=str(path), settings=CoderSettings(tile=32))
    assert "pixel_calibration" in bbcodec.info(data)
    assert np.array_equal(bbcodec.decompress(data, model=str(path)).pixels, image.pixels)


@pytest.mark.parametrize("values, message", [
    ([16, 16, 16, 40, 16, 16] * 7, "out of range"),      # an offset index past the table
    ([16] * 41, "rows of 6"),                            # not whole rows
    (list(calibration.NEUTRAL) * 3, "3 steps"),          # three steps, the model has seven
    ([3, 3, 3, 20, 20, 20] * 7, "damaged|checksum"),     # another calibration: another decode, caught
])
def test_a_forged_calibration_is_corrupt_data(coupled_polyphase_file, values, message):
    image = imageio.Image(smooth_pixels(64, 64), "RGB")
    data = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=CoderSettings(tile=32))
    with pytest.raises(CorruptDataError, match=message):
        bbcodec.decompress(resigned(data, pixel_calibration=values), model=str(coupled_polyphase_file))


def test_the_field_holds_at_most_448_bytes():
    assert max(SIZES) <= 448   # Laplace rows, copy weights, bucket factors and error feedback of seven steps
    header = {"width": 1, "height": 1, "channels": 3, "mode": "RGB", "method": "stored",
              "pixel_calibration": [1] * 449}
    with pytest.raises(ValueError, match="at most 448"):
        container.to_bytes(container.Container(header, {"payload": b"abc"}))


def test_a_stored_calibration_may_name_one_shipped_with_the_model():
    presets = ((1, 2, 3), (4, 5, 6))
    assert calibration.expanded(calibration.preset(1), presets) == (4, 5, 6)
    assert calibration.expanded(calibration.NEUTRAL, presets) == calibration.NEUTRAL   # its own indices
    for forged in (calibration.preset(2), calibration.preset(0) + (0,), (calibration.PRESET_MARK,)):
        with pytest.raises(ValueError, match="names shipped calibration"):
            calibration.expanded(forged, presets)


def test_shipped_calibrations_are_tried_where_a_calibration_costs_a_share_of_the_raw_bytes():
    shipped = ((0,) * 332,)
    cifar, thumbnail, photo = 32 * 32 * 3, 128 * 128 * 3, 256 * 256 * 3
    assert calibration.presets_worth_trying([()], shipped, cifar) == [calibration.preset(0)]   # none of its own
    assert calibration.presets_worth_trying([(0,) * 400, ()], shipped, thumbnail) == [calibration.preset(0)]
    assert calibration.presets_worth_trying([(0,) * 417], shipped, photo) == []
    assert calibration.presets_worth_trying([()], (), cifar) == []                             # a model without


def test_a_small_image_is_coded_with_a_shipped_calibration_where_that_is_smaller(coupled_polyphase_file,
                                                                                 monkeypatch):
    """An image smaller than a tile has no calibration of its own; one fitted on images like it and shipped with
    the model costs two header bytes, and compress keeps it where the file is smaller."""
    model, _ = zoo.load(str(coupled_polyphase_file))
    fitted = calibration.choose_on(model, torch.from_numpy(smooth_pixels(64, 64).transpose(2, 0, 1).copy())[None],
                                   weight=1e4)
    monkeypatch.setattr(model, "calibration_presets", (calibration.NEUTRAL * STEPS, fitted))
    image = imageio.Image(smooth_pixels(24, 24), "RGB")
    settings = CoderSettings(tile=32)
    plain = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=settings, calibrate=False)
    data = bbcodec.compress(image, model=str(coupled_polyphase_file), settings=settings)
    assert bbcodec.info(data)["pixel_calibration"] == [calibration.PRESET_MARK, 1]
    assert len(data) < len(plain)
    assert np.array_equal(bbcodec.decompress(data, model=str(coupled_polyphase_file)).pixels, image.pixels)
    with pytest.raises(CorruptDataError, match="names shipped calibration"):
        bbcodec.decompress(resigned(data, pixel_calibration=[calibration.PRESET_MARK, 2]),
                           model=str(coupled_polyphase_file))
    monkeypatch.setattr(model, "calibration_presets", ())   # a model without it: the file is refused
    with pytest.raises(CorruptDataError, match="names shipped calibration"):
        bbcodec.decompress(data, model=str(coupled_polyphase_file))


def test_the_shipped_calibrations_fit_their_models():
    """Each calibration in bbcodec/zoo/calibrations.json belongs to a shipped model that can be calibrated, and
    makes one row per step of its likelihood."""
    shipped = {entry.hash: entry for entry in zoo.installed() if entry.shipped}
    for digest in json.loads((Path(zoo.__file__).parent / zoo.PRESETS).read_text())["presets"]:
        model, _ = zoo.load(digest)
        assert digest in shipped and calibration.applies(model) and model.calibration_presets
        for preset in model.calibration_presets:
            rows = calibration.rows(preset)
            with torch.no_grad():
                x = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
                model.eval().likelihood_given(x).calibrated(rows)   # as many rows as it has steps


def test_a_damaged_list_of_shipped_calibrations_is_one_clear_error(monkeypatch, tmp_path):
    (tmp_path / zoo.PRESETS).write_text('{"presets": [')
    monkeypatch.setattr(zoo.resources, "files", lambda package: tmp_path)
    zoo.calibration_presets.cache_clear()
    try:
        with pytest.raises(BBCodecError, match="cannot be read .*reinstall bbcodec"):
            zoo.calibration_presets("470ad5d8de9a")
    finally:
        zoo.calibration_presets.cache_clear()
