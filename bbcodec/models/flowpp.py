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
convolutions of their gates (:mod:`bbcodec.nn.binary`); the networks' input
and output convolutions, the attention projections, the normalizations and
the invertible 1x1 convolutions stay float.

This family is a density model: it trains (``bbcodec train --preset
flowpp``), exports, loads, reports its bound and draws samples, but it codes
no files (its ``coders`` are empty; :meth:`FlowPP.exact` refuses). Coding it
would need local bits-back coding (Ho, Lohn & Abbeel, NeurIPS 2019) in an
arithmetic that every machine reproduces bit for bit, which float
couplings do not give.
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
from bbcodec.nn import WNConv2d, make_conv

LOGIT_MARGIN = 0.05
"""v / 256 is squeezed into [margin, 1 - margin] before the logit, as in RealNVP and Flow++."""
MIN_LOG_SCALE = -7.0
BISECTION_STEPS = 60
BISECTION_BOUND = 200.0
"""The inverse of a mixture-of-logistics CDF is found by bisection on [-bound, bound] in this many halvings."""

FILE_LIMITS = {"image_channels": (1, 4), "hidden_channels": (1, 512), "blocks_per_net": (1, 16),
               "mixture_components": (1, 64), "attention_heads": (0, 16), "stripe_steps": (1, 16),
               "channel_steps": (0, 16), "squeezed_steps": (0, 16), "dequant_steps": (1, 16),
               "dequant_blocks": (1, 16), "context_channels": (1, 256)}
"""Allowed ranges of a Flow++ model file's integer config fields (generous: the preset is far inside)."""


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
        if self.attention_heads and self.hidden_channels % self.attention_heads:
            raise ValueError(f"{self.attention_heads} attention heads do not divide {self.hidden_channels} channels")

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


# -- the coupling networks --------------------------------------------------------------------------------


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """ELU of x and of -x, side by side in the channels (PixelCNN++, Flow++)."""
    return F.elu(torch.cat([x, -x], dim=1))


class ChannelNorm(nn.Module):
    """Layer normalization over the channels at each position."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias).permute(0, 3, 1, 2)


class GatedResidual(nn.Module):
    """x + GLU(conv1x1(concat_elu(conv3x3(concat_elu(x))))): Flow++'s gated convolution, binary with BWN."""

    def __init__(self, channels: int, binary: bool):
        super().__init__()
        self.conv = make_conv(2 * channels, channels, 3, binary=binary)
        self.gate = make_conv(2 * channels, 2 * channels, 1, binary=binary, init_scale=0.1)

    def forward(self, x):
        return x + F.glu(self.gate(concat_elu(self.conv(concat_elu(x)))), dim=1)


class GatedAttention(nn.Module):
    """x + GLU(conv1x1(multi-head self-attention over the positions of x)); its projections stay float."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = WNConv2d(channels, 3 * channels, 1)
        self.gate = WNConv2d(channels, 2 * channels, 1, init_scale=0.1)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(n, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(n, c, h, w)
        return x + F.glu(self.gate(attended), dim=1)


class CouplingNet(nn.Module):
    """The parameters of a coupling transform from the half it conditions on (and any context)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, blocks: int, heads: int, binary: bool):
        super().__init__()
        self.proj_in = WNConv2d(in_channels, hidden, 3)
        layers = []
        for _ in range(blocks):
            layers += [GatedResidual(hidden, binary), ChannelNorm(hidden)]
            if heads:
                layers += [GatedAttention(hidden, heads), ChannelNorm(hidden)]
        self.blocks = nn.Sequential(*layers)
        self.proj_out = WNConv2d(hidden, out_channels, 3, init_scale=0.1)

    def forward(self, x):
        return self.proj_out(self.blocks(self.proj_in(x)))


# -- the mixture-of-logistics coupling transform ------------------------------------------------------------


def _mixture_terms(x, logits, means, log_scales):
    """log weights, standardized values and log scales of each component (component axis 1)."""
    log_weights = F.log_softmax(logits, dim=1)
    log_scales = log_scales.clamp_min(MIN_LOG_SCALE)
    return log_weights, (x.unsqueeze(1) - means) * torch.exp(-log_scales), log_scales


