"""The Flow++ family (bbcodec/models/flowpp.py, bbcodec/nn/flow_layers.py): its log-determinants, its inverse, and the tool around it.

A flow's bound is only as good as its log-determinants, so they are checked
against the Jacobian autograd computes, for the main flow (from the
dequantized image to the Gaussian variable) and for the dequantizer (from
its Gaussian noise to u). The family trains, exports, loads and samples
through the commands every family uses, and refuses to code a file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import bbcodec
from bbcodec.errors import BBCodecError
from bbcodec.models.export import model_from_bytes, model_size, model_to_bytes
from bbcodec.models.flowpp import FlowConfig, FlowPP
from bbcodec.nn.flow_layers import (mixture_logit_cdf, mixture_logit_cdf_inverse, run_forward,
                                    standard_normal_log_density)
from bbcodec_cli.main import main

SMALL = FlowConfig(image_channels=1, hidden_channels=8, blocks_per_net=1, mixture_components=3, attention_heads=2,
                   stripe_steps=2, channel_steps=2, squeezed_steps=1, dequant_steps=2, dequant_blocks=1,
                   context_channels=4)


def small_model(seed: int = 0, **changes) -> FlowPP:
    torch.manual_seed(seed)
    model = FlowPP(SMALL.replace(**changes)).double().eval()
    with torch.no_grad():  # away from the identity-like start, so that every term of the determinant matters
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def jacobian_log_determinant(function, x: torch.Tensor) -> float:
    jacobian = torch.autograd.functional.jacobian(lambda flat: function(flat.view_as(x)).flatten(), x.flatten())
    return float(torch.linalg.slogdet(jacobian)[1])


@pytest.mark.parametrize("binary", [True, False])
def test_the_main_flow_s_density_is_the_change_of_variables_autograd_computes(binary):
    model = small_model(binary_weights=binary)
    v = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 256

    def to_gaussian(values):
        y = 0.05 + 0.9 * values / 256
        return run_forward(model.steps, torch.log(y) - torch.log1p(-y))[0]

    with torch.no_grad():
        expected = standard_normal_log_density(to_gaussian(v)) + jacobian_log_determinant(to_gaussian, v)
        assert torch.allclose(model.log_density(v), expected, atol=1e-6)


def test_the_dequantizer_s_density_is_the_change_of_variables_autograd_computes():
    model = small_model()
    x = torch.randint(0, 256, (1, 1, 4, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    dequantizer = model.dequantizer
    context = dequantizer.context(x)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        u, log_q = dequantizer(x, torch.Generator().manual_seed(3))
        log_jacobian = jacobian_log_determinant(lambda e: torch.sigmoid(run_forward(dequantizer.steps, e, context)[0]),
                                                noise)
    assert ((u > 0) & (u < 1)).all()
    assert torch.allclose(log_q, standard_normal_log_density(noise) - log_jacobian, atol=1e-6)


def test_the_flow_inverts_what_it_computes():
    model = small_model(image_channels=3, binary_weights=True)
    logits = torch.randn(2, 3, 8, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 2
    with torch.no_grad():
        z = run_forward(model.steps, logits)[0]
        for step in reversed(model.steps):
            z = step.inverse(z)
    assert torch.allclose(z, logits, atol=1e-6)


def test_the_mixture_s_log_derivative_is_the_derivative_and_bisection_finds_the_inverse():
    generator = torch.Generator().manual_seed(5)
    logits, means, log_scales = (torch.randn(1, 4, 3, 2, 2, dtype=torch.float64, generator=generator)
                                 for _ in range(3))
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64, generator=generator).requires_grad_()
    y, log_derivative = mixture_logit_cdf(x, logits, means, log_scales)
    (gradient,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(log_derivative, gradient.log(), atol=1e-9)
    assert torch.allclose(mixture_logit_cdf_inverse(y.detach(), logits, means, log_scales), x.detach(), atol=1e-9)


def test_the_bound_is_in_bits_per_sub_pixel_and_near_raw_for_an_untrained_flow():
    torch.manual_seed(0)
    model = FlowPP(SMALL.replace(image_channels=3)).eval()
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        bits = float(model(x)["nelbo"])
    assert math.isfinite(bits) and 7 < bits < 12  # uniform noise costs 8 bits; an untrained flow a little more


def test_a_model_file_holds_the_binary_weights_at_one_bit_and_loads_the_same_model():
    torch.manual_seed(0)
    binary, float_twin = FlowPP(SMALL), FlowPP(SMALL.replace(binary_weights=False))
    data = model_to_bytes(binary)
    assert model_size(binary).binary_parameters > 0 and model_size(float_twin).binary_parameters == 0
    assert len(data) < len(model_to_bytes(float_twin))
    loaded = model_from_bytes(data)
    assert isinstance(loaded, FlowPP) and loaded.config == SMALL
    x = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    torch.manual_seed(1)
    expected = binary.eval()(x)["nelbo"]
    torch.manual_seed(1)
    assert torch.allclose(loaded(x)["nelbo"], expected)


@pytest.mark.parametrize("field, value, message", [
    ("hidden_channels", 0, "hidden_channels"), ("attention_heads", "4", "attention_heads"),
    ("binary_weights", 1, "binary_weights"), ("stripe_steps", None, "stripe_steps"),
    ("attention_heads", 3, "do not divide"), ("context_channels", 5, "do not divide"), ("pixel_distribution", "laplace", "unknown model config fields"),
])
def test_a_hostile_flow_config_is_refused_in_one_line(field, value, message):
    fields = {**json.loads(SMALL.to_json()), field: value}
    if value is None:
        del fields[field]
    with pytest.raises(BBCodecError, match=message):
        FlowConfig.from_file(fields)


def test_flowpp_trains_samples_and_refuses_to_code_through_the_commands(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", train_x=images)
    runner = CliRunner()
    trained = runner.invoke(main, [
        "train", str(tmp_path / "images.npz"), "--preset", "flowpp", "--steps", "2", "--batch-size", "2",
        "--crop", "8", "--eval-images", "2", "--eval-every", "1", "--threads", "1", "--out", str(tmp_path / "run"),
        "--name", "flow", "--set", "hidden_channels=8", "--set", "blocks_per_net=1", "--set", "mixture_components=2"])
    assert trained.exit_code == 0, trained.output
    exported = trained.stdout.strip().splitlines()[-1]
    model, _ = bbcodec.load_model(exported)
    assert isinstance(model, FlowPP) and model.config.binary_weights and model.config.hidden_channels == 8

    grid = tmp_path / "grid.png"
    sampled = runner.invoke(main, ["sample", exported, "-o", str(grid), "--rows", "1", "--columns", "2", "--size", "8"])
    assert sampled.exit_code == 0, sampled.output
    assert bbcodec.imageio.read_image(grid).pixels.shape == (8, 18, 3)

    image = tmp_path / "image.png"
    image.write_bytes(bbcodec.imageio.encode(bbcodec.Image(images[0], "RGB"), "PNG"))
    refused = runner.invoke(main, ["compress", str(image), "-m", exported])
    assert refused.exit_code != 0 and "flow chains" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and not Path(f"{image}.bbc").exists()

    wrong = runner.invoke(main, ["train", str(tmp_path / "images.npz"), "--preset", "flowpp", "--latent-layers", "2",
                                 "--out", str(tmp_path / "other")])
    assert wrong.exit_code != 0 and "no latent_layers" in wrong.output
    odd = runner.invoke(main, ["train", str(tmp_path / "images.npz"), "--preset", "flowpp", "--crop", "10",
                               "--steps", "1", "--batch-size", "2", "--eval-images", "2", "--threads", "1",
                               "--out", str(tmp_path / "odd"), "--set", "hidden_channels=8"])
    assert odd.exit_code != 0 and "multiples of 4, not 10x10" in odd.output and "internal error" not in odd.output
