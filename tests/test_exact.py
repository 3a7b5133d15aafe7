"""The exact inference path (bbcodec.exact): identical bits whatever the threads, batch split or code path."""
from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bbcodec
from bbcodec import container, imageio
from bbcodec.coding.image import CoderSettings, decode_image, encode_image
from bbcodec.distributions import DiscretizedLogistic
from bbcodec.errors import CorruptDataError
from bbcodec.exact import tables
from bbcodec.exact.logistic import ExactDiscretizedLogistic
from bbcodec.exact.backend import ACT_LIMIT, ExactConv, exact_elu, exact_model, full_float32_products
from bbcodec.models.config import VAEConfig
from bbcodec.portability import float_platform
from conftest import REPO_ROOT, make_model, shared_data_dir
from fixtures.samples import BITS_BACK_SETTINGS, binary_pixels

LAPLACE = VAEConfig(hidden_channels=16, latent_channels=4, latent_layers=3, blocks_per_net=1,
                    pixel_distribution="laplace", channel_coupling=True)
LOGISTIC = LAPLACE.replace(pixel_distribution="logistic", channel_coupling=False)
EXACT = CoderSettings(tile=16, max_batch=4, arithmetic="exact")


@pytest.fixture(params=[(LAPLACE, 2), (LAPLACE, 4), (LAPLACE.replace(residual_coupling=True), 4), (LOGISTIC, 4)],
                ids=["laplace-stride2", "laplace-stride4", "laplace-residual-stride4", "logistic-stride4"])
def pixel_model(request):
    """A small random model of each pixel likelihood, computed exactly by the tests below."""
    config, stride = request.param
    return make_model(seed=3, config=config.replace(stride=stride))


