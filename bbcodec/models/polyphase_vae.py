"""The Markov-chain VAE with a pixel likelihood that also sees decoded pixels, in four parallel steps.

In :mod:`bbcodec.models.markov_vae` the pixels are independent given the
first latent layer, so every edge and every flat area must be carried by the
latents. Here the image is split 2x2 into four *phases* (``pixel_unshuffle``
by 2): phase k holds the pixels (2i + k // 2, 2j + k % 2), a half-resolution
image. The first conditional network no longer outputs pixel parameters but
``feature_channels`` features at half resolution, and a small context network
per phase maps those features and the phases before it to the parameters of
phase k's pixels:

    p(x | z1) = p(x_0 | f) p(x_1 | f, x_0) p(x_2 | f, x_0, x_1) p(x_3 | f, x_0, x_1, x_2),   f = features(z1).

Each step is one network pass over all pixels of a phase at once: between
per-pixel autoregression and a fully factorized likelihood, like the
autoregressive sub-pixel convolution of split hierarchical variational
compression (Ryder, Zhang, Kang & Zhang, CVPR 2022). Within a pixel the
channels stay coupled R -> G -> B through the means (PixelCNN++, Salimans
et al. 2017; :class:`~bbcodec.distributions.DiscretizedLaplace`).

A context network feeds the decoded pixels (``source="pixels"``) and the
features (``source="hidden"``) through separate convolutions and adds them,
then binary residual blocks, then a float head: the layers next to the pixels
and the latents stay float, the residual blocks are binary (Bird, Kingma &
Barber, ICLR 2021). Being written against the arithmetic ``ops``
(:mod:`bbcodec.nn.arithmetic`), it runs in exact integers with no code of
its own.

Coding (:class:`PolyphasePixels`): the likelihood is one push and one pop in
the bits-back order of :mod:`bbcodec.coding.bitsback`; its push pushes phases
3, 2, 1, 0 and its pop pops 0, 1, 2, 3, recomputing each phase's parameters
from the pixels decoded so far, exactly as the encoder computed them. Pixels
outside the coded tile (the padding up to a multiple of the stride) are zero
wherever a context network sees them, on both sides. A lone (grey, alpha)
plane enters the context networks as three equal channels, as the posterior
sees it, and only the model's ``grey_channel`` is coded.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bbcodec.models.config import VAEConfig, check_integers
from bbcodec.models.family import register
from bbcodec.models.markov_vae import ConditionalNet, MarkovVAE
from bbcodec.nn import ResidualBlock, WNConv2d
from bbcodec.nn.arithmetic import FLOAT

PHASES = 4
"""Pixels decoded in this many steps: a 2x2 polyphase split."""
CONTEXT_LIMITS = {"feature_channels": (1, 256), "context_channels": (1, 1024), "context_blocks": (0, 16)}
"""Allowed ranges of the context fields of a model file."""


@dataclass(frozen=True)
class PolyphaseConfig(VAEConfig):
    """A :class:`VAEConfig` and the shape of the polyphase pixel likelihood.

    ``feature_channels``: the features the first conditional gives each
    half-resolution pixel; ``context_channels`` and ``context_blocks``: the
    width and the residual blocks of each phase's context network.
    """

    feature_channels: int = 16
    context_channels: int = 32
    context_blocks: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.stride % 2:
            raise ValueError("the polyphase likelihood needs an even stride (its features sit at half resolution)")

    @classmethod
    def from_file(cls, fields: dict) -> "PolyphaseConfig":
        """The config from a model file's fields: the context fields checked here, the rest as a VAEConfig's."""
        check_integers(fields, CONTEXT_LIMITS)
        return super().from_file(fields)


def split_phases(x: torch.Tensor) -> list[torch.Tensor]:
    """The four phases of (B, C, H, W), H and W even: phase k is x[:, :, k // 2::2, k % 2::2]."""
    batch, channels, height, width = x.shape
    return list(F.pixel_unshuffle(x, 2).view(batch, channels, PHASES, height // 2, width // 2).unbind(2))


def join_phases(phases: list[torch.Tensor]) -> torch.Tensor:
    """The inverse of :func:`split_phases`."""
    batch, channels, height, width = phases[0].shape
    return F.pixel_shuffle(torch.stack(phases, 2).view(batch, channels * PHASES, height, width), 2)


class ContextNet(nn.Module):
    """Phase k's pixel parameters from the features and the ``earlier`` phases' pixels (see module docstring)."""

    def __init__(self, config: PolyphaseConfig, earlier: int, out_channels: int):
        super().__init__()
        width = config.context_channels
        self.features = WNConv2d(config.feature_channels, width, 3)
        self.pixels = WNConv2d(config.image_channels * earlier, width, 3) if earlier else None
        self.blocks = nn.ModuleList([
            ResidualBlock(width, binary_weights=config.binary_weights, binary_activations=config.binary_activations)
            for _ in range(config.context_blocks)
        ])
        self.head = WNConv2d(width, out_channels, 3, init_scale=0.1)

    def forward(self, features: torch.Tensor, earlier: torch.Tensor | None, ops=FLOAT) -> torch.Tensor:
        """``features``: hidden activations; ``earlier``: uint8 pixels of the phases before, or None for phase 0."""
        h = ops.conv(self.features, ops.elu(features))
        if self.pixels is not None:
            h = ops.residual(h, ops.conv(self.pixels, ops.pixels(earlier), "pixels"))
        for block in self.blocks:
            h = block(h, ops)
        return ops.conv(self.head, ops.elu(h))


class PolyphasePixels:
    """p(x | z1) as four phases, each given the ones before (see module docstring).

    ``phase(k, earlier)`` is phase k's pixel distribution over all
    channels at half resolution, given ``earlier``: the uint8 phases before
    it stacked on the channels (None for phase 0). ``size``: the (even)
    height and width the features cover. :meth:`crop` restricts the coded
    pixels to some channels and the top-left ``height`` x ``width``.
    """

    def __init__(self, phase: Callable, channels: int, size: tuple[int, int], coded: slice | None = None,
                 height: int | None = None, width: int | None = None):
        self.phase, self.channels, self.size = phase, channels, size
        self.coded = coded if coded is not None else slice(0, channels)
        self.height, self.width = height or size[0], width or size[1]

    def crop(self, channels: slice, height: int, width: int) -> "PolyphasePixels":
        """The same likelihood coding only ``channels`` of the top-left ``height`` x ``width`` pixels."""
        if channels.stop - channels.start not in (1, self.channels):
            raise ValueError("a polyphase likelihood codes one channel or all")
        return PolyphasePixels(self.phase, self.channels, self.size, channels, height, width)

    # -- helpers ---------------------------------------------------------------------
    def _full(self, x: torch.Tensor) -> torch.Tensor:
        """The coded pixels ``x`` as the context networks see them: a lone plane as equal channels, the rest 0."""
        full = x.new_zeros(len(x), self.channels, *self.size)
        full[:, :, :self.height, :self.width] = x
        return full

    def _phase_extent(self, k: int) -> tuple[int, int]:
        """Rows and columns of phase k that hold coded pixels."""
        return -(-(self.height - k // 2) // 2), -(-(self.width - k % 2) // 2)

    def _phase_given(self, k: int, earlier: list[torch.Tensor]):
        """Phase k's distribution over all its channels and pixels, given the ``earlier`` phases (a list)."""
        return self.phase(k, torch.cat(earlier, dim=1) if earlier else None)

    def _coded_phase(self, k: int, earlier: list[torch.Tensor]):
        """Phase k's distribution, restricted to the coded channels and pixels."""
        return self._phase_given(k, earlier).crop(self.coded, *self._phase_extent(k))

    # -- training --------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log probability (nats) of the coded pixels ``x`` per sub-pixel, all phases in one pass (teacher
        forcing); shaped like ``x``."""
        phases = split_phases(self._full(x))
        log_probs = [self._phase_given(k, phases[:k]).log_prob(phases[k]) for k in range(PHASES)]
        return join_phases(log_probs)[:, self.coded, :self.height, :self.width]

    # -- coding ----------------------------------------------------------------------
    def push(self, ans, x: torch.Tensor) -> None:
        phases = split_phases(self._full(x))
        for k in reversed(range(PHASES)):  # the decoder pops phase 0 first
            rows, columns = self._phase_extent(k)
            self._coded_phase(k, phases[:k]).push(ans, phases[k][:, self.coded, :rows, :columns])

    def pop(self, ans) -> torch.Tensor:
        phases = []
        for k in range(PHASES):
            values = self._coded_phase(k, phases).pop(ans)
            rows, columns = self._phase_extent(k)
            phase = values.new_zeros(len(values), self.channels, self.size[0] // 2, self.size[1] // 2)
            phase[:, :, :rows, :columns] = values
            phases.append(phase)
        planes = self.coded.stop - self.coded.start
        return join_phases(phases)[:, :planes, :self.height, :self.width]


@register
class PolyphaseVAE(MarkovVAE):
    """The Markov-chain VAE whose pixels come in four steps, each given the steps before (module docstring)."""

    family = "markov-vae-polyphase"
    config_type = PolyphaseConfig

    def __init__(self, config: PolyphaseConfig):
        super().__init__(config)
        out = self.pixel_head_channels(config)
        self.phases = nn.ModuleList([ContextNet(config, k, out) for k in range(PHASES)])

    def _likelihood_net(self, config: PolyphaseConfig) -> nn.Module:
        """Features at half resolution from the latents (a 1/stride grid)."""
        return ConditionalNet(config, config.latent_channels, config.feature_channels, unfold=config.stride // 2)

    def conditional(self, layer: int, z: torch.Tensor, ops=FLOAT):
        """p(below | z_{layer+1}): the polyphase pixel likelihood for layer 0, else a latent Gaussian."""
        if layer > 0:
            return super().conditional(layer, z, ops)
        features = ops.run(self.conditionals[0], ops.latents(z))
        size = (2 * features.shape[2], 2 * features.shape[3])
        return PolyphasePixels(partial(self._phase, features, ops), self.config.image_channels, size)

    def _phase(self, features: torch.Tensor, ops, k: int, earlier: torch.Tensor | None):
        """Phase k's pixel distribution given the features and the earlier phases' pixels."""
        return self.pixel_likelihood(self.phases[k](features, earlier, ops), ops)
