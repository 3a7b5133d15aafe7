"""The training loss is the rate the coder achieves, for colour and for grey images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bbcodec.coding.image import CoderSettings, encode_image
from bbcodec.models.config import VAEConfig
from bbcodec.models.markov_vae import MarkovVAE

SMALL = dict(hidden_channels=16, latent_channels=4, latent_layers=2, blocks_per_net=1, stride=4)
CONFIGS = {
    "logistic": VAEConfig(**SMALL),
    "laplace-coupled": VAEConfig(**SMALL, pixel_distribution="laplace", channel_coupling=True),
}


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    ramp = np.add.outer(np.arange(height), np.arange(width)) * 2
    return np.clip(ramp[..., None] + rng.integers(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("grey", [False, True])
def test_nelbo_matches_the_coded_rate(name, grey):
    torch.manual_seed(0)
    model = MarkovVAE(CONFIGS[name]).eval()
    pixels = smooth_image(np.random.default_rng(0), 64, 64)
    if grey:
        pixels = np.repeat(pixels[..., :1], 3, axis=2)
    batch = torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        nelbo = np.mean([float(model(batch)["nelbo"]) for _ in range(16)])
    coded_planes = pixels[..., :1] if grey else pixels
    encoded = encode_image(model, coded_planes, CoderSettings(tile=64))
    coded = encoded.net_bits / coded_planes.size
    assert abs(coded - nelbo) / nelbo < 0.02, (coded, nelbo)
