"""Flow++ as a codec: local bits-back moves (bbcodec/coding/local_bitsback.py), whole images through a flow
(bbcodec/coding/flow_coder.py) and the flow chain file (bbcodec/coding/flow_file.py).

Each move and each batch of images goes through the one round-trip check (tests/roundtrip.py); the rates are
checked against what local bits-back coding promises: a move costs -log|f'| and a chain of images the flow's
bound, so a coder that round-trips but wastes bits fails too.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bbcodec.coding import flow_coder, flow_file
from bbcodec.coding.ans import AnsStack, seed_words
from bbcodec.coding.local_bitsback import (Elementwise, LocalBitsBackError, Triangular, pop_prior, push_prior,
                                           transport, untransport)
from bbcodec.errors import BBCodecError, CorruptDataError
from bbcodec.models.flowpp import FlowConfig, FlowPP
from tests.roundtrip import check_roundtrip

SMALL = FlowConfig(image_channels=3, hidden_channels=8, blocks_per_net=1, mixture_components=3, attention_heads=1,
                   stripe_steps=2, channel_steps=2, squeezed_steps=1, dequant_steps=2, dequant_blocks=1,
                   context_channels=4)
X_BITS, Y_BITS = 12, 10


def small_flow(seed: int = 0) -> FlowPP:
    torch.manual_seed(seed)
    model = FlowPP(SMALL).eval()
    with torch.no_grad():  # away from the identity-like start, so that every part of the coder matters
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def images(count: int, seed: int = 0, side: int = 8) -> np.ndarray:
    """Random and smooth uint8 images (N, H, W, 3)."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 256, size=(count, side, side, 3), dtype=np.uint8)
    ramp = np.arange(side, dtype=np.uint8)[None, :, None, None] * 20
    out[::2] = ramp + out[::2] // 16
    return out


class MovedThenPrior:
    """A codec for check_roundtrip: x (grid indices) moved through ``step``, then y under the prior N(0, 1)."""

    def __init__(self, step):
        self.step = step

    def push(self, ans, x):
        push_prior(ans, transport(ans, self.step, x, X_BITS, Y_BITS), Y_BITS, popped=False)

    def pop(self, ans):
        return untransport(ans, self.step, pop_prior(ans, self.shape, Y_BITS, popped=False), X_BITS, Y_BITS)


def grid_values(seed: int, shape=(2, 4, 6, 6)) -> torch.Tensor:
    return torch.round(torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
                       * 2.0 ** X_BITS).to(torch.int64)


def expected_bits(step, x: torch.Tensor) -> float:
    """-log2 of x's probability on its grid when y = step(x) ~ N(0, 1): -log2(N(y) |f'(x)| 2^-X_BITS) summed."""
    y, log_derivative = step.forward(x.double() * 2.0 ** -X_BITS)
    nats = 0.5 * y.square() + 0.5 * math.log(2 * math.pi) - log_derivative
    return float(nats.sum()) / math.log(2) + X_BITS * x.numel()


