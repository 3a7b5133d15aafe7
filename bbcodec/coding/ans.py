"""The ANS stack that bits-back coding pushes to and pops from.

A thin wrapper around constriction's ``AnsCoder`` (a stack of 32-bit words).

Seeding. Bits-back coding starts by *popping* a latent from the stack. An
empty constriction coder silently returns its lowest symbol there, which would
wreck the rate, so the stack starts from ``seed_words(n)``: pseudo-random words
that encoder and decoder both regenerate from a fixed recipe. The words at the
bottom of the stack that the encoder never reached are the same seed words when
it finishes; they are not stored (``split_seed``). The seed words that the
first pops did consume stay mixed into the stored payload: that is the
"initial bits" cost of bits-back coding (Townsend et al. 2019, section 3.2;
Kingma et al. 2019), which the caller can measure as the untouched-prefix
shortfall. After decoding everything, the decoder's stack must equal the seed
again, which is a free end-to-end integrity check.
"""
from __future__ import annotations

import hashlib
import importlib.metadata

import constriction
import numpy as np

from bbcodec.errors import CorruptDataError

WORD_BITS = 32
# What a decoder needs to rebuild the coder's quantized probabilities: constriction's
# quantization may change between minor versions, so files record the one they used.
ENTROPY_CODER = "constriction " + ".".join(importlib.metadata.version("constriction").split(".")[:2])
SEED_DOMAIN = b"bbcodec seed words v1"


def seed_words(count: int) -> np.ndarray:
    """``count`` pseudo-random uint32 words, the same on every machine and version."""
    raw = hashlib.shake_256(SEED_DOMAIN).digest(4 * count)
    words = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
    if count:
        words[-1] |= np.uint32(1 << 31)  # the top word of a constriction stack must not be zero
    return words


def split_seed(words: np.ndarray, seed: np.ndarray) -> tuple[int, np.ndarray]:
    """Split a finished stack into (length of the untouched seed prefix, payload to store)."""
    limit = min(len(words), len(seed))
    mismatch = np.flatnonzero(words[:limit] != seed[:limit])
    untouched = int(mismatch[0]) if mismatch.size else limit
    return untouched, words[untouched:].copy()


class AnsStack:
    """A stack of bits. ``push(value, dist)`` and ``pop(dist)`` code with a distribution.

    ``floor_bits``: a pop that leaves fewer bits than this raises
    CorruptDataError. A decoder's stack mirrors the encoder's, which never had
    fewer than the seed's last words (:func:`bbcodec.coding.chain.seed_length`
    leaves a margin), so a decoder that gets there is reading data that is not
    there: a damaged payload, or a header that claims a larger image. Checking
    at every pop stops it at once, before the bits a batch pushes back could
    hide it.
    """

    def __init__(self, words: np.ndarray | None = None, floor_bits: int = 0):
        self.floor_bits = floor_bits
        if words is None or len(words) == 0:
            self.coder = constriction.stream.stack.AnsCoder()
        else:
            self.coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))

    @classmethod
    def seeded(cls, seed: np.ndarray) -> "AnsStack":
        return cls(seed)

    @classmethod
    def from_payload(cls, seed: np.ndarray, untouched: int, payload: np.ndarray) -> "AnsStack":
        """Rebuild the encoder's final stack from the stored payload and the regenerated seed."""
        if not 0 <= untouched <= len(seed):
            raise CorruptDataError("corrupt payload: seed prefix longer than the seed")
        try:
            return cls(np.concatenate([seed[:untouched], payload.astype(np.uint32)]), floor_bits=WORD_BITS)
        except ValueError as error:  # constriction refuses e.g. a stack whose top word is zero
            raise CorruptDataError(f"corrupt payload: {error}") from None

    def copy(self) -> "AnsStack":
        """An independent stack with the same words (to code on from here two ways)."""
        twin = AnsStack.__new__(AnsStack)
        twin.floor_bits, twin.coder = self.floor_bits, self.coder.clone()
        return twin

    def push(self, value, dist) -> None:
        dist.push(self, value)

    def pop(self, dist):
        value = dist.pop(self)
        self.check_floor()
        return value

    def check_floor(self) -> None:
        """CorruptDataError if a pop left fewer bits than ``floor_bits`` (see the class docstring)."""
        if self.coder.num_valid_bits() < self.floor_bits:
            raise CorruptDataError("compressed data ends early: the file is corrupt or claims too large an image")

    def words(self) -> np.ndarray:
        return self.coder.get_compressed()

    def num_bits(self) -> int:
        return int(self.coder.num_bits())

    def num_words(self) -> int:
        return int(self.coder.num_words())
