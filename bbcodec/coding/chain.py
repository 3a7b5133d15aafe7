"""Coding a sequence of image batches on one ANS stack, with the initial bits accounted for.

Bits-back coding of many images shares one stack: the bits the second image
gets back were pushed by the first. The stack starts from seed words that
both sides regenerate (:func:`bbcodec.coding.ans.seed_words`); the untouched
part of the seed is not stored, so the stored payload is exactly what the
images cost, initial bits included. The decoder pops the batches in reverse
order and must end on the seed again. The encoder also records the stack's size
after each batch (``stack_words``); a decoder that has them checks each batch
against them, so that a damaged or forged payload is caught after one batch,
not after all the work the header asks for.

The first batches may be coded without bits back (:data:`bbcodec.coding.bitsback.NO_BITS_BACK`):
their latents are the prior's modes instead of pops that only initial bits
could pay for. ``start`` names how many: ``"bits-back"`` none,
``"no-bits-back"`` the first, ``"no-bits-back-first-N"`` the first N
(:func:`leading_batches`). ``start="auto"`` chooses the count batch by batch
(:func:`encode_steps`): a chain with one more batch without bits back is
kept while it leaves the smaller payload one batch later, for a bits-back
pop is paid by what the batches before it pushed, and a batch coded without
bits back pushes more but pops nothing. Many small images on one chain (an
archive's chunk of MNIST digits) want several such batches before the stack
can pay for a whole posterior; a photo's first tile, none. Judging a batch
by itself, without the next one, was tried and cost more than it saved: the
batch after one coded without bits back may dip into the seed (three
photos, 128- and 256-pixel tiles, bench/README.md), which only that next
batch shows.

Batches are given, or chosen while coding (:func:`encode_growing`, archives
of many small images): runs of units (an image's batch) join into batches as
large as the stack pays for, since a bits-back batch's pops are paid by what
the batches before it pushed; fewer, larger batches decode faster for the
same bits.

Every batch may be coded so (``start="no-bits-back-throughout"``): the model
then codes the pixels alone, its latents fixed at the prior's modes. Where the
latents cost more than they save (drawings, screens: their KL outweighs what
they tell the pixels, and their pops outrun the pushes), that is the smaller
code; the encoder tries it where the bits-back chain shows it
(``bbcodec.api``).

Accounting (all in bits):

* ``stored``  = payload actually written,
* ``net``     = growth of the stack over the seed (what bits-back promises, ~ -ELBO),
* ``initial`` = ``stored - net``: the seed bits the first pops consumed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from bbcodec.coding.ans import WORD_BITS, AnsStack, seed_words, split_seed
from bbcodec.coding.bitsback import CODERS, NO_BITS_BACK
from bbcodec.errors import CorruptDataError

MAX_BITS_PER_POP = 24  # constriction's probability precision bounds what one symbol can cost


@dataclass
class EncodedChain:
    payload: np.ndarray          # uint32 words to store
    untouched_seed_words: int    # seed words at the bottom of the stack, not stored
    seed_words: int = 0          # length of the seed both sides regenerate (from the batch shapes)
    stored_bits_after: list = field(default_factory=list)  # stored size after each batch, when tracked
    stack_words: list | None = None  # the stack's size in words after each batch (checkpoints; None: unknown)
    start: str = "bits-back"     # which first batches were coded without bits back (leading_batches)

    @property
    def stored_bits(self) -> int:
        return WORD_BITS * len(self.payload)

    @property
    def net_bits(self) -> int:
        return WORD_BITS * (self.untouched_seed_words + len(self.payload) - self.seed_words)

    @property
    def initial_bits(self) -> int:
        return self.stored_bits - self.net_bits


def seed_length(model, image_shape) -> int:
    """Seed words enough for the deepest dip any coder makes into the stack for one batch."""
    batch = image_shape[0]
    latent_symbols = batch * int(np.prod(model.latent_shape(image_shape[1:]))) * model.depth
    return (latent_symbols * MAX_BITS_PER_POP) // WORD_BITS + 4


def _latent_like(model, image_shape) -> torch.Tensor:
    return torch.zeros(image_shape[0], *model.latent_shape(image_shape[1:]), device=model.device)


def _seed_length(steps) -> int:
    """The seed both sides use: a pure function of the models and batch shapes."""
    return max(seed_length(model, tuple(getattr(batch, "shape", batch))) for model, batch in steps)


STARTS = ("bits-back", "no-bits-back", "no-bits-back-throughout")
"""Which batches of a chain are coded without bits back (see the module doc): none, the first, or all; besides
these, ``FIRST_PREFIX`` and a count (two or more): that many first batches."""
FIRST_PREFIX = "no-bits-back-first-"


def start_named(leading: int) -> str:
    """The ``start`` that codes the first ``leading`` batches without bits back."""
    return STARTS[leading] if leading < 2 else f"{FIRST_PREFIX}{leading}"


def is_start(name) -> bool:
    """Whether ``name`` is a ``start`` (:data:`STARTS`, or :data:`FIRST_PREFIX` and a count, written as
    :func:`start_named` writes it)."""
    if name in STARTS:
        return True
    count = name[len(FIRST_PREFIX):] if isinstance(name, str) and name.startswith(FIRST_PREFIX) else ""
    return count.isascii() and count.isdigit() and len(count) <= 9 and start_named(int(count)) == name


def leading_batches(start: str, batches: int) -> int:
    """How many first batches of a chain of ``batches`` the ``start`` codes without bits back (a ValueError for
    a name that is no start, or one that names more batches than the chain has)."""
    if not is_start(start):
        raise ValueError(f"unknown start {start!r}")
    leading = {STARTS[0]: 0, STARTS[1]: 1, STARTS[2]: batches}.get(start)
    leading = int(start[len(FIRST_PREFIX):]) if leading is None else leading
    if leading > max(batches, 1):
        raise ValueError(f"start {start!r} names more batches than the chain's {batches}")
    return leading


def encode_steps(steps, coder: str = "bitswap", track: bool = False, progress=None,
                 start: str = "bits-back") -> EncodedChain:
    """Push each ``(model, batch)`` in order onto one seeded stack.

    ``model`` is anything with the coders' interface (depth, posterior,
    conditional, top_prior, latent_shape); ``batch`` a uint8 tensor (B, C, H, W).
    ``progress(images)``, if given, is called after each batch. ``start``: see
    :func:`leading_batches`, or ``"auto"`` (:func:`_chosen_start`).
    """
    seed = seed_words(_seed_length(steps))
    if start == "auto":
        chain = _chosen_start(steps, seed, coder, track, progress)
        start = start_named(chain.leading)
    else:
        chain = _ChainEncoder(leading_batches(start, len(steps)), seed, coder, track)
    chain.code(steps[len(chain.stack_words):], progress)
    return chain.result(start)


def encode_growing(units, limits: list[int], coder: str = "bitswap", start: str = "auto",
                   seed_length: int | None = None) -> tuple[EncodedChain, list[int]]:
    """Push the ``units`` [(model, batch)] in order onto one seeded stack, runs of them joined into batches as
    large as the stack pays for; returns the chain and how many units each batch holds.

    The first batch holds the units coded without bits back (``start``, as in :func:`encode_steps`; ``"auto"``
    chooses their count on single units): they pop nothing, so together they cost what they cost apart.
    Then each batch tries half as many units again as the one before (at least one more, at most
    ``limits[i]`` from unit ``i``: units of one model and shape), then as many, then half, and takes the
    first that leaves the seed as untouched as the stack before it had: its bits-back pops are paid by what
    the batches before it pushed, so a batch too large for them would cost initial bits that smaller ones
    do not; a single unit is kept whatever it costs. ``seed_length``: the seed's words (both sides must use
    the same; default: enough for the units one at a time).
    """
    seed = seed_words(seed_length or _seed_length(units))
    if start == "auto":
        chain = _chosen_start(units, seed, coder, False, None)
        start = start_named(chain.leading)
    else:
        chain = _ChainEncoder(leading_batches(start, len(units)), seed, coder, False)
    sizes = [1] * len(chain.stack_words)
    if 1 < chain.leading <= limits[0] and start != STARTS[2]:
        # the first batches pop nothing: as one batch they cost the same, and decode faster
        leading = chain.leading
        chain = _ChainEncoder(1, seed, coder, False)
        chain.code([_joined(units, 0, leading)])
        start, sizes = STARTS[1], [leading]
    size, position = 1, sum(sizes)
    while position < len(units):
        tries = [1] if len(sizes) < chain.leading else [max(size + 1, size * 3 // 2), size, size // 2, 1]
        untouched = chain.untouched_words()
        for size in dict.fromkeys(max(1, min(t, limits[position])) for t in tries):
            trial = chain.copy(chain.leading)
            trial.code([_joined(units, position, size)])
            if size == 1 or trial.untouched_words() >= untouched:
                break
        chain, position = trial, position + size
        sizes.append(size)
    return chain.result(start), sizes


def _joined(units, first: int, count: int):
    """Units ``first`` .. ``first + count - 1`` as one (model, batch): the first's model, their batches stacked."""
    return units[first][0], torch.cat([batch for _, batch in units[first:first + count]])


