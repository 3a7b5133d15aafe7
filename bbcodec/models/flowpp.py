"""Flow++ with binary or float coupling networks: a density model of images.

Flow++ (Ho, Chen, Srinivas, Duan & Abbeel, "Flow++: Improving Flow-Based
Generative Models with Variational Dequantization and Architecture Design",
ICML 2019) models 8-bit images with three ingredients, all kept here at a
size this project's CPU can train:

* **variational dequantization**: the integer image x is lifted to
  v = x + u with u in (0, 1)^D drawn from a learned flow q(u | x) (Gaussian
  noise through couplings conditioned on features of x, then a sigmoid), so
  that -log P(x) <= E_q[log q(u | x) - log p(v)];
* **coupling layers whose transforms are mixtures of logistics**: one half of
  the variables is mapped through the CDF of a K-component logistic mixture,
  the inverse sigmoid, a scale and a shift, all computed from the other half;
* **coupling networks of gated residual blocks with self-attention**: each
  block is a 3x3 convolution of concat-ELU activations, a gated linear unit
  of a 1x1 convolution, layer norm, then multi-head self-attention over the
  positions, gated the same way.

The main flow follows the paper's CIFAR layout at a smaller width: couplings
on the two column stripes of the image (even and odd columns, each half
transformed in turn), a squeeze (2x2 pixels into channels), couplings on the
channel halves, then couplings on stripes again. Each coupling step starts
with an activation normalization and an invertible 1x1 convolution.

Binary weight normalization (Bird, Kingma & Barber, ICLR 2021) binarizes, as
its binary Flow++ does, the residual blocks' 3x3 convolutions and the 1x1
convolutions of their gates (:mod:`bbcodec.nn.binary`); the layers are in
:mod:`bbcodec.nn.flow_layers`, this module puts them together. The networks' input
and output convolutions, the attention projections, the normalizations and
the invertible 1x1 convolutions stay float.

It trains (``bbcodec train --preset flowpp``), exports, loads, reports its
bound and draws samples. It codes sets of images of one size with local
bits-back coding (Ho, Lohn & Abbeel, NeurIPS 2019; :mod:`bbcodec.coding.flow_coder`)
in float arithmetic, into flow chain files (:mod:`bbcodec.coding.flow_file`)
that decode where the same float kernels run; it codes no single ``.bbc``
file (its ``coders`` are empty; :meth:`FlowPP.exact` refuses: its layer norm,
attention, mixture CDFs and matrix inverses have no exact integer version).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bbcodec.errors import BBCodecError, shorten
from bbcodec.models.config import ConfigFields, check_flags, check_integers
from bbcodec.models.family import CodecModel, register
from bbcodec.nn import WNConv2d
from bbcodec.nn.flow_layers import (ActNorm, GatedResidual, MixtureCoupling, Pointwise, Squeeze, join_halves,
                                    run_forward, split_halves, standard_normal_log_density)

LOGIT_MARGIN = 0.05
"""v / 256 is squeezed into [margin, 1 - margin] before the logit, as in RealNVP and Flow++."""

FILE_LIMITS = {"image_channels": (1, 4), "hidden_channels": (1, 512), "blocks_per_net": (1, 16),
               "mixture_components": (1, 64), "attention_heads": (0, 16), "stripe_steps": (1, 16),
               "channel_steps": (0, 16), "squeezed_steps": (0, 16), "dequant_steps": (1, 16),
               "dequant_blocks": (1, 16), "context_channels": (1, 256)}
"""Allowed ranges of a Flow++ model file's integer config fields (generous: the preset is far inside)."""


def to_logit(v):
    """The main flow's first map, for dequantized images v in (0, 256): (its value, log|derivative|) per
    element."""
    y = LOGIT_MARGIN + (1 - 2 * LOGIT_MARGIN) * v / 256
    log_y, log_rest = torch.log(y), torch.log1p(-y)
    return log_y - log_rest, math.log(1 - 2 * LOGIT_MARGIN) - math.log(256) - log_y - log_rest


def from_logit(y):
    """The inverse of :func:`to_logit`."""
    return (torch.sigmoid(y) - LOGIT_MARGIN) / (1 - 2 * LOGIT_MARGIN) * 256


