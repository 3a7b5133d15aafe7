"""Local bits-back coding: continuous variables carried through a flow on an ANS stack.

Ho, Lohn & Abbeel, "Compression with Flows via Local Bits-Back Coding"
(NeurIPS 2019). A flow maps a variable x to y = f(x) with density
p(x) = p(y) |det df/dx|. Both live on fine uniform grids (x on step
2^-gx, y on 2^-gy; a value is an int64 index n standing for n * 2^-g,
so every value is exact). To go from a known x to y with bits back:

1. pop y from N(f(x), s^2), discretized on y's grid (these bits come back
   later);
2. push x with N(f^-1(y), (s / |f'|)^2), discretized on x's grid.

For small s this costs -log|f'(x)| nats net: the flow's change of volume,
so that coding the last y under the prior makes the total the flow's
-log p(x) (the grids' steps telescope away). The decoder, knowing y, runs
the same two steps backwards: pop x with N(f^-1(y), (s / |f'|)^2), then
push y with N(f(x), s^2), recomputing both distributions from values it
already has. :func:`transport` and :func:`untransport` are that pair.

A step need not be elementwise as long as x can be recovered from y in
groups, each group's mean depending only on y and the groups before it:
an elementwise map is one group, a triangular linear map (an
autoregressive flow) one group per channel (:class:`Triangular`).

Noise and windows. Every Gaussian is coded on its grid within a window
around its mean, and constriction gives every symbol in the window at least
2^-24 of probability. That matters only where the encoder pops (y, and the
prior noise it starts from): there a long window would now and then give a
value far out in the tails, so y's Gaussian has one width, ``NOISE`` steps
of y's grid, and a window of ``POP_SIGMAS`` of it. x's Gaussian is then
NOISE / |f'| steps of x's grid (wide where the map contracts), and the
window where the encoder pushes is ``PUSH_SIGMAS`` of the widest in a call:
its leaked probability costs a fraction of a bit, never a wrong value. A
value outside its window cannot be coded and :class:`LocalBitsBackError`
says so.

The probabilities come from float arithmetic (the flow's networks and
transforms), so a stack coded here decodes where the same float kernels
run (:mod:`bbcodec.portability`).
"""
from __future__ import annotations

import math
from typing import Protocol, Sequence

import constriction
import numpy as np
import torch

from bbcodec.errors import BBCodecError

NOISE = 4.0
"""y's standard deviation in steps of its grid (x's: NOISE / |f'| steps of its own)."""
POP_SIGMAS = 6.5
"""The window of a Gaussian the encoder pops, in standard deviations: far fewer than 2^24 symbols, so that the
probability constriction leaks to the tails (the 8 symbols beyond 5.5 of them) is about 2^-21 a pop."""
PUSH_SIGMAS = 12.0
"""The window of a Gaussian the encoder pushes, in the widest standard deviation of the call."""
STD_RANGE = (1e-3, 2.0 ** 19)
"""x's standard deviation is clipped to this, in grid steps (a window stays below constriction's 2^24 symbols)."""
PRIOR_COARSE_STD = 16
"""The prior N(0, 1) is coded as a Gaussian of this many coarse steps, then uniformly within a coarse step."""


class LocalBitsBackError(BBCodecError):
    """A value fell outside its coding window: the flow stretches or bends too much at this grid."""