def _chosen_start(steps, seed: np.ndarray, coder: str, track: bool, progress) -> "_ChainEncoder":
    """The chain with the smallest payload, batch by batch, of those with 0, 1, 2, ... first batches without bits
    back: one more is taken while that chain is the smaller after the batch that follows it (bits back when
    equal). Returned after its chosen batches and the next (those reported to ``progress``). Each batch tried
    costs three codings of a batch; where every batch is cheaper without bits back, all are tried."""
    best = _ChainEncoder(0, seed, coder, track)
    best.code(steps[:2])
    without = _ChainEncoder(len(steps), seed, coder, track)  # the batches so far, every one without bits back
    while without.leading_coded < len(steps):
        without.code(steps[without.leading_coded:without.leading_coded + 1])
        rival = without.copy(leading=without.leading_coded)
        rival.code(steps[rival.leading:rival.leading + 1])
        if best.payload_words() <= rival.payload_words():
            break
        best = rival
        best.code(steps[best.leading + 1:best.leading + 2])
    if progress:
        for _, batch in steps[:len(best.stack_words)]:
            progress(len(batch))
    return best


class _ChainEncoder:
    """One chain being coded: batches pushed onto a seeded stack, its first ``leading`` without bits back."""

    def __init__(self, leading: int, seed: np.ndarray, coder: str, track: bool):
        self.leading, self.seed, self.coder, self.track = leading, seed, coder, track
        self.ans = AnsStack.seeded(seed)
        self.sizes, self.stack_words = [], []

    @property
    def leading_coded(self) -> int:
        """How many batches have been pushed without bits back so far."""
        return min(self.leading, len(self.stack_words))

    def copy(self, leading: int) -> "_ChainEncoder":
        """This chain so far, to go on with ``leading`` first batches without bits back (at least those so)."""
        twin = copy.copy(self)
        twin.leading, twin.ans = leading, self.ans.copy()
        twin.sizes, twin.stack_words = [*self.sizes], [*self.stack_words]
        return twin

    def code(self, steps, progress=None) -> None:
        """Push the next batches of the chain."""
        for index, (model, batch) in enumerate(steps, start=len(self.stack_words)):
            _coder_pair(self.coder, index < self.leading)[0](self.ans, model, batch)
            self.stack_words.append(self.ans.num_words())
            if progress:
                progress(len(batch))
            if self.track:
                self.sizes.append(WORD_BITS * self.payload_words())

    def untouched_words(self) -> int:
        """How many seed words at the bottom of the stack no pop has reached so far."""
        return split_seed(self.ans.words(), self.seed)[0]

    def payload_words(self) -> int:
        return len(split_seed(self.ans.words(), self.seed)[1])

    def result(self, start: str) -> EncodedChain:
        untouched, payload = split_seed(self.ans.words(), self.seed)
        return EncodedChain(payload, untouched, len(self.seed), self.sizes, self.stack_words, start)


