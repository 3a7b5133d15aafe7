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

The first batch may be coded without bits back (``start="no-bits-back"``,
:data:`bbcodec.coding.bitsback.NO_BITS_BACK`): its latents are the prior's
modes instead of pops that only initial bits could pay for. ``start="auto"``
codes a chain of one or two batches (a small image) both ways and keeps the
smaller (:func:`encode_steps`); a longer chain codes its first two batches
both ways and goes on with the start that left the smaller payload
(:func:`cheaper_start`). Deciding on the first batch alone was tried and cost
more than it saved: the second batch of a chain started without bits back
may dip into the seed (three photos, 128- and 256-pixel tiles,
bench/README.md), which the second batch shows.

Accounting (all in bits):

* ``stored``  = payload actually written,
* ``net``     = growth of the stack over the seed (what bits-back promises, ~ -ELBO),
* ``initial`` = ``stored - net``: the seed bits the first pops consumed.
"""
from __future__ import annotations

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
    start: str = "bits-back"     # how the first batch was coded (STARTS)

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


STARTS = ("bits-back", "no-bits-back")
"""How the first batch of a chain is coded: like the others, or without bits back (see the module doc)."""


def _coder_pair(coder: str, start: str, index: int):
    """The (encode, decode) pair for the batch at ``index`` of a chain."""
    return NO_BITS_BACK[coder] if index == 0 and start == "no-bits-back" else CODERS[coder]


def encode_steps(steps, coder: str = "bitswap", track: bool = False, progress=None,
                 start: str = "bits-back") -> EncodedChain:
    """Push each ``(model, batch)`` in order onto one seeded stack.

    ``model`` is anything with the coders' interface (depth, posterior,
    conditional, top_prior, latent_shape); ``batch`` a uint8 tensor (B, C, H, W).
    ``progress(images)``, if given, is called after each batch. ``start``: one of
    :data:`STARTS`, or ``"auto"``: a chain of one or two batches is coded both
    ways and the smaller kept (bits back when equal); a longer one starts the
    way that leaves the smaller payload after its first two batches (:func:`cheaper_start`).
    """
    if start != "auto":
        return _encode_from(start, steps, coder, track, progress)
    if len(steps) > PREFIX_BATCHES:
        return _encode_from(cheaper_start(steps, coder), steps, coder, track, progress)
    chains = [_encode_from(way, steps, coder, track, progress if way == STARTS[-1] else None) for way in STARTS]
    return min(chains, key=lambda chain: len(chain.payload))


PREFIX_BATCHES = 2
"""How many batches :func:`cheaper_start` codes both ways: the second is where a chain started without bits back
pays for it (its pops dip into the seed if the first batch pushed too little)."""


def cheaper_start(steps, coder: str) -> str:
    """The start whose chain is the smaller after the first :data:`PREFIX_BATCHES` batches (bits back when
    equal), both coded on the seed of the whole chain. After them the stack holds enough to pay for later pops
    either way, so what remains costs the same."""
    seed = _seed_length(steps)
    sizes = [len(_encode_from(way, steps[:PREFIX_BATCHES], coder, False, None, seed).payload) for way in STARTS]
    return STARTS[int(sizes[1] < sizes[0])]


def _encode_from(start: str, steps, coder: str, track: bool, progress, seed_length: int | None = None
                 ) -> EncodedChain:
    """The chain of ``steps`` whose first batch is coded as ``start`` says (on a seed of ``seed_length`` words,
    by default the one :func:`decode_steps` regenerates for these steps)."""
    seed = seed_words(seed_length or _seed_length(steps))
    ans = AnsStack.seeded(seed)
    sizes, stack_words = [], []
    for index, (model, batch) in enumerate(steps):
        _coder_pair(coder, start, index)[0](ans, model, batch)
        stack_words.append(ans.num_words())
        if progress:
            progress(len(batch))
        if track:
            sizes.append(WORD_BITS * len(split_seed(ans.words(), seed)[1]))
    untouched, payload = split_seed(ans.words(), seed)
    return EncodedChain(payload, untouched, len(seed), sizes, stack_words, start)


def decode_steps(steps, encoded: EncodedChain, coder: str = "bitswap", progress=None) -> list:
    """Pop the batches of ``steps`` = [(model, batch shape)] (the encoder's order, its ``encoded.start``);
    check the stack ends on the seed."""
    seed = seed_words(_seed_length(steps))
    ans = AnsStack.from_payload(seed, encoded.untouched_seed_words, encoded.payload)
    expected = _checkpoints(encoded, len(steps), len(seed), ans.num_words())
    batches = []
    for index, (model, shape) in reversed(list(enumerate(steps))):
        decode = _coder_pair(coder, encoded.start, index)[1]
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