def smooth_pixels(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Gradients plus noise: something between flat and random."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    base = (y * 3 + x * 2)[..., None] + np.arange(channels) * 40
    return ((base + rng.integers(0, 20, (height, width, channels))) % 256).astype(np.uint8)


# -- the lookup tables: two independent builds agree ----------------------------------------------
@pytest.mark.parametrize("name", sorted(tables.SPECS))
def test_tables_match_correctly_rounded_decimal_arithmetic(name):
    assert np.array_equal(tables.table(name), tables.reference_table(name))
    # float64 functions err by ~1e-8 here; an entry could only differ between machines near a tie
    assert tables.tie_margin(name) > 1e-6


# -- the integer network: an independent int64 implementation agrees ---------------------------------
def reference_conv(conv: ExactConv, x: np.ndarray) -> np.ndarray:
    """ExactConv in NumPy int64 with floor division and einsum over shifted slices."""
    out_channels = conv.weights.shape[0]
    k, pad = conv.kernel_size, conv.padding
    weights = conv.weights.numpy().astype(np.int64)
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    height, width = x.shape[2:]
    sums = np.zeros((len(x), out_channels, height, width), dtype=np.int64)
    for i in range(k):
        for j in range(k):
            sums += np.einsum("oc,bchw->bohw", weights[:, :, i, j], padded[:, :, i:i + height, j:j + width])
    multiplier = conv.multiplier.numpy().astype(np.int64)
    offset = conv.offset.numpy().astype(np.int64)
    return np.clip((sums * multiplier + offset) // (1 << conv.shift), -ACT_LIMIT, ACT_LIMIT)


def reference_elu(x: np.ndarray) -> np.ndarray:
    spec = tables.ELU_NEGATIVE
    negative = tables.reference_table(spec.name)[np.clip(x, spec.lo, spec.hi) - spec.lo]
    return np.where(x >= 0, x, negative)


def reference_net(net, ops, x: np.ndarray) -> np.ndarray:
    """A MarkovVAE network on integers in NumPy, with the integer weights of the exact backend's layers."""
    if net.fold > 1:
        x = F.pixel_unshuffle(torch.from_numpy(x), net.fold).numpy()
    h = reference_conv(ops.exact_conv(net.stem, net.source), x)
    for block in net.blocks:
        conv1, conv2 = ops.exact_conv(block.conv1), ops.exact_conv(block.conv2)
        h = np.clip(h + reference_conv(conv2, reference_elu(reference_conv(conv1, reference_elu(h)))),
                    -ACT_LIMIT, ACT_LIMIT)
    h = reference_conv(ops.exact_conv(net.head), reference_elu(h))
    return F.pixel_shuffle(torch.from_numpy(h), net.unfold).numpy() if net.unfold > 1 else h


def test_elu_is_the_reference_on_every_activation():
    every = np.arange(-ACT_LIMIT, ACT_LIMIT + 1)
    assert np.array_equal(exact_elu(torch.from_numpy(every).double()).numpy(), reference_elu(every))


def test_integer_networks_match_an_independent_int64_implementation(pixel_model):
    """The model's own forward code, run by the exact backend, against a NumPy int64 implementation."""
    ops = exact_model(pixel_model).ops
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 3, 16, 16)).astype(np.int64) * 2 - 255
    first = pixel_model.posteriors[0]
    got = first(torch.from_numpy(pixels).double(), ops)
    assert torch.equal(got, torch.from_numpy(reference_net(first, ops, pixels)).double())
    grid = pixel_model.config.grid
    latent_shape = (3, LAPLACE.latent_channels, 16 // pixel_model.config.stride, 16 // pixel_model.config.stride)
    index = rng.integers(-grid.max_index, grid.max_index + 1, latent_shape).astype(np.int64)
    for net in list(pixel_model.posteriors[1:]) + list(pixel_model.conditionals):
        got = net(torch.from_numpy(index).double(), ops)
        assert torch.equal(got, torch.from_numpy(reference_net(net, ops, index)).double())


def test_every_value_is_a_whole_number_within_the_activation_range(pixel_model):
    ops = exact_model(pixel_model).ops
    pixels = torch.from_numpy(smooth_pixels(16, 16)).permute(2, 0, 1)[None]
    params = pixel_model.posteriors[0](ops.pixels(pixels), ops)
    assert torch.equal(params, params.round()) and params.abs().max() <= ACT_LIMIT


# -- the same bits whatever the batch split, order or thread count -------------------------------------
def distribution_tensors(dist) -> list[torch.Tensor]:
    return [t for t in (getattr(dist, name, None) for name in ("mean", "std", "scale", "coupling")) if t is not None]


def test_each_images_probabilities_do_not_depend_on_its_batch(pixel_model):
    exact = exact_model(pixel_model)
    batch = torch.from_numpy(np.stack([smooth_pixels(16, 16, seed=s) for s in range(4)])).permute(0, 3, 1, 2)
    together = exact.posterior(0, batch)
    reordered = exact.posterior(0, batch.flip(0))
    for i in range(4):
        alone = exact.posterior(0, batch[i:i + 1])
        for a, b, c in zip(distribution_tensors(together), distribution_tensors(alone), distribution_tensors(reordered)):
            assert torch.equal(a[i:i + 1], b) and torch.equal(a[i:i + 1], c[3 - i:4 - i])
    z = together.mean[:, :, :, :].clone()
    z = torch.round(z / pixel_model.config.grid.step) * pixel_model.config.grid.step
    whole = exact.conditional(0, z)
    for i in range(4):
        part = exact.conditional(0, z[i:i + 1])
        for a, b in zip(distribution_tensors(whole), distribution_tensors(part)):
            assert torch.equal(a[i:i + 1], b)


def test_files_are_byte_identical_for_any_thread_count_and_network_batch_split(pixel_model):
    pixels = smooth_pixels(40, 36)
    exact = exact_model(pixel_model)
    payloads = []
    for threads, max_images in ((1, None), (2, None), (1, 1), (2, 3)):
        torch.set_num_threads(threads)
        exact.ops.max_images = max_images
        try:
            payloads.append(encode_image(pixel_model, pixels, EXACT).payload.tobytes())
        finally:
            torch.set_num_threads(1)
            exact.ops.max_images = None
    assert all(p == payloads[0] for p in payloads)
    assert np.array_equal(decode_image(pixel_model, encode_image(pixel_model, pixels, EXACT), 40, 36, 3, EXACT), pixels)


def test_files_are_the_same_when_a_program_allows_narrower_float32_products(pixel_model, monkeypatch):
    """bfloat16 or TF32 products (allowed by ``set_float32_matmul_precision``) would break exact sums on CPUs that
    have them: the exact path then sums in float64, and the file is the same."""
    pixels = smooth_pixels(24, 20)
    expected = encode_image(pixel_model, pixels, EXACT).payload.tobytes()
    assert full_float32_products()
    for precision in ("medium", "high"):
        torch.set_float32_matmul_precision(precision)
        try:
            assert not full_float32_products()
            assert encode_image(pixel_model, pixels, EXACT).payload.tobytes() == expected
        finally:
            torch.set_float32_matmul_precision("highest")
    assert full_float32_products()
    monkeypatch.setenv("ONEDNN_DEFAULT_FPMATH_MODE", "BF16")
    assert not full_float32_products()
    assert encode_image(pixel_model, pixels, EXACT).payload.tobytes() == expected


@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 5, 1), (33, 40, 3), (20, 20, 4)], ids=str)
def test_exact_round_trips(pixel_model, shape):
    pixels = smooth_pixels(*shape[:2], channels=shape[2], seed=sum(shape))
    encoded = encode_image(pixel_model, pixels, EXACT)
    assert np.array_equal(decode_image(pixel_model, encoded, *shape, EXACT), pixels)


