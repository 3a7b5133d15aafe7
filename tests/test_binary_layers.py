"""BWN layers (Bird, Kingma & Barber 2021): sign with a clipped STE, binary and float weight-normalized convs."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bbcodec.nn import BinaryConv2d, ResidualBlock, WNConv2d, make_conv, sign_ste


def test_sign_ste_forward_and_clipped_gradient():
    """sign(x) in {-1, +1} with sign(0) = +1; the gradient passes exactly where |x| <= 1."""
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 3.0], requires_grad=True)
    upstream = torch.arange(1.0, 9.0)
    y = sign_ste(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1, 1]
    (y * upstream).sum().backward()
    passes = torch.tensor([0.0, 1, 1, 1, 1, 1, 0, 0])
    assert torch.equal(x.grad, upstream * passes)


def randomized(conv, generator):
    """Give a conv random v (some outside [-1, 1]), g and bias so that every term of its formula matters."""
    with torch.no_grad():
        conv.v.copy_(torch.randn(conv.v.shape, generator=generator) * 1.5)
        conv.g.copy_(torch.rand(conv.g.shape, generator=generator) + 0.5)
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator))
    return conv


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("stride", [1, 2])
def test_binary_conv_matches_reference(training, stride, rng):
    """Output = conv2d(x, sign(v)) * g / sqrt(fan_in) + bias, in train and eval mode."""
    conv = randomized(BinaryConv2d(3, 5, 3, stride=stride), rng).train(training)
    x = torch.randn(2, 3, 7, 6, generator=rng)
    signs = torch.where(conv.v.detach() > 0, 1.0, -1.0)
    alpha = conv.g.detach() / math.sqrt(3 * 3 * 3)
    expected = F.conv2d(x, signs, stride=stride, padding=1) * alpha.view(1, -1, 1, 1) + conv.bias.detach().view(1, -1, 1, 1)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


def test_binary_conv_weight_gradient_is_straight_through(rng):
    """In training, v gets the gradient of the ±1 weights where |v| <= 1 and zero elsewhere."""
    conv = randomized(BinaryConv2d(3, 4, 3), rng).train()
    x = torch.randn(2, 3, 5, 5, generator=rng)
    upstream = torch.randn(2, 4, 5, 5, generator=rng)
    (conv(x) * upstream).sum().backward()

    signs = torch.where(conv.v.detach() > 0, 1.0, -1.0).requires_grad_()
    alpha = conv.g.detach() / math.sqrt(conv.fan_in)
    reference = F.conv2d(x, signs, padding=1) * alpha.view(1, -1, 1, 1)
    (reference * upstream).sum().backward()
    inside = conv.v.detach().abs() <= 1
    assert inside.any() and (~inside).any()  # the randomized v exercises both cases
    torch.testing.assert_close(conv.v.grad, signs.grad * inside, rtol=1e-5, atol=1e-5)
    assert torch.all(conv.v.grad[~inside] == 0)


def test_clip_keeps_v_in_unit_interval_without_changing_signs(rng):
    """clip_ clamps v to [-1, 1], leaves values inside alone, and so leaves the output unchanged."""
    conv = randomized(BinaryConv2d(3, 4, 3), rng).eval()
    x = torch.randn(1, 3, 5, 5, generator=rng)
    before_v, before_out = conv.v.detach().clone(), conv(x)
    assert before_v.abs().max() > 1
    conv.clip_()
    assert conv.v.min() >= -1 and conv.v.max() <= 1
    inside = before_v.abs() <= 1
    assert torch.equal(conv.v[inside], before_v[inside])
    assert torch.equal(torch.sign(conv.v), torch.sign(before_v))
    assert torch.equal(conv(x), before_out)


@pytest.mark.parametrize("stride", [1, 2])
def test_wn_conv_matches_weight_normalization(stride, rng):
    """WNConv2d = conv2d(x, g * v / ||v||) + bias, the norm taken per output channel."""
    conv = randomized(WNConv2d(3, 5, 3, stride=stride), rng)
    x = torch.randn(2, 3, 6, 6, generator=rng)
    v, g = conv.v.detach(), conv.g.detach()
    weight = torch.stack([g[o] * v[o] / torch.sqrt((v[o] ** 2).sum()) for o in range(5)])
    expected = F.conv2d(x, weight, conv.bias.detach(), stride=stride, padding=1)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("binary, cls", [(True, BinaryConv2d), (False, WNConv2d)])
def test_make_conv_picks_the_class_and_forwards_arguments(binary, cls):
    """make_conv builds the binary or float conv with the given stride and init scale."""
    conv = make_conv(4, 6, 3, binary=binary, stride=2, init_scale=0.25)
    assert type(conv) is cls and conv.binary is binary
    assert conv.stride == 2 and conv.padding == 1
    assert torch.all(conv.g == 0.25)
    assert conv(torch.zeros(1, 4, 8, 8)).shape == (1, 6, 4, 4)


def test_sign_activation_outputs_plus_minus_one():
    """The sign activation outputs only ±1."""
    out = sign_ste(torch.randn(1000))
    assert set(out.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("binary_activations", [True, False])
def test_residual_block_with_binary_weights_backpropagates(binary_activations, rng):
    """Gradients reach the input and both binary convs' v, through sign activations too."""
    torch.manual_seed(0)
    block = ResidualBlock(8, binary_weights=True, binary_activations=binary_activations).train()
    x = (torch.rand(2, 8, 6, 6, generator=rng) * 2 - 1).requires_grad_()
    out = block(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    for name, param in block.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"no gradient reached {name}"
    # Through the identity path alone d(sum out^2)/dx would be 2 * out; the residual branch must add to it.
    assert not torch.allclose(x.grad, 2 * out.detach())
