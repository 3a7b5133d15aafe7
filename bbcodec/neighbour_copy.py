"""Copy or escape: a pixel likelihood that lets a sub-pixel repeat one of its decoded neighbours exactly.

Drawings, text, charts and screens are made of a few exact colours: on the
generated synthetic set, 41 % of the sub-pixels of the two-level polyphase
model's last step differ from the model's rounded mean, and 96 % of those
equal one of their four decoded neighbours. A Laplace around a mean cannot
say "the same as the pixel above, exactly", so those images cost several
times what PNG's string matches pay. CALIC (Wu & Memon, IEEE Trans.
Communications 1997) meets the same problem with its *binary mode*: where
the neighbourhood holds at most two distinct values, a pixel is coded as
"the first value", "the second" or an escape to the continuous-tone coder.

:class:`CopyOrLaplace` does that for one polyphase step (Ryder et al.,
CVPR 2022 style; :mod:`bbcodec.models.polyphase_vae`), every sub-pixel at
once, channel by channel in the Laplace's order R, G, B. For each sub-pixel
of channel c its N decoded nearest neighbours (2 or 4, the step's
``NEAREST_NEIGHBOURS``) hold m distinct values d_1 < ... < d_m with counts
n_j. A categorical symbol says which (probability w_m * n_j / N) or escape
(1 - w_m), w_m one of :data:`COPY_WEIGHTS` chosen per image, step, m and
context by the encoder (:mod:`bbcodec.coding.calibration`; the context: the
first channel, or whether the channel before equals one of its own
neighbours, since a drawn pixel tends to repeat a neighbour in every channel); after an escape the
sub-pixel is coded by the step's Laplace as before. Sub-pixels whose w_m is 0
are coded by the Laplace alone. Every probability is a dyadic rational, so
the coder's tables are the same on every machine.

The decoder pops channel c's symbols (they depend on the neighbours only),
then the Laplace values of the escaped sub-pixels (their means depend on the
channels before c), so the encoder pushes, last channel first, the
Laplace values and then the symbols.

Pixels whose Laplace parameters are all known before any of them is decoded
(the coarsest image of a polyphase likelihood; every pixel of a likelihood
that sees no decoded pixel, as the shipped ``default``'s) have no decoded
neighbours, but their order is free: :class:`CopyPyramid` codes them as a
pyramid of 2x2 polyphase splits (:mod:`bbcodec.phases`), the coarsest
phase first, so that three quarters of the pixels of every level can copy
the pixels decoded around them. The Laplace costs the same in any order, so
where nothing is copied nothing changes.
"""
from __future__ import annotations

import functools

import constriction
import numpy as np
import torch
import torch.nn.functional as F

from bbcodec.phases import PHASES, join_phases, nearest_neighbours, split_phases


COPY_WEIGHTS = tuple(k / 16 for k in range(16)) + tuple(1 - 2.0 ** -k for k in range(5, 9))
"""The probabilities w_m of copying a neighbour's value (index: one byte): multiples of 1/16, then 31/32 to 255/256
for flat areas, where nearly every sub-pixel repeats its neighbours; never 1, so an escape stays codable."""
MAX_NEIGHBOURS = 4
"""Neighbours a sub-pixel can copy at most."""
CONTEXTS = 3
"""Rows of weights per step (:func:`copy_context`): the first channel; a later one whose earlier channel
equals a neighbour's value (a drawn pixel, likely copied whole); a later one whose earlier channel does not."""