def test_float_and_exact_files_differ_and_each_decodes_only_as_itself(pixel_model):
    pixels = smooth_pixels(32, 32)  # with bits back: the latents' posterior differs too, not only the pixels'
    float_settings = CoderSettings(tile=16, max_batch=4, arithmetic="float", start="bits-back")
    exact_settings = replace(float_settings, arithmetic="exact")
    as_float = encode_image(pixel_model, pixels, float_settings)
    as_exact = encode_image(pixel_model, pixels, exact_settings)
    assert as_float.payload.tobytes() != as_exact.payload.tobytes()
    assert np.array_equal(decode_image(pixel_model, as_float, 32, 32, 3, float_settings), pixels)
    try:  # the header's arithmetic field is what keeps a decoder from this
        wrong = decode_image(pixel_model, as_exact, 32, 32, 3, float_settings)
    except CorruptDataError:
        return
    assert not np.array_equal(wrong, pixels)


# -- the file format ---------------------------------------------------------------------------------------
def resigned(data: bytes, version: int = container.FORMAT_VERSION, **changes) -> bytes:
    box = container.from_bytes(data)
    box.header.update(changes)
    box.header.pop("sections")
    return container.to_bytes(box, version)


def test_files_record_the_arithmetic_and_the_entropy_coder():
    image = imageio.Image(imageio.read_image(REPO_ROOT / "data" / "chelsea.png").pixels[:64, :80].copy(), "RGB")
    data = bbcodec.compress(image)  # the default model codes a photo well below raw size
    header = bbcodec.info(data)
    assert header["method"] == "bits-back"
    assert header["coder"]["arithmetic"] == "exact" and header["entropy_coder"].startswith("constriction ")
    assert np.array_equal(bbcodec.decompress(data).pixels, image.pixels)
    with pytest.raises(CorruptDataError, match="needs constriction 0.1 to decode"):
        bbcodec.decompress(resigned(data, entropy_coder="constriction 0.1"))
    with pytest.raises(CorruptDataError, match="coder settings"):
        bbcodec.decompress(resigned(data, 1, coder=dict(header["coder"], arithmetic="auto")))
    with pytest.raises(ValueError, match="format version 2"):  # version 2 has no code for it
        resigned(data, 2, coder=dict(header["coder"], arithmetic="auto"))


def test_auto_arithmetic_is_exact_for_logistic_pixels_too():
    assert CoderSettings().resolve(make_model()).arithmetic == "exact"
    image = imageio.Image(binary_pixels(32, 32, 3), "RGB")  # bits-back codes it below its raw size
    path = REPO_ROOT / "tests" / "golden" / "tiny.safetensors"  # logistic pixels
    header = bbcodec.info(bbcodec.compress(image, model=str(path), settings=BITS_BACK_SETTINGS))
    assert header["coder"]["arithmetic"] == "exact" and "float_platform" not in header


# -- the exact logistic's probability tables ---------------------------------------------------------------
def reference_logistic_table(mean: int, scale: int) -> np.ndarray:
    """One sub-pixel's bin weights from rational arithmetic: the sigmoid argument at each inner edge is
    ((2k - 254)/255 - mean/2**10) / (scale/2**20), rounded half up to 2**-16, and the decimal sigmoid table
    is interpolated linearly there, rounding down."""
    spec, fine_bits = tables.SIGMOID, 6
    sigmoid = [int(v) for v in tables.reference_table(spec.name)] + [1 << spec.output_bits]
    cumulative = [0]
    for k in range(255):
        argument = (Fraction(2 * k - 254, 255) - Fraction(mean, 1 << 10)) / Fraction(scale, 1 << 20)
        fine = math.floor(argument * (1 << (tables.INPUT_BITS + fine_bits)) + Fraction(1, 2))
        fine = min(max(fine, spec.lo << fine_bits), spec.hi << fine_bits) - (spec.lo << fine_bits)
        low, high = sigmoid[fine >> fine_bits], sigmoid[min((fine >> fine_bits) + 1, spec.hi - spec.lo)]
        cumulative.append(low + math.floor(Fraction((high - low) * (fine % (1 << fine_bits)), 1 << fine_bits)))
    cumulative.append(1 << spec.output_bits)
    return np.diff(cumulative).astype(np.float64)


