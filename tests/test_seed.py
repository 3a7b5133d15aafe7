"""Seed words and the untouched-prefix split that keeps them out of the stored payload."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bbcodec.coding.ans import AnsStack, seed_words, split_seed
from bbcodec.distributions import GridGaussian, LatentGrid


@pytest.mark.parametrize("count", [1, 2, 7, 100])
def test_seed_words_deterministic_length_and_top_word(count):
    words = seed_words(count)
    assert words.dtype == np.uint32 and words.shape == (count,)
    np.testing.assert_array_equal(words, seed_words(count))
    assert words[-1] != 0 and words[-1] >= 1 << 31


def test_seed_words_are_pinned():
    """Old files decode only if the recipe never changes: pin the first words."""
    assert [hex(w) for w in seed_words(4)[:3]] == ["0x894fc87a", "0x19a5af2", "0xd4175681"]


def test_seed_words_empty():
    assert seed_words(0).shape == (0,)


def test_a_fresh_stack_holds_exactly_its_seed():
    seed = seed_words(8)
    np.testing.assert_array_equal(AnsStack.seeded(seed).words(), seed)
    assert split_seed(seed.copy(), seed)[0] == len(seed) and split_seed(seed.copy(), seed)[1].size == 0


def latent_dist(count):
    return GridGaussian(torch.zeros(count), torch.full((count,), 0.5), LatentGrid())


# pops then pushes (in symbols): from dipping a little to consuming the whole seed and more, with or without pushes.
SCENARIOS = {"push-only": (0, 40), "dip-then-grow": (20, 200), "dip-then-shrink": (60, 10), "pop-only": (200, 0)}


@pytest.mark.parametrize("pops, pushes", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_split_seed_and_from_payload_rebuild_the_stack(pops, pushes):
    """split_seed drops only an unchanged seed prefix; from_payload puts it back, word for word."""
    seed = seed_words(32)
    ans = AnsStack.seeded(seed)
    if pops:
        ans.pop(latent_dist(pops))
    if pushes:
        ans.push(torch.linspace(-1, 1, pushes).mul(64).round().div(64), latent_dist(pushes))
    words = ans.words()
    untouched, payload = split_seed(words, seed)
    assert 0 <= untouched <= len(seed)
    np.testing.assert_array_equal(words[:untouched], seed[:untouched])
    if untouched < min(len(words), len(seed)):
        assert words[untouched] != seed[untouched]
    rebuilt = AnsStack.from_payload(seed, untouched, payload).words()
    np.testing.assert_array_equal(rebuilt, words)
