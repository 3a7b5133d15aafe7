"""Model families are plug-ins: a second family, registered from one module, codes through every layer.

``fixtures.toy_family`` defines a one-layer VAE with logistic pixels and its
exact version; nothing in ``bbcodec/coding``, the container, the exact
building blocks or training names it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bbcodec
from bbcodec import imageio
from bbcodec.coding.image import CoderSettings
from bbcodec.errors import BBCodecError
from bbcodec.models import family
from bbcodec.models.export import load_model, model_to_bytes, save_model
from bbcodec.models.markov_vae import MarkovVAE
from fixtures.samples import binary_pixels
from fixtures.toy_family import ToyConfig, ToyVAE


@pytest.fixture
def toy_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "toy.safetensors"
    save_model(ToyVAE(ToyConfig()).eval(), path)
    return path


def test_the_registry_knows_both_families_and_refuses_unknown_names():
    assert family.family("markov-vae") is MarkovVAE and family.family("toy-one-layer") is ToyVAE
    assert family.family_of(ToyConfig()) is ToyVAE
    with pytest.raises(BBCodecError, match="unknown model family"):
        family.family("no-such-family")
    with pytest.raises(ValueError, match="already registered"):
        family.register(type("Impostor", (family.CodecModel,), {"family": "toy-one-layer"}))


def test_a_model_file_names_its_family_and_loads_as_it(toy_file):
    model = load_model(toy_file)
    assert isinstance(model, ToyVAE) and model.config == ToyConfig()
    first_family = MarkovVAE(MarkovVAE.config_type(hidden_channels=8, latent_layers=1, blocks_per_net=0))
    assert b'"family"' not in model_to_bytes(first_family)[:400]  # its files stay as they were


@pytest.mark.parametrize("arithmetic", ["float", "exact"])
@pytest.mark.parametrize("coder", ["bitswap", "bbans"])
def test_the_toy_family_compresses_and_decompresses(toy_file, arithmetic, coder):
    image = imageio.Image(binary_pixels(20, 28, 3, seed=4), "RGB")
    stats = {}
    settings = CoderSettings(coder=coder, tile=16, arithmetic=arithmetic)
    data = bbcodec.compress(image, model=str(toy_file), settings=settings, stats=stats)
    header = bbcodec.info(data)
    assert header["method"] == "bits-back" and header["coder"]["arithmetic"] == arithmetic
    assert np.array_equal(bbcodec.decompress(data, model=str(toy_file)).pixels, image.pixels)


def test_the_toy_family_trains_through_the_shared_loop(tmp_path):
    from bbcodec.training.loop import TrainConfig, train

    images = torch.from_numpy(np.stack([binary_pixels(16, 16, 3, seed=s) for s in range(8)])).permute(0, 3, 1, 2)
    config = TrainConfig(steps=3, batch_size=4, eval_every=3, checkpoint_every=3, warmup_steps=1, threads=1)
    model = train(ToyConfig(), config, lambda generator, size: images[:size], images[:4], tmp_path / "run")
    assert isinstance(model, ToyVAE) and (tmp_path / "run" / "checkpoint.safetensors").exists()
