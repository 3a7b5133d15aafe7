"""Residual blocks with float (ELU) or binary (sign, clipped STE) activations.

In Bird, Kingma & Barber (ICLR 2021) the residual blocks are where the
binarization happens; the layers next to the pixels and the latent heads stay
float, since binarizing everything costs much more rate.
"""
from __future__ import annotations

from torch import nn

from bbcodec.nn.binary import make_conv, sign_ste


class Sign(nn.Module):
    """Binary activation: sign(x) with the clipped straight-through estimator."""

    def forward(self, x):
        return sign_ste(x)


class ResidualBlock(nn.Module):
    """x + conv(act(conv(act(x)))), with binary or float weights and activations."""

    def __init__(self, channels: int, *, binary_weights: bool, binary_activations: bool, kernel_size: int = 3):
        super().__init__()
        self.act1 = Sign() if binary_activations else nn.ELU()
        self.conv1 = make_conv(channels, channels, kernel_size, binary=binary_weights)
        self.act2 = Sign() if binary_activations else nn.ELU()
        # A small output scale keeps a deep stack of residual blocks near identity at the start.
        self.conv2 = make_conv(channels, channels, kernel_size, binary=binary_weights, init_scale=0.1)

    def forward(self, x):
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))
