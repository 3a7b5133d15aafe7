"""The exact arithmetic backend: a model's own forward code on integers, the same bits on every device.

An entropy decoder needs the encoder's probabilities bit for bit, but float
convolutions sum in an order that depends on the device, the library, the
thread count and the batch shape, and transcendental functions differ in
their last bits between implementations. This module runs the parts of the
model that feed the coder on integers only:

* every activation is an integer in units of ``2**-ACT_BITS``, saturated to
  ``+-ACT_LIMIT``; pixels enter as ``2x - 255`` (units of 1/255) and
  latents as their grid index (units of the grid step);
* a convolution multiplies integer activations by integer weights: the
  ``sign(v)`` of a binary layer (Bird, Kingma & Barber, ICLR 2021: the ±1
  weights are exactly why a BWN network can be computed exactly), or the
  weights of a float layer quantized per output channel to ``WEIGHT_BITS``;
  its per-channel scale and bias become an integer multiplier and offset,
  and the result is rescaled by a power of two and floored;
* ELU, softplus, exp and tanh are lookup tables (:mod:`bbcodec.exact.tables`);
* the logistic pixel likelihood builds its probability tables from integers
  and the exact ``sigmoid`` table (:mod:`bbcodec.exact.logistic`).

The integers are held in float64 tensors. Construction checks that every
sum a layer can form stays below 2**53, where float64 represents every
integer exactly, so a sum has the same value in whatever order a device
adds it up; a convolution is computed as unfold + matrix product, which is
exact under that bound on any BLAS. What remains are elementwise float64
operations on those integers (scaling by powers of two, the pixel mean of
channel coupling), which IEEE 754 rounds the same way everywhere.

:class:`ExactArithmetic` offers these operations under the interface of
:mod:`bbcodec.nn.arithmetic`, so a model whose forward code is written
against that interface runs here unchanged (:class:`InArithmetic` presents it
to the coders). The distributions handed to the coders are the ordinary ones
(:mod:`bbcodec.distributions`) with parameters that are exact functions of
integers, and for logistic pixels the exact table builder.
"""
from __future__ import annotations

import functools
import math
import os
import weakref

import numpy as np
import torch
import torch.nn.functional as F

from bbcodec.distributions import PIXEL_LEVELS, DiscretizedLaplace, GridGaussian
from bbcodec.errors import BBCodecError
from bbcodec.exact import sign_conv
from bbcodec.exact.logistic import ExactDiscretizedLogistic
from bbcodec.exact.tables import ELU_NEGATIVE, EXP, INPUT_BITS, SOFTPLUS, TANH, lookup, table, take_clamped

ACT_BITS = INPUT_BITS            # activations: integers in units of 2**-10 (the tables' input unit)
ACT_LIMIT = 1 << (ACT_BITS + 7)  # |activation| <= 128
WEIGHT_BITS = 12                 # float layers: integer weights in [-2047, 2047] per output channel
SUM_LIMIT = 1 << 52              # every intermediate integer stays below this: exact in float64
FLOAT32_EXACT = 1 << 24          # integers up to this are exact in float32 too
PIXEL_UNIT = 1.0 / 255.0         # the pixel input 2x - 255 means (2x - 255) / 255 in the model's [-1, 1]


class ExactArithmeticError(BBCodecError):
    """A model that the exact path cannot compute (weights too large for exact integer sums)."""


def _channel_norms(v: np.ndarray) -> np.ndarray:
    """||v_c|| per output channel, with correctly rounded sums (math.fsum): the same on every machine."""
    return np.array([math.sqrt(math.fsum((row * row).tolist())) for row in v.reshape(len(v), -1)])


