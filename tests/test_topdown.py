"""The top-down ResNet VAE family (bbcodec/models/topdown_vae.py) and its BB-ANS coder.

A small model of the family, untrained: its priors see only the layers above
(the decoder computes them before it has the image), coding it costs what its
−ELBO counts up to the coder's quantization, files round-trip in both
arithmetics through the public API and the chain, and a coder that the family
cannot use is refused with one line.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import bbcodec
from bbcodec import imageio
from bbcodec.coding.bitsback import coded_cost
from bbcodec.coding.chain import decode_chain, encode_chain
from bbcodec.coding.image import CoderSettings, decode_image, encode_image
from bbcodec.errors import BBCodecError, CorruptDataError
from bbcodec.models.export import load_model, save_model
from bbcodec.models.topdown_vae import TopDownConfig, TopDownVAE
from fixtures.samples import binary_pixels
from roundtrip import check_roundtrip

SMALL = TopDownConfig(hidden_channels=16, latent_channels=4, latent_layers=3, blocks_per_net=1, stride=4,
                      pixel_distribution="laplace", channel_coupling=True, feature_channels=8,
                      context_channels=8, context_blocks=1, levels=2, linear_prediction=True)


@pytest.fixture(scope="module")
def model() -> TopDownVAE:
    torch.manual_seed(0)
    return TopDownVAE(SMALL).eval()


@pytest.fixture(scope="module")
def model_path(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("topdown") / "topdown.safetensors"
    save_model(model, path)
    return path


def cheap_batch(batch: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Images that even an untrained model codes well below 8 bits a sub-pixel: 0/255 pixels (the tails of a
    wide pixel distribution)."""
    return torch.from_numpy(np.stack([binary_pixels(size, size, 3, seed=seed * batch + i)
                                      for i in range(batch)])).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def test_the_priors_see_only_the_layers_above_and_the_posteriors_see_the_image(model):
    x, other = cheap_batch(1, seed=1), cheap_batch(1, seed=2)
    like = torch.zeros(1, *model.latent_shape(x.shape[1:]))
    state = model.top_state(like)
    for layer in reversed(range(model.depth)):
        here, there = model.inference(layer, state, model.bottom_up(x)), model.inference(layer, state,
                                                                                           model.bottom_up(other))
        assert not torch.equal(here.mean, there.mean)
        prior = model.prior(layer, state)  # from the state alone: the same for any image
        state = model.descend(layer, state, prior.mode())
    assert model.prior(0, state).mean.shape == like.shape


@pytest.mark.parametrize("arithmetic", ["float", "exact"])
def test_a_chain_round_trips_and_costs_its_nelbo(model, arithmetic):
    """Three batches on one chain decode exactly; the net cost is the −ELBO counted by the same coder, up to
    the latent grid and the coder's quantized probabilities."""
    batches = [cheap_batch(2, seed=s) for s in range(3)]
    coding = model.exact() if arithmetic == "exact" else model
    encoded = encode_chain(coding, batches, coder="topdown")
    decoded = decode_chain(coding, encoded, [b.shape for b in batches], coder="topdown")
    assert all(torch.equal(d, b) for d, b in zip(decoded, batches))
    torch.manual_seed(1)
    nelbo = sum(coded_cost(model, b, "topdown").nats for b in batches) / math.log(2)
    subpixels = sum(b.numel() for b in batches)
    assert nelbo / subpixels < 4
    assert abs(encoded.net_bits - nelbo) / subpixels < 0.15


def test_no_bits_back_start_round_trips(model):
    from bbcodec.coding.bitsback import NO_BITS_BACK

    encode, decode = NO_BITS_BACK["topdown"]

    class Start:  # the first batch of a chain, as a push/pop codec of check_roundtrip
        def push(self, ans, x):
            encode(ans, model, x)

        def pop(self, ans):
            return decode(ans, model, torch.zeros(2, *model.latent_shape((3, 16, 16))))

    check_roundtrip([Start()], [cheap_batch(2)])


