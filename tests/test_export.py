"""Model files: exact round trip, a stable content hash, packed size, and clean errors on bad bytes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_model
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from bbcodec.coding.chain import decode_chain, encode_chain
from bbcodec.errors import BBCodecError
from bbcodec.models.config import VAEConfig
from bbcodec.models.export import model_from_bytes, model_hash, model_size, model_to_bytes
from bbcodec.nn import BinaryConv2d

TINY_FLOAT = VAEConfig(hidden_channels=16, latent_layers=4, blocks_per_net=1, binary_weights=False)


def distribution_params(model, x, generator):
    """Every posterior's and conditional's parameters for image x and random latents."""
    params = []
    with torch.no_grad():
        for layer in range(model.depth):
            below = x if layer == 0 else torch.randn(x.shape[0], *model.latent_shape(x.shape[1:]), generator=generator)
            q = model.posterior(layer, below)
            p = model.conditional(layer, torch.randn(q.mean.shape, generator=generator))
            params += [q.mean, q.std, p.mean, p.log_scale if layer == 0 else p.std]
    return params


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "float"])
def test_round_trip_gives_identical_distributions(binary, random_images):
    """A reloaded model computes bit-identical posteriors and conditionals, in eval mode."""
    model = make_model(0) if binary else make_model(0, TINY_FLOAT)
    loaded = model_from_bytes(model_to_bytes(model))
    assert not loaded.training and loaded.config == model.config
    x = random_images(2)
    original = distribution_params(model, x, torch.Generator().manual_seed(5))
    reloaded = distribution_params(loaded, x, torch.Generator().manual_seed(5))
    assert len(original) == len(reloaded) == 4 * model.depth
    for a, b in zip(original, reloaded):
        assert torch.equal(a, b)


def test_reloaded_model_decodes_what_the_original_encoded(tiny_model, random_images):
    """End to end: encode with the model, decode with the model read back from its bytes."""
    batches = [random_images(1), random_images(2)]
    encoded = encode_chain(tiny_model, batches, "bitswap")
    decoded = decode_chain(model_from_bytes(model_to_bytes(tiny_model)), encoded, [b.shape for b in batches])
    assert all(torch.equal(a, b) for a, b in zip(decoded, batches))


def test_hash_is_stable_across_a_round_trip(tiny_model):
    """Serializing, reloading and serializing again gives the same hash (binary v become ±1 but keep their signs)."""
    data = model_to_bytes(tiny_model)
    assert model_hash(model_to_bytes(tiny_model)) == model_hash(data)
    assert model_hash(model_to_bytes(model_from_bytes(data))) == model_hash(data)


def test_float16_storage_halves_a_float_model_and_reloads_the_rounded_weights(random_images):
    """float16 files hold each float weight rounded once; reloading widens them exactly, and re-saving is stable."""
    model = make_model(0, TINY_FLOAT)
    full, half = model_to_bytes(model), model_to_bytes(model, "float16")
    assert len(half) < 0.55 * len(full)
    loaded = model_from_bytes(half)
    for (name, original), reloaded in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert reloaded.dtype == torch.float32
        assert torch.equal(reloaded, original.half().float()), name
    assert model_hash(model_to_bytes(loaded, "float16")) == model_hash(half) != model_hash(full)
    batches = [random_images(2)]
    encoded = encode_chain(loaded, batches, "bitswap")
    assert torch.equal(decode_chain(model_from_bytes(half), encoded, [batches[0].shape])[0], batches[0])


def test_float16_storage_refuses_weights_it_cannot_hold():
    model = make_model(0, TINY_FLOAT)
    with torch.no_grad():
        model.posteriors[0].head.bias[0] = 1e6
    with pytest.raises(BBCodecError, match="float16 cannot store"):
        model_to_bytes(model, "float16")
    with pytest.raises(BBCodecError, match="float storage"):
        model_to_bytes(model, "bfloat16")


def test_config_fields_missing_from_a_file_keep_their_format_meaning(tiny_model):
    """A file written before a field existed (or before a default changed) means what it meant then."""
    data = model_to_bytes(tiny_model)
    fields = json.loads(json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]["config"])
    del fields["grid_bound"], fields["channel_coupling"]
    loaded = model_from_bytes(with_metadata(data, config=json.dumps(fields)))
    assert loaded.config.grid_bound == 4.0 != VAEConfig().grid_bound
    assert loaded.config.channel_coupling is False


def first_binary_conv(model) -> BinaryConv2d:
    return next(m for m in model.modules() if isinstance(m, BinaryConv2d))


def test_hash_changes_when_a_float_weight_changes(tiny_model):
    before = model_hash(model_to_bytes(tiny_model))
    with torch.no_grad():
        tiny_model.posteriors[0].head.bias[0] += 1e-3
    assert model_hash(model_to_bytes(tiny_model)) != before


def test_hash_changes_when_a_binary_sign_flips(tiny_model):
    before = model_hash(model_to_bytes(tiny_model))
    with torch.no_grad():
        first_binary_conv(tiny_model).v.view(-1)[0].neg_()
    assert model_hash(model_to_bytes(tiny_model)) != before


def test_hash_ignores_binary_magnitudes(tiny_model):
    """Only sign(v) reaches the decoder, so rescaling v without flipping signs keeps the identity."""
    before = model_hash(model_to_bytes(tiny_model))
    with torch.no_grad():
        first_binary_conv(tiny_model).v.mul_(0.5)
    assert model_hash(model_to_bytes(tiny_model)) == before


def test_binary_model_is_over_90_percent_smaller_than_its_float_twin():
    """Default config: packed size (1 bit per binary weight) is at most 10% of the float twin's float32 size."""
    torch.manual_seed(0)
    binary_model = make_model(0, VAEConfig())
    float_model = make_model(0, VAEConfig(binary_weights=False))
    binary, floats = model_size(binary_model), model_size(float_model)
    assert binary.parameters == floats.parameters and floats.binary_parameters == 0
    assert binary.binary_parameters > 0.9 * binary.parameters
    assert binary.packed_bytes <= 0.1 * floats.float32_bytes
    assert len(model_to_bytes(binary_model)) <= 0.1 * len(model_to_bytes(float_model))