def to_unit(e):
    """The dequantizer's last map, a sigmoid into (0, 1): (its value, log|derivative|) per element."""
    return torch.sigmoid(e), F.logsigmoid(e) + F.logsigmoid(-e)


def from_unit(u):
    """The inverse of :func:`to_unit`."""
    return torch.log(u) - torch.log1p(-u)


@dataclass(frozen=True)
class FlowConfig(ConfigFields):
    """The shape of a :class:`FlowPP` (see module docstring for the layout).

    ``hidden_channels`` and ``blocks_per_net``: width and depth of each coupling
    network of the main flow; ``mixture_components``: K of the logistic mixture;
    ``attention_heads``: 0 for no self-attention; ``stripe_steps``,
    ``channel_steps``, ``squeezed_steps``: coupling steps before the squeeze, on
    channel halves after it, and on stripes after those; ``dequant_steps``,
    ``dequant_blocks`` and ``context_channels``: the dequantization flow's
    couplings, their networks' depth and the width of the features of x they see.
    """

    image_channels: int = 3
    hidden_channels: int = 32
    blocks_per_net: int = 2
    mixture_components: int = 8
    attention_heads: int = 4
    stripe_steps: int = 4
    channel_steps: int = 2
    squeezed_steps: int = 3
    dequant_steps: int = 2
    dequant_blocks: int = 1
    context_channels: int = 16
    binary_weights: bool = True

    def __post_init__(self):
        for width in (self.hidden_channels, self.context_channels):  # the main and the dequantizer's networks
            if self.attention_heads and width % self.attention_heads:
                raise ValueError(f"{self.attention_heads} attention heads do not divide {width} channels")

    @property
    def stride(self) -> int:
        """Image sides must be multiples of this: the squeeze halves them, then the stripes halve the width."""
        return 4

    @classmethod
    def from_file(cls, fields: dict) -> "FlowConfig":
        """The config from a model file's (untrusted) fields, each checked for type and range before use."""
        check_integers(fields, FILE_LIMITS)
        check_flags(fields, ("binary_weights",))
        try:
            return cls.from_json(json.dumps(fields))
        except (ValueError, TypeError) as error:
            raise BBCodecError(f"model file: bad config ({shorten(error, 120)})") from None


class CouplingStep(nn.Module):
    """Activation normalization, an invertible 1x1 convolution, then one mixture coupling of the ``kind`` halves;
    ``flip`` transforms the first half given the second instead."""

    def __init__(self, channels: int, kind: str, flip: bool, config: FlowConfig, context: int = 0,
                 hidden: int | None = None, blocks: int | None = None):
        super().__init__()
        self.kind, self.flip = kind, flip
        half = channels // 2 if kind == "channels" else channels
        self.norm = ActNorm(channels)
        self.mix = Pointwise(channels)
        self.coupling = MixtureCoupling(half, context, hidden or config.hidden_channels,
                                        blocks or config.blocks_per_net, config.attention_heads,
                                        config.mixture_components, config.binary_weights)

    def halves(self, x):
        """(a, b): the half the coupling conditions on and the half it transforms."""
        a, b = split_halves(x, self.kind)
        return (b, a) if self.flip else (a, b)

    def joined(self, a, b):
        """The inverse of :meth:`halves`."""
        return join_halves(b, a, self.kind) if self.flip else join_halves(a, b, self.kind)

    def affine(self):
        """(matrix, shift): the normalization and the 1x1 convolution as one map x -> matrix x + shift over the
        channels."""
        scale, bias = self.norm.affine()
        return self.mix.weight @ scale, self.mix.weight @ bias

    def forward(self, x, context=None):
        x, norm_logdet = self.norm(x)
        x, mix_logdet = self.mix(x)
        a, b = self.halves(x)
        b, coupling_logdet = self.coupling(a, b, context)
        return self.joined(a, b), norm_logdet + mix_logdet + coupling_logdet

    def inverse(self, y, context=None):
        a, b = self.halves(y)
        x = self.joined(a, self.coupling.inverse(a, b, context))
        return self.norm.inverse(self.mix.inverse(x))


# -- the model ----------------------------------------------------------------------------------------------


