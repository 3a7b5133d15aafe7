"""Layers of normalizing flows with coupling transforms, as Flow++ builds them.

Ho, Chen, Srinivas, Duan & Abbeel, "Flow++: Improving Flow-Based Generative
Models with Variational Dequantization and Architecture Design", ICML 2019:
the coupling networks (gated residual blocks of concat-ELU convolutions, layer
norm over the channels, gated multi-head self-attention), the
mixture-of-logistics coupling transform and its inverse by bisection, and the
volume-changing steps around it (Glow's activation normalization and
invertible 1x1 convolution, the squeeze, the split into halves). Every step
maps x to (y, log|det dy/dx| per image) and has an ``inverse``. The 3x3 and
gate convolutions of the residual blocks are binary with ``binary``
(binary weight normalization, :mod:`bbcodec.nn.binary`); the rest is float.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bbcodec.nn.binary import WNConv2d, make_conv
MIN_LOG_SCALE = -7.0
BISECTION_STEPS = 16
NEWTON_STEPS = 3
"""The inverse of a mixture-of-logistics CDF: this many halvings of a bracket that the components' own inverses
give, then this many Newton steps (each about 1.5 halvings' work): near float64's precision."""


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


class _Mixture:
    """A mixture of logistics per element (components on axis 1), its weights and scales prepared once."""

    def __init__(self, logits, means, log_scales):
        self.log_weights = F.log_softmax(logits, dim=1)
        self.means, self.log_scales = means, log_scales.clamp_min(MIN_LOG_SCALE)
        self.inverse_scales = torch.exp(-self.log_scales)

    def standardized(self, x):
        return (x.unsqueeze(1) - self.means) * self.inverse_scales

    def logit_cdf(self, z):
        """The logit of the mixture's CDF at standardized values z."""
        log_cdf = torch.logsumexp(self.log_weights + F.logsigmoid(z), dim=1)
        return log_cdf - torch.logsumexp(self.log_weights + F.logsigmoid(-z), dim=1)

    def log_derivative(self, z, logit_cdf):
        """log d(logit CDF)/dx at standardized values z, given the logit there."""
        log_density = torch.logsumexp(self.log_weights - z - self.log_scales - 2 * F.softplus(-z), dim=1)
        return log_density - 2 * F.logsigmoid(logit_cdf) + logit_cdf  # - log F - log(1 - F)


def mixture_logit_cdf(x, logits, means, log_scales):
    """(logit of the mixture's CDF at x, log of its derivative at x), computed stably in log space."""
    mixture = _Mixture(logits, means, log_scales)
    z = mixture.standardized(x)
    logit = mixture.logit_cdf(z)
    return logit, mixture.log_derivative(z, logit)


def mixture_logit_cdf_inverse(y, logits, means, log_scales):
    """The x whose mixture CDF has logit ``y`` (the CDF is increasing). The mixture's CDF is a weighted mean of
    its components', so x lies between the smallest and largest of the components' own inverses, mean + scale * y:
    that bracket is halved ``BISECTION_STEPS`` times, then ``NEWTON_STEPS`` Newton steps (kept inside the
    bracket) take the midpoint to the root."""
    mixture = _Mixture(logits, means, log_scales)
    own = means + torch.exp(mixture.log_scales) * y.unsqueeze(1)
    low, high = own.amin(dim=1), own.amax(dim=1)
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        below = mixture.logit_cdf(mixture.standardized(middle)) < y
        low, high = torch.where(below, middle, low), torch.where(below, high, middle)
    x = (low + high) / 2
    for _ in range(NEWTON_STEPS):
        z = mixture.standardized(x)
        logit = mixture.logit_cdf(z)
        stepped = x - (logit - y) * torch.exp(-mixture.log_derivative(z, logit))
        x = torch.where(torch.isnan(stepped), x, torch.minimum(torch.maximum(stepped, low), high))
    return x


class MixtureCoupling(nn.Module):
    """Transforms the second half b given the first half a (and a context):
    b' = logit(MixLogisticCDF(b; pi, mu, s)) * exp(scale) + shift, every parameter from a network of a."""

    def __init__(self, channels: int, context: int, hidden: int, blocks: int, heads: int, components: int,
                 binary: bool):
        super().__init__()
        self.components = components
        self.net = CouplingNet(channels + context, channels * (2 + 3 * components), hidden, blocks, heads, binary)

    def elementwise(self, a, context=None):
        """The transform of b given a, as two functions: b -> (b', log|db'/db| per element), and b' -> b."""
        given = a if context is None else torch.cat([a, context], dim=1)
        out = self.net(given)
        n, _, h, w = out.shape
        k = self.components
        scale, shift, mixture = out.split([a.shape[1], a.shape[1], 3 * k * a.shape[1]], dim=1)
        mixture = mixture.reshape(n, 3 * k, a.shape[1], h, w).split(k, dim=1)
        scale = torch.tanh(scale)

        def forward(b):
            y, log_derivative = mixture_logit_cdf(b, *mixture)
            return y * torch.exp(scale) + shift, log_derivative + scale

        def inverse(b):
            return mixture_logit_cdf_inverse((b - shift) * torch.exp(-scale), *mixture)
        return forward, inverse

    def forward(self, a, b, context=None):
        y, log_derivative = self.elementwise(a, context)[0](b)
        return y, log_derivative.flatten(1).sum(1)

    def inverse(self, a, b, context=None):
        return self.elementwise(a, context)[1](b)


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

    def affine(self):
        """(matrix, shift) of the map x -> matrix x + shift over the channels."""
        return torch.diag(torch.exp(self.log_scale.flatten())), self.bias.flatten()

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
