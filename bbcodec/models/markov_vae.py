"""A hierarchical VAE whose latents form a Markov chain, the structure Bit-Swap needs.

Kingma, Abbeel & Ho, "Bit-Swap: Recursive Bits-Back Coding for Lossless
Compression with Hierarchical Latent Variables", ICML 2019.

Inference:  q(z1 | x), q(z2 | z1), ..., q(zL | zL-1)
Generative: p(x | z1), p(z1 | z2), ..., p(zL-1 | zL), p(zL) = N(0, I)

Every conditional is a small fully convolutional network: a float stem, a stack
of residual blocks (binary with ``binary_weights``), and a float head. The first
inference network reduces the resolution by ``stride`` (2 or 4) and ``p(x | z1)``
restores it, so the latents have shape (latent_channels, H/stride, W/stride).

The model speaks in distributions (:mod:`bbcodec.distributions`), which
both the training loss and the coders use, so the coder codes exactly what the
model was trained on. Its forward code is written once against an arithmetic
(:mod:`bbcodec.nn.arithmetic`): float32 for training, or the exact integer
backend for files that decode on any machine.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bbcodec.distributions import GridGaussian
from bbcodec.models.config import VAEConfig
from bbcodec.models.family import CodecModel, register
from bbcodec.nn import ResidualBlock, WNConv2d
from bbcodec.nn.arithmetic import FLOAT

def pixel_head_channels(config: VAEConfig) -> int:
    """The channels of a pixel head's output: mean and log-scale per channel, and the coupling weights."""
    return 2 * config.image_channels + (3 if config.channel_coupling else 0)


def pixel_distribution(config: VAEConfig, params: torch.Tensor, ops=FLOAT):
    """The pixel distribution that a pixel head's output (:func:`pixel_head_channels` maps) stands for."""
    c = config.image_channels
    mean, log_scale = params[:, :c], params[:, c:2 * c]
    if config.pixel_distribution == "logistic":
        return ops.logistic(mean, log_scale)
    return ops.laplace(mean, log_scale, params[:, 2 * c:] if config.channel_coupling else None,
                       config.residual_coupling)


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """An image whose sides are not multiples of the stride, extended by repeating its last row and column
    (the likelihood of those extra pixels is never coded: see :meth:`DiscretizedLogistic.crop`)."""
    pad_h, pad_w = -x.shape[2] % stride, -x.shape[3] % stride
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x


class ConditionalNet(nn.Module):
    """stem (float) -> residual blocks -> head (float).

    On the pixel side (``stride`` > 1) the stem first folds each stride x stride
    block of pixels into channels (space-to-depth), and the head unfolds its
    output back to pixels (depth-to-space), so the latents sit at 1/stride of
    the image resolution.
    """

    def __init__(self, config: VAEConfig, in_channels: int, out_channels: int, fold: int = 1, unfold: int = 1,
                 source: str = "latents"):
        super().__init__()
        width = config.hidden_channels
        pixel_side = fold > 1 or unfold > 1
        kernel = 3 if pixel_side else config.head_kernel_size
        self.fold, self.unfold = fold, unfold
        self.source = source
        self.stem = WNConv2d(in_channels * fold * fold, width, kernel)
        self.blocks = nn.Sequential(*[
            ResidualBlock(width, binary_weights=config.binary_weights, binary_activations=config.binary_activations)
            for _ in range(config.blocks_per_net)
        ])
        self.head = WNConv2d(width, out_channels * unfold * unfold, kernel, init_scale=0.1)

    def forward(self, x, ops=FLOAT):
        """The network on ``x`` (pixels for the first posterior, else latents), in the arithmetic ``ops``."""
        if self.fold > 1:
            x = F.pixel_unshuffle(x, self.fold)
        h = ops.conv(self.stem, x, self.source)
        for block in self.blocks:
            h = block(h, ops)
        h = ops.conv(self.head, ops.elu(h))
        return F.pixel_shuffle(h, self.unfold) if self.unfold > 1 else h


