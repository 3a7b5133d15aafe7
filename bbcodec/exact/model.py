"""Exact integer inference of a trained MarkovVAE: the same bits on every device.

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

The distributions handed to the coders are the ordinary ones
(:mod:`bbcodec.distributions`) with parameters that are exact
functions of integers, and for logistic pixels the exact table builder.
"""
from __future__ import annotations

import math
import weakref

import numpy as np
import torch
import torch.nn.functional as F

from bbcodec.distributions import PIXEL_LEVELS, DiscretizedLaplace, GridGaussian
from bbcodec.errors import BBCodecError
from bbcodec.exact.logistic import ExactDiscretizedLogistic
from bbcodec.exact.tables import EXP, INPUT_BITS, SOFTPLUS, TANH, lookup

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
    an input can be. The output is in units of 2**-ACT_BITS.
    """

    def __init__(self, conv, in_unit: float, in_limit: int):
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
        # one (out, in) matrix per kernel position, in float64 and float32
        self.taps = self.weights.permute(2, 3, 0, 1).reshape(-1, *weights.shape[:2]).contiguous()
        self.taps32 = self.taps.float()
        self.row_l1 = float(np.abs(weights).reshape(len(weights), -1).sum(axis=1).max())
        self.multiplier = torch.from_numpy(multiplier).view(1, -1, 1, 1)
        self.offset = torch.from_numpy(offset).view(1, -1, 1, 1)

    def to(self, device) -> "ExactConv":
        self.taps, self.taps32, self.multiplier, self.offset = (
            t.to(device) for t in (self.taps, self.taps32, self.multiplier, self.offset))
        return self

    def _sums(self, x: torch.Tensor) -> torch.Tensor:
        """The integer sums conv(x, W), exact.

        In float64 every sum is exact (construction bounds them below 2**52).
        On the CPU, when this input's sums are provably below 2**24, float32
        gives the same integers faster; on a GPU float32 is avoided, since
        TF32 may be enabled behind its back.

        A k x k convolution is the sum of k*k matrix products, one per kernel
        position, each on a shifted window of the zero-padded input. With the
        padded rows laid end to end, a window is one contiguous stretch of
        them (it also covers the padding columns between rows, whose results
        are dropped), so no input is copied.
        """
        batch, channels, height, width = x.shape
        fast = x.device.type == "cpu" and float(x.abs().max()) * self.row_l1 < FLOAT32_EXACT
        taps = self.taps32 if fast else self.taps
        x = x.float() if fast else x
        if self.kernel_size == 1:
            return torch.matmul(taps[0], x.reshape(batch, channels, -1)).double().view(batch, -1, height, width)
        k, pad = self.kernel_size, self.padding
        padded_width = width + 2 * pad
        rows = F.pad(x, (pad, pad, pad, pad)).reshape(batch, channels, -1)
        length = (height - 1) * padded_width + width     # from the first to the last output position
        sums = torch.zeros(batch, len(taps[0]), length, dtype=x.dtype, device=x.device)
        for position, tap in enumerate(taps):
            start = (position // k) * padded_width + position % k
            sums.baddbmm_(tap.expand(batch, -1, -1), rows[:, :, start:start + length])
        sums = F.pad(sums, (0, height * padded_width - length)).view(batch, -1, height, padded_width)
        return sums[..., :width].double()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        sums = self._sums(x)   # a new tensor: rescaled in place
        return sums.mul_(self.multiplier).add_(self.offset).mul_(2.0 ** -self.shift).floor_().clamp_(-ACT_LIMIT, ACT_LIMIT)


def exact_elu(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, lookup("elu_negative", x))


def exact_sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype) * 2.0 ** ACT_BITS


class ExactConditionalNet:
    """:class:`~bbcodec.models.markov_vae.ConditionalNet` on integers."""

    def __init__(self, net, in_unit: float, in_limit: int, binary_activations: bool):
        self.fold, self.unfold = net.fold, net.unfold
        self.stem = ExactConv(net.stem, in_unit, in_limit)
        self.blocks = [(ExactConv(b.conv1, 2.0 ** -ACT_BITS, ACT_LIMIT), ExactConv(b.conv2, 2.0 ** -ACT_BITS, ACT_LIMIT))
                       for b in net.blocks]
        self.head = ExactConv(net.head, 2.0 ** -ACT_BITS, ACT_LIMIT)
        self.block_activation = exact_sign if binary_activations else exact_elu

    def to(self, device) -> "ExactConditionalNet":
        for conv in self._convs():
            conv.to(device)
        return self

    def _convs(self):
        yield self.stem
        for pair in self.blocks:
            yield from pair
        yield self.head

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold > 1:
            x = F.pixel_unshuffle(x, self.fold)
        h = self.stem(x)
        act = self.block_activation
        for conv1, conv2 in self.blocks:
            h = (h + conv2(act(conv1(act(h))))).clamp(-ACT_LIMIT, ACT_LIMIT)
        h = self.head(exact_elu(h))
        return F.pixel_shuffle(h, self.unfold) if self.unfold > 1 else h


def _from_units(values: torch.Tensor, bits: int) -> torch.Tensor:
    return values * 2.0 ** -bits


class ExactMarkovVAE:
    """A trained :class:`~bbcodec.models.markov_vae.MarkovVAE`, computed exactly (see module docstring).

    It offers the interface the coders use (``depth``, ``posterior``,
    ``conditional``, ``top_prior``, ``latent_shape``, ``grey_channel``,
    ``config``, ``device``), so any coder runs on it unchanged, with either
    pixel likelihood.
    """

    def __init__(self, model):
        config = model.config
        self.model_config = config
        self.grid = config.grid
        latent = (self.grid.step, self.grid.max_index)
        binary_activations = config.binary_activations
        self.posteriors = [ExactConditionalNet(model.posteriors[0], PIXEL_UNIT, PIXEL_LEVELS - 1, binary_activations)]
        self.posteriors += [ExactConditionalNet(net, *latent, binary_activations) for net in model.posteriors[1:]]
        self.conditionals = [ExactConditionalNet(net, *latent, binary_activations) for net in model.conditionals]
        self._device = torch.device("cpu")
        self._float_model = model
        self.max_images = None  # run the networks on at most this many images at a time (memory)

    @property
    def config(self):
        return self.model_config

    @property
    def depth(self) -> int:
        return self.model_config.latent_layers

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def grey_channel(self) -> int:
        return self._float_model.grey_channel

    def latent_shape(self, image_shape):
        return self._float_model.latent_shape(image_shape)

    def top_prior(self, like: torch.Tensor) -> GridGaussian:
        return self._float_model.top_prior(like)

    def to(self, device) -> "ExactMarkovVAE":
        self._device = torch.device(device)
        for net in self.posteriors + self.conditionals:
            net.to(self._device)
        return self

    # -- inputs as integers ------------------------------------------------------
    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.to(torch.float64) * 2.0 - (PIXEL_LEVELS - 1)
        stride = self.model_config.stride
        pad_h, pad_w = -pixels.shape[2] % stride, -pixels.shape[3] % stride
        if pad_h or pad_w:
            pixels = F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate")
        return pixels

    def _grid_index(self, z: torch.Tensor) -> torch.Tensor:
        return torch.round(z.to(torch.float64) / self.grid.step)

    # -- distributions with exact parameters ---------------------------------------
    def _gaussian(self, params: torch.Tensor) -> GridGaussian:
        mean, raw_std = params.chunk(2, dim=1)
        beyond = raw_std > SOFTPLUS.hi                 # softplus(x) = x there, in these units
        softplus = torch.where(beyond, raw_std * 2.0 ** (SOFTPLUS.output_bits - ACT_BITS), lookup("softplus", raw_std))
        std = _from_units(softplus, SOFTPLUS.output_bits) + self.model_config.min_std
        return GridGaussian(_from_units(mean, ACT_BITS), std, self.grid)

    def _run(self, net: ExactConditionalNet, inputs: torch.Tensor) -> torch.Tensor:
        """``net(inputs)``; every image's result is the same whatever the split into parts."""
        if not self.max_images or len(inputs) <= self.max_images:
            return net(inputs)
        return torch.cat([net(part) for part in inputs.split(self.max_images)])

    def posterior(self, layer: int, below: torch.Tensor) -> GridGaussian:
        inputs = self._pixels(below) if layer == 0 else self._grid_index(below)
        return self._gaussian(self._run(self.posteriors[layer], inputs))

    def conditional(self, layer: int, z: torch.Tensor):
        params = self._run(self.conditionals[layer], self._grid_index(z))
        if layer > 0:
            return self._gaussian(params)
        c = self.model_config.image_channels
        if self.model_config.pixel_distribution == "logistic":
            return ExactDiscretizedLogistic(params[:, :c], lookup("exp", params[:, c:2 * c]))
        mean = _from_units(params[:, :c], ACT_BITS)
        scale = _from_units(lookup("exp", params[:, c:2 * c]), EXP.output_bits)
        weights = _from_units(lookup("tanh", params[:, 2 * c:]), TANH.output_bits) if self.model_config.channel_coupling else None
        return DiscretizedLaplace(mean, scale, weights)


_EXACT_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def exact_model(model) -> ExactMarkovVAE:
    """The exact version of ``model`` on the model's device, built once per model object."""
    exact = _EXACT_MODELS.get(model)
    if exact is None:
        exact = _EXACT_MODELS[model] = ExactMarkovVAE(model)
    return exact.to(model.device)
