"""XNOR-popcount convolutions (bbcodec.exact.sign_conv): exactly the integers of the float convolution."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bbcodec.coding.image import CoderSettings, decode_image, encode_image
from bbcodec.exact import sign_conv
from conftest import TINY_CONFIG, make_model
from test_exact import smooth_pixels

pytestmark = pytest.mark.skipif(not sign_conv.available(), reason="numba is not installed")


def test_importing_bbcodec_does_not_import_numba():
    """numba takes a third of a second to import: only a model with binary activations, coded exactly, pays."""
    code = "import sys, bbcodec.api, bbcodec.exact.backend; print('numba' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"

EXACT = CoderSettings(tile=16, max_batch=4, arithmetic="exact")


def random_signs(shape, rng) -> torch.Tensor:
    return torch.where(torch.rand(shape, generator=rng) < 0.5, -1.0, 1.0).double()


@pytest.mark.parametrize("channels, out_channels, kernel_size, size", [
    (1, 1, 1, (1, 1)), (3, 5, 3, (1, 1)), (32, 32, 3, (7, 9)), (64, 64, 3, (5, 4)),
    (65, 8, 3, (3, 6)), (130, 3, 1, (4, 4)), (64, 16, 5, (6, 7)),
])
def test_sums_are_those_of_the_float_convolution_of_the_signs(channels, out_channels, kernel_size, size, rng):
    x = torch.randn((2, channels, *size), generator=rng, dtype=torch.float64) * 300
    x[0, :, 0, 0] = 0.0                                    # sign(0) = +1
    weights = random_signs((out_channels, channels, kernel_size, kernel_size), rng)
    padding = kernel_size // 2
    sums = sign_conv.SignConv(weights, padding, input_magnitude=1024.0)(x)
    expected = F.conv2d(torch.where(x >= 0, 1024.0, -1024.0).double(), weights, padding=padding)
    assert sums.dtype == torch.float64
    assert torch.equal(sums, expected)


def test_a_binary_activation_model_codes_the_same_bytes_with_and_without_the_kernel(monkeypatch):
    config = TINY_CONFIG.replace(binary_activations=True)
    pixels = smooth_pixels(24, 20)
    calls = []
    original = sign_conv.SignConv.__call__
    monkeypatch.setattr(sign_conv.SignConv, "__call__", lambda self, x: calls.append(1) or original(self, x))
    with_kernel = encode_image(make_model(4, config), pixels, EXACT).payload.tobytes()
    assert calls, "the exact path did not use the XNOR kernel"

    monkeypatch.setattr(sign_conv, "available", lambda: False)  # a new model builds its exact layers without it
    calls.clear()
    model = make_model(4, config)
    encoded = encode_image(model, pixels, EXACT)
    assert not calls
    assert encoded.payload.tobytes() == with_kernel
    assert np.array_equal(decode_image(model, encoded, 24, 20, 3, EXACT), pixels)