@register
class MarkovVAE(CodecModel):
    """Hierarchical VAE with a Markov chain of latents (see module docstring)."""

    family = "markov-vae"
    config_type = VAEConfig

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c, zc = config.image_channels, config.latent_channels
        self.posteriors = nn.ModuleList(
            [ConditionalNet(config, c, 2 * zc, fold=config.stride, source="pixels")]
            + [ConditionalNet(config, zc, 2 * zc) for _ in range(config.latent_layers - 1)]
        )
        self.conditionals = nn.ModuleList(
            [self._likelihood_net(config)]
            + [ConditionalNet(config, zc, 2 * zc) for _ in range(config.latent_layers - 1)]
        )

    @property
    def depth(self) -> int:
        return self.config.latent_layers

    def _likelihood_net(self, config: VAEConfig) -> nn.Module:
        """The first conditional network, on z1: in this family it gives the pixel parameters at full resolution
        (a family that derives from this one may give features for a pixel likelihood of its own)."""
        return ConditionalNet(config, config.latent_channels, pixel_head_channels(config), unfold=config.stride)

    # -- the distributions the coders and the loss use, in float or exact arithmetic (``ops``) --
    def posterior(self, layer: int, below: torch.Tensor, ops=FLOAT) -> GridGaussian:
        """q(z_{layer+1} | below), where below is x (layer 0, uint8) or z_layer."""
        inputs = pad_to_stride(ops.pixels(below), self.config.stride) if layer == 0 else ops.latents(below)
        return ops.gaussian(ops.run(self.posteriors[layer], inputs), self.config.min_std, self.config.grid)

    def conditional(self, layer: int, z: torch.Tensor, ops=FLOAT):
        """p(below | z_{layer+1}): the pixel likelihood for layer 0, else a latent Gaussian."""
        params = ops.run(self.conditionals[layer], ops.latents(z))
        if layer > 0:
            return ops.gaussian(params, self.config.min_std, self.config.grid)
        return pixel_distribution(self.config, params, ops)

    def top_prior(self, like: torch.Tensor) -> GridGaussian:
        """p(z_L) = N(0, I), shaped like ``like``."""
        return GridGaussian(torch.zeros_like(like), torch.ones_like(like), self.config.grid)

    def latent_shape(self, image_shape) -> tuple[int, int, int]:
        """(channels, height, width) of every latent layer for an image of (C, H, W)."""
        _, height, width = image_shape
        stride = self.config.stride
        return self.config.latent_channels, -(-height // stride), -(-width // stride)

    def draw(self, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """uint8 images down the chain: z_L from the top prior, each z_i from p(z_i | z_i+1), x from p(x | z_1)
        (see :meth:`CodecModel.sample <bbcodec.models.family.CodecModel.sample>`)."""
        z = self.top_prior(like).rsample(generator)
        for layer in reversed(range(1, self.depth)):
            z = self.conditional(layer, z).rsample(generator)
        return self.conditional(0, z).sample(generator)

    def likelihood_given(self, x: torch.Tensor):
        """p(x | z_1), z_1 the mean of q(z_1 | x) (see :meth:`CodecModel.likelihood_given
        <bbcodec.models.family.CodecModel.likelihood_given>`)."""
        return self.conditional(0, self.posterior(0, x).mean)

    @property
    def grey_channel(self) -> int:
        """The channel whose likelihood codes a lone (grey, alpha, index) plane.

        The middle one; with channel coupling the first, since the others depend on it.
        """
        return 0 if self.config.channel_coupling else 1

    # -- training ----------------------------------------------------------------
    def forward(self, x: torch.Tensor, free_bits: float = 0.0) -> dict:
        """Negative ELBO of a batch of uint8 images, in bits per coded sub-pixel.

        A grey image in an RGB batch (all three channels equal) is coded as a
        single plane (:mod:`bbcodec.coding.image`), so only its
        :attr:`grey_channel` counts, here as in the coder.

        Returns ``loss`` (with free bits: each layer's KL is at least
        ``free_bits`` bits per latent dimension, averaged over the batch, as in
        Kingma et al. 2016), ``nelbo`` (the true bound), ``recon`` and the
        per-layer ``kl``.
        """
        below, kls = x, []
        for layer in range(self.depth):
            q = self.posterior(layer, below)
            z = q.rsample()
            if layer == 0:
                recon, dims = reconstruction_nats(self.conditional(0, z), x, self.grey_channel)
            else:
                kls[-1] = kls[-1] - self.conditional(layer, z).log_prob(below).flatten(1).sum(1)
            kls.append(q.log_prob(z).flatten(1).sum(1))
            below = z
        kls[-1] = kls[-1] - self.top_prior(below).log_prob(below).flatten(1).sum(1)
        return nelbo_terms(recon, dims, kls, below[0].numel(), free_bits)


def reconstruction_nats(likelihood, x: torch.Tensor, grey_channel: int):
    """-log p(x | z) per image under ``likelihood``, and the number of coded sub-pixels per image: a grey image
    in an RGB batch (three equal channels) counts only its ``grey_channel``, as the coder codes it."""
    log_prob = likelihood.log_prob(x)
    per_pixel = x[0, 0].numel()
    if x.shape[1] != 3:
        return -log_prob.flatten(1).sum(1), torch.full((len(x),), float(x[0].numel()))
    grey = ((x[:, 0] == x[:, 1]) & (x[:, 1] == x[:, 2])).flatten(1).all(1)
    colour_nats = -log_prob.flatten(1).sum(1)
    grey_nats = -log_prob[:, grey_channel].flatten(1).sum(1)
    dims = torch.where(grey, float(per_pixel), float(3 * per_pixel))
    return torch.where(grey, grey_nats, colour_nats), dims


def nelbo_terms(recon: torch.Tensor, dims: torch.Tensor, kls: list[torch.Tensor], latent_dims: int,
                free_bits: float) -> dict:
    """The training report of a batch from its per-image reconstruction nats, coded sub-pixels and per-layer
    KL nats (``latent_dims`` elements a layer per image): ``loss`` (each layer's KL at least ``free_bits``
    bits per latent dimension, averaged over the batch, as in Kingma et al. 2016), ``nelbo`` (the true
    bound), ``recon`` and ``kl``, all in bits per coded sub-pixel."""
    to_bits = 1.0 / (dims.sum() * math.log(2.0))
    kl_bits = [k.sum() * to_bits for k in kls]
    recon_bits = recon.sum() * to_bits
    floor = free_bits * latent_dims * len(recon) / dims.sum()
    loss = recon_bits + sum(torch.clamp(k, min=floor) for k in kl_bits)
    return {"loss": loss, "nelbo": recon_bits + sum(kl_bits), "recon": recon_bits, "kl": torch.stack(kl_bits)}