class Step(Protocol):
    """A bijection x -> y coded with local bits back; values in float64, shaped alike."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, log|dy_i/dx_i|) elementwise."""

    def groups(self) -> Sequence:
        """The groups of x in the order the decoder recovers them (each an index into the last dimensions)."""

    def inverse_group(self, group, y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the group's x from y and the groups of x before it, log|dy/dx| there) for that group's elements."""


def _gaussian(window: int):
    return constriction.stream.model.QuantizedGaussian(-window, window)


def _push_window(std: torch.Tensor) -> int:
    return int(math.ceil(PUSH_SIGMAS * float(std.max()))) if std.numel() else 1


def _push(stack, index: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, window: int) -> None:
    """Push grid indices under N(mean, std^2) in grid units, discretized; the first element is popped first."""
    centre = torch.round(mean)
    offset = index - centre.to(torch.int64)
    if offset.numel() and int(offset.abs().max()) > window:
        raise LocalBitsBackError(f"a value lies {int(offset.abs().max())} grid steps from its mean (window "
                                 f"{window}): this flow cannot be coded at these grids")
    stack.coder.encode_reverse(offset.numpy().astype(np.int32).ravel(), _gaussian(window),
                               (mean - centre).numpy().ravel(), std.numpy().ravel())


def _pop(stack, mean: torch.Tensor, std: torch.Tensor, window: int) -> torch.Tensor:
    """Pop grid indices shaped like ``mean`` from N(mean, std^2) in grid units."""
    centre = torch.round(mean)
    offset = stack.coder.decode(_gaussian(window), (mean - centre).numpy().ravel(), std.numpy().ravel())
    stack.check_floor()
    return centre.to(torch.int64) + torch.from_numpy(offset.astype(np.int64)).view(mean.shape)


Y_WINDOW = int(math.ceil(POP_SIGMAS * NOISE))


def _x_means(step: Step, y: torch.Tensor, x: torch.Tensor, x_bits: int, y_bits: int, group):
    """x's Gaussian for one group, in x's grid steps: (mean, std)."""
    mean, log_derivative = step.inverse_group(group, y, x)
    if not torch.isfinite(mean).all():
        raise LocalBitsBackError("a value fell outside the range of a flow's map: cannot code at these grids")
    stretch = torch.exp(log_derivative + (y_bits - x_bits) * math.log(2))  # y's grid steps per x's
    return mean * 2.0 ** x_bits, (NOISE / stretch).clamp(*STD_RANGE)


def _y_means(step: Step, x: torch.Tensor, y_bits: int):
    """y's Gaussian, in y's grid steps: (mean, std). Where the map's range ends (``step.limits``), the mean is kept
    a grid step inside and the Gaussian narrowed so that what it gives stays inside: a sigmoid's output near 0
    or 1."""
    mean = step.forward(x)[0] * 2.0 ** y_bits
    std = torch.full_like(mean, NOISE)
    limits = getattr(step, "limits", None)
    if limits is not None:
        low, high = (limit * 2.0 ** y_bits for limit in limits)
        mean = mean.clamp(low + 1, high - 1)
        room = torch.minimum(mean - low, high - mean) - 0.5
        std = torch.minimum(std, (room / POP_SIGMAS).clamp_min(STD_RANGE[0]))
    return mean, std


def values(index: torch.Tensor, bits: int) -> torch.Tensor:
    """The float64 values of grid indices on the grid of step 2^-bits (exact)."""
    return index.to(torch.float64) * 2.0 ** -bits


def transport(stack, step: Step, x: torch.Tensor, x_bits: int, y_bits: int) -> torch.Tensor:
    """The encoder's move from known grid indices x to y = step(x): pop y, then push x given y, group by group
    (the last group first, so that the decoder pops the first first)."""
    x_values = values(x, x_bits)
    y = _pop(stack, *_y_means(step, x_values, y_bits), Y_WINDOW)
    y_values = values(y, y_bits)
    for group in reversed(step.groups()):
        mean, std = _x_means(step, y_values, x_values, x_bits, y_bits, group)
        _push(stack, x[group], mean, std, _push_window(std))
    return y


def untransport(stack, step: Step, y: torch.Tensor, x_bits: int, y_bits: int) -> torch.Tensor:
    """The decoder's move back from y to x: pop x group by group given y, then push y given x."""
    y_values = values(y, y_bits)
    x = torch.zeros_like(y)
    for group in step.groups():
        mean, std = _x_means(step, y_values, values(x, x_bits), x_bits, y_bits, group)
        x[group] = _pop(stack, mean, std, _push_window(std))
    _push(stack, y, *_y_means(step, values(x, x_bits), y_bits), Y_WINDOW)
    return x


# -- the prior ----------------------------------------------------------------------------------------------


def _prior_parts(bits: int, popped: bool):
    """(fine steps a coarse step, the Gaussian's std in coarse steps, its window)."""
    coarse = 2 ** max(bits - int(math.log2(PRIOR_COARSE_STD)), 1)
    std = 2.0 ** bits / coarse
    return coarse, std, int(math.ceil((POP_SIGMAS if popped else PUSH_SIGMAS) * std))


def push_prior(stack, z: torch.Tensor, bits: int, popped: bool) -> None:
    """Push grid indices z under N(0, 1) on the grid of step 2^-bits: a coarse Gaussian, then uniform fine steps.
    ``popped``: whether the encoder pops this variable (the window is then short: see the module docstring)."""
    coarse, std, window = _prior_parts(bits, popped)
    shifted = z + coarse // 2
    high, low = torch.div(shifted, coarse, rounding_mode="floor"), torch.remainder(shifted, coarse)
    stack.coder.encode_reverse(low.numpy().astype(np.int32).ravel(), constriction.stream.model.Uniform(coarse))
    _push(stack, high, torch.zeros(high.shape, dtype=torch.float64), torch.full(high.shape, std), window)


def pop_prior(stack, shape, bits: int, popped: bool) -> torch.Tensor:
    """Pop grid indices shaped ``shape`` from N(0, 1) (the inverse of :func:`push_prior`)."""
    coarse, std, window = _prior_parts(bits, popped)
    high = _pop(stack, torch.zeros(shape, dtype=torch.float64), torch.full(shape, std), window)
    low = stack.coder.decode(constriction.stream.model.Uniform(coarse), int(np.prod(shape)))
    stack.check_floor()
    return high * coarse + torch.from_numpy(low.astype(np.int64)).view(shape) - coarse // 2


# -- steps --------------------------------------------------------------------------------------------------

ALL = (Ellipsis,)


class Elementwise:
    """An elementwise bijection from its forward map ``forward(x) -> (y, log|f'(x)|)`` and inverse; ``limits``:
    the open interval of its values, if bounded."""

    def __init__(self, forward, inverse, limits: tuple[float, float] | None = None):
        self.forward, self._inverse, self.limits = forward, inverse, limits

    def groups(self):
        return ALL

    def inverse_group(self, group, y, x):
        x = self._inverse(y)
        return x, self.forward(x)[1]


class Triangular:
    """y = M x + shift per position, M a triangular matrix over the channels (dimension 1) with a non-zero
    diagonal: an autoregressive flow, recovered one channel at a time."""

    def __init__(self, matrix: torch.Tensor, shift: torch.Tensor, upper: bool):
        self.matrix, self.shift, self.upper = matrix, shift.view(1, -1, 1, 1), upper
        self.channels = matrix.shape[0]
        self.log_diagonal = matrix.diagonal().abs().log()

    def forward(self, x):
        y = torch.einsum("ij,njhw->nihw", self.matrix, x) + self.shift
        return y, self.log_diagonal.view(1, -1, 1, 1).expand_as(x)

    def groups(self):
        order = range(self.channels - 1, -1, -1) if self.upper else range(self.channels)
        return [(slice(None), slice(i, i + 1)) for i in order]

    def inverse_group(self, group, y, x):
        i = group[1].start
        known = slice(i + 1, None) if self.upper else slice(0, i)
        row = self.matrix[i:i + 1, known]
        rest = torch.einsum("ij,njhw->nihw", row, x[:, known]) if row.numel() else 0.0
        x_i = (y[:, i:i + 1] - self.shift[:, i:i + 1] - rest) / self.matrix[i, i]
        return x_i, self.log_diagonal[i].expand_as(x_i)