class Dequantizer(nn.Module):
    """q(u | x): Gaussian noise through couplings conditioned on features of x, then a sigmoid into (0, 1)."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        channels, width = config.image_channels, config.context_channels
        self.features = nn.Sequential(WNConv2d(channels, width, 3),
                                      *[GatedResidual(width, config.binary_weights) for _ in range(2)])
        self.steps = nn.ModuleList([
            CouplingStep(channels, "stripes", bool(i % 2), config, context=2 * width, hidden=width,
                         blocks=config.dequant_blocks) for i in range(config.dequant_steps)])

    def context(self, x):
        """What the couplings see of the uint8 batch x: its features laid out as their halves are, the two column
        stripes side by side in the channels (computed once for every step)."""
        features = self.features(x.to(self.features[0].bias.dtype) / 256 - 0.5)
        return torch.cat(split_halves(features, "stripes"), dim=1)

    def forward(self, x, generator=None):
        """(u, log q(u | x) per image) for a uint8 batch x."""
        dtype = self.features[0].bias.dtype
        noise = torch.randn(x.shape, generator=generator, dtype=dtype).to(x.device)
        e, logdet = run_forward(self.steps, noise, self.context(x))
        u, sigmoid_log_derivative = to_unit(e)
        return u, standard_normal_log_density(noise) - logdet - sigmoid_log_derivative.flatten(1).sum(1)


@register
class FlowPP(CodecModel):
    """Flow++ at a CPU's size, with binary or float coupling networks (see module docstring)."""

    family = "flowpp"
    config_type = FlowConfig
    coders = ()
    without_coders = ("codes no single files, only sets of images as float-arithmetic flow chains "
                      "(bbcodec.coding.flow_file)")

    def __init__(self, config: FlowConfig):
        super().__init__(config)
        c = config.image_channels
        self.dequantizer = Dequantizer(config)
        steps = [CouplingStep(c, "stripes", bool(i % 2), config) for i in range(config.stripe_steps)]
        steps.append(Squeeze())
        steps += [CouplingStep(4 * c, "channels", bool(i % 2), config) for i in range(config.channel_steps)]
        steps += [CouplingStep(4 * c, "stripes", bool(i % 2), config) for i in range(config.squeezed_steps)]
        self.steps = nn.ModuleList(steps)

    def latent_shape(self, image_shape) -> tuple[int, int, int]:
        """The shape of the flow's Gaussian variable for an image of (C, H, W): squeezed once."""
        channels, height, width = image_shape
        return 4 * channels, height // 2, width // 2

    def log_density(self, v):
        """log p(v) per image for dequantized images v in (0, 256)^D."""
        y, logit_log_derivative = to_logit(v)
        z, logdet = run_forward(self.steps, y)
        return standard_normal_log_density(z) + logdet + logit_log_derivative.flatten(1).sum(1)

    def forward(self, x: torch.Tensor, free_bits: float = 0.0) -> dict:
        """The bound -log P(x) <= E_q[log q(u|x) - log p(x + u)] in bits per sub-pixel (one u per image);
        ``free_bits`` (a VAE's) does not apply. The sides must be multiples of ``config.stride`` (a flow cannot pad
        without changing what it models): a BBCodecError otherwise."""
        stride = self.config.stride
        if x.shape[-2] % stride or x.shape[-1] % stride:
            raise BBCodecError(f"a flowpp model needs image sides that are multiples of {stride}, not "
                               f"{x.shape[-2]}x{x.shape[-1]} (choose another --crop)")
        u, log_q = self.dequantizer(x)
        nats = log_q - self.log_density(x.to(u.dtype) + u)
        bits = nats.mean() / (math.log(2) * x[0].numel())
        return {"loss": bits, "nelbo": bits}

    def draw(self, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """uint8 images from Gaussian noise shaped like ``like`` through the inverse flow."""
        z = torch.randn(like.shape, generator=generator).to(like.device)
        for step in reversed(self.steps):
            z = step.inverse(z)
        return from_logit(z).floor().clamp(0, 255).to(torch.uint8)

    def exact(self):
        raise BBCodecError(f"a flowpp model {self.without_coders}")
