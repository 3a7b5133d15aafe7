"""The one round-trip check that every codec test uses (in the spirit of craystack's ``check_codec``).

A *codec* here is anything with the interface of :mod:`bbcodec.distributions`:
``push(ans, value)`` and ``pop(ans) -> value`` on an :class:`~bbcodec.coding.ans.AnsStack`.
"""
from __future__ import annotations

import numpy as np
import torch

from bbcodec.coding.ans import AnsStack, seed_words


def check_roundtrip(codecs, values, seed_len: int = 16) -> int:
    """Push ``values[i]`` with ``codecs[i]`` in order onto a seeded stack, then pop them all back.

    Asserts that every value comes back exactly (same dtype, shape and elements) in reverse order,
    that pushing made the stack grow, and that the stack ends exactly on the seed words it started
    from. ``seed_len`` must cover the deepest dip a codec makes (bits-back codecs pop first).
    Returns how many bits the pushes grew the stack by.
    """
    assert len(codecs) == len(values) > 0
    seed = seed_words(seed_len)
    ans = AnsStack.seeded(seed)
    start_bits = ans.num_bits()
    for codec, value in zip(codecs, values):
        ans.push(value, codec)
    grown = ans.num_bits() - start_bits
    assert grown > 0, "pushing values did not grow the stack"
    for index in reversed(range(len(values))):
        decoded, expected = ans.pop(codecs[index]), values[index]
        assert decoded.dtype == expected.dtype, f"value {index}: dtype {decoded.dtype} != {expected.dtype}"
        assert decoded.shape == expected.shape, f"value {index}: shape {decoded.shape} != {expected.shape}"
        assert torch.equal(decoded, expected), f"value {index} did not round-trip"
    np.testing.assert_array_equal(ans.words(), seed, err_msg="the stack did not end on its seed")
    return grown