def mixture_logit_cdf(x, logits, means, log_scales):
    """(logit of the mixture's CDF at x, log of its density at x), computed stably in log space."""
    log_weights, z, log_scales = _mixture_terms(x, logits, means, log_scales)
    log_cdf = torch.logsumexp(log_weights + F.logsigmoid(z), dim=1)
    log_survival = torch.logsumexp(log_weights + F.logsigmoid(-z), dim=1)
    log_density = torch.logsumexp(log_weights - z - log_scales - 2 * F.softplus(-z), dim=1)
    return log_cdf - log_survival, log_density - log_cdf - log_survival


def mixture_logit_cdf_inverse(y, logits, means, log_scales):
    """The x whose mixture CDF has logit ``y``, by bisection (the CDF is increasing)."""
    low = torch.full_like(y, -BISECTION_BOUND)
    high = torch.full_like(y, BISECTION_BOUND)
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        below = mixture_logit_cdf(middle, logits, means, log_scales)[0] < y
        low, high = torch.where(below, middle, low), torch.where(below, high, middle)
    return (low + high) / 2


class MixtureCoupling(nn.Module):
    """Transforms the second half b given the first half a (and a context):
    b' = logit(MixLogisticCDF(b; pi, mu, s)) * exp(scale) + shift, every parameter from a network of a."""

    def __init__(self, channels: int, context: int, hidden: int, blocks: int, heads: int, components: int,
                 binary: bool):
        super().__init__()
        self.components = components
        self.net = CouplingNet(channels + context, channels * (2 + 3 * components), hidden, blocks, heads, binary)

    def _transform(self, a, context):
        given = a if context is None else torch.cat([a, context], dim=1)
        out = self.net(given)
        n, _, h, w = out.shape
        k = self.components
        scale, shift, mixture = out.split([a.shape[1], a.shape[1], 3 * k * a.shape[1]], dim=1)
        logits, means, log_scales = mixture.reshape(n, 3 * k, a.shape[1], h, w).split(k, dim=1)
        return torch.tanh(scale), shift, logits, means, log_scales

    def forward(self, a, b, context=None):
        scale, shift, *mixture = self._transform(a, context)
        y, log_derivative = mixture_logit_cdf(b, *mixture)
        return y * torch.exp(scale) + shift, (log_derivative + scale).flatten(1).sum(1)

    def inverse(self, a, b, context=None):
        scale, shift, *mixture = self._transform(a, context)
        return mixture_logit_cdf_inverse((b - shift) * torch.exp(-scale), *mixture)


# -- flow steps: each maps x to (y, log|det dy/dx| per image) and back ----------------------------------


def split_halves(x, kind: str):
    """The two halves a coupling sees: even and odd columns (``stripes``) or the first and last channels."""
    if kind == "stripes":
        return x[..., 0::2], x[..., 1::2]
    return x.chunk(2, dim=1)


def join_halves(a, b, kind: str):
    """The inverse of :func:`split_halves`."""
    if kind == "stripes":
        return torch.stack([a, b], dim=-1).flatten(-2)
    return torch.cat([a, b], dim=1)


class ActNorm(nn.Module):
    """y = x * exp(log_scale) + bias, per channel (Glow's activation normalization)."""

    def __init__(self, channels: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x):
        logdet = self.log_scale.sum() * x.shape[2] * x.shape[3]
        return x * torch.exp(self.log_scale) + self.bias, logdet.expand(x.shape[0])

    def inverse(self, y):
        return (y - self.bias) * torch.exp(-self.log_scale)


