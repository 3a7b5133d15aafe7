"""Drawing samples of a model (issue 22): the pixel samplers, the families' ``sample``, the grid and ``bbcodec sample``.

The samplers must draw what the distributions score: the frequencies of the
levels match ``exp(log_prob)``, the coupled channels follow the channels
drawn before them, and the polyphase steps are each drawn given the phases
drawn before. Every family draws images of the asked shape, the same ones for
the same seed.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from bbcodec import imageio
from bbcodec.distributions import PIXEL_LEVELS, DiscretizedLaplace, DiscretizedLogistic
from bbcodec.models.config import VAEConfig
from bbcodec.models.family import CodecModel
from bbcodec.models.polyphase_vae import PolyphaseConfig, PolyphasePixels, PolyphaseVAE, coding_steps
from bbcodec.models.topdown_vae import TopDownConfig, TopDownVAE
from bbcodec.sampling import BORDER, sample_grid
from bbcodec_cli.main import main
from conftest import make_model
from fixtures.samples import make_tiny_model

POLYPHASE = PolyphaseConfig(hidden_channels=8, latent_channels=4, latent_layers=2, blocks_per_net=1, stride=4,
                            pixel_distribution="laplace", channel_coupling=True, feature_channels=8,
                            context_channels=8, context_blocks=1, levels=2)
TOPDOWN = TopDownConfig(hidden_channels=8, latent_channels=4, latent_layers=3, blocks_per_net=1, stride=4,
                        pixel_distribution="laplace", channel_coupling=True, feature_channels=8,
                        context_channels=8, context_blocks=1, levels=2, linear_prediction=True)
SAMPLES = 40_000


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(family: str) -> CodecModel:
    torch.manual_seed(0)
    if family == "markov":
        return make_model(0)
    return (PolyphaseVAE(POLYPHASE) if family == "polyphase" else TopDownVAE(TOPDOWN)).eval()


# -- the pixel distributions ---------------------------------------------------------------------------------

def level_frequencies(x: torch.Tensor) -> np.ndarray:
    return np.bincount(x.flatten().numpy(), minlength=PIXEL_LEVELS) / x.numel()


def level_probabilities(distribution_type, *parameters) -> np.ndarray:
    """exp(log_prob) of every level under one sub-pixel's distribution of ``parameters`` (numbers)."""
    shape = (1, 1, 1, PIXEL_LEVELS)
    distribution = distribution_type(*(torch.full(shape, value, dtype=torch.float64) for value in parameters))
    return distribution.log_prob(torch.arange(PIXEL_LEVELS).view(shape)).exp().numpy().ravel()


