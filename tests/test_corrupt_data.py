"""Damaged payloads: decode_chain must raise CorruptDataError (a BBCodecError), never another exception.

errors.CorruptDataError is documented as the error for "compressed data that cannot be decoded as it
claims (damaged, truncated, wrong model)"; callers (the CLI) rely on it to report damage cleanly.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bbcodec.coding.chain import decode_chain, encode_chain
from bbcodec.errors import CorruptDataError


def with_payload(encoded, payload):
    return dataclasses.replace(encoded, payload=np.asarray(payload, dtype=np.uint32))


def flip_bit(words, index):
    words = words.copy()
    words[index] ^= np.uint32(1 << 7)
    return words


DAMAGE = {
    "last-words-cut": lambda e: with_payload(e, e.payload[:-3]),
    "first-words-cut": lambda e: with_payload(e, e.payload[3:]),
    "bit-flip-middle": lambda e: with_payload(e, flip_bit(e.payload, len(e.payload) // 2)),
    "bit-flip-top": lambda e: with_payload(e, flip_bit(e.payload, -1)),
    "empty-payload": lambda e: with_payload(e, []),
    "seed-prefix-one-short": lambda e: dataclasses.replace(e, untouched_seed_words=e.untouched_seed_words - 1),
    # The two below raise ValueError today (see the report): constriction refuses a stack whose top word
    # is zero, and AnsStack.from_payload refuses a seed prefix longer than the seed.
    "top-word-zeroed": lambda e: with_payload(e, np.concatenate([e.payload[:-1], [0]])),
    "seed-prefix-too-long": lambda e: dataclasses.replace(e, untouched_seed_words=e.seed_words + 1),
}


@pytest.mark.parametrize("coder", ["bitswap", "bbans"])
@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_payload_raises_corrupt_data_error(tiny_model, random_images, coder, damage):
    """Damage is reported as CorruptDataError, or at worst decodes to other pixels; never silently the same."""
    batches = [random_images(1), random_images(2)]
    encoded = encode_chain(tiny_model, batches, coder)
    try:
        decoded = decode_chain(tiny_model, damage(encoded), [b.shape for b in batches], coder)
    except CorruptDataError:
        return
    assert any(not torch.equal(got, expected) for got, expected in zip(decoded, batches))
