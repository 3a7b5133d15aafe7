"""GridGaussian and DiscretizedLogistic: exact push/pop round trips, and the coder codes what the loss scores."""
from __future__ import annotations

import constriction
import numpy as np
import pytest
import torch
from roundtrip import check_roundtrip

from bbcodec.coding.ans import AnsStack, seed_words
from bbcodec.distributions import TABLE_CHUNK, DiscretizedLaplace, DiscretizedLogistic, GridGaussian, LatentGrid

GRID = LatentGrid(bits=6, bound=8.0)


def random_grid_gaussian(rng, shape):
    """A GridGaussian with random means in [-4, 4] and log-uniform stds in [0.02, 3]."""
    mean = torch.rand(shape, generator=rng) * 8 - 4
    std = torch.exp(torch.rand(shape, generator=rng) * (np.log(3.0) - np.log(0.02)) + np.log(0.02))
    return GridGaussian(mean, std, GRID)


def sample_on_grid(dist, rng):
    """A sample from ``dist``, rounded to the grid and clipped to its bound."""
    z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=rng)
    return (torch.round(z / GRID.step) * GRID.step).clamp(-GRID.bound, GRID.bound)


def test_grid_gaussian_roundtrip(rng):
    """Samples on the grid come back exactly, for random means and stds of several shapes."""
    dists = [random_grid_gaussian(rng, shape) for shape in [(2, 8, 4, 4), (1, 8, 3, 5), (5,)]]
    check_roundtrip(dists, [sample_on_grid(d, rng) for d in dists])


def test_grid_gaussian_codes_far_tails_and_grid_edges(rng):
    """Every grid point stays codable, even the outermost ones far out in a narrow Gaussian's tail."""
    values = torch.tensor([-GRID.bound, GRID.bound, -GRID.bound + GRID.step, 0.0, 7.5, -6.0])
    dist = GridGaussian(torch.full((6,), -4.0), torch.full((6,), 0.02), GRID)
    check_roundtrip([dist], [values])


def test_grid_gaussian_pop_gives_grid_points_within_bound(rng):
    """Popping from arbitrary stack contents yields multiples of the grid step inside [-bound, bound]."""
    dist = random_grid_gaussian(rng, (4, 8, 4, 4))
    z = AnsStack.seeded(seed_words(2048)).pop(dist)
    assert z.shape == dist.mean.shape and z.dtype == torch.float32
    assert z.abs().max() <= GRID.bound
    index = z / GRID.step
    assert torch.equal(index, torch.round(index))


def random_logistic(rng, shape):
    """A DiscretizedLogistic with means in [-1.5, 1.5] and log scales in [-7, 1]."""
    mean = torch.rand(shape, generator=rng) * 3 - 1.5
    log_scale = torch.rand(shape, generator=rng) * 8 - 7
    return DiscretizedLogistic(mean, log_scale)


def test_discretized_logistic_roundtrip(rng):
    """Random uint8 pixels come back exactly, edge levels 0 and 255 included."""
    dists = [random_logistic(rng, shape) for shape in [(2, 3, 4, 4), (1, 3, 6, 2)]]
    values = [torch.randint(0, 256, d.mean.shape, generator=rng, dtype=torch.uint8) for d in dists]
    values[0].view(-1)[:2] = torch.tensor([0, 255], dtype=torch.uint8)
    check_roundtrip(dists, values)


def test_discretized_logistic_codes_pixels_far_from_a_sharp_mean():
    """A pixel in the far tail of a very sharp logistic is still codable (no zero-probability bins)."""
    dist = DiscretizedLogistic(torch.tensor([1.0, -1.0, 0.0, 0.0]), torch.full((4,), -7.0))
    check_roundtrip([dist], [torch.tensor([0, 255, 0, 255], dtype=torch.uint8)])


def test_probability_table_matches_log_prob(rng):
    """The coder's table is the training loss's distribution: rows sum to 1 and equal exp(log_prob)."""
    dist = random_logistic(rng, (2, 3, 4, 4))
    table = dist.probability_table()
    assert table.shape == (dist.mean.numel(), 256)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, rtol=1e-9)
    x = torch.randint(0, 256, dist.mean.shape, generator=rng)
    from_loss = torch.exp(dist.log_prob(x).double()).flatten().numpy()
    np.testing.assert_allclose(table[np.arange(x.numel()), x.flatten().numpy()], from_loss, rtol=1e-4)


def test_discretized_logistic_chunked_coding_equals_one_table(rng):
    """Beyond TABLE_CHUNK sub-pixels the tables are built in chunks; the coded words must not change."""
    dist = random_logistic(rng, (1, 1, TABLE_CHUNK + 1000))
    x = torch.randint(0, 256, dist.mean.shape, generator=rng, dtype=torch.uint8)
    check_roundtrip([dist], [x])
    chunked = AnsStack.seeded(seed_words(4))
    chunked.push(x, dist)
    reference = constriction.stream.stack.AnsCoder(seed_words(4))
    symbols = x.flatten().numpy().astype(np.int32)
    reference.encode_reverse(symbols, constriction.stream.model.Categorical(perfect=False), dist.probability_table())
    np.testing.assert_array_equal(chunked.words(), reference.get_compressed())


