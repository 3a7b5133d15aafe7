"""Per-image calibration of the pixel likelihood: a few bytes of side information chosen by the encoder.

A model trained on other images predicts each sub-pixel's Laplace mean and
scale from its context, but a given image differs from the training images
as a whole: cleaner or noisier (on photos 041-049 the two-level polyphase
model's best single factor on all its scales ranges from 0.8 to 1.25 or more), and
with residuals that are more or less alike across the colour channels (the
same edge, the same sensor noise). Classical codecs adapt to each image
(JPEG XL stores its own histograms and colour transform, JPEG-LS learns its
contexts as it goes). Here, for each coding step of the likelihood (one for
pixels that are independent given the latents, seven for the two-level
polyphase split; its ``terms``), the encoder measures on a sample of tiles,
with the latents at their posterior means:

* residual offsets: G's mean moves by a'*(R - mean_R), B's by
  b'*(R - mean_R) + c'*(G - mean_G), each offset one of :data:`OFFSETS`
  (-1 to 1 in steps of 1/16): a colour transform fitted to the image, on top
  of whatever coupling the model has learned (least squares first, then the
  cheapest under the Laplace cost near it, B's two offsets one at a time);
* then a factor on each channel's scales, one of :data:`SCALE_FACTORS` (the
  continuous Laplace's best factor first, then the cheapest near it);
* then a factor for each bucket of those scales
  (:data:`~bbcodec.distributions.SCALE_BUCKETS`, octaves: a model is often
  over-confident where it predicts small scales and under-confident where it
  predicts large ones on one image, or the reverse), chosen the same way,
  where the sample's cost with copies (below) says they pay;

* and the weights of copying a decoded neighbour's value exactly
  (:mod:`bbcodec.neighbour_copy`: drawings, text and screens repeat their
  neighbours' colours), one per number of distinct values among a
  sub-pixel's neighbours, each the cheapest on the sample;

* and, for a likelihood whose steps see decoded pixels, error feedback
  (:mod:`bbcodec.error_feedback`, CALIC's error energy and bias
  cancellation): for each step after the first and each channel, a weight on
  its same-level neighbours' mean residual and a factor for each bucket of
  its neighbours' error energy, chosen step by step in decoding order (each
  step's features from the steps before it as they will be coded), a step's
  row kept where it makes the step cheaper with its copies.

The file stores one row of six indices per step (``CoderSettings.calibration``:
R, G, B scale factors, then the offsets a', b', c'), then, where copying
pays, :data:`COPY_MARK` and a row of :data:`COPY_ROW` copy weights for every
step (the first step's pixels, which see no decoded pixel, copy in the order
of a :class:`~bbcodec.neighbour_copy.CopyPyramid`; its row is left out, as in
files made before it could copy, where it does not pay for itself), when the
sample says they save more than their bytes, then, where the bucket
factors pay, :data:`BUCKET_MARK` and a row of :data:`BUCKET_ROW` factor
indices for every step (R's buckets, then G's, then B's), then, where error
feedback pays, :data:`FEEDBACK_MARK` and a row of :data:`FEEDBACK_ROW` indices
for every step after the first (for R, G and B: the weight, then the energy
buckets' factors);
encoder and decoder apply them (``likelihood.calibrated``) before coding. Exact: every factor and offset is a
dyadic rational, and applying it takes only correctly rounded float64
multiplications and additions, the same on every machine. Only Laplace
likelihoods of three channels are calibrated.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from bbcodec import error_feedback
from bbcodec.coding.level_sets import for_model
from bbcodec.distributions import SCALE_BUCKETS
from bbcodec.error_feedback import BIASES, ENERGY_BUCKETS
from bbcodec.neighbour_copy import (CONTEXTS, COPY_WEIGHTS, MAX_NEIGHBOURS, CopyOrLaplace, copy_context,
                                    pyramid_copy_steps)

SCALE_FACTORS = tuple(n / 64 for n in (16, 17, 19, 21, 23, 25, 27, 29, 32, 35, 38, 41, 45, 49, 54, 59, 64, 70, 76, 83,
                                       91, 99, 108, 117, 128))
"""The factors on a channel's scales (index: one byte), about 2^(1/8) apart from 1/4 to 2 (a channel whose
residuals the offsets explain needs much smaller scales)."""
OFFSETS = tuple(k / 16 for k in range(-16, 17))
"""The residual offsets a', b', c' (index: one byte)."""
NEUTRAL = (SCALE_FACTORS.index(1.0),) * 3 + (OFFSETS.index(0.0),) * 3
"""The row of a step left as the model has it."""
ROW = len(NEUTRAL)
COPY_MARK = 255
"""The value that separates the Laplace rows from the copy weights (no table has so many entries)."""
BUCKET_MARK = 254
"""The value that starts the bucket factors."""
BUCKET_ROW = 3 * (len(SCALE_BUCKETS) + 1)
"""Bucket factor indices per step: one for each bucket of each channel's scales."""
FEEDBACK_MARK = 253
"""The value that starts the error feedback."""
FEEDBACK_ROW = 3 * (1 + ENERGY_BUCKETS)
"""Error feedback indices per step after the first: for each channel, the index of its weight in
:data:`~bbcodec.error_feedback.BIASES`, then one in :data:`SCALE_FACTORS` for each energy bucket."""
BUCKET_MIN_COUNT = 64
"""A bucket's factor is chosen only from at least this many sample sub-pixels (else it stays 1)."""
COPY_ROW = CONTEXTS * MAX_NEIGHBOURS
"""Copy weights per step: for each context (:func:`~bbcodec.neighbour_copy.copy_context`), one for each number
of distinct values among a sub-pixel's neighbours."""
COPY_MIN_SHARE = 0.01
"""Copy weights are stored only where the sample says they save this share of their steps' bits: on photos
the sample's small savings (0.05 % on Waterloo's peppers3) came out as small losses in the file."""
PRESET_MARK = 252
"""A stored calibration of two values, this mark and k, stands for calibration k shipped with the model's weights
(its ``calibration_presets``: :func:`bbcodec.zoo.calibration_presets`), two header bytes instead of hundreds: an
image too small to pay for a calibration of its own can still be coded with one (:func:`expanded`). No calibration
of the model's own starts with it (it starts with a row of Laplace indices)."""
SIDE_SHARE = 0.005
"""Where side information would take more than this share of the raw bytes of an image, or of a chunk of images
coded together, the encoder also codes it otherwise and keeps the smallest code: with each shipped calibration of
its model where a calibration's bytes (its own, or where none pays, a shipped one's) are over it (a CIFAR-subset
image, a 128x128 thumbnail, ten CIFAR-subset images together; not a 256x256 image, whose own calibration always
won on thumbnails of photos: bench/README.md, "Calibrations shipped with a model"), and without its level sets
where theirs are (:func:`bbcodec.api.compress`: an MNIST digit)."""
SAMPLE_TILES = 24
"""Tiles of 64 pixels (spread evenly over the image) whose costs choose the calibration; of larger tiles, fewer
(:func:`sample_tiles`)."""
SAMPLE_IMAGES = 128
"""Images (whole, of one shape, at most :data:`SAMPLE_IMAGE_PIXELS` pixels together) whose costs choose one
calibration for many images (:func:`choose_for_images`): the 1,000 CIFAR-subset test images as one chain 4.494,
4.497 and 4.483 bits per sub-pixel with 32, 64 and 128 (4.811 without)."""
SAMPLE_IMAGE_PIXELS = 1 << 17
SEARCH = 2
"""Offsets and factors are searched within this many steps of their estimates (least squares; the continuous
Laplace's best scale), under the discrete Laplace cost."""


