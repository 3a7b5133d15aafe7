"""Flow++ as a codec: images coded with local bits back through the dequantizer and the flow.

A Flow++ model (:mod:`bbcodec.models.flowpp`) bounds -log P(x) by
E_q[log q(u | x) - log p(x + u)], with u in (0, 1)^D from a dequantizing
flow. Local bits-back coding (Ho, Lohn & Abbeel, NeurIPS 2019) codes
images at that bound, one batch after another on one ANS stack:

1. bits back for the noise: pop e from the prior N(0, I), then carry it
   through the dequantizer's coupling steps and its sigmoid to u
   (:func:`bbcodec.coding.local_bitsback.transport`; the dequantizer sees x);
2. v = x + u, carried through the logit and every step of the main flow
   to z;
3. push z under the prior.

Decoding runs the same moves backwards: pop z, carry it back to v, read
x = floor(v) and u = v - x, carry u back to e and push e, which returns
the bits the encoder took. A coupling step is three moves: the
normalization and 1x1 convolution as one linear map, split by LU
decomposition into an upper and a lower triangular map and a channel
permutation (which moves nothing), then the mixture coupling of one half
given the other.

Grids: the dequantizer's noise starts on a grid of step 2^-FIRST_BITS; each
linear map, the sigmoid and the logit move to a grid scaled by their median
stretch on the first batch (so that a grid step means about as much on
both sides), recorded as a :class:`GridPlan` that the decoder reads back;
the couplings keep the grid (one half passes through unchanged).

Everything is float arithmetic, so a chain decodes where the same float
kernels run (as ``--arithmetic float`` files do): the networks in float32,
the coded values and transforms in float64 (a grid of 2^-20 on values up to
256 needs more digits than float32 has). Encoder and decoder evaluate the
networks on batches of the same shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from bbcodec.coding.ans import AnsStack, WORD_BITS, seed_words, split_seed
from bbcodec.coding.local_bitsback import (Elementwise, Triangular, pop_prior, push_prior, transport,
                                           untransport, values)
from bbcodec.errors import BBCodecError, CorruptDataError
from bbcodec.models.flowpp import CouplingStep, FlowPP, from_logit, from_unit, to_logit, to_unit
from bbcodec.nn.flow_layers import Squeeze

FIRST_BITS = 10
"""The grid of the dequantizer's noise, where every chain of moves starts: step 2^-10 of a unit Gaussian; each
later grid follows from it (:class:`GridPlan`). The trained binary flow on 200 CIFAR-subset test images (bound
4.506 bits per sub-pixel, two orders of the images each): net rate +0.69 / +0.36 / +0.30 / +0.37 / +0.51 / +0.81 %
above the bound at 2^-8 / -9 / -10 / -11 / -12 / -14 (coarser, the moves' linearization fails; finer costs more,
and 40 halvings in the mixture's inverse instead of 16 did not change that: +0.54 % at 2^-12); the noise's
width at 2^-12: 2 / 4 / 8 grid steps, +0.60 / +0.51 / +1.16 %. The first image's initial bits grow by about a
bit a sub-pixel with each bit here."""
BITS_RANGE = (4, 40)
"""Every grid of a plan lies in this range of bits (a value up to 256 on a grid of 2^-40 still fits float64)."""
MAX_SIDE = 128
"""Largest image side a flow chain codes: the flow's attention takes memory in the square of the positions."""
MAX_BATCH_SUBPIXELS = 1 << 20
"""Largest batch (sub-pixels) a chain is coded in: what the networks hold at once."""
BATCH_GROWTH = 8
"""A batch holds at most one image for every this many coded before it (see :func:`_batches`)."""
SEED_BITS_PER_SUBPIXEL = 64
"""Seed bits a sub-pixel of two images or of a batch, whichever is more: more than the pops of a chain take
before its pushes pay (the seed the first pops did not reach is not stored)."""

SIGMOID = Elementwise(to_unit, from_unit, limits=(0.0, 1.0))
LOGIT = Elementwise(to_logit, from_logit)


class GridPlan:
    """The grid of each variable a batch passes through, by the bits of its step 2^-bits: ``bits[0]`` for the
    dequantizer's noise, one more after each move that changes the grid. Empty, it records the first batch's;
    given, the encoder and decoder walk it."""

    def __init__(self, bits: list[int] | None = None):
        self.bits = list(bits) if bits else [FIRST_BITS]
        self.recording = not bits
        self.position = 0

    def start(self, forward: bool) -> None:
        self.position = 0 if forward else len(self.bits) - 1
        self.recording = self.recording and forward

    @property
    def current(self) -> int:
        return self.bits[self.position]

    def advance(self, log_derivative: torch.Tensor) -> tuple[int, int]:
        """(x's bits, y's bits) for the next move forward; recording, y's grid is x's scaled by the move's median
        stretch (bits - log2 |f'|)."""
        if self.recording and self.position == len(self.bits) - 1:
            shift = round(float(log_derivative.median()) / math.log(2))
            self.bits.append(min(max(self.current - shift, BITS_RANGE[0]), BITS_RANGE[1]))
        if self.position + 1 >= len(self.bits):
            raise CorruptDataError("corrupt flow chain: its grid plan is shorter than the model's moves")
        self.position += 1
        return self.bits[self.position - 1], self.bits[self.position]

    def retreat(self) -> tuple[int, int]:
        """(x's bits, y's bits) for the next move backward."""
        if self.position < 1:
            raise CorruptDataError("corrupt flow chain: its grid plan is longer than the model's moves")
        self.position -= 1
        return self.bits[self.position], self.bits[self.position + 1]


def _linear_moves(step: CouplingStep):
    """The step's normalization and 1x1 convolution, A x + c = P (L (U x) + P^T c): (U, L, P's channel order)."""
    matrix, shift = (t.detach().double() for t in step.affine())
    permutation, lower, upper = torch.linalg.lu(matrix)
    order = permutation.argmax(dim=1)  # (P w)_i = w_order[i]
    return (Triangular(upper, torch.zeros_like(shift), upper=True),
            Triangular(lower, permutation.T @ shift, upper=False), order)


def _coupling(step: CouplingStep, a: torch.Tensor, bits: int, context) -> Elementwise:
    """The coupling of b given a: the network in its own precision (float32 as trained), the transform in
    float64 (b's values are)."""
    dtype = next(step.coupling.parameters()).dtype
    return Elementwise(*step.coupling.elementwise(values(a, bits).to(dtype), context))


def _moved(stack, move, x, plan: GridPlan):
    x_bits = plan.current
    x_bits, y_bits = plan.advance(move.forward(values(x, x_bits))[1])
    return transport(stack, move, x, x_bits, y_bits)


def _moved_back(stack, move, y, plan: GridPlan):
    x_bits, y_bits = plan.retreat()
    return untransport(stack, move, y, x_bits, y_bits)


def _encode_step(stack, step, x, plan: GridPlan, context=None):
    if isinstance(step, Squeeze):
        return F.pixel_unshuffle(x, 2)
    upper, lower, order = _linear_moves(step)
    x = _moved(stack, lower, _moved(stack, upper, x, plan), plan)[:, order]
    a, b = step.halves(x)
    bits = plan.current
    return step.joined(a, transport(stack, _coupling(step, a, bits, context), b, bits, bits))


def _decode_step(stack, step, y, plan: GridPlan, context=None):
    if isinstance(step, Squeeze):
        return F.pixel_shuffle(y, 2)
    upper, lower, order = _linear_moves(step)
    a, b = step.halves(y)
    bits = plan.current
    x = step.joined(a, untransport(stack, _coupling(step, a, bits, context), b, bits, bits))
    return _moved_back(stack, upper, _moved_back(stack, lower, x[:, torch.argsort(order)], plan), plan)


@torch.no_grad()
def encode_batch(stack, model: FlowPP, images: torch.Tensor, plan: GridPlan) -> None:
    """Push a uint8 batch (N, C, H, W) onto the stack (module docstring)."""
    plan.start(forward=True)
    context = model.dequantizer.context(images)
    e = pop_prior(stack, images.shape, plan.current, popped=True)
    for step in model.dequantizer.steps:
        e = _encode_step(stack, step, e, plan, context)
    u = _moved(stack, SIGMOID, e, plan)
    y = _moved(stack, LOGIT, (images.to(torch.int64) << plan.current) + u, plan)
    for step in model.steps:
        y = _encode_step(stack, step, y, plan)
    push_prior(stack, y, plan.current, popped=False)


@torch.no_grad()
def decode_batch(stack, model: FlowPP, shape, plan: GridPlan) -> torch.Tensor:
    """Pop a uint8 batch of ``shape`` (N, C, H, W) from the stack: :func:`encode_batch` backwards."""
    plan.start(forward=False)
    y = pop_prior(stack, (shape[0], *model.latent_shape(shape[1:])), plan.current, popped=False)
    for step in reversed(model.steps):
        y = _decode_step(stack, step, y, plan)
    v = _moved_back(stack, LOGIT, y, plan)
    bits = plan.current
    images = v >> bits
    if int(images.min()) < 0 or int(images.max()) > 255:
        raise CorruptDataError("corrupt flow chain: a decoded pixel is out of range")
    u = v - (images << bits)
    e = _moved_back(stack, SIGMOID, u, plan)
    context = model.dequantizer.context(images.to(torch.uint8))
    for step in reversed(model.dequantizer.steps):
        e = _decode_step(stack, step, e, plan, context)
    push_prior(stack, e, plan.current, popped=True)
    return images.to(torch.uint8)


# -- a chain of batches --------------------------------------------------------------------------------------


@dataclass
class FlowChain:
    """Images coded on one stack: the payload words (the unconsumed seed removed), what decoding needs, and the
    accounting."""

    payload: np.ndarray
    untouched_seed_words: int
    seed_words: int
    grid_bits: list[int]
    batch: int
    count: int
    shape: tuple[int, int, int]
    stored_bits_after: list[int] = field(default_factory=list)

    @property
    def stored_bits(self) -> int:
        return WORD_BITS * len(self.payload)

    @property
    def initial_bits(self) -> int:
        """The seed bits the first pops took (stored in the payload; the stack grew by stored - initial)."""
        return WORD_BITS * (self.seed_words - self.untouched_seed_words)


def _batches(count: int, batch: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch: one image, then batches of up to ``batch`` that grow with the images before
    them (BATCH_GROWTH). An image's moves pop about 19 bits a sub-pixel (its noise on fine grids: the initial
    bits of a chain's first image) before they push them back, and a chain grows by its rate, 3-5 bits: a batch
    pops more than the chain holds unless the chain is several times longer, and what it lacks comes from the
    seed as initial bits."""
    bounds, done = [], 0
    while done < count:
        size = min(batch, max(1, done // BATCH_GROWTH), count - done)
        bounds.append((done, done + size))
        done += size
    return bounds


def seed_length(batch: int, subpixels: int) -> int:
    """Seed words of a chain in batches of up to ``batch`` images of ``subpixels`` sub-pixels."""
    return SEED_BITS_PER_SUBPIXEL * max(2, batch) * subpixels // WORD_BITS


def check_fits(model: FlowPP, shape, batch: int, error=BBCodecError) -> None:
    """``error`` unless images of (C, H, W) ``shape`` in batches of ``batch`` suit the model and the limits: its
    channels, sides multiples of its stride and at most MAX_SIDE, batches of at most MAX_BATCH_SUBPIXELS."""
    channels, stride = model.config.image_channels, model.config.stride
    if shape[0] != channels or shape[1] % stride or shape[2] % stride:
        raise error(f"this flow model codes {channels}-channel images whose sides are multiples of {stride}, not "
                    f"{shape[0]} channel(s) of {shape[1]}x{shape[2]}")
    if max(shape[1:]) > MAX_SIDE or batch * int(np.prod(shape)) > MAX_BATCH_SUBPIXELS:
        raise error(f"flow chains code images up to {MAX_SIDE}x{MAX_SIDE} in batches of at most "
                    f"{MAX_BATCH_SUBPIXELS:,} sub-pixels")


def encode_images(model: FlowPP, images: np.ndarray, batch: int = 1) -> FlowChain:
    """Code uint8 images (N, H, W, C) on one stack in batches of up to ``batch`` images (:func:`_batches`)."""
    if images.dtype != np.uint8 or images.ndim != 4 or not len(images):
        raise BBCodecError("a flow chain codes uint8 images of one size, shaped (count, height, width, channels)")
    check_fits(model, images.shape[3:] + images.shape[1:3], batch)
    pixels = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    seed = seed_words(seed_length(batch, pixels[0].numel()))
    stack, plan, sizes = AnsStack.seeded(seed), GridPlan(), []
    for start, stop in _batches(len(pixels), batch):
        encode_batch(stack, model, pixels[start:stop], plan)
        sizes.append(stack.num_bits())
    untouched, payload = split_seed(stack.words(), seed)
    return FlowChain(payload, untouched, len(seed), plan.bits, batch, len(pixels), tuple(pixels.shape[1:]),
                     sizes)


def decode_images(model: FlowPP, chain: FlowChain) -> np.ndarray:
    """The uint8 images (N, H, W, C) of a chain, last batch first as a stack gives them."""
    seed = seed_words(chain.seed_words)
    stack = AnsStack.from_payload(seed, chain.untouched_seed_words, chain.payload)
    plan, out = GridPlan(chain.grid_bits), np.zeros((chain.count, *chain.shape), dtype=np.uint8)
    for start, stop in reversed(_batches(chain.count, chain.batch)):
        out[start:stop] = decode_batch(stack, model, (stop - start, *chain.shape), plan).numpy()
    if not np.array_equal(stack.words(), seed):
        raise CorruptDataError("corrupt flow chain: the stack does not end at its seed")
    return out.transpose(0, 2, 3, 1)