def random_laplace(rng, shape, log_scale):
    mean = torch.rand(shape, generator=rng) * 2 - 1
    return DiscretizedLaplace(mean, torch.full(shape, float(np.exp(log_scale))))


def sample_laplace_pixels(dist: DiscretizedLaplace) -> torch.Tensor:
    """Pixels drawn from ``dist``, channel by channel (later channels may depend on earlier ones)."""
    torch.manual_seed(0)
    pixels = torch.zeros(dist.mean.shape, dtype=torch.uint8)
    scale = dist.pixel_scale()
    for c in range(dist.mean.shape[1]):
        noise = torch.distributions.Laplace(0.0, scale[:, c]).sample()
        pixels[:, c] = torch.clamp(dist.centre(c, pixels) + noise, 0, 255).round().to(torch.uint8)
    return pixels


def test_discretized_laplace_roundtrip(rng):
    dist = random_laplace(rng, (2, 3, 5, 7), -3.0)
    pixels = torch.randint(0, 256, (2, 3, 5, 7), generator=rng, dtype=torch.uint8)
    check_roundtrip([dist], [pixels])


def test_discretized_laplace_log_prob_is_what_constriction_codes(rng):
    """The training loss and the coder agree: coded bits match -log2 P to within the coder's precision."""
    for log_scale in (0.0, -2.0, -4.0, -6.0):
        dist = random_laplace(rng, (1, 3, 32, 32), log_scale)
        pixels = sample_laplace_pixels(dist)
        ans = AnsStack(seed_words(8))
        before = ans.num_bits()
        dist.push(ans, pixels)
        coded = (ans.num_bits() - before) / pixels.numel()
        model = -float(dist.log_prob(pixels).sum()) / np.log(2) / pixels.numel()
        assert abs(coded - model) < 0.01, (log_scale, coded, model)


def test_discretized_laplace_sums_to_one_with_finite_gradients(rng):
    mean = (torch.rand(1, 40, 1, 1, generator=rng) * 4 - 2).requires_grad_()
    log_scale = (torch.rand(1, 40, 1, 1, generator=rng) * 10 - 8).requires_grad_()
    dist = DiscretizedLaplace(mean, log_scale.exp())
    levels = torch.arange(256).view(256, 1, 1, 1).expand(256, 40, 1, 1)
    total = dist.log_prob(levels).exp().sum(0)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-4)
    dist.log_prob(torch.randint(0, 256, (1, 40, 1, 1), generator=rng)).sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()


@pytest.mark.parametrize("residual", [False, True], ids=["values", "residuals"])
def test_coupled_laplace_roundtrip_and_rate(rng, residual):
    """RGB with channel coupling: exact round trip, and the coded size is the model's -log2 P."""
    shape = (2, 3, 32, 32)
    mean = torch.rand(shape, generator=rng) * 2 - 1
    coupling = torch.rand(shape, generator=rng) * 2 - 1
    dist = DiscretizedLaplace(mean, torch.full(shape, float(np.exp(-3.0))), coupling, residual)
    pixels = sample_laplace_pixels(dist)
    grown = check_roundtrip([dist], [pixels])
    model_bits = -float(dist.log_prob(pixels).sum()) / np.log(2)
    assert abs(grown - model_bits) / model_bits < 0.01


def test_coupling_moves_later_channel_means_only(rng):
    shape = (1, 3, 4, 4)
    mean = torch.zeros(shape)
    coupled = DiscretizedLaplace(mean, torch.ones(shape), torch.full(shape, 0.5))
    plain = DiscretizedLaplace(mean, torch.ones(shape))
    pixels = torch.full(shape, 255, dtype=torch.uint8)
    assert torch.equal(coupled.centre(0, pixels), plain.centre(0, pixels))
    assert (coupled.centre(1, pixels) > plain.centre(1, pixels)).all()
    assert (coupled.centre(2, pixels) > coupled.centre(1, pixels)).all()


def test_residual_coupling_is_value_coupling_with_the_earlier_means_subtracted(rng):
    """mean_G + a (R - mean_R) is mean_G - a mean_R + a R: the same centres as value coupling with those means."""
    shape = (2, 3, 6, 5)
    mean = (torch.rand(shape, generator=rng) * 2 - 1).double()
    weights = (torch.rand(shape, generator=rng) * 2 - 1).double()
    a, b, c = weights[:, 0], weights[:, 1], weights[:, 2]
    shifted = torch.stack([mean[:, 0], mean[:, 1] - a * mean[:, 0],
                           mean[:, 2] - b * mean[:, 0] - c * mean[:, 1]], dim=1)
    residual = DiscretizedLaplace(mean, torch.ones(shape), weights, residual=True)
    values = DiscretizedLaplace(shifted, torch.ones(shape), weights)
    pixels = torch.randint(0, 256, shape, generator=rng, dtype=torch.uint8)
    for channel in range(3):
        assert torch.allclose(residual.centre(channel, pixels), values.centre(channel, pixels), atol=1e-9)
    assert residual.crop(slice(0, 3), 4, 4).residual