def rotation(seed: int, upper: bool) -> torch.Tensor:
    matrix = torch.randn(4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.3
    matrix = matrix.triu(1) if upper else matrix.tril(-1)
    return matrix + torch.diag(torch.tensor([1.5, 0.7, 1.0, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("step", [
    Elementwise(lambda x: (torch.asinh(3 * x) / 1.5, math.log(2) - 0.5 * torch.log1p(9 * x.square())),
                lambda y: torch.sinh(1.5 * y) / 3),
    Triangular(rotation(1, upper=True), torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=torch.float64), upper=True),
    Triangular(rotation(2, upper=False), torch.zeros(4, dtype=torch.float64), upper=False),
], ids=["asinh", "upper", "lower"])
def test_a_move_round_trips_and_costs_minus_log_its_derivative(step):
    x = grid_values(3)
    codec = MovedThenPrior(step)
    codec.shape = x.shape
    grown = check_roundtrip([codec], [x], seed_len=x.numel() * 2)
    assert abs(grown - expected_bits(step, x)) < 0.01 * expected_bits(step, x) + 64


def test_a_sigmoid_s_outputs_stay_inside_0_1_even_where_it_saturates():
    sigmoid = flow_coder.SIGMOID
    x = grid_values(5, (1, 2, 16, 16)) * 6  # N(0, 36): many within a few grid steps of u = 0 or 1
    codec = MovedThenPrior(sigmoid)
    codec.shape = x.shape
    check_roundtrip([codec], [x], seed_len=x.numel() * 2)
    ans = AnsStack.seeded(seed_words(x.numel() * 2))
    u = transport(ans, sigmoid, x, X_BITS, Y_BITS)
    assert int(u.min()) > 0 and int(u.max()) < 2 ** Y_BITS and (u == 1).any() | (u == 2 ** Y_BITS - 1).any()


def test_a_value_outside_its_window_is_refused_not_miscoded():
    stretchy = Elementwise(lambda x: (x * 1e6, torch.full_like(x, math.log(1e6))), lambda y: y / 1e6)
    ans = AnsStack.seeded(seed_words(1024))
    # the move itself clips the stretch; what cannot be coded is a value far from where the prior allows
    with pytest.raises(LocalBitsBackError):
        push_prior(ans, transport(ans, stretchy, grid_values(4, (1, 1, 4, 4)) * 2 ** 12, X_BITS, Y_BITS), Y_BITS,
                   popped=False)


class FlowBatch:
    """A codec for check_roundtrip: a uint8 batch through a flow (its grid plan recorded on the first push)."""

    def __init__(self, model, shape):
        self.model, self.shape, self.plan = model, shape, flow_coder.GridPlan()

    def push(self, ans, batch):
        flow_coder.encode_batch(ans, self.model, batch, self.plan)

    def pop(self, ans):
        return flow_coder.decode_batch(ans, self.model, self.shape, self.plan)


def test_batches_of_images_round_trip_through_a_flow():
    model, batches = small_flow(), torch.from_numpy(images(6).transpose(0, 3, 1, 2).copy()).split(2)
    codec = FlowBatch(model, batches[0].shape)
    check_roundtrip([codec] * len(batches), list(batches), seed_len=6 * 192 * 2)


def test_a_chain_codes_at_the_flow_s_bound():
    model, pixels = small_flow(1), images(24, seed=2)
    chain = flow_coder.encode_images(model, pixels, batch=4)
    assert chain.stored_bits_after[:2] and len(chain.stored_bits_after) < len(pixels)  # batches grew past one
    with torch.no_grad():
        bounds = [float(model(torch.from_numpy(image.transpose(2, 0, 1)[None].copy()))["nelbo"])
                  for image in pixels]
    # from the second image on: no initial bits
    coded = (chain.stored_bits_after[-1] - chain.stored_bits_after[0]) / pixels[1:].size
    assert abs(coded / np.mean(bounds[1:]) - 1) < 0.03
    np.testing.assert_array_equal(flow_coder.decode_images(model, chain), pixels)


@pytest.fixture(scope="module")
def chain_file():
    model, pixels = small_flow(), images(5, seed=3)
    return model, pixels, flow_file.compress_images(model, "ab" * 32, pixels, batch=2)


def test_a_flow_chain_file_decodes_to_its_pixels(chain_file):
    model, pixels, data = chain_file
    np.testing.assert_array_equal(flow_file.decompress_images(data, model, "ab" * 32), pixels)


def _with_header(data: bytes, **changes) -> bytes:
    header, payload = flow_file.read_header(data)
    text = json.dumps({**header, **changes}).encode()
    return data[:5] + len(text).to_bytes(4, "little") + text + payload


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:len(d) - 40], "ends early|corrupt flow chain|checksum"),
    (lambda d: d[:-8] + bytes(8), "corrupt|checksum"),
    (lambda d: d[:3], "too short"),
    (lambda d: b"JUNK" + d[4:], "not a flow chain"),
    (lambda d: _with_header(d, count=2**22), "too many pixels"),
    (lambda d: _with_header(d, grid_bits=[99]), "grid plan"),
    (lambda d: _with_header(d, shape=[4, 8, 8]), "3-channel"),
    (lambda d: _with_header(d, shape=[3, 4096, 4096]), "bad shape"),
    (lambda d: _with_header(d, batch=60000), "batches of at most"),
    (lambda d: _with_header(d, seed_words=10**8), "seed"),
    (lambda d: _with_header(d, model="cd" * 32), "needs model"),
    (lambda d: _with_header(d, float_platform="another machine"), "only where"),
])
def test_a_damaged_or_foreign_flow_chain_gets_one_clear_error(chain_file, damage, message):
    model, _, data = chain_file
    with pytest.raises(BBCodecError, match=message):
        flow_file.decompress_images(damage(data), model, "ab" * 32)


@pytest.mark.parametrize("side, batch, message", [(6, 1, "multiples of 4"), (132, 1, "up to 128x128"),
                                                  (8, 10 ** 5, "batches of at most")])
def test_images_a_flow_cannot_code_are_refused(side, batch, message):
    with pytest.raises(BBCodecError, match=message):
        flow_file.compress_images(small_flow(), "ab" * 32, images(2, side=side), batch=batch)


def test_flipped_payload_bytes_give_a_clear_error_never_wrong_pixels_or_a_traceback(chain_file):
    model, pixels, data = chain_file
    header_end = len(data) - len(flow_file.read_header(data)[1])
    rng = np.random.default_rng(7)
    for _ in range(12):
        damaged = bytearray(data)
        damaged[int(rng.integers(header_end, len(data)))] ^= 1 << int(rng.integers(8))
        with pytest.raises(CorruptDataError):
            flow_file.decompress_images(bytes(damaged), model, "ab" * 32)
