"""Per-image level sets: the values each plane of an image takes, where it takes few of the 256.

Many images take only some of the 256 values of a plane: scans and
histogram-stretched images leave regular gaps (USC-SIPI's aerials 7.1.01-10
take about 140 of them, 5.2.10 every fourth, Waterloo's washsat 35), and
drawings a handful. A likelihood trained on natural images spreads its
probability over every value near its centre, so such a plane pays up to
log2(256 / used) bits a sub-pixel for values that never occur. Classical
codecs meet this with palettes (PNG's, JPEG XL's channel palette). Here the
encoder stores the set of values of each plane where that saves more than
its bytes, and the pixel likelihood codes that plane's pixels as ranks among
them (:meth:`DiscretizedLaplace.restricted <bbcodec.distributions.DiscretizedLaplace.restricted>`,
:func:`~bbcodec.distributions.level_ranks`): exact, since ranks and values
map one to one.

Stored form (``CoderSettings.level_sets``, the header's ``pixel_level_sets``):
one byte with bit p set for each plane p that has a set, then
:data:`MASK_BYTES` bytes for each such plane in order, bit b of byte j set
where the value 8j + b occurs; () where no plane has one.
"""
from __future__ import annotations

import numpy as np
import torch

MASK_BYTES = 32
"""The bytes of one plane's set: one bit for each of the 256 values."""
MAX_PLANES = 4
NEAR = 2
"""The estimate of what a set saves (:func:`saved_bits`) looks this many values each side of a pixel's."""
MIN_SAVING = 0.02
"""A plane's set is stored only where it is estimated to save this many bits a pixel (and more than its bytes):
smaller savings drown in the noise of one posterior sample (4.1.05's green plane, missing only the values 1 and
2: an estimated 0.006 bits a pixel, a file 0.3 % larger)."""


def applies(model) -> bool:
    """Whether ``model``'s pixel likelihood can code among level sets: Laplace pixels."""
    return getattr(model.config, "pixel_distribution", None) == "laplace"


def saved_bits(counts: np.ndarray) -> float:
    """About how many bits coding a plane of this histogram (``counts``: pixels of each of the 256 values)
    among its own values saves: for each pixel, -log2 of the share of the values within :data:`NEAR` of its
    own (and within the plane's span) that the plane takes (a likelihood spreads its mass over those), summed.
    On the USC-SIPI and Waterloo images this follows the default model's saving closely (bench/README.md)."""
    taken = (counts > 0).astype(np.float64)
    used = np.flatnonzero(counts)
    span = np.zeros(256)
    span[used[0]:used[-1] + 1] = 1.0
    window = np.ones(2 * NEAR + 1)
    share = np.convolve(taken, window, "same") / np.maximum(np.convolve(span, window, "same"), 1.0)
    return float(-(counts[counts > 0] * np.log2(share[counts > 0])).sum())


def choose(model, pixels: np.ndarray) -> tuple[int, ...]:
    """The stored level sets (module docstring) of an (H, W, C) uint8 image: a set for each plane whose
    estimated saving exceeds its bytes and :data:`MIN_SAVING`; () if none does or ``model`` cannot use them."""
    if not applies(model) or pixels.shape[2] > MAX_PLANES:
        return ()
    flags, masks = 0, []
    for p in range(pixels.shape[2]):
        counts = np.bincount(pixels[..., p].ravel(), minlength=256)
        if saved_bits(counts) > max(8 * (MASK_BYTES + 1), MIN_SAVING * counts.sum()):
            flags |= 1 << p
            masks.append(np.packbits(counts > 0, bitorder="little"))
    return (flags, *(int(b) for mask in masks for b in mask)) if flags else ()


def parse(stored: tuple[int, ...], planes: int) -> list[torch.Tensor | None]:
    """Each of ``planes`` planes' level set (sorted int64 values) or None, from the stored form; a ValueError
    if it does not describe sets of these planes."""
    if not stored:
        return [None] * planes
    flags, masks = stored[0], stored[1:]
    chosen = [p for p in range(planes) if flags >> p & 1]
    if flags >> planes or not chosen or len(masks) != MASK_BYTES * len(chosen):
        raise ValueError(f"{len(stored)} level-set bytes with flags {flags:#x} for {planes} planes")
    sets: list[torch.Tensor | None] = [None] * planes
    for i, p in enumerate(chosen):
        mask = np.array(masks[i * MASK_BYTES:(i + 1) * MASK_BYTES], dtype=np.uint8)
        values = np.flatnonzero(np.unpackbits(mask, bitorder="little"))
        if len(values) == 0:
            raise ValueError(f"an empty level set for plane {p}")
        sets[p] = torch.from_numpy(values.astype(np.int64))
    return sets


def for_model(plane_sets: list, grey_channel: int) -> tuple | None:
    """The level sets of one plane group (its planes' sets, as :func:`parse` gives them) for the model's three
    channels: a group of three as it is, a lone plane's at the model's grey channel; None if none has one."""
    if all(s is None for s in plane_sets):
        return None
    if len(plane_sets) == 3:
        return tuple(plane_sets)
    sets = [None, None, None]
    sets[grey_channel] = plane_sets[0]
    return tuple(sets)
