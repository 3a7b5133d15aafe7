"""The polyphase pixel likelihood (bbcodec.models.polyphase_vae): causal, codes what it trains on, any image."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import bbcodec
from bbcodec import imageio
from bbcodec.coding.image import CoderSettings, decode_image, encode_image
from bbcodec.errors import BBCodecError
from bbcodec.models import family
from bbcodec.models.export import load_model, model_to_bytes, save_model
from bbcodec.models.polyphase_vae import PolyphaseConfig, PolyphaseVAE, coding_steps
from bbcodec.models.presets import preset
from bbcodec.nn.arithmetic import FLOAT
from bbcodec.phases import PHASES, join_phases, split_phases
from fixtures.samples import binary_pixels
from roundtrip import check_roundtrip

CONFIG = PolyphaseConfig(hidden_channels=16, latent_channels=4, latent_layers=2, blocks_per_net=1, stride=4,
                         pixel_distribution="laplace", channel_coupling=True, feature_channels=8,
                         context_channels=16, context_blocks=1)
TWO_LEVELS = CONFIG.replace(levels=2)
LINEAR = TWO_LEVELS.replace(linear_prediction=True)
SHAPES = {"one-level": CONFIG, "two-levels": TWO_LEVELS, "linear": LINEAR}


def make_polyphase(seed: int = 0, config: PolyphaseConfig = CONFIG) -> PolyphaseVAE:
    torch.manual_seed(seed)
    return PolyphaseVAE(config).eval()


@pytest.fixture(scope="module")
def model() -> PolyphaseVAE:
    return make_polyphase()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("polyphase") / "polyphase.safetensors"
    save_model(model, path)
    return path


def smooth_pixels(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    base = (y * 5 + x * 3)[..., None] + np.arange(channels) * 60
    return ((base + rng.integers(0, 12, (height, width, channels))) % 256).astype(np.uint8)


def as_batch(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]


@torch.no_grad()
def likelihood(model, x: torch.Tensor, ops_model=None):
    """p(x | z1) of ``model`` (or of its exact version ``ops_model``) for z1 the rounded posterior mean of x."""
    grid = model.config.grid
    z = torch.round(model.posterior(0, x).mean / grid.step) * grid.step
    return (ops_model or model).conditional(0, z)


# -- the likelihood itself --------------------------------------------------------------------------
def test_phases_split_and_join_are_inverse_and_follow_the_documented_order():
    x = torch.arange(2 * 3 * 4 * 6).view(2, 3, 4, 6)
    phases = split_phases(x)
    assert len(phases) == PHASES and torch.equal(join_phases(phases), x)
    for k, phase in enumerate(phases):
        assert torch.equal(phase, x[:, :, k // 2::2, k % 2::2])


def step_map(levels: int, height: int, width: int) -> torch.Tensor:
    """The coding step of each pixel of a height x width image (multiples of 2**levels)."""
    image = torch.zeros(1, 1, height >> levels, width >> levels, dtype=torch.long)
    for level in range(levels, 0, -1):
        first = 1 + 3 * (levels - level)
        image = join_phases([image] + [torch.full_like(image, first + k) for k in range(3)])
    return image[0, 0]


def test_the_steps_go_from_the_coarsest_image_to_the_finest_phases():
    assert coding_steps(1) == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert coding_steps(2) == [(2, 0), (2, 1), (2, 2), (2, 3), (1, 1), (1, 2), (1, 3)]
    steps = step_map(2, 8, 8)
    assert steps[0::4, 0::4].eq(0).all() and steps[1::2, 1::2].eq(6).all() and steps[2::4, 2::4].eq(3).all()


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_step_depends_on_the_earlier_steps_and_never_on_its_own_or_later_ones(shape):
    model = make_polyphase(config=SHAPES[shape])
    levels = model.config.levels
    x = as_batch(smooth_pixels(16, 16))
    dist = likelihood(model, x)
    base = dist.log_prob(x)
    steps = step_map(levels, 16, 16)
    for changed in range(len(coding_steps(levels))):
        row, column = (steps == changed).nonzero()[len(steps) // 2].tolist()   # one pixel of that step
        other = x.clone()
        other[:, :, row, column] = 255 - other[:, :, row, column]
        moved = (dist.log_prob(other) != base).any(dim=1)[0]
        assert not (moved & (steps < changed)).any(), f"an earlier step depends on step {changed}"
        assert (moved & (steps == changed)).nonzero().tolist() == [[row, column]], f"step {changed} sees itself"
        assert changed == steps.max() or (moved & (steps > changed)).any(), f"later steps ignore step {changed}"


@pytest.mark.parametrize("levels", [1, 2])
def test_pixels_outside_the_crop_do_not_change_the_coded_likelihood(model, levels):
    model = model if levels == 1 else make_polyphase(config=TWO_LEVELS)
    x = as_batch(smooth_pixels(16, 16))
    dist = likelihood(model, x).crop(slice(0, 3), 13, 11)
    other = x.clone()
    other[:, :, 13:] = 7
    other[:, :, :, 11:] = 200
    assert torch.equal(dist.log_prob(x[:, :, :13, :11]), dist.log_prob(other[:, :, :13, :11]))
    assert dist.log_prob(x[:, :, :13, :11]).shape == (1, 3, 13, 11)


@pytest.mark.parametrize("arithmetic", ["float", "exact"])
@pytest.mark.parametrize("planes", [3, 1], ids=["rgb", "grey"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_coded_cost_is_the_log_probability(model, arithmetic, planes, shape):
    model = model if shape == "one-level" else make_polyphase(config=SHAPES[shape])
    x = as_batch(smooth_pixels(32, 32, seed=2))
    ops_model = model.exact() if arithmetic == "exact" else None
    channels = slice(0, 3) if planes == 3 else slice(model.grey_channel, model.grey_channel + 1)
    dist = likelihood(model, x, ops_model).crop(channels, 29, 27)
    coded = x[:, :planes, :29, :27]
    if planes == 1:  # a lone plane enters the model as three equal channels
        dist = likelihood(model, coded.expand(-1, 3, -1, -1).contiguous(), ops_model).crop(channels, 29, 27)
    with torch.no_grad():
        bits = float(-dist.log_prob(coded).sum()) / math.log(2.0)
    grown = check_roundtrip([dist], [coded])
    assert abs(grown - bits) < 0.005 * bits + 64, (grown, bits)


@pytest.mark.parametrize("arithmetic", ["float", "exact"])
def test_logistic_pixels_and_stride_two_code_too(arithmetic):
    model = make_polyphase(1, CONFIG.replace(stride=2, pixel_distribution="logistic", channel_coupling=False))
    x = as_batch(smooth_pixels(12, 14, seed=4))
    dist = likelihood(model, x, model.exact() if arithmetic == "exact" else None).crop(slice(0, 3), 11, 13)
    check_roundtrip([dist], [x[:, :, :11, :13]])


def test_the_training_loss_is_the_log_probability_that_the_coder_codes(model):
    x = as_batch(smooth_pixels(16, 16))
    torch.manual_seed(5)
    loss = model(x)
    torch.manual_seed(5)  # the same posterior sample of z1
    z = model.posterior(0, x).rsample()
    bits = -model.conditional(0, z).log_prob(x).sum() / (x.numel() * math.log(2.0))
    assert torch.allclose(loss["recon"], bits)


def test_linear_prediction_starts_as_the_mean_of_the_nearest_decoded_neighbours():
    """On a linear ramp the mean of the nearest neighbours is exact: the linear path predicts every inner pixel."""
    model = make_polyphase(config=LINEAR)
    rows, columns = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    ramp = (20 + 5 * rows + 3 * columns).to(torch.uint8).expand(1, 3, 16, 16)
    channels = model.config.image_channels
    for step, (level, k) in enumerate(coding_steps(LINEAR.levels)):
        linear = model.phases[step].linear
        if k == 0:
            assert linear is None
            continue
        level_phases = split_phases(ramp[:, :, ::2 ** (level - 1), ::2 ** (level - 1)])
        with torch.no_grad():
            out = linear(FLOAT.pixels(torch.cat(level_phases[:k], dim=1)))
        means, rest = out[:, :channels, :-1, :-1], out[:, channels:]
        assert torch.allclose(means, FLOAT.pixels(level_phases[k])[:, :, :-1, :-1], atol=1e-5), (level, k)
        assert not rest.any()  # log-scales and coupling start from the head alone


# -- through the codec ------------------------------------------------------------------------------
IMAGES = {"rgb": (binary_pixels(17, 23, 3, seed=1), "RGB"), "grey": (binary_pixels(17, 23, 1, seed=2), "L"),
          "rgba": (binary_pixels(17, 23, 4, seed=3), "RGBA")}


@pytest.mark.parametrize("arithmetic", ["float", "exact"])
@pytest.mark.parametrize("coder", ["bitswap", "bbans"])
@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_compress_and_decompress_round_trip(model_path, kind, coder, arithmetic):
    pixels, mode = IMAGES[kind]
    image = imageio.Image(pixels, mode)
    settings = CoderSettings(coder=coder, tile=16, arithmetic=arithmetic)
    data = bbcodec.compress(image, model=str(model_path), settings=settings)
    header = bbcodec.info(data)
    assert header["method"] == "bits-back" and header["coder"]["arithmetic"] == arithmetic
    assert np.array_equal(bbcodec.decompress(data, model=str(model_path)).pixels, pixels)


@pytest.mark.parametrize("coder, kind, shape", [("bitswap", "rgb", "two-levels"), ("bbans", "rgb", "two-levels"),
                                                ("bitswap", "grey", "two-levels"), ("bbans", "rgb", "linear"),
                                                ("bitswap", "grey", "linear")])
def test_a_two_level_model_round_trips_in_exact_arithmetic(tmp_path, coder, kind, shape):
    path = tmp_path / "two-levels.safetensors"
    save_model(make_polyphase(3, SHAPES[shape]), path)
    pixels, mode = IMAGES[kind]
    data = bbcodec.compress(imageio.Image(pixels, mode), model=str(path), settings=CoderSettings(coder=coder, tile=16))
    assert np.array_equal(bbcodec.decompress(data, model=str(path)).pixels, pixels)


def test_exact_files_are_byte_identical_for_one_and_two_threads(model):
    pixels = smooth_pixels(40, 36, seed=3)
    settings = CoderSettings(tile=16, max_batch=4, arithmetic="exact")
    payloads = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            payloads.append(encode_image(model, pixels, settings).payload.tobytes())
        finally:
            torch.set_num_threads(1)
    assert payloads[0] == payloads[1]
    decoded = decode_image(model, encode_image(model, pixels, settings), 40, 36, 3, settings)
    assert np.array_equal(decoded, pixels)


# -- model files and presets --------------------------------------------------------------------------
def test_a_model_file_names_the_family_and_loads_as_it(model_path, model):
    loaded = load_model(model_path)
    assert family.family("markov-vae-polyphase") is PolyphaseVAE
    assert isinstance(loaded, PolyphaseVAE) and loaded.config == CONFIG
    assert b'"family":"markov-vae-polyphase"' in model_to_bytes(model)[:2000]


def test_a_model_file_from_before_levels_has_one_level_and_no_linear_prediction():
    fields = dict(PolyphaseConfig().__dict__)
    del fields["levels"], fields["linear_prediction"]
    config = PolyphaseConfig.from_file(fields)
    assert config.levels == 1 and config.linear_prediction is False


def test_a_linear_prediction_model_file_loads_as_saved(tmp_path):
    path = tmp_path / "linear.safetensors"
    model = make_polyphase(4, LINEAR)
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.config == LINEAR
    x = as_batch(smooth_pixels(16, 16))
    assert torch.equal(likelihood(loaded, x).log_prob(x), likelihood(model, x).log_prob(x))


@pytest.mark.parametrize("field, value", [("context_channels", 0), ("feature_channels", "8"),
                                          ("context_blocks", None), ("levels", 4), ("levels", 0),
                                          ("linear_prediction", 1), ("linear_prediction", "true")])
def test_a_model_file_with_bad_context_fields_is_refused(field, value):
    fields = {**PolyphaseConfig().__dict__, field: value}
    if value is None:
        del fields[field]
    with pytest.raises(BBCodecError, match=field):
        PolyphaseConfig.from_file(fields)


def test_the_polyphase_preset_is_the_photo_preset_with_a_context_likelihood():
    photo, polyphase = preset("photo"), preset("photo-polyphase")
    assert isinstance(polyphase, PolyphaseConfig) and type(photo) is not PolyphaseConfig
    assert {k: getattr(polyphase, k) for k in photo.__dict__} == photo.__dict__
    with pytest.raises(ValueError, match="stride that 2 divides"):
        CONFIG.replace(stride=1)
    with pytest.raises(ValueError, match="stride that 8 divides"):
        CONFIG.replace(levels=3)


def test_the_family_trains_and_resumes_through_the_shared_loop(tmp_path):
    from bbcodec.training.loop import TrainConfig, train

    images = torch.from_numpy(np.stack([smooth_pixels(16, 16, seed=s) for s in range(8)])).permute(0, 3, 1, 2)

    def run(steps, config, resume):
        settings = TrainConfig(steps=steps, batch_size=4, eval_every=2, checkpoint_every=2, warmup_steps=1, threads=1)
        return train(config, settings, lambda generator, size: images[:size], images[:4], tmp_path / "run",
                     resume=resume)

    run(2, CONFIG, resume=False)
    resumed = run(3, preset("tiny"), resume=True)  # a resumed run keeps the model it started with
    assert isinstance(resumed, PolyphaseVAE) and resumed.config == CONFIG
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    evaluations = {r["step"]: r["eval_nelbo"] for r in log if "eval_nelbo" in r}
    assert list(evaluations) == [2, 3] and all(math.isfinite(v) for v in evaluations.values())
