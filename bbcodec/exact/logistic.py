"""The discretized logistic pixel likelihood with probability tables computed exactly.

The float :class:`~bbcodec.distributions.DiscretizedLogistic` builds
each sub-pixel's 256 bin probabilities with ``exp`` and ``log`` of floats,
whose last bits differ between CPUs (vectorized kernels, libraries), so a
file coded on one machine would not decode on another. Here the table is a
function of integers and of correctly rounded float64 operations only:

* the network gives the mean as an integer ``m`` in its activation unit,
  ``2**-INPUT_BITS`` (in the model's [-1, 1] pixel units) and the scale as an integer ``s`` in
  units of ``2**-EXP.output_bits`` (``exp`` of the log-scale, from the exact
  ``exp`` table);
* the bin edge between levels k and k+1 is ``(2k - 254) / 255``, so the
  logistic's argument at that edge, ``(edge - mean) / scale``, is
  ``n / (255 s)`` times a power of two, with ``n = (2k - 254) * 2**INPUT_BITS - 255 m``
  an exact integer: one IEEE division, the same everywhere;
* that argument, rounded to 1/64 of the sigmoid table's input unit, is
  looked up in the exact ``sigmoid`` table (:mod:`bbcodec.exact.tables`)
  with linear interpolation in integers between neighbouring entries: the
  cumulative probability at each edge, an integer in units of ``2**-30``.
  (Without the interpolation a broad logistic, whose bins are a few table
  steps wide, would be off by up to a tenth of a bin's mass.)
* a bin's probability is the difference of the cumulative values at its
  edges, the outer bins absorbing the tails as in the float likelihood.

The coder receives these integer weights; constriction rescales them with
the same float64 operations on every machine and gives every level at least
its smallest probability, so a level whose table difference is zero stays
codable. The model's float ``log_prob`` stays the training loss; the rate
cost of this approximation is measured in ``bench/portability.py``.
"""
from __future__ import annotations

import numpy as np
import torch

from bbcodec.distributions import PIXEL_LEVELS, DiscretizedLogistic
from bbcodec.exact.tables import EXP, INPUT_BITS, SIGMOID, table

FINE_BITS = 6  # the sigmoid's argument is rounded to 2**-(INPUT_BITS + FINE_BITS), between table entries

# (2k - 254) * 2**INPUT_BITS for the 255 inner edges: edge k lies between levels k and k+1, at (2k - 254) / 255
_EDGES = (2 * np.arange(PIXEL_LEVELS - 1, dtype=np.float64) - (PIXEL_LEVELS - 1) + 1) * 2.0 ** INPUT_BITS


class ExactDiscretizedLogistic(DiscretizedLogistic):
    """A discretized logistic whose coding tables are exact (see module docstring).

    ``mean``: whole numbers in units of ``2**-INPUT_BITS``; ``scale``: whole
    positive numbers in units of ``2**-EXP.output_bits``; both float64
    tensors of the same shape, one entry per sub-pixel.
    """

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor):
        super().__init__(mean, None)
        self.scale = scale

    def parameters(self) -> tuple[torch.Tensor, ...]:
        return self.mean, self.scale

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("the exact logistic is for coding; train with the model's float likelihood")

    def probability_table(self) -> np.ndarray:
        """(number of sub-pixels, 256) integer bin weights as float64, each row summing to 2**30."""
        mean = self.mean.detach().cpu().double().numpy().reshape(-1, 1)
        scale = self.scale.detach().cpu().double().numpy().reshape(-1, 1)
        numerator = _EDGES - (PIXEL_LEVELS - 1) * mean          # exact: integers below 2**26
        # (edge - mean) / scale = numerator / (255 scale) * 2**(EXP.output_bits - INPUT_BITS): one rounding,
        # and the table's input unit is 2**-INPUT_BITS
        argument = numerator / ((PIXEL_LEVELS - 1) * scale)
        fine = np.floor(argument * 2.0 ** (EXP.output_bits + FINE_BITS) + 0.5)
        fine = np.clip(fine, SIGMOID.lo << FINE_BITS, SIGMOID.hi << FINE_BITS).astype(np.int64) - (SIGMOID.lo << FINE_BITS)
        cumulative = interpolate(table(SIGMOID.name), fine)
        rows = len(cumulative)
        cumulative = np.concatenate([np.zeros((rows, 1), np.int64), cumulative,
                                     np.full((rows, 1), 1 << SIGMOID.output_bits, np.int64)], axis=1)
        return np.diff(cumulative, axis=1).astype(np.float64)


def interpolate(values: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """``values`` at the positions ``fine / 2**FINE_BITS`` (int64, within the table), linearly interpolated
    and floored, in integers: exact, and non-decreasing in ``fine`` where ``values`` is."""
    position, fraction = fine >> FINE_BITS, fine & ((1 << FINE_BITS) - 1)
    low = values[position]
    high = values[np.minimum(position + 1, len(values) - 1)]
    return low + (((high - low) * fraction) >> FINE_BITS)