def applies(model) -> bool:
    """Whether ``model``'s likelihood can be calibrated: Laplace pixels of three channels."""
    config = model.config
    return getattr(config, "pixel_distribution", None) == "laplace" and getattr(config, "image_channels", 0) == 3


def preset(number: int) -> tuple[int, int]:
    """The stored calibration that names the model's shipped calibration ``number`` (:data:`PRESET_MARK`)."""
    return PRESET_MARK, number


def presets_worth_trying(own: list[tuple[int, ...]], presets: tuple[tuple[int, ...], ...],
                         subpixels: int) -> list[tuple[int, int]]:
    """The stored calibrations naming each of ``presets`` (a model's shipped calibrations) that an image or chunk of
    ``subpixels`` sub-pixels is worth coding with besides its own calibrations ``own`` (:data:`SIDE_SHARE`)."""
    yardstick = max(map(len, own), default=0) or max(map(len, presets), default=0)
    return [preset(k) for k in range(len(presets))] if yardstick > SIDE_SHARE * subpixels else []


def expanded(indices: tuple[int, ...], presets: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """The indices a stored calibration stands for: the shipped calibration of ``presets`` that it names, or its
    own; ValueError if it names one that ``presets`` do not have."""
    if indices[:1] != (PRESET_MARK,):
        return indices
    if len(indices) != 2 or not 0 <= indices[1] < len(presets):
        raise ValueError(f"it names shipped calibration {indices[1:]} of a model that has {len(presets)}")
    return presets[indices[1]]


def rows(indices: tuple[int, ...]) -> list[tuple]:
    """The stored indices as one (scale factors, offsets, copy weights, bucket factors, error feedback) row per
    step; ValueError if they do not make rows. Copy weights (:data:`~bbcodec.neighbour_copy.COPY_WEIGHTS`) follow
    :data:`COPY_MARK`, a row of :data:`COPY_ROW` for every step, or for every step after the first (files before
    the first step could copy: its weights None); without them, None. Bucket factors follow
    :data:`BUCKET_MARK`, a row of :data:`BUCKET_ROW` for every step (one tuple of factors a channel); without
    them, None. Error feedback follows :data:`FEEDBACK_MARK`, a row of :data:`FEEDBACK_ROW` for every step after
    the first (three weights, three tuples of energy factors; the first step's None); without it, None."""
    feedback = None
    if FEEDBACK_MARK in indices:
        split = indices.index(FEEDBACK_MARK)
        indices, feedback = indices[:split], indices[split + 1:]
    buckets = ()
    if BUCKET_MARK in indices:
        split = indices.index(BUCKET_MARK)
        indices, buckets = indices[:split], indices[split + 1:]
    laplace, copy = indices, ()
    if COPY_MARK in indices:
        split = indices.index(COPY_MARK)
        laplace, copy = indices[:split], indices[split + 1:]
    steps = len(laplace) // ROW
    if len(laplace) % ROW or (copy and len(copy) not in (COPY_ROW * (steps - 1), COPY_ROW * steps)):
        raise ValueError(f"{len(indices)} calibration values do not make rows of {ROW} (and {COPY_ROW})")
    limits = (len(SCALE_FACTORS),) * 3 + (len(OFFSETS),) * 3
    if not all(0 <= i < limit for i, limit in zip(laplace, limits * (len(laplace) // ROW))):
        raise ValueError(f"a calibration index out of range in {laplace}")
    if not all(0 <= i < len(COPY_WEIGHTS) for i in copy):
        raise ValueError(f"a copy weight index out of range in {copy}")
    if buckets and (len(buckets) != BUCKET_ROW * steps or not all(0 <= i < len(SCALE_FACTORS) for i in buckets)):
        raise ValueError(f"{len(buckets)} bucket factors for {steps} steps, or one out of range")
    if feedback is not None and (steps < 2 or len(feedback) != FEEDBACK_ROW * (steps - 1)
                     or not all(0 <= i < len(table) for i, table in zip(feedback, _FEEDBACK_TABLES * (steps - 1)))):
        raise ValueError(f"{len(feedback)} error feedback values for {steps} steps, or one out of range")
    weights = [tuple(COPY_WEIGHTS[i] for i in copy[start:start + COPY_ROW]) for start in range(0, len(copy), COPY_ROW)]
    weights = [None] * (steps - len(weights)) + weights
    per_channel = len(SCALE_BUCKETS) + 1
    factors = [tuple(tuple(SCALE_FACTORS[i] for i in buckets[start + c * per_channel:start + (c + 1) * per_channel])
                     for c in range(3)) for start in range(0, len(buckets), BUCKET_ROW)] or [None] * steps
    fed_back = [None] + [_feedback_row(feedback[start:start + FEEDBACK_ROW])
                         for start in range(0, len(feedback), FEEDBACK_ROW)] if feedback is not None else [None] * steps
    return [(tuple(SCALE_FACTORS[i] for i in laplace[start:start + 3]),
             tuple(OFFSETS[i] for i in laplace[start + 3:start + ROW]),
             weights[start // ROW], factors[start // ROW], fed_back[start // ROW])
            for start in range(0, len(laplace), ROW)]


_FEEDBACK_TABLES = ((BIASES,) + (SCALE_FACTORS,) * ENERGY_BUCKETS) * 3
"""The table of each index of a step's error feedback row."""
_NEUTRAL_FEEDBACK = tuple(table.index(0.0 if table is BIASES else 1.0) for table in _FEEDBACK_TABLES)
"""A step's error feedback row that changes nothing."""


def _feedback_row(indices: tuple[int, ...]) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]:
    """One step's stored error feedback as (a weight a channel, a tuple of energy factors a channel)."""
    per_channel = 1 + ENERGY_BUCKETS
    channels = [indices[c * per_channel:(c + 1) * per_channel] for c in range(3)]
    return (tuple(BIASES[row[0]] for row in channels),
            tuple(tuple(SCALE_FACTORS[i] for i in row[1:]) for row in channels))


def sample_tiles(pixels: np.ndarray, tile: int, count: int | None = None) -> list[tuple[int, int]]:
    """Top-left corners of up to ``count`` whole tile x tile squares spread evenly over an (H, W, C) image; by
    default :data:`SAMPLE_TILES` for 64-pixel tiles, half as many for each doubling of the side (its pixels
    doubling: 12 of 128 pixels code photos 041 and 045 within 0.3 % of 24 in a third less calibration time, 6
    cost up to 1.2 %)."""
    if count is None:
        count = max(1, SAMPLE_TILES * 64 // tile)
    rows_, columns = pixels.shape[0] // tile, pixels.shape[1] // tile
    corners = [(r * tile, c * tile) for r in range(rows_) for c in range(columns)]
    if len(corners) <= count:
        return corners
    return [corners[i] for i in np.linspace(0, len(corners) - 1, count).round().astype(int)]


def choose(model, pixels: np.ndarray, tile: int, plane_level_sets: list | None = None,
           buckets: bool = True) -> tuple[int, ...]:
    """The calibration (one row of :data:`ROW` indices per step, flattened; then copy weights where they pay:
    :func:`rows`) that makes ``pixels`` cheapest under ``model`` on a sample of its tiles, or () where it does
    not apply or would not pay for its bytes (a small image, a likelihood other than Laplace, a family without
    :meth:`~bbcodec.models.family.CodecModel.likelihood_given`). ``plane_level_sets``: the image planes' level
    sets (:func:`bbcodec.coding.level_sets.parse`), or None: the calibration is chosen for the pixels as
    they are coded, among them. ``buckets``: whether bucket factors may be chosen (False: as before they
    existed, for comparisons)."""
    if not applies(model):
        return ()
    corners = sample_tiles(pixels, tile)
    if not corners:
        return ()
    colour = pixels.shape[2] >= 3
    planes = pixels[..., :3] if colour else np.repeat(pixels[..., :1], 3, axis=2)
    batch = torch.from_numpy(np.stack([planes[r:r + tile, c:c + tile] for r, c in corners]).transpose(0, 3, 1, 2))
    sets = (plane_level_sets[:3] if colour else plane_level_sets[:1]) if plane_level_sets else None
    return choose_on(model, batch, pixels.shape[0] * pixels.shape[1] / (len(corners) * tile * tile), colour, sets,
                     buckets)


def choose_for_images(model, images: list[np.ndarray], count: int = SAMPLE_IMAGES) -> tuple[int, ...]:
    """One calibration (as :func:`choose` makes) for many images coded together (an archive's chunk, a chain):
    chosen on up to ``count`` images, spread evenly, of the shape most of them share, whole; () where it does
    not apply, would not pay for its bytes, or that shape is not a multiple of the model's stride or has more
    pixels than :data:`SAMPLE_IMAGE_PIXELS`."""
    shapes = [image.shape for image in images]
    shape = max(set(shapes), key=shapes.count) if shapes else None
    stride = getattr(model.config, "stride", 1)
    if (not applies(model) or shape is None or shape[0] % stride or shape[1] % stride
            or shape[0] * shape[1] > SAMPLE_IMAGE_PIXELS):
        return ()
    alike = [image for image in images if image.shape == shape]
    count = min(count, len(alike), SAMPLE_IMAGE_PIXELS // (shape[0] * shape[1]))
    chosen = [alike[i] for i in np.linspace(0, len(alike) - 1, count).round().astype(int)]
    colour = shape[2] >= 3
    planes = np.stack([image[..., :3] if colour else np.repeat(image[..., :1], 3, axis=2) for image in chosen])
    per_sample = sum(image.shape[0] * image.shape[1] for image in images) / (len(chosen) * shape[0] * shape[1])
    return choose_on(model, torch.from_numpy(planes.transpose(0, 3, 1, 2).copy()), per_sample, colour)


def choose_on(model, batch: torch.Tensor, weight: float, colour: bool = True, plane_level_sets: list | None = None,
              buckets: bool = True) -> tuple[int, ...]:
    """The calibration that makes the tiles ``batch`` (B, 3, h, w) uint8 cheapest under ``model``, each of their
    pixels standing for ``weight`` pixels of what is coded (whose bits the calibration's bytes must beat);
    ``colour``: whether the tiles are colour (else a grey plane in all three channels); ``plane_level_sets``
    and ``buckets`` as for :func:`choose`."""
    batch = batch.to(model.device)
    per_sample = weight / math.log(2.0)  # nats -> bits
    training = model.training
    grey = None if colour else model.grey_channel
    try:
        with torch.no_grad():
            likelihood = model.eval().likelihood_given(batch)
            if hasattr(likelihood, "remembering"):
                likelihood = likelihood.remembering()   # its steps run once for all the passes below
            sets = for_model(plane_level_sets, model.grey_channel) if plane_level_sets else None
            if sets is not None:
                likelihood = likelihood.restricted(sets)
            terms = likelihood.terms(batch)
            chosen = [_choose_step(distribution, values, grey) for distribution, values in terms]
            laplace = tuple(i for row, _ in chosen for i in row)
            calibrated = [(distribution.calibrated([row]), values)   # the networks' outputs, not run again
                          for (distribution, values), row in zip(terms, rows(laplace))]
            neighbours = likelihood.neighbours(batch) if hasattr(likelihood, "neighbours") else [None]
            copied = _choose_copy(calibrated, neighbours, grey)
            factors, bucket_gain, copied = ((), 0.0, copied) if not buckets else \
                _choose_bucket_factors(terms, laplace, calibrated, neighbours, copied, grey, per_sample)
            if copied[0][1] * per_sample <= 8 * COPY_ROW:   # the first step's row is stored only where it pays
                copied = copied[1:]
            laplace_gain = sum(saving for _, saving in chosen) * per_sample - 8 * len(laplace)
            copy = (COPY_MARK,) + tuple(i for row, _, _ in copied for i in row) if copied else ()
            copy_saved = sum(saving for _, saving, _ in copied)
            copy_gain = copy_saved * per_sample - 8 * len(copy)
            if copy_saved < COPY_MIN_SHARE * sum(nats for _, _, nats in copied):
                copy_gain = 0.0
            stored = laplace + (copy if copy_gain > 0 else ()) + (factors if bucket_gain > 0 else ())
            feedback, feedback_gain = _choose_feedback(likelihood, batch, stored, grey, per_sample) \
                if hasattr(likelihood, "choose_feedback") else ((), 0.0)
    except NotImplementedError:
        return ()
    finally:
        model.train(training)
    if laplace_gain + max(copy_gain, 0.0) + max(bucket_gain, 0.0) + feedback_gain <= 0:   # not worth its bytes
        return ()
    return stored + feedback


def _choose_feedback(likelihood, batch: torch.Tensor, stored: tuple[int, ...], grey: int | None,
                     per_sample: float) -> tuple[tuple[int, ...], float]:
    """The stored error feedback (:data:`FEEDBACK_MARK` and a row a step after the first) for the sample ``batch``
    under ``likelihood`` calibrated by ``stored``, chosen step by step in decoding order, and the bits it saves
    beyond its bytes; ((), 0.0) where it does not pay."""
    coded = slice(0, 3) if grey is None else slice(grey, grey + 1)
    fed = likelihood.calibrated(rows(stored)).crop(coded, *batch.shape[-2:])
    chosen = fed.choose_feedback(batch[:, coded], lambda *step: _choose_feedback_step(*step, coded))
    indices = (FEEDBACK_MARK,) + tuple(i for _, row, _ in chosen for i in row)
    gain = sum(saved for _, _, saved in chosen) * per_sample - 8 * len(indices)
    return (indices, gain) if gain > 0 else ((), 0.0)


def _choose_feedback_step(distribution, energy: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor,
                          coded: slice) -> tuple[tuple | None, tuple[int, ...], float]:
    """One step's error feedback (the row to apply, None for none; its stored indices; the nats it saves on its
    pixels ``x``, copies included): each coded channel's weight on ``bias`` (the cheapest under the Laplace),
    then its factor for each bucket of ``energy`` with at least :data:`BUCKET_MIN_COUNT` sample sub-pixels;
    neutral where the step does not get cheaper."""
    laplace = getattr(distribution, "laplace", distribution)
    per_channel = 1 + ENERGY_BUCKETS
    indices = list(_NEUTRAL_FEEDBACK)
    scale = laplace.pixel_scale()
    buckets = error_feedback.energy_buckets(energy)[:, 0]
    for c, channel in enumerate(range(coded.start, coded.stop)):
        values, centre = x[:, c], laplace.centre(c, x)
        if bias is not None:
            coarse = _best_offset(laplace, c, values, centre, bias[:, c], scale[:, c], BIASES.index(0.25), BIASES,
                                  spacing=5)   # the cost is convex in the weight: every fifth first, then near it
            weight = _best_offset(laplace, c, values, centre, bias[:, c], scale[:, c], coarse, BIASES)
            indices[channel * per_channel] = weight
            centre = centre + BIASES[weight] * bias[:, c]
        indices[channel * per_channel + 1:(channel + 1) * per_channel] = _factor_per_bucket(
            laplace, c, values, centre, scale[:, c], buckets, ENERGY_BUCKETS)[0]
    weights, factors = _feedback_row(tuple(indices))
    applied = error_feedback.apply(distribution, energy, bias, (weights[coded], factors[coded]))
    saved = float((applied.log_prob(x).double() - distribution.log_prob(x).double()).sum())
    if saved <= 0:
        return None, _NEUTRAL_FEEDBACK, 0.0
    return (weights, factors), tuple(indices), saved


def _choose_bucket_factors(terms: list, laplace: tuple, calibrated: list, neighbours: list, copied: list,
                           grey: int | None, per_sample: float) -> tuple[tuple[int, ...], float, list]:
    """The stored bucket factors (:data:`BUCKET_MARK` and a row a step) for the steps' ``terms`` calibrated by
    ``laplace`` (``calibrated``: the terms so calibrated), the bits they save beyond their bytes, and the copy
    weights chosen with them (``copied``, those chosen without them, where they do not pay). Fitted on every
    sub-pixel, bucket factors can mislead the escapes that copies leave to the Laplace (Waterloo's frymire.png
    and horiz.png: files 4 % and 27 % larger), so they are kept where the sample's cost with copies, chosen
    against each Laplace, says they pay."""
    bucketed = [_choose_buckets(distribution, values, grey) for distribution, values in calibrated]
    factors = (BUCKET_MARK,) + tuple(i for row, _ in bucketed for i in row)
    if sum(saving for _, saving in bucketed) * per_sample <= 8 * len(factors):
        return factors, 0.0, copied
    with_factors = _choose_copy([(distribution.calibrated([row]), values) for (distribution, values), row
                                 in zip(terms, rows(laplace + factors))], neighbours, grey)
    gain = (_copied_nats(copied) - _copied_nats(with_factors)) * per_sample - 8 * len(factors)
    return factors, gain, with_factors if gain > 0 else copied


def _copied_nats(copied: list) -> float:
    """The sample's nats with :func:`_choose_copy`'s choice of copy weights in every step."""
    return sum(nats - saved for _, saved, nats in copied)


def _choose_copy(terms: list, neighbours: list, grey: int | None) -> list[tuple[tuple[int, ...], float, float]]:
    """Each step's (copy weight indices by context and number of distinct neighbour values, nats saved, nats
    without copies), given the calibrated steps' ``terms`` (distribution, values) and their decoded
    ``neighbours`` (None for a step whose pixels have none: the first, coded as a
    :class:`~bbcodec.neighbour_copy.CopyPyramid`): the weights that make the step cheapest, from how many
    sub-pixels equal a neighbour and what the others cost under the Laplace."""
    weights = torch.tensor(COPY_WEIGHTS, dtype=torch.float64)
    chosen = []
    for (distribution, values), near in zip(terms, neighbours):
        steps = [(CopyOrLaplace(distribution, near, None), values)] if near is not None else \
            pyramid_copy_steps(distribution, values)
        # per row (context, number of distinct neighbour values): sub-pixels that equal a neighbour, those that
        # do not, the former's nats within the copy choice, and the Laplace's nats of all and of the latter
        copyable, others, slot_nats, laplace_all, laplace_other = torch.zeros(5, COPY_ROW, dtype=torch.float64)
        for step, values in steps:
            nats = -step.laplace.log_prob(values).double()
            every_value, every_count, every_distinct = step.distinct
            for channel in range(values.shape[1]) if grey is None else (grey,):
                distinct_values, counts = every_value[:, :, channel], every_count[:, :, channel]
                match = (distinct_values == values[:, channel].long()) & (counts > 0)
                copies = match.any(0).flatten()
                share = (counts * match).sum(0).clamp_min(1).double().flatten() / step.slots
                # the context as the coder sees it: a lone plane is the coder's only channel
                context = copy_context(every_value, every_count, values, channel) if grey is None else 0
                row = (context * MAX_NEIGHBOURS + every_distinct[:, channel] - 1).flatten()
                channel_nats = nats[:, channel].flatten()
                for total, part in ((copyable, copies.double()), (others, (~copies).double()),
                                    (slot_nats, torch.where(copies, -torch.log(share), 0.0)),
                                    (laplace_all, channel_nats),
                                    (laplace_other, torch.where(copies, 0.0, channel_nats))):
                    total += torch.bincount(row, weights=part, minlength=COPY_ROW)
        # cost(w) = -A log w + slot nats - B log(1 - w) + the others' Laplace nats; cost(0): all Laplace
        cost = (-copyable[:, None] * torch.log(weights[None, 1:]) + slot_nats[:, None]
                - others[:, None] * torch.log1p(-weights[None, 1:]) + laplace_other[:, None])
        cost = torch.cat([laplace_all[:, None], cost], dim=1)
        row = cost.argmin(dim=1)
        chosen.append((tuple(int(i) for i in row), float((laplace_all - cost.min(dim=1).values).sum()),
                       float(laplace_all.sum())))
    return chosen


def _choose_step(distribution, x: torch.Tensor, grey: int | None) -> tuple[tuple[int, ...], float]:
    """One step's row of indices and the nats it saves on ``x`` (B, 3, h, w): offsets first (G's, then B's two
    one at a time), then each channel's scale factor given its centre. ``grey``: the one channel coded for a
    lone plane (only its scale is chosen), or None for colour."""
    row = list(NEUTRAL)
    scale = distribution.pixel_scale()
    model_centres = [distribution.model_centre(channel, x) for channel in range(3)]
    centres = list(model_centres)
    if grey is None:
        residuals = [x[:, channel].to(centres[channel].dtype) - centres[channel] for channel in range(3)]
        row[3] = _best_offset(distribution, 1, x[:, 1], model_centres[1], residuals[0], scale[:, 1],
                              _least_squares(residuals[1], [residuals[0]])[0])
        row[4], row[5] = _least_squares(residuals[2], residuals[:2])
        for index, earlier, other, other_earlier in ((4, 0, 5, 1), (5, 1, 4, 0)):
            base = model_centres[2] + OFFSETS[row[other]] * residuals[other_earlier]
            row[index] = _best_offset(distribution, 2, x[:, 2], base, residuals[earlier], scale[:, 2], row[index])
        centres[1] = model_centres[1] + OFFSETS[row[3]] * residuals[0]
        centres[2] = model_centres[2] + OFFSETS[row[4]] * residuals[0] + OFFSETS[row[5]] * residuals[1]
    saved = 0.0
    for channel in range(3) if grey is None else (grey,):
        values = x[:, channel]
        row[channel], nats = _best_factor(distribution, channel, values, centres[channel], scale[:, channel])
        neutral = _nats(distribution, channel, values, model_centres[channel], scale[:, channel], (1.0,))[0]
        saved += float(neutral) - nats
    return tuple(row), saved


def _choose_buckets(distribution, x: torch.Tensor, grey: int | None) -> tuple[tuple[int, ...], float]:
    """One step's row of bucket factor indices (:data:`BUCKET_ROW`: each channel's buckets of
    :data:`~bbcodec.distributions.SCALE_BUCKETS`) and the nats it saves on ``x``, given the step's
    ``distribution`` as its calibration row leaves it; a bucket with fewer than :data:`BUCKET_MIN_COUNT`
    sample sub-pixels keeps the factor 1."""
    per_channel = len(SCALE_BUCKETS) + 1
    row = [SCALE_FACTORS.index(1.0)] * BUCKET_ROW
    scale, buckets = distribution.pixel_scale(), distribution.scale_buckets()
    saved = 0.0
    for channel in range(3) if grey is None else (grey,):
        factors, nats = _factor_per_bucket(distribution, channel, x[:, channel], distribution.centre(channel, x),
                                           scale[:, channel], buckets[:, channel], per_channel)
        row[channel * per_channel:(channel + 1) * per_channel] = factors
        saved += nats
    return tuple(row), saved


def _factor_per_bucket(distribution, channel: int, values, centre, scale, buckets,
                       count: int) -> tuple[list[int], float]:
    """For each of ``count`` buckets (``buckets``: each sub-pixel's, shaped like ``values``), the index in
    :data:`SCALE_FACTORS` of the factor on ``scale`` that codes ``channel``'s ``values`` there cheapest under
    ``distribution`` (1 for a bucket of fewer than :data:`BUCKET_MIN_COUNT` sample sub-pixels), and the nats
    the factors save."""
    factors, saved = [SCALE_FACTORS.index(1.0)] * count, 0.0
    order = torch.argsort(buckets.flatten(), stable=True)   # each bucket's sub-pixels together, in their order
    values, centre, scale = (tensor.flatten()[order] for tensor in (values, centre, scale))
    end = 0
    for bucket, size in enumerate(torch.bincount(buckets.flatten(), minlength=count).tolist()):
        part, end = slice(end, end + size), end + size
        if size < BUCKET_MIN_COUNT:
            continue
        factors[bucket], nats = _best_factor(distribution, channel, values[part], centre[part], scale[part])
        saved += float(_nats(distribution, channel, values[part], centre[part], scale[part], (1.0,))[0]) - nats
    return factors, saved


def _best_factor(distribution, channel: int, values, centre, scale) -> tuple[int, float]:
    """The index in :data:`SCALE_FACTORS` of the factor on ``scale`` that codes ``channel``'s ``values`` cheapest
    under ``distribution`` (the continuous Laplace's best factor, mean(|residual| / scale), then the cheapest
    within SEARCH of it), and its nats."""
    estimate = float(((values.to(centre.dtype) - centre).abs() / scale).mean())
    start = min(range(len(SCALE_FACTORS)), key=lambda i: abs(math.log(SCALE_FACTORS[i] / max(estimate, 1e-3))))
    candidates = _near(start, len(SCALE_FACTORS))
    nats = _nats(distribution, channel, values, centre, scale, [SCALE_FACTORS[i] for i in candidates])
    return candidates[int(nats.argmin())], float(nats.min())


def _near(start: int, size: int, spacing: int = 1) -> list[int]:
    """The indices within SEARCH steps of ``spacing`` of ``start`` in a table of ``size``."""
    return [i for i in range(start - SEARCH * spacing, start + SEARCH * spacing + 1, spacing) if 0 <= i < size]


def _least_squares(target: torch.Tensor, predictors: list[torch.Tensor]) -> list[int]:
    """The indices in :data:`OFFSETS` nearest the least-squares weights of ``predictors`` for ``target`` (a start
    for the search under the Laplace cost; 0 where the system is singular)."""
    design = torch.stack([p.flatten().double() for p in predictors], dim=1)
    gram = design.T @ design
    if torch.linalg.matrix_rank(gram) < len(predictors):
        return [OFFSETS.index(0.0)] * len(predictors)
    weights = torch.linalg.solve(gram, design.T @ target.flatten().double())
    step = OFFSETS[1] - OFFSETS[0]
    return [min(max(round((float(w) - OFFSETS[0]) / step), 0), len(OFFSETS) - 1) for w in weights]


def _best_offset(distribution, channel: int, values, centre, residual, scale, start: int,
                 table: tuple = OFFSETS, spacing: int = 1) -> int:
    """The index of the weight in ``table``, among those within SEARCH of ``start`` (every ``spacing``-th one and
    SEARCH * ``spacing`` away at most), whose ``centre + weight * residual`` codes ``channel``'s ``values``
    cheapest under ``distribution``."""
    candidates = _near(start, len(table), spacing)
    offsets = torch.tensor([table[i] for i in candidates], dtype=centre.dtype, device=centre.device)
    shifted = centre + offsets.view(-1, *([1] * centre.dim())) * residual
    nats = -distribution.channel_log_prob(channel, values, shifted, scale).double().flatten(1).sum(1)
    return candidates[int(nats.argmin())]


def _nats(distribution, channel: int, values, centre, scale, factors) -> torch.Tensor:
    """-log P of ``channel``'s ``values`` under ``distribution`` with each scale factor (one total per factor)."""
    column = torch.tensor(factors, dtype=scale.dtype, device=scale.device).view(-1, *([1] * scale.dim()))
    return -distribution.channel_log_prob(channel, values, centre, scale * column).double().flatten(1).sum(1)