def test_exact_logistic_tables_match_rational_arithmetic():
    rng = np.random.default_rng(7)
    means = np.concatenate([[0, -1024, 1024, ACT_LIMIT, -ACT_LIMIT], rng.integers(-1500, 1500, 5)])
    scales = tables.table("exp")[rng.integers(0, len(tables.table("exp")), len(means))]
    got = ExactDiscretizedLogistic(torch.tensor(means, dtype=torch.float64),
                                   torch.tensor(scales, dtype=torch.float64)).probability_table()
    for row, mean, scale in zip(got, means, scales):
        assert np.array_equal(row, reference_logistic_table(int(mean), int(scale))), (mean, scale)
        assert row.sum() == 2 ** tables.SIGMOID.output_bits


def test_exact_logistic_tables_are_close_to_the_float_likelihood():
    rng = np.random.default_rng(8)
    mean = torch.from_numpy(rng.integers(-1100, 1100, 64).astype(np.float64))
    log_scale = torch.from_numpy(rng.integers(-7 << 10, 1 << 10, 64).astype(np.float64))
    exact = ExactDiscretizedLogistic(mean, tables.lookup("exp", log_scale)).probability_table()
    exact /= exact.sum(axis=1, keepdims=True)
    reference = DiscretizedLogistic(mean / 1024, log_scale / 1024).probability_table()
    exact = np.maximum(exact, 2.0 ** -30)  # an empty bin still gets the coder's smallest probability
    bits_lost = (reference * np.log2(np.maximum(reference, 1e-300) / exact)).sum(axis=1)  # KL divergence
    assert bits_lost.max() < 1e-4  # bits per sub-pixel; what remains is the exp table's rounding of the scale


# -- the trained default model: exact costs little -----------------------------------------------------------
def test_exact_path_rate_is_close_to_the_float_path_on_a_photo():
    photos = shared_data_dir("photos")
    net, _ = bbcodec.zoo.load("default")
    # 24 tiles: on a few, which latents the posterior draws moves the rate by a percent either way
    pixels = np.asarray(imageio.read_image(photos / "041.png").pixels[:256, :384]).copy()
    bits = {a: encode_image(net, pixels, CoderSettings(arithmetic=a)).net_bits for a in ("float", "exact")}
    assert abs(bits["exact"] / bits["float"] - 1) < 0.02, bits


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_encode_on_cuda_decode_on_cpu_and_back(pixel_model):
    pixels = smooth_pixels(48, 40)
    for encoder, decoder in (("cuda", "cpu"), ("cpu", "cuda")):
        encoded = encode_image(pixel_model.to(encoder), pixels, EXACT)
        assert np.array_equal(decode_image(pixel_model.to(decoder), encoded, 48, 40, 3, EXACT), pixels)
    pixel_model.to("cpu")


def test_a_float_file_that_fails_elsewhere_says_where_it_was_coded():
    image = imageio.Image(imageio.read_image(REPO_ROOT / "data" / "chelsea.png").pixels[:64, :80].copy(), "RGB")
    data = bbcodec.compress(image, settings=CoderSettings(arithmetic="float"))
    header = bbcodec.info(data)
    assert header["float_platform"] == float_platform("cpu")
    elsewhere = resigned(data, float_platform="cuda, torch 9.9", untouched_seed_words=header["untouched_seed_words"] + 1)
    with pytest.raises(CorruptDataError, match="coded with float arithmetic on cuda, torch 9.9"):
        bbcodec.decompress(elsewhere)
    assert "float_platform" not in bbcodec.info(bbcodec.compress(image))  # exact files decode anywhere


@pytest.mark.parametrize("arithmetic", ["exact", "float"])
def test_command_line_arithmetic_option(tmp_path, monkeypatch, arithmetic):
    from click.testing import CliRunner

    from bbcodec_cli.main import main

    monkeypatch.chdir(tmp_path)
    pixels = imageio.read_image(REPO_ROOT / "data" / "chelsea.png").pixels[:40, :48].copy()
    imageio.write_image(imageio.Image(pixels, "RGB"), tmp_path / "cat.bmp", format="BMP")  # raw: the model wins
    result = CliRunner().invoke(main, ["compress", "-q", "--arithmetic", arithmetic, "cat.bmp"])
    assert result.exit_code == 0, result.output
    warned = "files that decode only on this kind of machine" in result.stderr
    assert warned == (arithmetic == "float")
    assert bbcodec.info(tmp_path / "cat.bmp.bbc")["coder"]["arithmetic"] == arithmetic
    result = CliRunner().invoke(main, ["decompress", "-o", "back.png", "cat.bmp.bbc"])
    assert result.exit_code == 0, result.output
    assert np.array_equal(imageio.read_image(tmp_path / "back.png").pixels, pixels)
