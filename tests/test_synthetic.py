"""Generated training images (bbcodec.training.synthetic) and the ``synthetic:N`` data source."""
from __future__ import annotations

import numpy as np
import pytest

from bbcodec.training import synthetic
from bbcodec.training.data import open_source, open_sources, split_held_out


def test_an_image_is_a_function_of_its_seed():
    a, b = synthetic.synthetic_image(1_000_003), synthetic.synthetic_image(1_000_003)
    assert a.shape == (synthetic.SIZE, synthetic.SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, synthetic.synthetic_image(1_000_004))


def test_images_are_varied_and_unlike_noise():
    images = [synthetic.synthetic_image(synthetic.TRAINING_SEEDS + i, 64) for i in range(40)]
    grey = [im for im in images if (im[..., 0] == im[..., 1]).all() and (im[..., 1] == im[..., 2]).all()]
    assert 2 <= len(grey) <= 25  # about a quarter grey
    colours = [len(np.unique(im.reshape(-1, 3), axis=0)) for im in images]
    assert min(colours) >= 1 and max(colours) > 20  # flat pictures and anti-aliased text or gradients
    steps = [np.abs(np.diff(im.astype(int), axis=1)).mean() for im in images]
    assert np.median(steps) < 20  # mostly smooth or flat, not noise (noise: about 85)


def test_synthetic_source_and_its_held_out_split():
    source = open_source("synthetic:40")
    assert len(source.images) == 40 and source.images[0].shape == (3, synthetic.SIZE, synthetic.SIZE)
    assert np.array_equal(source.images[5].numpy().transpose(1, 2, 0),
                          synthetic.synthetic_image(synthetic.TRAINING_SEEDS + 5))
    training, held_out = split_held_out(open_sources(["synthetic:40"]))
    assert len(training[0].images) == 38 and len(held_out[0].images) == 2


@pytest.mark.parametrize("spec", ["synthetic:", "synthetic:0", "synthetic:x", "synthetic:1000000"])
def test_bad_counts_are_refused(spec):
    with pytest.raises(ValueError, match="synthetic:N"):
        open_source(spec)