def _coder_pair(coder: str, without_bits_back: bool):
    """The (encode, decode) pair for a batch coded with or without bits back."""
    return NO_BITS_BACK[coder] if without_bits_back else CODERS[coder]


def decode_steps(steps, encoded: EncodedChain, coder: str = "bitswap", progress=None,
                 seed_length: int | None = None) -> list:
    """Pop the batches of ``steps`` = [(model, batch shape)] (the encoder's order, its ``encoded.start``);
    check the stack ends on the seed (of ``seed_length`` words, default: enough for these batches)."""
    seed = seed_words(seed_length or _seed_length(steps))
    try:
        leading = leading_batches(encoded.start, len(steps))
    except ValueError as problem:
        raise CorruptDataError(f"corrupt .bbc header ({problem})") from None
    ans = AnsStack.from_payload(seed, encoded.untouched_seed_words, encoded.payload)
    expected = _checkpoints(encoded, len(steps), len(seed), ans.num_words())
    batches = []
    for index, (model, shape) in reversed(list(enumerate(steps))):
        decode = _coder_pair(coder, index < leading)[1]
        batches.append(decode(ans, model, _latent_like(model, shape)))
        # The encoder's stack never reached below the untouched seed; a decoder that does
        # has run out of real data (damaged payload, or a header that claims a larger image).
        if ans.num_words() < encoded.untouched_seed_words:
            raise CorruptDataError("compressed data ends early: the file is corrupt or claims too large an image")
        if expected is not None and ans.num_words() != expected[index]:
            raise CorruptDataError(f"compressed data does not decode as it was coded (batch {index + 1} of "
                                   f"{len(steps)} leaves the stack at another size): the file is damaged")
        if progress:
            progress(shape[0])
    if not np.array_equal(ans.words(), seed):
        raise CorruptDataError("decoded data does not end on the seed: the file is corrupt or the model differs")
    return batches[::-1]