@pytest.mark.parametrize("arithmetic", ["float", "exact"])
@pytest.mark.parametrize("mode,channels", [("RGB", 3), ("L", 1), ("RGBA", 4)])
def test_files_round_trip_through_the_api(model_path, arithmetic, mode, channels):
    image = imageio.Image(binary_pixels(21, 30, channels, seed=3), mode)
    data = bbcodec.compress(image, model=str(model_path), settings=CoderSettings(tile=16, arithmetic=arithmetic))
    header = bbcodec.info(data)
    assert header["method"] == "bits-back" and header["coder"]["coder"] == "topdown"
    assert np.array_equal(bbcodec.decompress(data, model=str(model_path)).pixels, image.pixels)


def test_a_coder_the_family_cannot_use_is_refused(model, model_path, tiny_model):
    image = imageio.Image(binary_pixels(16, 16, 3, seed=4), "RGB")
    with pytest.raises(BBCodecError, match="codes with topdown, not bitswap"):
        bbcodec.compress(image, model=str(model_path), settings=CoderSettings(coder="bitswap", tile=16))
    encoded = encode_image(model, image.pixels, CoderSettings(tile=16))
    for net, coder in [(tiny_model, "topdown"), (model, "bbans")]:  # a file naming a coder its model cannot use
        with pytest.raises(CorruptDataError, match=f"not {coder}"):
            decode_image(net, encoded, 16, 16, 3, CoderSettings(coder=coder, tile=16, arithmetic="exact"))


def test_a_model_file_loads_as_its_family(model, model_path):
    loaded = load_model(model_path)
    assert isinstance(loaded, TopDownVAE) and loaded.config == SMALL
    x = cheap_batch(1)
    torch.manual_seed(0)
    first = loaded(x)["nelbo"].item()
    torch.manual_seed(0)
    assert first == pytest.approx(model(x)["nelbo"].item(), rel=1e-5)


def test_the_family_trains_through_the_shared_loop(tmp_path):
    from bbcodec.training.loop import TrainConfig, train

    images = torch.cat([cheap_batch(4, seed=s) for s in range(2)])
    config = TrainConfig(steps=3, batch_size=4, eval_every=3, checkpoint_every=3, warmup_steps=1, threads=1)
    trained = train(SMALL, config, lambda generator, size: images[:size], images[:4], tmp_path / "run")
    assert isinstance(trained, TopDownVAE) and (tmp_path / "run" / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("coding", ["topdown", "bitswap"])
def test_a_long_chain_keeps_first_batches_without_bits_back_while_they_pay(model, tiny_model, coding):
    """``start="auto"`` on a chain of several batches: k first batches without bits back, k the first count
    whose chain is no larger than the one with k + 1 after batch k + 2; the same chain as that start asked for
    explicitly, and it decodes."""
    from bbcodec.coding.chain import decode_steps, encode_steps, start_named

    net = model if coding == "topdown" else tiny_model
    batches = [cheap_batch(1, seed=s) for s in range(4)]
    steps = [(net, b) for b in batches]

    def payload(leading: int, batches: int) -> int:
        return len(encode_steps(steps[:batches], coding, start=start_named(leading)).payload)

    chosen = 0
    while chosen < len(steps) and payload(chosen, chosen + 2) > payload(chosen + 1, chosen + 2):
        chosen += 1
    auto = encode_steps(steps, coding, start="auto")
    assert auto.start == start_named(chosen)
    assert np.array_equal(auto.payload, encode_steps(steps, coding, start=auto.start).payload)
    decoded = decode_steps([(net, b.shape) for b in batches], auto, coding)
    assert all(torch.equal(d, b) for d, b in zip(decoded, batches))


def test_an_archive_of_the_family_round_trips(model_path):
    import io

    from bbcodec import archive

    members = [archive.Member(f"image-{i}", imageio.Image(binary_pixels(12 + i, 9, 3 if i % 2 else 1, seed=i),
                                                          "RGB" if i % 2 else "L")) for i in range(5)]
    buffer = io.BytesIO()
    archive.pack(members, buffer, model=str(model_path))
    packed = archive.Archive(buffer.getvalue(), model=str(model_path))
    assert packed.header.settings.coder == "topdown"
    assert packed.names() == [m.name for m in members]
    assert all(np.array_equal(packed.extract(m.name).pixels, m.image.pixels) for m in members)
