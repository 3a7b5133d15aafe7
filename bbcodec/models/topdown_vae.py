"""A ResNet VAE with top-down inference and binary residual blocks, coded with BB-ANS.

The model that binary weight normalization was first shown on (Bird, Kingma
& Barber, "Reducing the Computational Cost of Deep Generative Models with
Binary Neural Networks", ICLR 2021): the ResNet VAE with bidirectional
inference of Kingma et al. ("Improved Variational Inference with Inverse
Autoregressive Flow", NeurIPS 2016), which HiLLoC (Townsend, Bird, Kucsko &
Barber, ICLR 2020) codes with BB-ANS.

Unlike the Markov chain of :mod:`bbcodec.models.markov_vae`, every latent
layer sees all the layers above it, through a deterministic top-down state:

    bottom-up:  d_1, ..., d_L = features of x (a stem, then residual blocks per layer)
    top-down:   h_L = 0;  for i = L .. 1:
                    p(z_i | z_>i)    from h_i            (the prior)
                    q(z_i | x, z_>i) from h_i + d_i      (the posterior: the prior's state plus a bottom-up residual)
                    h_{i-1} = blocks_i(h_i + conv(z_i))
    pixels:     p(x | z) = the polyphase likelihood (:class:`~bbcodec.models.polyphase_vae.PolyphaseHead`)
                           of features unfolded from h_0.

All latents and states sit at 1/``stride`` of the image resolution. The
residual blocks have binary weights (and, with ``binary_activations``, sign
activations); the stem, the heads and the convolution that adds a latent to
the state stay float, as in the paper, so the state keeps a float residual
path.

The coders (:mod:`bbcodec.coding.bitsback`, ``topdown``) see the model
through six calls, each written once against the arithmetic ``ops``
(:mod:`bbcodec.nn.arithmetic`) so that it also runs in exact integers:
``bottom_up(x)``, ``top_state(like)``, ``prior(layer, state)``,
``inference(layer, state, features)``, ``descend(layer, state, z)`` and
``likelihood(state)``; ``layer`` counts from 0 (z_1) to ``depth - 1`` (z_L).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bbcodec.exact.backend import InArithmetic, exact_model
from bbcodec.models.family import CodecModel, register
from bbcodec.models.markov_vae import nelbo_terms, pad_to_stride, reconstruction_nats
from bbcodec.models.polyphase_vae import PolyphaseConfig, PolyphaseHead
from bbcodec.nn import ResidualBlock, WNConv2d
from bbcodec.nn.arithmetic import FLOAT


@dataclass(frozen=True)
class TopDownConfig(PolyphaseConfig):
    """The shape of a :class:`TopDownVAE`: a :class:`PolyphaseConfig` read as this family's.

    ``hidden_channels``: the width of the state and the bottom-up features;
    ``blocks_per_net``: residual blocks per layer on each pass; the polyphase
    fields shape the pixel likelihood.
    """


class Blocks(nn.Module):
    """A stack of residual blocks (binary with ``binary_weights``), in the arithmetic ``ops``."""

    def __init__(self, config: TopDownConfig, count: int):
        super().__init__()
        self.blocks = nn.ModuleList([
            ResidualBlock(config.hidden_channels, binary_weights=config.binary_weights,
                          binary_activations=config.binary_activations) for _ in range(count)])

    def forward(self, h, ops=FLOAT):
        for block in self.blocks:
            h = block(h, ops)
        return h


@register
class TopDownVAE(CodecModel):
    """The top-down ResNet VAE (see module docstring)."""

    family = "topdown-vae"
    config_type = TopDownConfig
    coders = ("topdown",)

    def __init__(self, config: TopDownConfig):
        super().__init__(config)
        width, zc, stride = config.hidden_channels, config.latent_channels, config.stride
        layers = config.latent_layers
        self.stem = WNConv2d(config.image_channels * stride * stride, width, 3)
        self.up = nn.ModuleList([Blocks(config, config.blocks_per_net) for _ in range(layers)])
        self.priors = nn.ModuleList([WNConv2d(width, 2 * zc, config.head_kernel_size, init_scale=0.1)
                                     for _ in range(layers)])
        self.posteriors = nn.ModuleList([WNConv2d(width, 2 * zc, config.head_kernel_size, init_scale=0.1)
                                         for _ in range(layers)])
        self.latent_inputs = nn.ModuleList([WNConv2d(zc, width, config.head_kernel_size) for _ in range(layers)])
        self.down = nn.ModuleList([Blocks(config, config.blocks_per_net) for _ in range(layers)])
        self.features = WNConv2d(width, config.feature_channels * (stride // 2) ** 2, 3, init_scale=0.1)
        self.phases = PolyphaseHead(config)

    @property
    def depth(self) -> int:
        return self.config.latent_layers

    @property
    def grey_channel(self) -> int:
        """The channel that codes a lone plane: the first with channel coupling (the others depend on it)."""
        return 0 if self.config.channel_coupling else 1

    def latent_shape(self, image_shape) -> tuple[int, int, int]:
        """(channels, height, width) of every latent layer for an image of (C, H, W)."""
        _, height, width = image_shape
        stride = self.config.stride
        return self.config.latent_channels, -(-height // stride), -(-width // stride)

    # -- the six calls of the coders, in float or exact arithmetic (``ops``) --------------
    def bottom_up(self, x: torch.Tensor, ops=FLOAT) -> list[torch.Tensor]:
        """The features d_1 .. d_L of a uint8 batch."""
        h = ops.conv(self.stem, F.pixel_unshuffle(pad_to_stride(ops.pixels(x), self.config.stride),
                                                  self.config.stride), "pixels")
        features = []
        for blocks in self.up:
            h = ops.run(blocks, h)
            features.append(h)
        return features

    def top_state(self, like: torch.Tensor, ops=FLOAT) -> torch.Tensor:
        """h_L: zero, shaped for latents like ``like`` (B, latent_channels, h, w), in the units of ``ops``."""
        return ops.latents(like).new_zeros(len(like), self.config.hidden_channels, *like.shape[2:])

    def prior(self, layer: int, state: torch.Tensor, ops=FLOAT):
        """p(z_{layer+1} | z above) from the state that the layers above left."""
        return ops.gaussian(ops.conv(self.priors[layer], ops.elu(state)), self.config.min_std, self.config.grid)

    def inference(self, layer: int, state: torch.Tensor, features: list[torch.Tensor], ops=FLOAT):
        """q(z_{layer+1} | x, z above): the state plus the bottom-up features of its layer."""
        h = ops.elu(ops.residual(state, features[layer]))
        return ops.gaussian(ops.conv(self.posteriors[layer], h), self.config.min_std, self.config.grid)

    def descend(self, layer: int, state: torch.Tensor, z: torch.Tensor, ops=FLOAT) -> torch.Tensor:
        """The state below z_{layer+1}: z added to the state, then the layer's residual blocks."""
        h = ops.residual(state, ops.conv(self.latent_inputs[layer], ops.latents(z), "latents"))
        return ops.run(self.down[layer], h)

    def likelihood(self, state: torch.Tensor, ops=FLOAT):
        """p(x | z) from the state below z_1 (h_0)."""
        features = ops.conv(self.features, ops.elu(state))
        unfold = self.config.stride // 2
        return self.phases.likelihood(F.pixel_shuffle(features, unfold) if unfold > 1 else features, ops)

    def draw(self, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """uint8 images drawn top-down: each z_i from its prior given the state above, the state then
        descending through it, x from the likelihood of the last state (see
        :meth:`CodecModel.sample <bbcodec.models.family.CodecModel.sample>`)."""
        state = self.top_state(like)
        for layer in reversed(range(self.depth)):
            state = self.descend(layer, state, self.prior(layer, state).rsample(generator))
        return self.likelihood(state).sample(generator)

    def likelihood_given(self, x: torch.Tensor):
        """p(x | z), each z_i the mean of q(z_i | x, z_>i) (see :meth:`CodecModel.likelihood_given
        <bbcodec.models.family.CodecModel.likelihood_given>`)."""
        features = self.bottom_up(x)
        state = self.top_state(x.new_zeros(len(x), *self.latent_shape(x.shape[1:]), dtype=torch.float32))
        for layer in reversed(range(self.depth)):
            state = self.descend(layer, state, self.inference(layer, state, features).mean)
        return self.likelihood(state)

    def exact(self):
        """This model in exact integer arithmetic, with the coders' calls of this family."""
        return exact_model(self, TopDownInArithmetic)

    # -- training --------------------------------------------------------------------
    def forward(self, x: torch.Tensor, free_bits: float = 0.0) -> dict:
        """Negative ELBO of a batch of uint8 images in bits per coded sub-pixel, as
        :meth:`MarkovVAE.forward <bbcodec.models.markov_vae.MarkovVAE.forward>` reports it; ``kl`` lists
        the layers from z_1 up."""
        features = self.bottom_up(x)
        like = x.new_zeros(len(x), *self.latent_shape(x.shape[1:]), dtype=torch.float32)
        state, kls = self.top_state(like), []
        for layer in reversed(range(self.depth)):
            q = self.inference(layer, state, features)
            z = q.rsample()
            kls.insert(0, (q.log_prob(z) - self.prior(layer, state).log_prob(z)).flatten(1).sum(1))
            state = self.descend(layer, state, z)
        recon, dims = reconstruction_nats(self.likelihood(state), x, self.grey_channel)
        return nelbo_terms(recon, dims, kls, like[0].numel(), free_bits)


class TopDownInArithmetic(InArithmetic):
    """A :class:`TopDownVAE` as the coders see it in an arithmetic: each call passed on with ``ops``."""

    def bottom_up(self, x):
        return self.model.bottom_up(x, self.ops)

    def top_state(self, like):
        return self.model.top_state(like, self.ops)

    def prior(self, layer, state):
        return self.model.prior(layer, state, self.ops)

    def inference(self, layer, state, features):
        return self.model.inference(layer, state, features, self.ops)

    def descend(self, layer, state, z):
        return self.model.descend(layer, state, z, self.ops)

    def likelihood(self, state):
        return self.model.likelihood(state, self.ops)
