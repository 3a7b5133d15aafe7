"""Convolutions of sign activations with sign weights as XNOR and popcount on 64-bit words.

When both the weights and the activations of a layer are ±1 (the "binary
activations" variant of Bird, Kingma & Barber, ICLR 2021), each product is
+1 where the two signs agree and -1 where they differ, so a sum of ``n``
products is ``n - 2 * popcount(a XOR w)`` with the signs packed as bits
(XNOR-Net, Rastegari et al., ECCV 2016). One 64-bit XOR and one popcount
replace 64 multiply-adds, and the result is an integer by construction: the
same on every machine, whatever order the words are summed in, so the exact
backend (:mod:`bbcodec.exact.backend`) can use it wherever its input is a
sign tensor and get exactly the sums of its float convolution.

The kernels are compiled by numba (an optional dependency, ``pip install
bbcodec[fast]``); :func:`available` says whether it is installed. Zero padding
has no sign: taps outside the image are skipped, and each output counts only
the products it has.

Layout: activations are packed per pixel, channel ``c`` in bit ``c % 64`` of
word ``c // 64`` (set where the value is negative); weights as one row of
words per kernel tap (``taps x words`` rows of ``out_channels`` words), so
that the innermost loop runs over output channels and vectorizes.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache

import numpy as np
import torch


def available() -> bool:
    """Whether the compiled kernels can run (numba installed; it is imported only when a kernel is first used)."""
    return importlib.util.find_spec("numba") is not None


@lru_cache(maxsize=None)
def _kernels():
    """(pack, sign_conv): the kernels, compiled by numba (cached on disk where numba finds a writable place)."""
    import numba
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    def jit(function):
        try:
            return numba.njit(cache=True, nogil=True)(function)
        except RuntimeError:  # no writable cache location: compile in each process instead
            return numba.njit(nogil=True)(function)

    @intrinsic
    def popcount(typingctx, word):
        """LLVM's ctpop on a 64-bit word: one instruction, or a few vector ones across output channels."""
        def codegen(context, builder, signature, args):
            return builder.call(builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)]), args)
        return types.uint64(types.uint64), codegen

    @jit
    def pack(values):
        """(batch, channels, height, width) -> (batch, height, width, words): bit set where the value is < 0."""
        batch, channels, height, width = values.shape
        packed = np.zeros((batch, height, width, (channels + 63) // 64), np.uint64)
        for b in range(batch):
            for c in range(channels):
                bit, word = np.uint64(1) << np.uint64(c % 64), c // 64
                for y in range(height):
                    for x in range(width):
                        if values[b, c, y, x] < 0:
                            packed[b, y, x, word] |= bit
        return packed

    @jit
    def sign_conv(packed, weight_rows, channels, kernel_size, padding, magnitude):
        """(batch, height, width, out_channels) float64 sums of the ±1 products times ``magnitude``, zero padding
        skipped."""
        batch, height, width, words = packed.shape
        out_channels = weight_rows.shape[1]
        sums = np.empty((batch, height, width, out_channels), np.float64)
        mismatches = np.empty(out_channels, np.uint64)
        for b in range(batch):
            for y in range(height):
                for x in range(width):
                    mismatches[:] = 0
                    taps = 0
                    for dy in range(kernel_size):
                        source_y = y + dy - padding
                        for dx in range(kernel_size):
                            source_x = x + dx - padding
                            if 0 <= source_y < height and 0 <= source_x < width:
                                taps += 1
                                row = (dy * kernel_size + dx) * words
                                for w in range(words):
                                    bits = packed[b, source_y, source_x, w]
                                    weights = weight_rows[row + w]
                                    for o in range(out_channels):
                                        mismatches[o] += popcount(bits ^ weights[o])
                    products = taps * channels
                    for o in range(out_channels):
                        sums[b, y, x, o] = (products - 2 * np.int64(mismatches[o])) * magnitude
        return sums

    return pack, sign_conv


class SignConv:
    """conv(x, W) for ±1 weights ``W`` (out, in, k, k) and inputs whose every value is ±``input_magnitude``."""

    def __init__(self, weights: torch.Tensor, padding: int, input_magnitude: float):
        if not available():
            raise RuntimeError("the XNOR kernels need numba (pip install bbcodec[fast])")
        self._pack, self._sign_conv = _kernels()
        out_channels, self.channels, self.kernel_size, _ = weights.shape
        packed = self._pack(np.ascontiguousarray(weights.double().numpy()))  # (out, k, k, words)
        self.weight_rows = np.ascontiguousarray(packed.reshape(out_channels, -1).T)
        self.padding, self.input_magnitude = padding, input_magnitude

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The sums as a float64 (batch, out, height, width) view, in units of the input."""
        packed = self._pack(x.detach().cpu().numpy())
        sums = self._sign_conv(packed, self.weight_rows, self.channels, self.kernel_size, self.padding,
                          self.input_magnitude)
        return torch.from_numpy(sums).permute(0, 3, 1, 2)