class ExactConv:
    """floor((conv(x, W) * A + B) / 2**shift) on integers, saturated to the activation range.

    ``in_unit`` and ``in_limit``: what one input integer means and how large
    an input can be. The output is in units of 2**-ACT_BITS. ``signs``: the
    layer convolves the signs of its input (binary activations, ±2**ACT_BITS),
    which a binary layer sums with XNOR and popcount
    (:mod:`bbcodec.exact.sign_conv`) where numba is installed: the same
    integers, faster.
    """

    def __init__(self, conv, in_unit: float, in_limit: int, signs: bool = False):
        v = conv.v.detach().cpu().double().numpy()
        gain = conv.g.detach().cpu().double().numpy()
        bias = conv.bias.detach().cpu().double().numpy()
        self.kernel_size, self.padding = conv.kernel_size, conv.padding
        if conv.binary:
            weights = np.where(v >= 0, 1.0, -1.0)
            scale = gain / math.sqrt(conv.fan_in)
        else:
            real = v * (gain / np.maximum(_channel_norms(v), 1e-12)).reshape(-1, 1, 1, 1)
            largest = np.abs(real).reshape(len(real), -1).max(axis=1)
            scale = np.where(largest > 0, largest, 1.0) / (2 ** (WEIGHT_BITS - 1) - 1)
            weights = np.rint(real / scale.reshape(-1, 1, 1, 1))
        unit_scale = np.abs(scale) * in_unit * 2.0 ** ACT_BITS     # output units per unit of the sum
        sum_bound = conv.fan_in * int(np.abs(weights).max()) * in_limit
        product_exponent = math.frexp(sum_bound * float(unit_scale.max()))[1]
        bias_exponent = math.frexp(float(np.abs(bias).max()) * 2.0 ** ACT_BITS)[1]
        self.shift = 51 - max(product_exponent, bias_exponent)
        multiplier = np.rint(scale * in_unit * 2.0 ** (ACT_BITS + self.shift))
        offset = np.rint(bias * 2.0 ** (ACT_BITS + self.shift)) + 2.0 ** (self.shift - 1)
        largest_sum = sum_bound * int(np.abs(multiplier).max()) + int(np.abs(offset).max())
        if self.shift < 1 or largest_sum >= SUM_LIMIT:
            raise ExactArithmeticError("a layer's weights are too large for exact arithmetic")
        self.weights = torch.from_numpy(weights)   # (out, in, k, k) whole numbers
        self.weights32 = self.weights.float()
        # one (out, in) matrix per kernel position (the float64 path)
        self.taps = self.weights.permute(2, 3, 0, 1).reshape(-1, *weights.shape[:2]).contiguous()
        self.row_l1 = float(np.abs(weights).reshape(len(weights), -1).sum(axis=1).max())
        self.multiplier = torch.from_numpy(multiplier).view(1, -1, 1, 1)
        self.offset = torch.from_numpy(offset).view(1, -1, 1, 1)
        # (sums * multiplier + offset) / 2**shift with the power of two folded into both: every product and
        # sum is still an integer below 2**52 times 2**-shift, so exact in float64
        self.scaled_multiplier, self.scaled_offset = self.multiplier * 2.0 ** -self.shift, self.offset * 2.0 ** -self.shift
        self.signs = signs
        self.sign_conv = (sign_conv.SignConv(self.weights, self.padding, 2.0 ** ACT_BITS)
                          if signs and conv.binary and sign_conv.available() else None)

    def to(self, device) -> "ExactConv":
        self.weights32, self.taps, self.scaled_multiplier, self.scaled_offset = (
            t.to(device) for t in (self.weights32, self.taps, self.scaled_multiplier, self.scaled_offset))
        return self

    def _sums(self, x: torch.Tensor) -> torch.Tensor:
        """The integer sums conv(x, W), exact.

        In float64 every sum is exact (construction bounds them below 2**52).
        On the CPU, when this input's sums are provably below 2**24 (every
        partial sum, in whatever order, is at most the sum of the absolute
        products), float32 gives the same integers: there the convolution is
        torch's own float32 one (oneDNN's direct convolution or im2col and a
        matrix product), about twice as fast, with NNPACK switched off (its
        Winograd transforms are not sums of integer products) and only while
        float32 products run in full float32 (:func:`full_float32_products`).
        On a GPU float32 is avoided, since TF32 may be enabled behind its back.

        In float64, a k x k convolution is the sum of k*k matrix products, one
        per kernel position, each on a shifted window of the zero-padded
        input. With the padded rows laid end to end, a window is one
        contiguous stretch of them (it also covers the padding columns between
        rows, whose results are dropped), so no input is copied.
        """
        if self.signs:
            if self.sign_conv is not None and x.device.type == "cpu":
                return self.sign_conv(x)
            x = exact_sign(x)
        if x.device.type == "cpu" and full_float32_products() and _largest(x) * self.row_l1 < FLOAT32_EXACT:
            with torch.backends.nnpack.flags(enabled=False):
                return F.conv2d(x.float(), self.weights32, padding=self.padding).double()
        batch, channels, height, width = x.shape
        taps = self.taps
        if self.kernel_size == 1:
            return torch.matmul(taps[0], x.reshape(batch, channels, -1)).view(batch, -1, height, width)
        k, pad = self.kernel_size, self.padding
        padded_width = width + 2 * pad
        rows = F.pad(x, (pad, pad, pad, pad)).reshape(batch, channels, -1)
        length = (height - 1) * padded_width + width     # from the first to the last output position
        sums = torch.zeros(batch, len(taps[0]), length, dtype=x.dtype, device=x.device)
        for position, tap in enumerate(taps):
            start = (position // k) * padded_width + position % k
            sums.baddbmm_(tap.expand(batch, -1, -1), rows[:, :, start:start + length])
        sums = F.pad(sums, (0, height * padded_width - length)).view(batch, -1, height, padded_width)
        return sums[..., :width]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        sums = torch.addcmul(self.scaled_offset, self._sums(x), self.scaled_multiplier)
        return sums.floor_().clamp_(-ACT_LIMIT, ACT_LIMIT)


def _largest(x: torch.Tensor) -> float:
    """max |x| in one pass (the smallest and largest value together)."""
    low, high = torch.aminmax(x)
    return max(-float(low), float(high))


def full_float32_products() -> bool:
    """Whether float32 products and convolutions run in full float32 in this process. A program may allow
    bfloat16 or TF32 for them (``torch.set_float32_matmul_precision("medium")``, oneDNN's own
    ``torch.backends.mkldnn.matmul/conv.fp32_precision``, or ``ONEDNN_DEFAULT_FPMATH_MODE`` in the
    environment), which CPUs with bfloat16 units then use: the integer sums would no longer be exact, so the
    exact convolutions sum in float64 instead."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    if os.environ.get("ONEDNN_DEFAULT_FPMATH_MODE", "STRICT").upper() not in ("STRICT", ""):
        return False
    mkldnn = getattr(torch.backends, "mkldnn", None)
    return all(getattr(getattr(mkldnn, kind, None), "fp32_precision", "none") in ("none", "ieee")
               for kind in ("matmul", "conv"))


def exact_elu(x: torch.Tensor) -> torch.Tensor:
    """ELU in activation units of an activation (|x| <= ACT_LIMIT: every conv output and residual sum is
    saturated there): one lookup in :func:`_elu_table`, the table of exp(x) - 1 below 0 continued by x itself."""
    return take_clamped(_elu_table(str(x.device)), x, ELU_NEGATIVE.lo, ACT_LIMIT)


@functools.lru_cache(maxsize=None)
def _elu_table(device: str) -> torch.Tensor:
    """ELU at ELU_NEGATIVE.lo .. ACT_LIMIT: the negative half's table (its entry at 0 is 0), then 1 .. ACT_LIMIT."""
    whole = np.concatenate([table("elu_negative"), np.arange(1, ACT_LIMIT + 1)])
    return torch.from_numpy(whole.astype(np.float64)).to(device)


def exact_sign(x: torch.Tensor) -> torch.Tensor:
    """sign(x) (sign(0) = +1) in activation units: +-2**ACT_BITS, in x's dtype."""
    one = x.new_full((), 2.0 ** ACT_BITS)
    return torch.where(x >= 0, one, -one)


def _from_units(values: torch.Tensor, bits: int) -> torch.Tensor:
    return values * 2.0 ** -bits


class ExactArithmetic:
    """The operations of :mod:`bbcodec.nn.arithmetic` on integers (see module docstring).

    Values are whole numbers held in float64: pixels as ``2x - 255`` (units of
    1/255), latents as their grid index, activations in units of
    ``2**-ACT_BITS``. Each convolution layer becomes an :class:`ExactConv`
    the first time it runs, for the units of its input (``source``).
    ``max_images``: run networks on at most this many images at a time
    (memory); every image's result is the same whatever the split.
    """

    name = "exact"

    def __init__(self, grid):
        self.grid = grid
        self.units = {"pixels": (PIXEL_UNIT, PIXEL_LEVELS - 1), "latents": (grid.step, grid.max_index),
                      "hidden": (2.0 ** -ACT_BITS, ACT_LIMIT), "signs": (2.0 ** -ACT_BITS, ACT_LIMIT)}
        self.device = torch.device("cpu")
        self.max_images = None
        self._convs: dict = {}

    def to(self, device) -> "ExactArithmetic":
        self.device = torch.device(device)
        for conv in self._convs.values():
            conv.to(self.device)
        return self

    def exact_conv(self, layer, source: str = "hidden") -> ExactConv:
        """The integer version of a convolution layer fed ``source`` values, built once."""
        conv = self._convs.get((layer, source))
        if conv is None:
            conv = self._convs[layer, source] = ExactConv(layer, *self.units[source], signs=source == "signs")
            conv.to(self.device)
        return conv

    # -- network inputs and operations -----------------------------------------------
    @staticmethod
    def pixels(x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float64) * 2.0 - (PIXEL_LEVELS - 1)

    def latents(self, z: torch.Tensor) -> torch.Tensor:
        return torch.round(z.to(torch.float64) / self.grid.step)

    def conv(self, layer, x: torch.Tensor, source: str = "hidden") -> torch.Tensor:
        return self.exact_conv(layer, source)(x)

    def sign_conv(self, layer, x: torch.Tensor) -> torch.Tensor:
        return self.exact_conv(layer, "signs")(x)

    elu = staticmethod(exact_elu)

    @staticmethod
    def residual(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x + y).clamp(-ACT_LIMIT, ACT_LIMIT)

    def run(self, net, x: torch.Tensor) -> torch.Tensor:
        if not self.max_images or len(x) <= self.max_images:
            return net(x, self)
        return torch.cat([net(part, self) for part in x.split(self.max_images)])

    # -- distributions with exact parameters ----------------------------------------
    @staticmethod
    def gaussian(params: torch.Tensor, min_std: float, grid) -> GridGaussian:
        mean, raw_std = params.chunk(2, dim=1)
        beyond = raw_std > SOFTPLUS.hi                 # softplus(x) = x there, in these units
        softplus = torch.where(beyond, raw_std * 2.0 ** (SOFTPLUS.output_bits - ACT_BITS), lookup("softplus", raw_std))
        std = _from_units(softplus, SOFTPLUS.output_bits) + min_std
        return GridGaussian(_from_units(mean, ACT_BITS), std, grid)

    @staticmethod
    def logistic(mean: torch.Tensor, log_scale: torch.Tensor) -> ExactDiscretizedLogistic:
        return ExactDiscretizedLogistic(mean, lookup("exp", log_scale))

    @staticmethod
    def laplace(mean: torch.Tensor, log_scale: torch.Tensor, coupling: torch.Tensor | None,
                residual: bool = False) -> DiscretizedLaplace:
        scale = _from_units(lookup("exp", log_scale), EXP.output_bits)
        weights = _from_units(lookup("tanh", coupling), TANH.output_bits) if coupling is not None else None
        return DiscretizedLaplace(_from_units(mean, ACT_BITS), scale, weights, residual)


class InArithmetic:
    """A model as the coders see it when it computes in ``ops``: the :class:`~bbcodec.models.family.CodingModel`
    interface, every call passed on with the arithmetic."""

    def __init__(self, model, ops):
        self.model, self.ops = model, ops
        self.depth, self.grey_channel, self.config = model.depth, model.grey_channel, model.config

    @property
    def device(self) -> torch.device:
        return self.ops.device

    @property
    def calibration_presets(self) -> tuple:
        return self.model.calibration_presets

    def to(self, device) -> "InArithmetic":
        self.ops.to(device)
        return self

    def posterior(self, layer: int, below: torch.Tensor):
        return self.model.posterior(layer, below, self.ops)

    def conditional(self, layer: int, z: torch.Tensor):
        return self.model.conditional(layer, z, self.ops)

    def top_prior(self, like: torch.Tensor):
        return self.model.top_prior(like)

    def latent_shape(self, image_shape):
        return self.model.latent_shape(image_shape)


_EXACT_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def exact_model(model, adapter: type = InArithmetic) -> InArithmetic:
    """``model`` in exact arithmetic on the model's device, built once per model object; ``adapter``: how the
    coders see it (:class:`InArithmetic` or a family's subclass with its own coding calls)."""
    exact = _EXACT_MODELS.get(model)
    if exact is None:
        exact = _EXACT_MODELS[model] = adapter(model, ExactArithmetic(model.config.grid))
    return exact.to(model.device)
