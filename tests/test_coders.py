"""Bit-Swap and BB-ANS: exact round trips of random and real images, determinism, accounting."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, make_model
from PIL import Image, ImageDraw
from roundtrip import check_roundtrip

from bbcodec import zoo
from bbcodec.archive.layout import chain_steps
from bbcodec.coding.ans import AnsStack, seed_words
from bbcodec.coding.bitsback import CODERS
from bbcodec.coding.chain import (STARTS, decode_chain, decode_steps, encode_chain, encode_steps, is_start,
                                  leading_batches, seed_length, start_named)
from bbcodec.coding.image import CoderSettings, coding_model
from bbcodec.errors import CorruptDataError

CODER_NAMES = ["bitswap", "bbans"]


class ImageCoder:
    """One coder for one batch shape, with a distribution's push/pop interface (for check_roundtrip)."""

    def __init__(self, model, coder: str, shape):
        self.model, self.shape = model, tuple(shape)
        self.encode, self.decode = CODERS[coder]

    def push(self, ans, x):
        self.encode(ans, self.model, x)

    def pop(self, ans):
        latent_like = torch.zeros(self.shape[0], *self.model.latent_shape(self.shape[1:]))
        return self.decode(ans, self.model, latent_like)


def check_image_roundtrip(model, coder, batches):
    """Code ``batches`` in order on one seeded stack with check_roundtrip, and through encode/decode_chain."""
    seed_len = max(seed_length(model, b.shape) for b in batches)
    check_roundtrip([ImageCoder(model, coder, b.shape) for b in batches], batches, seed_len=seed_len)
    encoded = encode_chain(model, batches, coder)
    decoded = decode_chain(model, encoded, [b.shape for b in batches], coder)  # raises unless it ends on the seed
    assert len(decoded) == len(batches)
    for got, expected in zip(decoded, batches):
        assert got.dtype == torch.uint8 and torch.equal(got, expected)
    return encoded


@pytest.mark.parametrize("coder", CODER_NAMES)
@pytest.mark.parametrize("batch", [1, 2])
def test_random_images_roundtrip(tiny_model, random_images, coder, batch):
    """Three batches of random 8x8 images come back exactly, in order."""
    check_image_roundtrip(tiny_model, coder, [random_images(batch) for _ in range(3)])


@pytest.mark.parametrize("coder", CODER_NAMES)
def test_batches_of_different_shapes_roundtrip(tiny_model, random_images, coder):
    """A chain may mix batch sizes and image sizes (any even H, W)."""
    batches = [random_images(2, 8, 12), random_images(1, 6, 4), random_images(1, 10, 8)]
    check_image_roundtrip(tiny_model, coder, batches)


@pytest.mark.parametrize("coder", CODER_NAMES)
def test_cifar_images_roundtrip(tiny_model, cifar_images, coder):
    """Real 32x32 CIFAR-10 images, in batches of 1 and 2."""
    check_image_roundtrip(tiny_model, coder, [cifar_images[0:1], cifar_images[1:3], cifar_images[3:4]])


@pytest.mark.parametrize("coder", CODER_NAMES)
def test_photo_crop_roundtrip(tiny_model, photo_crop, random_images, coder):
    """A 48x64 crop of a real photo, followed in the chain by a random image."""
    check_image_roundtrip(tiny_model, coder, [photo_crop, random_images(1, 48, 64)])


@pytest.mark.parametrize("coder", CODER_NAMES)
def test_encoding_is_deterministic(tiny_model, random_images, coder):
    """Encoding the same batches twice gives the same payload bytes and header."""
    batches = [random_images(2), random_images(1)]
    first, second = encode_chain(tiny_model, batches, coder), encode_chain(tiny_model, batches, coder)
    assert first.payload.tobytes() == second.payload.tobytes()
    assert (first.untouched_seed_words, first.seed_words) == (second.untouched_seed_words, second.seed_words)


@pytest.mark.parametrize("coder", CODER_NAMES)
def test_decoding_with_another_model_is_detected(tiny_model, other_model, random_images, coder):
    """A different model must never silently decode to the original pixels."""
    batches = [random_images(1), random_images(2)]
    encoded = encode_chain(tiny_model, batches, coder)
    try:
        decoded = decode_chain(other_model, encoded, [b.shape for b in batches], coder)
    except CorruptDataError:
        return
    assert any(not torch.equal(got, expected) for got, expected in zip(decoded, batches))


@pytest.mark.parametrize("coder", CODER_NAMES)
def test_stride_4_model_roundtrip(random_images, coder):
    """A model whose latents sit at 1/4 resolution codes sides that are multiples of 4."""
    model = make_model(0, TINY_CONFIG.replace(stride=4))
    check_image_roundtrip(model, coder, [random_images(1, 8, 12), random_images(2, 4, 8)])


def test_stride_4_model_rejects_sides_not_multiple_of_4():
    model = make_model(0, TINY_CONFIG.replace(stride=4))
    with pytest.raises(ValueError):
        encode_chain(model, [torch.zeros(1, 3, 6, 8, dtype=torch.uint8)])


