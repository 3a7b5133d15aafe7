"""Error feedback: each polyphase step's Laplace moved and widened by how far its decoded neighbours fell from their
own predictions.

CALIC (Wu & Memon, IEEE Trans. Communications 1997) corrects each pixel's
coding with the errors of the pixels coded before it: the *error energy*
around a pixel (how large its neighbours' errors were) picks the statistics
that code it, and *bias cancellation* adds the mean error seen in its
context to its prediction. The polyphase pixel likelihood
(:mod:`bbcodec.models.polyphase_vae`) predicts each step's pixels from the
pixels decoded before it but never sees how well it predicted those, and its
errors are correlated in space (an edge, a texture the model under-rates):
on photos 041-049 the neighbours' errors say something about a pixel's own.

For every step but the first, each sub-pixel gets two features from the
residuals r = x - centre of its decoded neighbours (pixel units; each
neighbour's centre and scale as its own step coded it):

* energy: the mean of |r| / scale over its neighbours (:data:`AROUND`) and
  the coded channels, about 1 where the model is calibrated; each channel's
  scales are multiplied by a factor for each bucket of
  :data:`ENERGY_EDGES` of the energy;
* bias: the mean of its channel's r over its neighbours at its own level
  (:data:`SAME_LEVEL`: phase 2's four diagonal phase-1 pixels, phase 3's
  phase-1 and phase-2 pixels above, below, left and right; phase 1 has
  none), which moves the channel's centre by a weight of :data:`BIASES`
  times it.

The encoder chooses the weights and factors for each image, step and
channel on a sample of tiles and stores them with the per-image calibration
(:mod:`bbcodec.coding.calibration`). Exact: the features take only
subtractions, absolute values, divisions and sums in a fixed order of
float64 numbers that are the same on every machine, and comparisons; the
weights and factors are dyadic.
"""
from __future__ import annotations

import torch

from bbcodec.phases import NEAREST_NEIGHBOURS, neighbours

ENERGY_EDGES = (0.375, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
"""The edges of the buckets of the neighbours' energy, each bucket with a factor on the scales of every channel."""
ENERGY_BUCKETS = len(ENERGY_EDGES) + 1
BIASES = tuple(k / 16 for k in range(-8, 17))
"""The weights on the same-level neighbours' mean residual (index: one byte)."""
SAME_LEVEL = {1: (), 2: ((1, 0, 0), (1, 0, -1), (1, 1, 0), (1, 1, -1)), 3: tuple(NEAREST_NEIGHBOURS[3])}
"""Each phase's decoded neighbours at its own level, (earlier phase, row offset, column offset) as in
:data:`~bbcodec.phases.NEAREST_NEIGHBOURS`."""
AROUND = {1: tuple(NEAREST_NEIGHBOURS[1]), 2: tuple(NEAREST_NEIGHBOURS[2]) + SAME_LEVEL[2],
          3: SAME_LEVEL[3] + ((0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1))}
"""Each phase's decoded neighbours whose energy it takes: the same level's and the nearest phase-0 pixels."""


def residuals(distribution, values: torch.Tensor) -> torch.Tensor:
    """(B, 1 + C, h, w) float64: the mean over the channels of |r| / scale, then each channel's residual r of the
    pixels ``values`` (B, C, h, w) from the centres of the Laplace of ``distribution`` (a Laplace, or copy or
    escape around one) that coded them."""
    laplace = getattr(distribution, "laplace", distribution)
    scale = laplace.pixel_scale().double()
    signed = [values[:, c].double() - laplace.centre(c, values).double() for c in range(values.shape[1])]
    energy = _mean([r.abs() / scale[:, c] for c, r in enumerate(signed)])
    return torch.stack([energy] + signed, dim=1)


def features(earlier: list[torch.Tensor], phase: int, height: int,
             width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Phase ``phase``'s (energy (B, 1, h, w), bias (B, C, h, w) or None for a phase without same-level
    neighbours) from the :func:`residuals` of the ``earlier`` phases of its level (zeros past their pixels), cut to
    its top-left ``height`` x ``width``."""
    stacked, channels = torch.cat(earlier, dim=1), earlier[0].shape[1]
    energy = _mean([near[:, :1] for near in neighbours(stacked, AROUND[phase], channels)])
    same = neighbours(stacked, SAME_LEVEL[phase], channels)
    bias = _mean([near[:, 1:] for near in same])[..., :height, :width] if same else None
    return energy[..., :height, :width], bias


def apply(distribution, energy: torch.Tensor, bias: torch.Tensor | None, row: tuple):
    """``distribution`` (a Laplace, or copy or escape around one) with its Laplace's centres moved by the bias weights
    and its scales multiplied by the energy buckets' factors of ``row`` (one weight and one tuple of
    :data:`ENERGY_BUCKETS` factors for each of its channels)."""
    weights, factors = row
    laplace = getattr(distribution, "laplace", distribution)
    device = laplace.scale.device
    shift = None if bias is None else bias * torch.tensor(weights, dtype=bias.dtype, device=device).view(1, -1, 1, 1)
    moved = laplace.moved(shift, laplace.bucket_factors(factors, energy_buckets(energy)))
    return distribution.escaping_to(moved) if distribution is not laplace else moved


def energy_buckets(energy: torch.Tensor) -> torch.Tensor:
    """Each sub-pixel's bucket of :data:`ENERGY_EDGES` (0 below the first edge), shaped like ``energy``."""
    return torch.bucketize(energy.contiguous(), torch.tensor(ENERGY_EDGES, dtype=energy.dtype, device=energy.device))


def _mean(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The mean of some tensors, summed in their order (the same rounding on every machine)."""
    total = tensors[0]
    for tensor in tensors[1:]:
        total = total + tensor
    return total / len(tensors)
