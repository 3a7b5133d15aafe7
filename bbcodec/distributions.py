"""Distributions that the model trains with and the ANS coder codes with.

Each distribution serves both sides from one object, so that the coder codes
exactly what the model was trained on:

* training: ``log_prob`` (and ``rsample`` for latents);
* coding: ``push(ans, value)`` and ``pop(ans)`` on an :class:`~bbcodec.coding.ans.AnsStack`;
* drawing samples of a model (:mod:`bbcodec.sampling`): ``rsample(generator)`` for latents and
  ``sample(generator)`` for pixels, uint8 levels drawn as ``pop`` would decode them.

:class:`GridGaussian` is a diagonal Gaussian over a continuous latent; for
coding it is discretized on a uniform grid of step ``2**-grid_bits`` clipped to
``[-bound, bound]`` (constriction's ``QuantizedGaussian`` on the integer grid
index, with leaky tails so every grid point stays codable). Bits-back coding
needs this discretization (Townsend et al. 2019, section 2.5.1): with a grid
finer than the posterior's width the discretized log-ratio approaches the
continuous one and the coded rate approaches the −ELBO.

:class:`DiscretizedLogistic` is the pixel likelihood of PixelCNN++ and
Bit-Swap: a logistic per sub-pixel integrated over the 256 bins of an 8-bit
value, with the outer bins absorbing the tails. Its probability table for
coding and its log-probability for training come from the same function.
Building a 256-entry table per sub-pixel is slow on large images, so
:class:`DiscretizedLaplace` offers a family that constriction codes natively
(``QuantizedLaplace``, whose outer bins also absorb the tails).
"""
from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np
import torch
import torch.nn.functional as F

from bbcodec.neighbour_copy import copy_pyramid

PIXEL_LEVELS = 256
OUTER_EDGE = 1e4
TABLE_CHUNK = 1 << 14  # sub-pixels per probability table (16384 x 256 float64 = 32 MiB)