@pytest.mark.parametrize("mean", [0.2, -1.0], ids=["middle", "edge"])
@pytest.mark.parametrize("kind", ["logistic", "laplace"])
def test_pixel_samples_follow_the_distribution(kind, mean):
    """The levels come out as often as the distribution gives them probability, the outer bins taking the
    tails; the average is near the mean."""
    spread = 3.0 / 255  # a few levels wide
    parameters = (mean, np.log(spread)) if kind == "logistic" else (mean, spread)
    distribution_type = DiscretizedLogistic if kind == "logistic" else DiscretizedLaplace
    shape = (1, 1, 200, SAMPLES // 200)
    x = distribution_type(*(torch.full(shape, value) for value in parameters)).sample(generator())
    assert x.dtype == torch.uint8 and x.shape == shape
    assert np.abs(level_frequencies(x) - level_probabilities(distribution_type, *parameters)).max() < 0.01
    if mean > -1:
        assert abs(x.double().mean().item() - (mean + 1) * 127.5) < 0.1


def test_coupled_channels_follow_the_channels_drawn_before():
    """With coupling weights (a, b, c), G is drawn around mean_G + a*R and B around mean_B + b*R + c*G, R and G
    being the values drawn (here with a scale so small that each draw is its mean's level)."""
    shape = (1, 1, 50, 50)
    red = torch.rand(shape, generator=generator(1)) * 1.6 - 0.8
    mean = torch.cat([red, torch.full(shape, 0.1), torch.full(shape, -0.2)], dim=1)
    a, b, c = 0.5, -0.3, 0.4
    coupling = torch.cat([torch.full(shape, w) for w in (a, b, c)], dim=1)
    x = DiscretizedLaplace(mean, torch.full_like(mean, 1e-6), coupling).sample(generator())
    unit = x.double() * (2 / 255) - 1
    centre_g = (0.1 + a * unit[:, 0] + 1) * 127.5
    centre_b = (-0.2 + b * unit[:, 0] + c * unit[:, 1] + 1) * 127.5
    assert (x[:, 1].double() - centre_g).abs().max() <= 0.51
    assert (x[:, 2].double() - centre_b).abs().max() <= 0.51
    assert x[:, 1].double().std() > 20  # G really moves with R


def test_polyphase_steps_are_drawn_given_the_phases_drawn_before():
    """Each step's means come from the phases before it, with a tiny scale: the image drawn step by step is
    then likely under the teacher-forced log_prob, which conditions every step on the drawn image itself."""
    levels, size = 2, (8, 12)
    coarse = torch.rand(2, 3, size[0] >> levels, size[1] >> levels, generator=generator(2)) * 1.8 - 0.9

    def phase(step, earlier):
        if earlier is None:
            mean = coarse
        else:
            mean = 0.8 * (earlier.double().view(2, -1, 3, *earlier.shape[2:]).mean(1) * (2 / 255) - 1) + 0.05 * step
        return DiscretizedLaplace(mean.float(), torch.full(mean.shape, 1e-4))

    pixels = PolyphasePixels(phase, 3, size, levels)
    x = pixels.sample(generator())
    assert x.shape == (2, 3, *size) and x.dtype == torch.uint8
    assert len(coding_steps(levels)) == 7
    assert pixels.log_prob(x).min() > np.log(0.01)
    assert torch.equal(pixels.sample(generator()), x)


# -- the families --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["markov", "polyphase", "topdown"])
def test_each_family_draws_images_of_the_asked_shape_the_same_for_a_seed(family):
    model = build(family)
    x = model.sample(3, 8, 16, generator(0))
    assert x.shape == (3, 3, 8, 16) and x.dtype == torch.uint8
    assert torch.equal(model.sample(3, 8, 16, generator(0)), x)
    assert not torch.equal(model.sample(3, 8, 16, generator(1)), x)


def test_sampling_needs_sides_on_the_stride_and_leaves_the_model_s_mode():
    model = build("topdown").train()
    with pytest.raises(ValueError, match="stride, 4"):
        model.sample(1, 6, 8)
    model.sample(1, 4, 4, generator())
    assert model.training


class Bare(CodecModel):
    """A family that draws nothing."""

    family = "bare-for-tests"
    config_type = VAEConfig

    def __init__(self):
        super().__init__(VAEConfig())
        self.weight = nn.Parameter(torch.zeros(1))

    def latent_shape(self, image_shape):
        return 1, 1, 1


def test_a_family_without_draw_says_so():
    with pytest.raises(NotImplementedError, match="bare-for-tests"):
        Bare().sample(1, 2, 2)


# -- the grid and the command --------------------------------------------------------------------------------

def test_the_grid_tiles_the_samples_row_by_row_with_white_borders():
    model = make_model(0)
    grid = sample_grid(model, rows=2, columns=3, size=4, seed=5)
    assert grid.shape == (2 * 4 + BORDER, 3 * 4 + 2 * BORDER, 3) and grid.dtype == np.uint8
    rows = generator(5)  # one generator, a row at a time
    second_row = [model.sample(3, 4, 4, rows) for _ in range(2)][1].numpy().transpose(0, 2, 3, 1)
    step = 4 + BORDER
    assert np.array_equal(grid[step:step + 4, 2 * step:2 * step + 4], second_row[2])
    assert (grid[4:step] == 255).all() and (grid[:, 4:step] == 255).all()


def test_the_command_writes_a_png_grid_and_refuses_an_existing_one(tmp_path, monkeypatch):
    monkeypatch.setenv("BBCODEC_MODELS", str(tmp_path / "user-models"))
    monkeypatch.delenv("BBCODEC_DEBUG", raising=False)
    model = tmp_path / "tiny.safetensors"
    make_tiny_model(model)
    out = tmp_path / "grid.png"

    def run(*args):
        result = CliRunner().invoke(main, ["sample", str(model), "-o", str(out), "--rows", "2", "--columns", "3",
                                           "--size", "8", *args])
        assert "Traceback" not in result.output
        return result

    assert run().exit_code == 0
    first = out.read_bytes()
    assert imageio.read_image(first).pixels.shape == (2 * 8 + BORDER, 3 * 8 + 2 * BORDER, 3)
    refused = run("--seed", "1")
    assert refused.exit_code == 1 and "grid.png already exists (use -f" in refused.stderr
    assert out.read_bytes() == first
    assert run("--seed", "1", "-f").exit_code == 0 and out.read_bytes() != first
    assert run("-f").exit_code == 0 and out.read_bytes() == first  # the same seed, the same grid
    odd = run("-f", "--size", "5")
    assert odd.exit_code == 1 and odd.stderr.startswith("bbcodec: ") and "stride" in odd.stderr