def _checkpoints(encoded: EncodedChain, batches: int, seed: int, start: int) -> list | None:
    """The stack sizes the decoder must see after each batch, in decoding terms: entry i is the size
    before batch i was pushed (the seed before the first). Checked against the payload before any work."""
    if encoded.stack_words is None:
        return None
    sizes = [int(v) for v in encoded.stack_words]
    if len(sizes) != batches or sizes[-1] != start:
        raise CorruptDataError("corrupt .bbc file (the stack checkpoints do not fit the payload or the image)")
    return [seed] + sizes[:-1]


def check_codable(model, image_shape) -> None:
    stride = model.config.stride
    if len(image_shape) != 4 or image_shape[2] % stride or image_shape[3] % stride:
        raise ValueError(f"the model codes batches (B, C, H, W) with H and W multiples of {stride}, "
                         f"got {tuple(image_shape)}; bbcodec.coding.image codes any size")


def encode_chain(model, batches, coder: str = "bitswap", track: bool = False) -> EncodedChain:
    """Push every batch (uint8 tensors (B, C, H, W), H and W multiples of the stride) onto one stack."""
    for batch in batches:
        check_codable(model, batch.shape)
    return encode_steps([(model, batch) for batch in batches], coder, track)


def decode_chain(model, encoded: EncodedChain, shapes, coder: str = "bitswap") -> list:
    """Pop the batches of ``shapes`` (the encoder's order) and check the stack ends on the seed."""
    return decode_steps([(model, shape) for shape in shapes], encoded, coder)