def with_metadata(data: bytes, **changes) -> bytes:
    """The same tensors re-saved with some metadata fields replaced."""
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    return st_save(st_load(data), metadata={**header["__metadata__"], **changes})


def without_tensor(data: bytes, index: int) -> bytes:
    tensors = st_load(data)
    del tensors[sorted(tensors)[index]]
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    return st_save(tensors, metadata=header["__metadata__"])


MALFORMED = {
    "empty": lambda d: b"",
    "seven-bytes": lambda d: d[:7],
    "truncated-header": lambda d: d[:100],
    "truncated-tensors": lambda d: d[: len(d) // 2],
    "last-byte-missing": lambda d: d[:-1],
    "random-bytes": lambda d: np.random.default_rng(0).bytes(len(d)),
    "random-small-header": lambda d: (64).to_bytes(8, "little") + np.random.default_rng(1).bytes(200),
    "wrong-format-tag": lambda d: with_metadata(d, format="bbcodec-model-0"),
    "no-metadata": lambda d: st_save(st_load(d)),
    "bad-config-json": lambda d: with_metadata(d, config="{not json"),
    "unknown-config-field": lambda d: with_metadata(d, config=json.dumps({"colour": 3})),
    "config-mismatch": lambda d: with_metadata(d, config=VAEConfig(hidden_channels=8, latent_layers=4, blocks_per_net=1).to_json()),
    "missing-tensor": lambda d: without_tensor(d, 0),
    "extra-tensor": lambda d: st_save({**st_load(d), "extra": np.zeros(3, np.float32)}, metadata={"format": "bbcodec-model-1", "config": json.loads(d[8 : 8 + int.from_bytes(d[:8], "little")])["__metadata__"]["config"]}),
}


@pytest.mark.parametrize("damage", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_model_bytes_raise_bbcodec_error(tiny_model, damage):
    """Damaged or foreign model files raise BBCodecError, never another exception."""
    with pytest.raises(BBCodecError):
        model_from_bytes(damage(model_to_bytes(tiny_model)))
