"""Residual blocks with float (ELU) or binary (sign, clipped STE) activations.

In Bird, Kingma & Barber (ICLR 2021) the residual blocks are where the
binarization happens; the layers next to the pixels and the latent heads stay
float, since binarizing everything costs much more rate. The block computes
in the arithmetic it is given (:mod:`bbcodec.nn.arithmetic`).
"""
from __future__ import annotations

from torch import nn

from bbcodec.nn.arithmetic import FLOAT
from bbcodec.nn.binary import make_conv


class ResidualBlock(nn.Module):
    """x + conv(act(conv(act(x)))), with binary or float weights and activations."""

    def __init__(self, channels: int, *, binary_weights: bool, binary_activations: bool, kernel_size: int = 3):
        super().__init__()
        self.binary_activations = binary_activations
        self.conv1 = make_conv(channels, channels, kernel_size, binary=binary_weights)
        # A small output scale keeps a deep stack of residual blocks near identity at the start.
        self.conv2 = make_conv(channels, channels, kernel_size, binary=binary_weights, init_scale=0.1)

    def forward(self, x, ops=FLOAT):
        if self.binary_activations:
            return ops.residual(x, ops.sign_conv(self.conv2, ops.sign_conv(self.conv1, x)))
        return ops.residual(x, ops.conv(self.conv2, ops.elu(ops.conv(self.conv1, ops.elu(x)))))