def _noise(like: torch.Tensor, generator: torch.Generator | None, draw=torch.randn) -> torch.Tensor:
    """``draw`` (``torch.randn`` or ``torch.rand``) shaped like ``like``, from ``generator`` (the global one if
    None). The numbers are drawn on the generator's device, then moved to ``like``'s, so that one seed gives
    the same noise wherever the model runs."""
    device = generator.device if generator is not None else like.device
    return draw(like.shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


def _open_uniform(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform noise in (0, 1) shaped like ``like``: ``torch.rand`` can give 0, where an inverse CDF is
    infinite (it never gives 1)."""
    return _noise(like, generator, torch.rand).clamp_min(torch.finfo(like.dtype).tiny)


def _nearest_level(value: torch.Tensor) -> torch.Tensor:
    """The pixel level (0..255, uint8) whose bin holds ``value``, in pixel units: the nearest one, the outer
    levels taking everything beyond them, as the outer bins of both pixel distributions do."""
    return torch.round(value).clamp(0, PIXEL_LEVELS - 1).to(torch.uint8)


def _to_pixel_units(value: torch.Tensor) -> torch.Tensor:
    """A value in the model's [-1, 1] pixel units in units of pixel levels (level k at k)."""
    return (value + 1.0) * ((PIXEL_LEVELS - 1) / 2.0)


@dataclass(frozen=True)
class LatentGrid:
    """The uniform grid on which latents are coded: step 2**-bits, values in [-bound, bound].

    The bound matters as much as the step. A posterior whose mass lies beyond
    the bound is clipped onto the outer grid points, where a pop gives back
    far fewer bits than the −ELBO counts: with [-4, 4] the shipped MNIST model
    coded a chain 24% above its −ELBO (its first two layers put 4-7% of their
    posteriors within three standard deviations of the bound), and [-8, 8]
    brought it to the −ELBO (bench/README.md). Too many grid points hurt too:
    constriction gives every grid point at least the smallest representable
    probability (2**-24), so a pop lands on a uniformly random grid point with
    probability about (number of points) * 2**-24; such a latent is far from
    anything the model expects, and the layers below it then cost many bits
    (on the CIFAR benchmark model [-8, 8] at step 2**-8, 4097 points, costs
    25% more: bench/core_rates.py). Step 2**-5 over [-8, 8], 513 points, is
    the default.
    """

    bits: int = 5
    bound: float = 8.0

    @property
    def step(self) -> float:
        return 2.0 ** -self.bits

    @property
    def max_index(self) -> int:
        return int(round(self.bound / self.step))


class GridGaussian:
    """A diagonal Gaussian N(mean, std^2), coded on a :class:`LatentGrid`."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, grid: LatentGrid):
        self.mean, self.std, self.grid = mean, std, grid

    # -- training -----------------------------------------------------------
    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * standard normal noise, from ``generator`` if given (else torch's global one)."""
        noise = torch.randn_like(self.mean) if generator is None else _noise(self.mean, generator)
        return self.mean + self.std * noise

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log density (nats) per element."""
        return -0.5 * ((z - self.mean) / self.std) ** 2 - self.std.log() - 0.5 * np.log(2 * np.pi)

    # -- coding -------------------------------------------------------------
    def _coder_args(self):
        step = self.grid.step
        model = constriction.stream.model.QuantizedGaussian(-self.grid.max_index, self.grid.max_index)
        mean = self.mean.detach().double().flatten().cpu().numpy() / step
        std = self.std.detach().double().flatten().cpu().numpy() / step
        return model, mean, std

    def push(self, ans, z: torch.Tensor) -> None:
        model, mean, std = self._coder_args()
        index = torch.round(z.detach() / self.grid.step).flatten().cpu().numpy().astype(np.int32)
        ans.coder.encode_reverse(index, model, mean, std)

    def pop(self, ans) -> torch.Tensor:
        model, mean, std = self._coder_args()
        index = ans.coder.decode(model, mean, std)
        z = torch.from_numpy(index.astype(np.float32)) * self.grid.step
        return z.view(self.mean.shape).to(self.mean.device)

    def mode(self) -> torch.Tensor:
        """The grid point nearest the mean (the most probable value the coder can give), as :meth:`pop` does."""
        index = torch.round(self.mean.detach().double() / self.grid.step).clamp(-self.grid.max_index,
                                                                                self.grid.max_index)
        return (index.float() * self.grid.step).to(self.mean.device)



def _log_bin_mass(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(upper) - sigmoid(lower)) for lower < upper, stable for any magnitudes.

    Uses sigmoid(u) - sigmoid(l) = sigmoid(u) * sigmoid(-l) * (1 - exp(l - u)).
    """
    return F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(lower - upper))


class DiscretizedLogistic:
    """Per-sub-pixel logistic over 256 levels, pixels mapped to [-1, 1] (PixelCNN++ style).

    Coding builds one 256-entry probability table per sub-pixel
    (:meth:`probability_table`); a subclass that computes the table another
    way (:class:`bbcodec.exact.logistic.ExactDiscretizedLogistic`) inherits
    the cropping and the chunked coding, which only ever go through
    :meth:`parameters` and the constructor.
    """

    def __init__(self, mean: torch.Tensor, log_scale: torch.Tensor):
        self.mean, self.log_scale = mean, log_scale

    def parameters(self) -> tuple[torch.Tensor, ...]:
        """The per-sub-pixel tensors the constructor takes, in its order."""
        return self.mean, self.log_scale

    @staticmethod
    def _edges(levels: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bin edges in [-1, 1] units.

        The outer bins reach to +-OUTER_EDGE, far beyond any mean: in effect to
        infinity, yet finite, so that no gradient becomes 0 * inf.
        """
        half_bin = 1.0 / (PIXEL_LEVELS - 1)
        centre = levels.to(dtype) * (2.0 / (PIXEL_LEVELS - 1)) - 1.0
        lower = torch.where(levels == 0, -OUTER_EDGE, centre - half_bin)
        upper = torch.where(levels == PIXEL_LEVELS - 1, OUTER_EDGE, centre + half_bin)
        return lower, upper

    def _log_mass(self, levels: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        lower, upper = self._edges(levels, mean.dtype)
        inv_scale = torch.exp(-log_scale)
        return _log_bin_mass((lower - mean) * inv_scale, (upper - mean) * inv_scale)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log probability (nats) of integer pixels ``x`` (0..255), per sub-pixel."""
        return self._log_mass(x.long(), self.mean, self.log_scale)

    def probability_table(self) -> np.ndarray:
        """(number of sub-pixels, 256) float64 probabilities, one row per sub-pixel."""
        levels = torch.arange(PIXEL_LEVELS).view(1, -1)
        mean = self.mean.detach().double().flatten().cpu().view(-1, 1)
        log_scale = self.log_scale.detach().double().flatten().cpu().view(-1, 1)
        return torch.exp(self._log_mass(levels, mean, log_scale)).numpy()

    def crop(self, channels: slice, height: int, width: int) -> "DiscretizedLogistic":
        """The same distribution restricted to some channels and the top-left height x width pixels."""
        index = (slice(None), channels, slice(0, height), slice(0, width))
        return type(self)(*(values[index] for values in self.parameters()))

    def _tables(self, last_first: bool = False):
        """(sub-pixel range, its probability table), one table at a time to bound memory."""
        flat = [values.flatten() for values in self.parameters()]  # once, not per chunk
        starts = range(0, self.mean.numel(), TABLE_CHUNK)
        for start in reversed(starts) if last_first else starts:
            chunk = slice(start, start + TABLE_CHUNK)
            yield chunk, type(self)(*(values[chunk] for values in flat)).probability_table()

    def push(self, ans, x: torch.Tensor) -> None:
        # Pushing the chunks last-first, each reversed, writes exactly what one encode_reverse of all would.
        symbols = x.detach().flatten().cpu().numpy().astype(np.int32)
        model = constriction.stream.model.Categorical(perfect=False)
        for chunk, table in self._tables(last_first=True):
            ans.coder.encode_reverse(symbols[chunk], model, table)

    def pop(self, ans) -> torch.Tensor:
        model = constriction.stream.model.Categorical(perfect=False)
        symbols = np.concatenate([ans.coder.decode(model, table) for _, table in self._tables()])
        # a copy, so that the small decoded buffer does not pin the tables' heap space until the image ends
        return torch.from_numpy(symbols.astype(np.uint8)).view(self.mean.shape).clone().to(self.mean.device)

    # -- sampling -----------------------------------------------------------
    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 pixels (0..255) shaped like the mean, each drawn from its sub-pixel's distribution: a
        logistic sample (mean + scale * logit(u)) taken to the level whose bin holds it."""
        u = _open_uniform(self.mean, generator)
        value = self.mean + torch.exp(self.log_scale) * (torch.log(u) - torch.log1p(-u))
        return _nearest_level(_to_pixel_units(value))


def laplace_log_prob(x: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor,
                     top: int = PIXEL_LEVELS - 1) -> torch.Tensor:
    """log P(x) (nats) of integers ``x`` (0..top: pixels, or ranks in a level set) under discretized Laplaces
    of these centres and scales (in the same units), the outer bins absorbing the tails; broadcasts."""
    value = x.to(centre.dtype)
    far = OUTER_EDGE * PIXEL_LEVELS
    lower = torch.where(x == 0, -far, value - 0.5)
    upper = torch.where(x == top, far, value + 0.5)
    return _laplace_log_bin_mass((lower - centre) / scale, (upper - centre) / scale)


SCALE_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0)
"""The edges (pixel units) of the buckets of a Laplace's scale that a per-image calibration can scale apart
(:meth:`DiscretizedLaplace.calibrated`): a model is often over-confident where it predicts small scales and
under-confident where it predicts large ones, or the reverse, on a given image."""

LEVEL_REACH = 3.0
"""How far (in scales, at least 1.5 levels) :func:`level_ranks` looks each side of a centre for the density of a
channel's levels."""


def level_ranks(levels: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A Laplace over pixel values (float64 ``centre`` and ``scale``, pixel units) as a Laplace over the ranks
    of the values a channel takes (``levels``: at least two, sorted, int64): the centre at its place between
    the two levels around it (linearly), the scale times the share of the values within LEVEL_REACH scales of
    the centre and within the set's span that are levels. A channel that takes every other value thus codes
    its pixels in ranks at half the scale instead of spending half its probability on values it never takes.
    Only searches, comparisons, floor, ceil and correctly rounded float64 arithmetic: the same numbers on every
    machine."""
    position = levels.to(centre.dtype)
    i = torch.searchsorted(position, centre).clamp(1, len(levels) - 1)
    low, high = position[i - 1], position[i]
    rank_centre = (i - 1).to(centre.dtype) + (centre - low) / (high - low)
    taken = torch.zeros(PIXEL_LEVELS + 1, dtype=centre.dtype, device=centre.device)
    taken[levels + 1] = 1.0
    below = torch.cumsum(taken, 0)   # below[v]: how many levels are smaller than v (integers: exact sums)
    reach = torch.clamp(LEVEL_REACH * scale, min=1.5)
    first, end = int(levels[0]), int(levels[-1]) + 1   # the span of the set: the outer bins take what is beyond
    start = torch.floor(centre - reach).clamp(first, end).long()
    stop = torch.ceil(centre + reach).clamp(first, end).long()
    share = (below[stop] - below[start]).clamp_min(1.0) / (stop - start).clamp_min(1).to(centre.dtype)
    return rank_centre, scale * share


def _laplace_log_bin_mass(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """log(F(upper) - F(lower)) for the standard Laplace CDF F, lower < upper, stable everywhere.

    Below the mode F(u) = exp(u)/2, above it 1 - F(u) = exp(-u)/2; a bin that
    straddles the mode has mass 1 - exp(lower)/2 - exp(-upper)/2. Each branch
    sees only clamped inputs, so no branch makes an inf or NaN gradient.
    """
    log_gap = torch.log(-torch.expm1(lower - upper))
    below = np.log(0.5) + torch.clamp(upper, max=0.0) + log_gap
    above = np.log(0.5) - torch.clamp(lower, min=0.0) + log_gap
    straddle = torch.log1p(-0.5 * (torch.exp(torch.clamp(lower, max=0.0)) + torch.exp(-torch.clamp(upper, min=0.0))))
    return torch.where(upper <= 0, below, torch.where(lower >= 0, above, straddle))


class DiscretizedLaplace:
    """Per-sub-pixel Laplace over the integers 0..255, the outer bins absorbing the tails.

    This is exactly the family of constriction's ``QuantizedLaplace(0, 255)``
    (checked against its coded probabilities in the tests), so the coder
    evaluates it natively, only at the few CDF values it needs: far faster
    than building a 256-entry table per sub-pixel. Parameters come in the
    model's [-1, 1] pixel units and are converted to pixel units here.

    ``mean`` and ``scale`` are in the model's [-1, 1] units. With
    ``coupling`` weights (three maps a, b, c for an RGB image, each in
    [-1, 1]), the channels are coded in order R, G, B and the mean of a later
    channel moves linearly with the values of the earlier ones, as in
    PixelCNN++ (Salimans et al. 2017): mean_G + a*R, mean_B + b*R + c*G. With
    ``residual`` it moves with their residuals instead, how far each earlier
    channel fell from its own mean: mean_G + a*(R - mean_R), mean_B +
    b*(R - mean_R) + c*(G - mean_G). A photo's residuals are strongly
    correlated across channels (the same edge, the same noise), which the
    weights then capture alone, without the network having to subtract
    a*mean_R from mean_G (the lossless colour transforms of classical
    codecs, such as JPEG XL's or JPEG-LS's G - R, do the same with fixed
    weights). With ``offsets`` (three numbers a', b', c' for the whole map,
    the per-image calibration of :mod:`bbcodec.coding.calibration`) each
    later channel's mean also moves with the earlier channels' residuals from
    the means above: + a'*(R - mean_R) for G, + b'*(R - mean_R) +
    c'*(G - mean_G) for B. The encoder and the decoder compute each channel's
    mean with the same call (:meth:`centre`) on the same values. With
    ``level_sets`` (one entry a channel: the sorted int64 values the channel
    takes in the image, or None for all 256; see
    :mod:`bbcodec.coding.level_sets`), a channel's pixels are coded as their
    ranks among its levels (:func:`level_ranks`). With ``shift`` (pixel units, shaped like the mean: the error
    feedback of :mod:`bbcodec.error_feedback`) each channel's centre moves by its sub-pixel's shift, after
    the offsets. The network's transforms (exp of a
    log-scale, tanh of the coupling) are the model's business, so that the
    exact path (:mod:`bbcodec.exact`) can supply its own.
    """

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, coupling: torch.Tensor | None = None,
                 residual: bool = False, offsets: tuple[float, float, float] | None = None,
                 level_sets: tuple[torch.Tensor | None, ...] | None = None, shift: torch.Tensor | None = None):
        self.mean, self.scale, self.coupling, self.residual = mean, scale, coupling, residual
        self.offsets, self.level_sets, self.shift = offsets, level_sets, shift

    def _with(self, **changes) -> "DiscretizedLaplace":
        """The same distribution with some constructor arguments changed."""
        fields = dict(mean=self.mean, scale=self.scale, coupling=self.coupling, residual=self.residual,
                      offsets=self.offsets, level_sets=self.level_sets, shift=self.shift)
        return DiscretizedLaplace(**{**fields, **changes})

    def restricted(self, level_sets: tuple[torch.Tensor | None, ...]) -> "DiscretizedLaplace":
        """The same distribution coding each channel's pixels among its level set (see the class doc)."""
        if len(level_sets) != self.mean.shape[1]:
            raise ValueError(f"level sets for {len(level_sets)} channels, a likelihood of {self.mean.shape[1]}")
        return self._with(level_sets=tuple(level_sets))

    def _level_set(self, channel: int) -> torch.Tensor | None:
        return self.level_sets[channel] if self.level_sets is not None else None

    def _coded_as(self, channel: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(centres, scales) of ``channel`` given the earlier channels of ``x``, in the units the coder codes
        it in (pixel values, or ranks in its level set), and the top symbol (255, or the number of levels - 1)."""
        centre, scale = self.centre(channel, x), self.pixel_scale()[:, channel]
        levels = self._level_set(channel)
        if levels is None:
            return centre, scale, PIXEL_LEVELS - 1
        if len(levels) == 1:
            return centre, scale, 0
        return *level_ranks(levels.to(centre.device), centre.double(), scale.double()), len(levels) - 1

    def _symbols(self, channel: int, values: torch.Tensor) -> torch.Tensor:
        """``channel``'s pixel ``values`` as the coder's symbols: themselves, or their ranks in the level set
        (a ValueError for a value outside it)."""
        levels = self._level_set(channel)
        if levels is None:
            return values.long()
        levels = levels.to(values.device)
        ranks = torch.searchsorted(levels, values.long()).clamp(max=len(levels) - 1)
        if not torch.equal(levels[ranks], values.long()):
            raise ValueError(f"a pixel value outside channel {channel}'s level set")
        return ranks

    def _values(self, channel: int, symbols: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`_symbols`."""
        levels = self._level_set(channel)
        return symbols if levels is None else levels.to(symbols.device)[symbols.long()]

    def centre(self, channel: int, x: torch.Tensor) -> torch.Tensor:
        """Mean of ``channel`` in pixel units, given the earlier channels of ``x``."""
        centre = self.model_centre(channel, x)
        if self.offsets is not None:
            for earlier in range(channel):
                weight = self.offsets[(channel - 1) * channel // 2 + earlier]
                centre = centre + weight * (x[:, earlier].to(centre.dtype) - self.model_centre(earlier, x))
        if self.shift is not None:
            centre = centre + self.shift[:, channel]
        return centre

    def model_centre(self, channel: int, x: torch.Tensor) -> torch.Tensor:
        """The model's mean of ``channel`` in pixel units, given the earlier channels of ``x``."""
        mean = self.mean[:, channel]
        if self.coupling is not None and channel > 0:
            earlier = x[:, :channel].to(mean.dtype) * (2.0 / (PIXEL_LEVELS - 1)) - 1.0
            if self.residual:
                earlier = earlier - self.mean[:, :channel]
            weights = self.coupling[:, (channel - 1) * channel // 2:][:, :channel]
            mean = mean + (weights * earlier).sum(dim=1)
        return _to_pixel_units(mean)

    def pixel_scale(self) -> torch.Tensor:
        """The scales in pixel units."""
        return self.scale * ((PIXEL_LEVELS - 1) / 2.0)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log probability (nats) of integer pixels ``x`` (0..255), per sub-pixel (as coded: among the level
        sets, where there are some)."""
        if self.level_sets is None:
            centre = torch.stack([self.centre(c, x) for c in range(self.mean.shape[1])], dim=1)
            return laplace_log_prob(x, centre, self.pixel_scale())
        return torch.stack([self.channel_log_prob(c, x[:, c], self.centre(c, x), self.pixel_scale()[:, c])
                            for c in range(self.mean.shape[1])], dim=1)

    def channel_log_prob(self, channel: int, values: torch.Tensor, centre: torch.Tensor,
                         scale: torch.Tensor) -> torch.Tensor:
        """log P (nats) of ``channel``'s pixel ``values`` under Laplaces of these centres and scales (pixel
        units; broadcasts), as this distribution codes the channel: among its level set, if it has one."""
        levels = self._level_set(channel)
        if levels is None:
            return laplace_log_prob(values, centre, scale)
        if len(levels) == 1:
            return torch.zeros(torch.broadcast_shapes(values.shape, centre.shape, scale.shape), dtype=torch.float64)
        rank_centre, rank_scale = level_ranks(levels.to(centre.device), centre.double(), scale.double())
        return laplace_log_prob(self._symbols(channel, values), rank_centre, rank_scale, len(levels) - 1)

    def crop(self, channels: slice, height: int, width: int) -> "DiscretizedLaplace":
        """Some channels and the top-left pixels; a single channel comes without coupling."""
        index = (slice(None), channels, slice(0, height), slice(0, width))
        whole = channels.stop - channels.start == self.mean.shape[1]
        coupling = self.coupling[:, :, :height, :width] if self.coupling is not None and whole else None
        return self._with(mean=self.mean[index], scale=self.scale[index], coupling=coupling,
                          offsets=self.offsets if whole else None,
                          level_sets=self.level_sets[channels] if self.level_sets is not None else None,
                          shift=self.shift[index] if self.shift is not None else None)

    def every_other(self, row: int, column: int) -> "DiscretizedLaplace":
        """The distribution of the pixels (row + 2i, column + 2j): one phase of a 2x2 polyphase split."""
        index = (slice(None), slice(None), slice(row, None, 2), slice(column, None, 2))
        coupling = self.coupling[index] if self.coupling is not None else None
        shift = self.shift[index] if self.shift is not None else None
        return self._with(mean=self.mean[index], scale=self.scale[index], coupling=coupling, shift=shift)

    # -- per-image calibration (bbcodec/coding/calibration.py) --------------------
    def calibrated(self, rows: list[tuple]):
        """The same distribution with each channel's scale multiplied by ``rows[0][0]`` (one factor a channel)
        and the residual offsets ``rows[0][1]`` (see the class doc; None: none). One row (factors, offsets, copy
        weights, bucket factors) for its one coding step; copy weights not all 0 code its pixels in the order of
        a :class:`~bbcodec.neighbour_copy.CopyPyramid`, each able to copy the pixels decoded before it; bucket
        factors (None, or one factor for each bucket of :data:`SCALE_BUCKETS` of each channel) then multiply
        each scale by its bucket's factor. The row's fifth entry, error feedback (:mod:`bbcodec.error_feedback`),
        must be None: these pixels see no decoded pixel."""
        if len(rows) != 1:
            raise ValueError(f"a calibration of {len(rows)} steps for a likelihood of one")
        factors, offsets, copy, buckets, feedback = rows[0]
        if feedback is not None:
            raise ValueError("error feedback for pixels that see no decoded pixel")
        column = torch.tensor(factors, dtype=self.scale.dtype, device=self.scale.device).view(1, -1, 1, 1)
        calibrated = self._with(scale=self.scale * column, offsets=offsets)
        if buckets is not None:
            calibrated = calibrated._with(scale=calibrated.scale * calibrated.bucket_factors(buckets))
        return copy_pyramid(calibrated, copy) if copy is not None and any(copy) else calibrated

    def moved(self, shift: torch.Tensor | None, factors: torch.Tensor) -> "DiscretizedLaplace":
        """The same distribution with each sub-pixel's centre moved by ``shift`` (pixel units; None: not moved)
        and its scale multiplied by ``factors`` (dyadic: exact products); both shaped like the mean."""
        if shift is not None and self.shift is not None:
            shift = self.shift + shift
        return self._with(scale=self.scale * factors, shift=self.shift if shift is None else shift)

    def scale_buckets(self) -> torch.Tensor:
        """Each scale's bucket of :data:`SCALE_BUCKETS` (0 below the first edge), shaped like the scales."""
        edges = torch.tensor(SCALE_BUCKETS, dtype=self.scale.dtype, device=self.scale.device)
        return torch.bucketize(self.pixel_scale().contiguous(), edges)

    def bucket_factors(self, buckets: tuple[tuple[float, ...], ...], which: torch.Tensor | None = None) -> torch.Tensor:
        """The factor of each sub-pixel's bucket, one row of factors a channel (dyadic fractions: exact products):
        the bucket of its scale (:meth:`scale_buckets`), or ``which`` (bucket indices that broadcast to the
        scales: the error feedback's energy buckets)."""
        table = torch.tensor(buckets, dtype=self.scale.dtype, device=self.scale.device)   # (channels, buckets)
        channel = torch.arange(self.scale.shape[1], device=self.scale.device).view(1, -1, 1, 1)
        return table[channel, self.scale_buckets() if which is None else which]

    def terms(self, x: torch.Tensor) -> list[tuple["DiscretizedLaplace", torch.Tensor]]:
        """The (distribution, values) of each coding step of ``x``: here one, itself."""
        return [(self, x)]

    @staticmethod
    def _numpy(values: torch.Tensor) -> np.ndarray:
        return values.detach().double().flatten().cpu().numpy()

    def push(self, ans, x: torch.Tensor) -> None:
        for c in reversed(range(self.mean.shape[1])):  # last channel first: the decoder pops R, G, B
            self.push_channel(ans, x, c)

    def pop(self, ans) -> torch.Tensor:
        x = torch.zeros(self.mean.shape, dtype=torch.uint8, device=self.mean.device)
        for c in range(self.mean.shape[1]):
            self.pop_channel(ans, x, c)
        return x

    def push_channel(self, ans, x: torch.Tensor, channel: int, where: torch.Tensor | None = None) -> None:
        """Push ``channel`` of ``x`` (its sub-pixels where the flat mask ``where`` holds; all if None)."""
        centres, scales, top = self._coded_as(channel, x)
        if top == 0:
            return   # a channel of one level: nothing to code
        symbols = self._symbols(channel, x[:, channel]).flatten().cpu().numpy()
        centres, scales = self._numpy(centres), self._numpy(scales)
        if where is not None:
            where = where.cpu().numpy()
            symbols, centres, scales = symbols[where], centres[where], scales[where]
        ans.coder.encode_reverse(symbols.astype(np.int32), self._coder_model(top), centres, scales)

    def pop_channel(self, ans, x: torch.Tensor, channel: int, where: torch.Tensor | None = None) -> None:
        """Pop ``channel`` into ``x`` (its sub-pixels where the flat mask ``where`` holds; all if None), the
        channels before it already popped."""
        centres, scales, top = self._coded_as(channel, x)
        plane = x[:, channel]   # a view: writes land in x
        if where is None:
            where = torch.ones(plane.numel(), dtype=torch.bool)
        if top == 0:
            symbols = torch.zeros(int(where.sum()), dtype=torch.long)
        else:
            mask = where.cpu().numpy()
            decoded = ans.coder.decode(self._coder_model(top), self._numpy(centres)[mask], self._numpy(scales)[mask])
            symbols = torch.from_numpy(decoded.astype(np.int64))
        values = self._values(channel, symbols.to(x.device))
        plane[where.view(plane.shape).to(x.device)] = values.to(torch.uint8)

    @staticmethod
    def _coder_model(top: int = PIXEL_LEVELS - 1):
        return constriction.stream.model.QuantizedLaplace(0, top)

    # -- sampling -----------------------------------------------------------
    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 pixels (0..255) shaped like the mean, drawn channel by channel in the order :meth:`pop`
        decodes them, each channel's mean moved by the channels drawn before it (:meth:`centre`): a Laplace
        sample by the inverse CDF, taken to the level whose bin holds it."""
        u = _open_uniform(self.mean, generator)
        # the inverse CDF of the standard Laplace: log(2u) below the median, -log(2(1 - u)) above it
        noise = torch.where(u < 0.5, torch.log(2.0 * u), -torch.log(2.0 * (1.0 - u)))
        offset = self.pixel_scale() * noise
        x = torch.zeros(self.mean.shape, dtype=torch.uint8, device=self.mean.device)
        for c in range(self.mean.shape[1]):
            x[:, c] = _nearest_level(self.centre(c, x) + offset[:, c])
        return x



PIXEL_DISTRIBUTIONS = {"logistic": DiscretizedLogistic, "laplace": DiscretizedLaplace}
