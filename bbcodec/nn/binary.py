"""Binary weight normalization and its float twin.

Bird, Kingma & Barber, "Reducing the Computational Cost of Deep Generative
Models with Binary Neural Networks", ICLR 2021.

A binary weight-normalized (BWN) convolution uses the weights
``w = g * sign(v) / sqrt(n)`` where ``n`` is the fan-in. The convolution itself
runs on the ±1 tensor ``sign(v)``; the per-output-channel factor
``alpha = g / sqrt(n)`` scales its output. Gradients reach ``v`` through the
straight-through estimator (STE), which passes the gradient where
``|v| <= 1`` and blocks it elsewhere; ``v`` is clipped to [-1, 1] after every
optimizer step (:meth:`BinaryConv2d.clip_`).

:class:`WNConv2d` is the float twin (Salimans & Kingma 2016 weight
normalization, ``w = g * v / ||v||``), so every architecture can be built with
binary or float weights and compared.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SignSTE(torch.autograd.Function):
    """sign(x) in {-1, +1} (sign(0) = +1) with the clipped straight-through gradient."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * (x.abs() <= 1).to(grad_output.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """Binarize ``x`` to ±1; the gradient passes straight through where |x| <= 1."""
    return SignSTE.apply(x)


class _Conv2dBase(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None, init_scale=1.0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.padding = kernel_size // 2 if padding is None else padding
        self.v = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.g = nn.Parameter(torch.full((out_channels,), float(init_scale)))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if not self.v.is_meta:  # a skeleton for shapes gets no values (on meta, init imports torch._dynamo)
            self.init_weights()

    def init_weights(self) -> None:
        """Random starting values of ``v`` (the layer's own distribution)."""
        raise NotImplementedError

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel_size * self.kernel_size

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, stride={self.stride}"


class BinaryConv2d(_Conv2dBase):
    """Binary weight-normalized convolution: conv(x, sign(v)) * g/sqrt(n) + b."""

    binary = True

    def init_weights(self) -> None:
        nn.init.uniform_(self.v, -1.0, 1.0)

    def forward(self, x):
        signs = sign_ste(self.v) if self.training else torch.where(self.v >= 0, 1.0, -1.0).to(x.dtype)
        out = F.conv2d(x, signs, stride=self.stride, padding=self.padding)
        alpha = self.g / math.sqrt(self.fan_in)
        return out * alpha.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    @torch.no_grad()
    def clip_(self):
        """Keep the real-valued weights in [-1, 1], where the STE passes gradients."""
        self.v.clamp_(-1.0, 1.0)


class WNConv2d(_Conv2dBase):
    """Float weight-normalized convolution: conv(x, g * v / ||v||) + b."""

    binary = False

    def init_weights(self) -> None:
        nn.init.normal_(self.v, 0.0, 0.05)

    def weight(self) -> torch.Tensor:
        norm = self.v.flatten(1).norm(dim=1).clamp_min(1e-12)
        return self.v * (self.g / norm).view(-1, 1, 1, 1)

    def forward(self, x):
        return F.conv2d(x, self.weight(), self.bias, stride=self.stride, padding=self.padding)


def make_conv(in_channels, out_channels, kernel_size, *, binary: bool, **kwargs) -> nn.Module:
    """A BWN convolution or its float twin, with the same signature."""
    cls = BinaryConv2d if binary else WNConv2d
    return cls(in_channels, out_channels, kernel_size, **kwargs)
