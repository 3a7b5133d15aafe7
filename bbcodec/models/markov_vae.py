"""A hierarchical VAE whose latents form a Markov chain, the structure Bit-Swap needs.

Kingma, Abbeel & Ho, "Bit-Swap: Recursive Bits-Back Coding for Lossless
Compression with Hierarchical Latent Variables", ICML 2019.

Inference:  q(z1 | x), q(z2 | z1), ..., q(zL | zL-1)
Generative: p(x | z1), p(z1 | z2), ..., p(zL-1 | zL), p(zL) = N(0, I)

Every conditional is a small fully convolutional network: a float stem, a stack
of residual blocks (binary with ``binary_weights``), and a float head. The first
inference network halves the resolution and ``p(x | z1)`` restores it, so the
latents have shape (latent_channels, H/2, W/2) and any even H, W works.

The model speaks in distributions (:mod:`bbcodec.coding.distributions`), which
both the training loss and the coders use, so the coder codes exactly what the
model was trained on.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bbcodec.coding.distributions import DiscretizedLogistic, GridGaussian
from bbcodec.models.config import VAEConfig
from bbcodec.nn import ResidualBlock, WNConv2d

LOG_SCALE_MIN = -7.0


class ConditionalNet(nn.Module):
    """stem (float) -> residual blocks -> head (float); optional /2 down- or x2 up-sampling."""

    def __init__(self, config: VAEConfig, in_channels: int, out_channels: int, resample: str | None = None):
        super().__init__()
        width = config.hidden_channels
        pixel_side = resample is not None
        stem_kernel = 3 if pixel_side else config.head_kernel_size
        self.stem = WNConv2d(in_channels, width, stem_kernel, stride=2 if resample == "down" else 1)
        self.blocks = nn.Sequential(*[
            ResidualBlock(width, binary_weights=config.binary_weights, binary_activations=config.binary_activations)
            for _ in range(config.blocks_per_net)
        ])
        self.upsample = resample == "up"
        head_out = out_channels * 4 if self.upsample else out_channels
        head_kernel = 3 if pixel_side else config.head_kernel_size
        self.head = WNConv2d(width, head_out, head_kernel, init_scale=0.1)

    def forward(self, x):
        h = self.head(F.elu(self.blocks(self.stem(x))))
        return F.pixel_shuffle(h, 2) if self.upsample else h


class MarkovVAE(nn.Module):
    """Hierarchical VAE with a Markov chain of latents (see module docstring)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        c, zc = config.image_channels, config.latent_channels
        self.posteriors = nn.ModuleList(
            [ConditionalNet(config, c, 2 * zc, resample="down")]
            + [ConditionalNet(config, zc, 2 * zc) for _ in range(config.latent_layers - 1)]
        )
        self.conditionals = nn.ModuleList(
            [ConditionalNet(config, zc, 2 * c, resample="up")]
            + [ConditionalNet(config, zc, 2 * zc) for _ in range(config.latent_layers - 1)]
        )

    @property
    def depth(self) -> int:
        return self.config.latent_layers

    # -- the distributions the coders and the loss use --------------------------
    def _gaussian(self, params: torch.Tensor) -> GridGaussian:
        mean, raw_std = params.chunk(2, dim=1)
        return GridGaussian(mean, F.softplus(raw_std) + self.config.min_std, self.config.grid)

    @staticmethod
    def pixels_to_input(x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> floats in [-1, 1]."""
        return x.float() * (2.0 / 255.0) - 1.0

    def posterior(self, layer: int, below: torch.Tensor) -> GridGaussian:
        """q(z_{layer+1} | below), where below is x (layer 0, uint8) or z_layer."""
        h = self.pixels_to_input(below) if layer == 0 else below
        return self._gaussian(self.posteriors[layer](h))

    def conditional(self, layer: int, z: torch.Tensor):
        """p(below | z_{layer+1}): the pixel likelihood for layer 0, else a latent Gaussian."""
        params = self.conditionals[layer](z)
        if layer == 0:
            mean, log_scale = params.chunk(2, dim=1)
            return DiscretizedLogistic(mean, log_scale.clamp_min(LOG_SCALE_MIN))
        return self._gaussian(params)

    def top_prior(self, like: torch.Tensor) -> GridGaussian:
        """p(z_L) = N(0, I), shaped like ``like``."""
        return GridGaussian(torch.zeros_like(like), torch.ones_like(like), self.config.grid)

    def latent_shape(self, image_shape) -> tuple[int, int, int]:
        """(channels, height, width) of every latent layer for an image of (C, H, W)."""
        _, height, width = image_shape
        return self.config.latent_channels, (height + 1) // 2, (width + 1) // 2

    # -- training ----------------------------------------------------------------
    def forward(self, x: torch.Tensor, free_bits: float = 0.0) -> dict:
        """Negative ELBO of a batch of uint8 images, in bits per sub-pixel.

        Returns ``loss`` (with free bits: each layer's KL is at least
        ``free_bits`` bits per latent dimension, averaged over the batch, as in
        Kingma et al. 2016), ``nelbo`` (the true bound), ``recon`` and the
        per-layer ``kl``.
        """
        dims = x[0].numel()
        to_bits = 1.0 / (dims * math.log(2.0))
        below, kls = x, []
        for layer in range(self.depth):
            q = self.posterior(layer, below)
            z = q.rsample()
            if layer == 0:
                recon = -self.conditional(0, z).log_prob(x).flatten(1).sum(1)
            else:
                kls[-1] = kls[-1] - self.conditional(layer, z).log_prob(below).flatten(1).sum(1)
            kls.append(q.log_prob(z).flatten(1).sum(1))
            below = z
        kls[-1] = kls[-1] - self.top_prior(below).log_prob(below).flatten(1).sum(1)
        kl_bits = [k.mean() * to_bits for k in kls]
        nelbo = recon.mean() * to_bits + sum(kl_bits)
        latent_dims = below[0].numel()
        floor = free_bits * latent_dims / dims
        loss = recon.mean() * to_bits + sum(torch.clamp(k, min=floor) for k in kl_bits)
        return {"loss": loss, "nelbo": nelbo, "recon": recon.mean() * to_bits, "kl": torch.stack(kl_bits)}