@pytest.mark.parametrize("shape", [(1, 3, 7, 8), (1, 3, 8, 5), (3, 8, 8)], ids=["odd-H", "odd-W", "no-batch-dim"])
def test_encode_chain_rejects_uncodable_shapes(tiny_model, shape):
    """Odd heights or widths, and tensors that are not (B, C, H, W), are refused with ValueError."""
    with pytest.raises(ValueError):
        encode_chain(tiny_model, [torch.zeros(shape, dtype=torch.uint8)])


def test_bitswap_needs_fewer_initial_bits_than_bbans(tiny_model, random_images):
    """For the first image of a 4-layer model, Bit-Swap dips into the seed less than BB-ANS.

    BB-ANS pops all four latent layers before pushing anything; Bit-Swap pops only z1 from the seed.
    """
    image = [random_images(1, 16, 16)]
    bitswap, bbans = encode_chain(tiny_model, image, "bitswap"), encode_chain(tiny_model, image, "bbans")
    assert 0 < bitswap.initial_bits < bbans.initial_bits


@pytest.mark.parametrize("coder", CODER_NAMES)
def test_bit_accounting(tiny_model, random_images, coder):
    """stored = net + initial; stored is the payload, net the stack's growth, initial the seed words consumed."""
    batches = [random_images(1), random_images(1), random_images(1)]
    encoded = encode_chain(tiny_model, batches, coder, track=True)
    assert encoded.stored_bits == encoded.net_bits + encoded.initial_bits
    assert encoded.stored_bits == 32 * len(encoded.payload)
    assert encoded.initial_bits == 32 * (encoded.seed_words - encoded.untouched_seed_words) > 0
    seed = seed_words(encoded.seed_words)
    stack = AnsStack.from_payload(seed, encoded.untouched_seed_words, encoded.payload)
    assert encoded.net_bits == 32 * (len(stack.words()) - len(seed)) > 0
    # track=True records the stored size after each batch; the first batch alone codes to its first entry.
    assert len(encoded.stored_bits_after) == 3 and encoded.stored_bits_after[-1] == encoded.stored_bits
    assert encoded.stored_bits_after[0] == encode_chain(tiny_model, batches[:1], coder).stored_bits


@pytest.mark.parametrize("coder", CODER_NAMES)
def test_initial_bits_are_paid_once_per_chain(tiny_model, random_images, coder):
    """Later batches get their bits back from earlier ones: a chain costs the first batch's initial bits only."""
    batches = [random_images(1) for _ in range(4)]
    chain, first = encode_chain(tiny_model, batches, coder), encode_chain(tiny_model, batches[:1], coder)
    assert chain.initial_bits == first.initial_bits


def test_start_names_count_the_first_batches_without_bits_back():
    assert [leading_batches(start_named(k), 5) for k in range(6)] == list(range(6))
    assert leading_batches("no-bits-back-throughout", 7) == 7
    assert start_named(3) == "no-bits-back-first-3" and is_start("no-bits-back-first-3")
    for name in ("no-bits-back-first-1", "no-bits-back-first-0", "no-bits-back-first-03", "no-bits-back-first-",
                 "no-bits-back-first-x", "no-bits-back-first-\u00b2", "no-bits-back-first-1234567890", "auto", 3):
        assert not is_start(name)
        with pytest.raises(ValueError):
            leading_batches(name, 5)
    with pytest.raises(ValueError, match="more batches"):
        leading_batches("no-bits-back-first-6", 5)


def drawn_digits(count: int) -> list[np.ndarray]:
    """MNIST-like 28x28 grey strokes on black, a few random lines each."""
    rng = np.random.default_rng(0)
    digits = []
    for _ in range(count):
        image = Image.new("L", (28, 28))
        points = [tuple(int(v) for v in rng.integers(5, 23, 2)) for _ in range(3)]
        ImageDraw.Draw(image).line(points, fill=255, width=3)
        digits.append(np.asarray(image)[:, :, None].copy())
    return digits


def test_small_images_on_one_chain_start_with_several_batches_without_bits_back():
    """Digits one a batch with the shipped ``mnist`` model: a digit pushes less than the next one's posterior
    pops, so ``start="auto"`` codes several first digits without bits back; the chain is smaller than with
    none or one, and decodes."""
    net = zoo.load("mnist")[0]
    settings = CoderSettings(coder="bitswap", arithmetic="exact").resolve(net)
    model = coding_model(net, settings.arithmetic)
    digits = drawn_digits(10)
    steps = chain_steps(model, [d.shape for d in digits], settings, grows_batches=False)
    batches = [(step.view, step.cut(digits, model.device)) for step in steps]
    auto = encode_steps(batches, "bitswap", start="auto")
    assert leading_batches(auto.start, len(batches)) >= 2
    for start in STARTS[:2]:
        assert auto.stored_bits < encode_steps(batches, "bitswap", start=start).stored_bits
    decoded = decode_steps([(view, batch.shape) for view, batch in batches], auto, "bitswap")
    assert all(torch.equal(got, batch) for got, (_, batch) in zip(decoded, batches))
