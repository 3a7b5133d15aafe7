"""The coded rate is the negative ELBO: bits-back coding spends what the model's loss says it should.

Measured for this test (30 random tiny models, 16 CIFAR-10 test images each, chains of 4 batches of 4):
(Bit-Swap net rate - mean of 8 single-sample nELBO estimates) / nELBO has mean +0.093%, std 0.030%,
range +0.030% .. +0.152%: a small systematic overhead (latents discretized on the 2**-6 grid, finite ANS
precision) plus the coder's own one-sample noise. A single nELBO estimate varies by 0.023% (relative std),
so the mean of 8 by about 0.008%. BB-ANS's net rate differs from Bit-Swap's by -0.14% .. +0.01%.
The tolerance, 0.5%, is over 3x the largest gap seen and about 13 standard deviations above the mean gap,
yet it fails if a term of the bound is dropped or miscounted by more than ~0.05 bits per sub-pixel.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED_DATA

from bbcodec.coding.chain import encode_chain

TOLERANCE = 0.005
NELBO_SAMPLES = 8


def smooth_images(count: int) -> torch.Tensor:
    """Random smooth 32x32 images (upsampled 4x4 noise plus a little pixel noise), used without CIFAR."""
    generator = torch.Generator().manual_seed(7)
    coarse = torch.rand(count, 3, 4, 4, generator=generator) * 255
    fine = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    fine = fine + torch.randn(fine.shape, generator=generator) * 4
    return fine.round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """16 real CIFAR-10 test images if the shared data is present, else 16 smooth random images."""
    path = SHARED_DATA / "cifar10-subset" / "cifar10_subset_uint8_nhwc.npz"
    if not path.exists():
        return smooth_images(16)
    with np.load(path) as data:
        return torch.from_numpy(np.ascontiguousarray(data["test_x"][:16].transpose(0, 3, 1, 2)))


def mean_nelbo(model, x) -> float:
    """The model's -ELBO in bits per sub-pixel, averaged over NELBO_SAMPLES single-sample estimates."""
    torch.manual_seed(1000)
    with torch.no_grad():
        return float(np.mean([model(x)["nelbo"].item() for _ in range(NELBO_SAMPLES)]))


def coded_rate(model, x, coder) -> float:
    """Net bits per sub-pixel (initial bits excluded) of coding ``x`` as a chain of 4 batches."""
    encoded = encode_chain(model, list(x.split(4)), coder)
    return encoded.net_bits / x.numel()


def test_bitswap_rate_matches_nelbo(tiny_model, images):
    """Bit-Swap's net coded rate is within 0.5% of the model's -ELBO on the same images."""
    rate, nelbo = coded_rate(tiny_model, images, "bitswap"), mean_nelbo(tiny_model, images)
    assert abs(rate - nelbo) / nelbo < TOLERANCE, f"coded {rate:.4f} vs -ELBO {nelbo:.4f} bits/sub-pixel"


def test_bbans_and_bitswap_net_rates_agree(tiny_model, images):
    """Both coders code the same bound; only their initial bits differ."""
    bitswap, bbans = coded_rate(tiny_model, images, "bitswap"), coded_rate(tiny_model, images, "bbans")
    assert abs(bbans - bitswap) / bitswap < TOLERANCE, f"BB-ANS {bbans:.4f} vs Bit-Swap {bitswap:.4f}"
