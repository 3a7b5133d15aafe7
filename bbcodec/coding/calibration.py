"""Per-image calibration of the pixel likelihood's scales: a few bytes of side information chosen by the encoder.

A model trained on other images predicts each sub-pixel's Laplace scale from
its context, but a given image is often cleaner or noisier as a whole than the
images it was trained on: on photos 041-049 the two-level polyphase model's
best single factor on all its scales ranges from 0.5 to 1.6 (bench/README.md,
"Per-image scale calibration"). Classical codecs adapt to each image (JPEG XL
stores its own histograms, JPEG-LS learns its contexts as it goes); here the
encoder measures the image's cost under each of :data:`SCALE_FACTORS` for
each coding step and channel of the likelihood (:meth:`terms`: one step for
pixels that are independent given the latents, six for the two-level
polyphase split), on a sample of tiles with the latents at their posterior
means, and the file stores the best factor's index per step and channel
(``CoderSettings.scales``, one byte each). Encoder and decoder multiply the
model's scales by them (``scaled``) before coding.

Exact: every factor is a dyadic rational (n/64), and multiplying a scale by it
is one correctly rounded float64 operation, the same on every machine. Only
the Laplace likelihood is calibrated.
"""
from __future__ import annotations

import math

import numpy as np
import torch

SCALE_FACTORS = tuple(n / 64 for n in (32, 35, 38, 41, 45, 49, 54, 59, 64, 70, 76, 83, 91, 99, 108, 117, 128))
"""The factors a file can choose from (index: one byte), about 2^(1/8) apart from 1/2 to 2."""
NEUTRAL = SCALE_FACTORS.index(1.0)
SAMPLE_TILES = 24
"""Tiles (spread evenly over the image) whose costs choose the factors."""


def factor_table(scales: tuple[int, ...], channels: int) -> torch.Tensor:
    """The (steps, channels) float64 factors of stored indices (``len(scales)`` a multiple of ``channels``)."""
    if len(scales) % channels:
        raise ValueError(f"{len(scales)} scale factors do not make rows of {channels} channels")
    return torch.tensor([SCALE_FACTORS[i] for i in scales], dtype=torch.float64).view(-1, channels)


def applies(model) -> bool:
    """Whether ``model``'s likelihood can be calibrated: Laplace pixels of three channels."""
    config = model.config
    return getattr(config, "pixel_distribution", None) == "laplace" and getattr(config, "image_channels", 0) == 3


def sample_tiles(pixels: np.ndarray, tile: int, count: int = SAMPLE_TILES) -> list[tuple[int, int]]:
    """Top-left corners of up to ``count`` whole tile x tile squares spread evenly over an (H, W, C) image."""
    rows, columns = pixels.shape[0] // tile, pixels.shape[1] // tile
    corners = [(r * tile, c * tile) for r in range(rows) for c in range(columns)]
    if len(corners) <= count:
        return corners
    return [corners[i] for i in np.linspace(0, len(corners) - 1, count).round().astype(int)]


def choose(model, pixels: np.ndarray, tile: int) -> tuple[int, ...]:
    """The factor indices (steps x channels, row by row) that make ``pixels`` cheapest under ``model``, or ()
    where calibration does not apply or would not pay for its bytes (a small image, a likelihood other than
    Laplace, a family without :meth:`~bbcodec.models.family.CodecModel.likelihood_given`)."""
    if not applies(model):
        return ()
    corners = sample_tiles(pixels, tile)
    if not corners:
        return ()
    colour = pixels.shape[2] >= 3
    planes = pixels[..., :3] if colour else np.repeat(pixels[..., :1], 3, axis=2)
    batch = torch.from_numpy(np.stack([planes[r:r + tile, c:c + tile] for r, c in corners]).transpose(0, 3, 1, 2))
    counted = slice(0, 3) if colour else slice(model.grey_channel, model.grey_channel + 1)
    with torch.no_grad():
        try:
            likelihood = model.eval().likelihood_given(batch.to(model.device))
        except NotImplementedError:
            return ()
        terms = likelihood.terms(batch.to(model.device))
        nats = torch.stack([_nats_by_factor(distribution, values) for distribution, values in terms])
    nats = nats[:, counted]                                      # (steps, counted channels, factors)
    best = nats.argmin(dim=2)
    saved_bits = float((nats[..., NEUTRAL] - nats.min(dim=2).values).sum()) / math.log(2.0)
    sampled = len(corners) * tile * tile * (3 if colour else 1)
    coded = pixels.shape[0] * pixels.shape[1] * (3 if colour else 1)
    indices = torch.full((len(terms), 3), NEUTRAL, dtype=torch.long)
    indices[:, counted] = best
    if saved_bits * coded / sampled <= 8 * indices.numel():   # not worth its bytes
        return ()
    return tuple(int(i) for i in indices.flatten())


def _nats_by_factor(distribution, values: torch.Tensor) -> torch.Tensor:
    """(channels, factors): -log p of ``values`` per channel with every scale multiplied by each factor."""
    channels = values.shape[1]
    costs = []
    for factor in SCALE_FACTORS:
        row = torch.full((1, channels), factor, dtype=torch.float64)
        costs.append(-distribution.scaled(row).log_prob(values).double().sum(dim=(0, 2, 3)))
    return torch.stack(costs, dim=1)
