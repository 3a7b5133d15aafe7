"""The 2x2 polyphase split of an image and each phase's nearest neighbours in the phases before it.

Phase k of an image holds its pixels (2i + k // 2, 2j + k % 2): four
half-resolution images (``pixel_unshuffle`` by 2). Decoded in the order 0, 1,
2, 3, every pixel of phases 1-3 has decoded pixels right next to it, which
both the polyphase pixel likelihood (:mod:`bbcodec.models.polyphase_vae`;
Ryder et al., CVPR 2022) and copy or escape (:mod:`bbcodec.neighbour_copy`)
build on.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PHASES = 4
"""Each split makes this many phases: a 2x2 polyphase split."""
NEAREST_NEIGHBOURS = {1: [(0, 0, 0), (0, 0, 1)], 2: [(0, 0, 0), (0, 1, 0)],
                      3: [(1, 0, 0), (1, 1, 0), (2, 0, 0), (2, 0, 1)]}
"""Phase k's nearest decoded neighbours, as (earlier phase, row offset, column offset) in phase coordinates:
phase 1 between two phase-0 pixels of its row, phase 2 between two of its column, phase 3 between the
phase-1 pixels above and below and the phase-2 pixels left and right."""


def split_phases(x: torch.Tensor) -> list[torch.Tensor]:
    """The four phases of (B, C, H, W), H and W even: phase k is x[:, :, k // 2::2, k % 2::2]."""
    batch, channels, height, width = x.shape
    return list(F.pixel_unshuffle(x, 2).view(batch, channels, PHASES, height // 2, width // 2).unbind(2))


def join_phases(phases: list[torch.Tensor]) -> torch.Tensor:
    """The inverse of :func:`split_phases`."""
    batch, channels, height, width = phases[0].shape
    return F.pixel_shuffle(torch.stack(phases, 2).view(batch, channels * PHASES, height, width), 2)


def nearest_neighbours(earlier: torch.Tensor, phase: int, channels: int) -> torch.Tensor:
    """Phase ``phase``'s nearest decoded neighbours (:data:`NEAREST_NEIGHBOURS`), (N, B, C, h, w), from the
    ``earlier`` phases stacked on the channels (B, phase * C, h, w); past the last row or column, 0."""
    return torch.stack(neighbours(earlier, NEAREST_NEIGHBOURS[phase], channels))


def neighbours(earlier: torch.Tensor, offsets, channels: int) -> list[torch.Tensor]:
    """For each (earlier phase, row offset, column offset) of ``offsets``, that phase of ``earlier`` (phases of C
    channels stacked on the channels) moved so that pixel (i, j) holds its pixel (i + row offset, j + column
    offset): (B, C, h, w) each, 0 past the edges."""
    moved = []
    for earlier_phase, down, right in offsets:
        plane = earlier[:, earlier_phase * channels:(earlier_phase + 1) * channels]
        height, width = plane.shape[-2:]
        padded = F.pad(plane, (max(-right, 0), max(right, 0), max(-down, 0), max(down, 0)))
        top, left = max(down, 0), max(right, 0)
        moved.append(padded[..., top:top + height, left:left + width])
    return moved