def distinct_neighbours(neighbours: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For neighbours (N, ...) of uint8 values: (values (N, ...), counts (N, ...), distinct (...)): the distinct
    values in increasing order and how many neighbours hold each, in slots 0..m-1 (the rest 0), and m."""
    ordered = neighbours.sort(dim=0).values.long()
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[1:] = ordered[1:] != ordered[:-1]
    slot = new.long().cumsum(0) - 1
    values = torch.zeros_like(ordered).scatter_(0, slot, ordered)
    counts = torch.zeros_like(ordered).scatter_add_(0, slot, torch.ones_like(ordered))
    return values, counts, new.sum(0)


def copy_context(values: torch.Tensor, counts: torch.Tensor, x: torch.Tensor, channel: int) -> torch.Tensor | int:
    """Which row of weights a sub-pixel of ``channel`` uses (:data:`CONTEXTS`): 0 for the first channel; for
    a later one, 1 if the channel before it equals one of its own neighbours' values, else 2. ``values`` and
    ``counts``: :func:`distinct_neighbours` of the neighbours of every channel, (N, B, C, h, w)."""
    if channel == 0:
        return 0
    equal = (values[:, :, channel - 1] == x[:, channel - 1].long()) & (counts[:, :, channel - 1] > 0)
    return 2 - equal.any(0).long()


class CopyOrLaplace:
    """One polyphase step's sub-pixels: copy a decoded neighbour's value, or escape to ``laplace``
    (module docstring). ``neighbours`` (N, B, C, h, w) uint8, shaped like the Laplace's parameters;
    ``weights``: the copy probabilities, :data:`MAX_NEIGHBOURS` (one for each number of distinct neighbour
    values) for each of the :data:`CONTEXTS`."""

    def __init__(self, laplace, neighbours: torch.Tensor, weights: tuple[float, ...]):
        self.laplace, self.neighbours, self.weights = laplace, neighbours, weights
        self.slots = len(neighbours)

    @functools.cached_property
    def distinct(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`distinct_neighbours` of every channel's neighbours, sorted once when first needed."""
        return distinct_neighbours(self.neighbours)

    def escaping_to(self, laplace) -> "CopyOrLaplace":
        """The same copies with their escapes coded by another ``laplace`` (the distinct neighbour values shared,
        sorted once)."""
        other = CopyOrLaplace(laplace, self.neighbours, self.weights)
        if "distinct" in self.__dict__:
            other.__dict__["distinct"] = self.distinct   # functools.cached_property's own slot
        return other

    def crop(self, channels: slice, height: int, width: int) -> "CopyOrLaplace":
        return CopyOrLaplace(self.laplace.crop(channels, height, width),
                             self.neighbours[:, :, channels, :height, :width], self.weights)

    def _choices(self, channel: int, x: torch.Tensor):
        """Channel ``channel``'s (distinct values (N, B, h, w), probability table (B, h, w, N + 1): slot j
        w * n_j / N, the last entry the escape; whether the categorical is coded (B, h, w): w > 0;
        each sub-pixel's symbol given ``x``: the slot of the value it equals, else N). ``x`` needs only the
        channels before ``channel``, except for the symbols."""
        every_value, every_count, every_distinct = self.distinct
        values, counts, distinct = every_value[:, :, channel], every_count[:, :, channel], every_distinct[:, channel]
        weight = torch.tensor(self.weights, dtype=torch.float64, device=values.device)[
            copy_context(every_value, every_count, x, channel) * MAX_NEIGHBOURS + distinct - 1]
        table = torch.cat([counts.double() * (weight / self.slots), (1.0 - weight)[None]]).movedim(0, -1)
        coded = weight > 0
        match = (values == x[:, channel].long()) & (counts > 0) & coded   # distinct values: one match at most
        symbols = torch.where(match.any(0), match.long().argmax(0), self.slots)
        return values, table, coded, symbols

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log probability (nats) of integer pixels ``x`` per sub-pixel."""
        escape = self.laplace.log_prob(x)
        out = []
        for channel in range(x.shape[1]):
            _, table, _, symbols = self._choices(channel, x)
            chosen = torch.log(table.gather(-1, symbols.unsqueeze(-1)).squeeze(-1))
            out.append(torch.where(symbols < self.slots, chosen, chosen + escape[:, channel]))
        return torch.stack(out, dim=1)

    def push(self, ans, x: torch.Tensor) -> None:
        for channel in reversed(range(x.shape[1])):  # the decoder pops R, G, B: symbols, then escapes
            _, table, coded, symbols = self._choices(channel, x)
            self.laplace.push_channel(ans, x, channel, (symbols == self.slots).flatten())
            coded = coded.flatten()
            ans.coder.encode_reverse(symbols.flatten()[coded].cpu().numpy().astype(np.int32), _FAMILY,
                                     table.flatten(0, -2)[coded].cpu().numpy())

    def pop(self, ans) -> torch.Tensor:
        x = torch.zeros(self.neighbours.shape[1:], dtype=torch.uint8, device=self.neighbours.device)
        for channel in range(x.shape[1]):
            values, table, coded, _ = self._choices(channel, x)
            coded = coded.flatten()
            symbols = torch.full((coded.numel(),), self.slots, dtype=torch.long, device=x.device)
            decoded = ans.coder.decode(_FAMILY, table.flatten(0, -2)[coded].cpu().numpy())
            symbols[coded] = torch.from_numpy(decoded.astype(np.int64)).to(x.device)
            copied = symbols < self.slots
            plane = x[:, channel]   # a view: writes land in x
            copied_values = values.flatten(1)[symbols[copied], copied.nonzero().squeeze(1)]
            plane[copied.view(plane.shape)] = copied_values.to(torch.uint8)
            self.laplace.pop_channel(ans, x, channel, ~copied)
        return x


class CopyPyramid:
    """Pixels whose ``laplace`` (B, C, h, w) needs no decoded pixel, coded in 2x2 polyphase splits of their own so
    that phases 1-3 of each split copy or escape (:class:`CopyOrLaplace`, ``weights`` as there) given phase 0,
    which is coded the same way, down to a phase one pixel high or wide (Laplace alone; module docstring)."""

    def __init__(self, laplace, weights: tuple[float, ...] | None):
        self.laplace, self.weights = laplace, weights
        self.height, self.width = laplace.mean.shape[-2:]

    def crop(self, channels: slice, height: int, width: int):
        return copy_pyramid(self.laplace.crop(channels, height, width), self.weights)

    def _coarser(self):
        """Phase 0's likelihood: a pyramid of its own, or its Laplace where it is too small to split."""
        return copy_pyramid(self.laplace.every_other(0, 0), self.weights)

    def _phase(self, k: int, phases: list[torch.Tensor]) -> CopyOrLaplace:
        """Phase k's copy or escape given the ``phases`` before it (padded to half the even size)."""
        laplace = self.laplace.every_other(k // 2, k % 2)
        height, width = laplace.mean.shape[-2:]
        near = nearest_neighbours(torch.cat(phases[:k], dim=1), k, phases[0].shape[1])[..., :height, :width]
        return CopyOrLaplace(laplace, near, self.weights)

    def _split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The phases of ``x`` padded with zeros to an even size (what the decoder has of them: zeros past the
        pixels it decoded)."""
        return split_phases(F.pad(x, (0, self.width % 2, 0, self.height % 2)))

    def _padded(self, phase: torch.Tensor) -> torch.Tensor:
        """A phase's values padded with zeros to half the even size."""
        return F.pad(phase, (0, (self.width + 1) // 2 - phase.shape[-1], 0, (self.height + 1) // 2 - phase.shape[-2]))

    def _joined(self, phases: list[torch.Tensor]) -> torch.Tensor:
        return join_phases([self._padded(phase) for phase in phases])[..., :self.height, :self.width]

    def _cropped(self, phases: list[torch.Tensor], k: int) -> torch.Tensor:
        """Phase k's pixels of the padded ``phases``: rows and columns up to the real pixels'."""
        return phases[k][..., :(self.height - k // 2 + 1) // 2, :(self.width - k % 2 + 1) // 2]

    def copy_steps(self, x: torch.Tensor) -> list[tuple[CopyOrLaplace, torch.Tensor]]:
        """(copy or escape, values) of every phase that can copy, over the whole pyramid, for pixels ``x``."""
        phases = self._split(x)
        steps = [(self._phase(k, phases), self._cropped(phases, k)) for k in range(1, PHASES)]
        return steps + pyramid_copy_steps(self.laplace.every_other(0, 0), self._cropped(phases, 0))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        phases, coarser = self._split(x), self._coarser()
        log_probs = [coarser.log_prob(self._cropped(phases, 0))]
        for k in range(1, PHASES):
            step = self._phase(k, phases)
            log_probs.append(step.log_prob(self._cropped(phases, k)))
        return self._joined(log_probs)

    def push(self, ans, x: torch.Tensor) -> None:
        phases = self._split(x)
        for k in reversed(range(1, PHASES)):   # the decoder pops phase 0 first, then 1, 2, 3
            step = self._phase(k, phases)
            step.push(ans, self._cropped(phases, k))
        coarser = self._coarser()
        coarser.push(ans, self._cropped(phases, 0))

    def pop(self, ans) -> torch.Tensor:
        phases = [self._padded(self._coarser().pop(ans))]
        for k in range(1, PHASES):
            phases.append(self._padded(self._phase(k, phases).pop(ans)))
        return self._joined(phases)


def copy_pyramid(laplace, weights: tuple[float, ...] | None):
    """``laplace``'s pixels as a :class:`CopyPyramid`, or ``laplace`` itself where they are one pixel high or wide
    (nothing to split)."""
    return CopyPyramid(laplace, weights) if min(laplace.mean.shape[-2:]) >= 2 else laplace


def pyramid_copy_steps(laplace, x: torch.Tensor) -> list[tuple[CopyOrLaplace, torch.Tensor]]:
    """(copy or escape, values) of every phase of the pixels ``x`` that could copy if ``laplace`` were coded as a
    :class:`CopyPyramid` (none where it is too small to split): what the encoder's choice of weights
    (:mod:`bbcodec.coding.calibration`) measures."""
    pyramid = copy_pyramid(laplace, None)
    return pyramid.copy_steps(x) if isinstance(pyramid, CopyPyramid) else []


_FAMILY = constriction.stream.model.Categorical(perfect=False)
"""The coder's categorical with its probabilities given per symbol (a row of the table each)."""
