"""The posterior reach check behind `bbcodec train`'s latent-grid advice and bench/latent_reach.py."""
from __future__ import annotations

from conftest import make_model

from bbcodec.models.latent_reach import grid_advice, posterior_reach, share_beyond


def test_reach_has_one_value_per_posterior_element_of_every_layer(random_images):
    model = make_model(0)
    x = random_images(2, 8, 8)
    reach = posterior_reach(model, x)
    assert len(reach) == model.depth
    assert all(values.numel() == 2 * model.config.latent_channels * 4 * 4 for values in reach)
    assert all((values > 0).all() for values in reach)  # |mean| + 3 std with std > 0


def test_share_beyond_counts_the_elements_past_the_bound():
    import torch

    assert share_beyond([torch.tensor([1.0, 5.0]), torch.tensor([9.0, 3.0])], 4.0) == 0.5


def test_advice_only_when_posteriors_reach_past_the_bound(random_images):
    model = make_model(0)
    x = random_images(2, 8, 8)
    model.config = model.config.replace(grid_bound=64.0)
    assert grid_advice(model, x) is None
    model.config = model.config.replace(grid_bound=0.5)
    advice = grid_advice(model, x)
    assert advice is not None and "--grid-bound 1" in advice and "\n" not in advice