class Pointwise(nn.Module):
    """An invertible 1x1 convolution (Glow), started at a random rotation."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, channels))
        if not self.weight.is_meta:
            with torch.no_grad():
                self.weight.copy_(torch.linalg.qr(torch.randn(channels, channels))[0])

    def forward(self, x):
        logdet = torch.linalg.slogdet(self.weight)[1] * x.shape[2] * x.shape[3]
        return torch.einsum("ij,njhw->nihw", self.weight, x), logdet.expand(x.shape[0])

    def inverse(self, y):
        return torch.einsum("ij,njhw->nihw", torch.linalg.inv(self.weight), y)


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

    def _halves(self, x):
        a, b = split_halves(x, self.kind)
        return (b, a) if self.flip else (a, b)

    def _joined(self, a, b):
        return join_halves(b, a, self.kind) if self.flip else join_halves(a, b, self.kind)

    def forward(self, x, context=None):
        x, norm_logdet = self.norm(x)
        x, mix_logdet = self.mix(x)
        a, b = self._halves(x)
        b, coupling_logdet = self.coupling(a, b, self._context(context))
        return self._joined(a, b), norm_logdet + mix_logdet + coupling_logdet

    def inverse(self, y, context=None):
        a, b = self._halves(y)
        x = self._joined(a, self.coupling.inverse(a, b, self._context(context)))
        return self.norm.inverse(self.mix.inverse(x))

    def _context(self, context):
        """The context as the halves are laid out: stripes of it side by side in the channels."""
        if context is None or self.kind != "stripes":
            return context
        return torch.cat(split_halves(context, "stripes"), dim=1)


class Squeeze(nn.Module):
    """Each 2x2 block of pixels into the channels (volume preserving)."""

    def forward(self, x, context=None):
        return F.pixel_unshuffle(x, 2), x.new_zeros(x.shape[0])

    def inverse(self, y, context=None):
        return F.pixel_shuffle(y, 2)


def run_forward(steps, x, context=None):
    """x through every step; (result, summed log-determinant per image)."""
    total = x.new_zeros(x.shape[0])
    for step in steps:
        x, logdet = step(x, context)
        total = total + logdet
    return x, total


def standard_normal_log_density(z):
    return (-0.5 * z.square() - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


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

    def forward(self, x, generator=None):
        """(u, log q(u | x) per image) for a uint8 batch x."""
        dtype = self.features[0].bias.dtype
        noise = torch.randn(x.shape, generator=generator, dtype=dtype).to(x.device)
        context = self.features(x.to(dtype) / 256 - 0.5)
        e, logdet = run_forward(self.steps, noise, context)
        sigmoid_logdet = (F.logsigmoid(e) + F.logsigmoid(-e)).flatten(1).sum(1)
        return torch.sigmoid(e), standard_normal_log_density(noise) - logdet - sigmoid_logdet


@register
class FlowPP(CodecModel):
    """Flow++ at a CPU's size, with binary or float coupling networks (see module docstring)."""

    family = "flowpp"
    config_type = FlowConfig
    coders = ()

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
        y = LOGIT_MARGIN + (1 - 2 * LOGIT_MARGIN) * v / 256
        logit = torch.log(y) - torch.log1p(-y)
        logit_logdet = (math.log(1 - 2 * LOGIT_MARGIN) - math.log(256) - torch.log(y) - torch.log1p(-y))
        z, logdet = run_forward(self.steps, logit)
        return standard_normal_log_density(z) + logdet + logit_logdet.flatten(1).sum(1)

    def forward(self, x: torch.Tensor, free_bits: float = 0.0) -> dict:
        """The bound -log P(x) <= E_q[log q(u|x) - log p(x + u)] in bits per sub-pixel (one u per image);
        ``free_bits`` (a VAE's) does not apply."""
        u, log_q = self.dequantizer(x)
        nats = log_q - self.log_density(x.to(u.dtype) + u)
        bits = nats.mean() / (math.log(2) * x[0].numel())
        return {"loss": bits, "nelbo": bits}

    def draw(self, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """uint8 images from Gaussian noise shaped like ``like`` through the inverse flow."""
        z = torch.randn(like.shape, generator=generator).to(like.device)
        for step in reversed(self.steps):
            z = step.inverse(z)
        y = torch.sigmoid(z)
        v = (y - LOGIT_MARGIN) / (1 - 2 * LOGIT_MARGIN) * 256
        return v.floor().clamp(0, 255).to(torch.uint8)

    def exact(self):
        raise BBCodecError("a flowpp model is a density model: it codes no files (bbcodec sample and "
                           "bench/flow_density.py use it)")
