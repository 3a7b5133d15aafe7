"""The .bbc Python API (bbcodec.compress / decompress / info): exact round trips, metadata, damage, models.

Every test uses a tiny random model file (``-m path``), so that it runs in seconds; the shipped models are
tested in ``tests/test_zoo.py``.
``BBCODEC_MODELS`` points at an empty temporary folder, so no model of the user's is ever seen.
The golden-file tests at the end decode committed .bbc files with the committed model
(``tests/golden/``) and must keep passing for as long as the format version is unchanged.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin

import bbcodec
from bbcodec.coding.chain import STARTS, EncodedChain, is_start
from bbcodec import api, container, imageio, zoo
from bbcodec.coding.image import CoderSettings, encode_image
from bbcodec.errors import BBCodecError, CorruptDataError, UnsupportedImageError
from bbcodec.modelfile import model_hash
from fixtures.golden import check_golden
from fixtures.samples import (BITS_BACK_SETTINGS, binary_pixels, encoded, make_tiny_model, noise_pixels,
                              palette, pil_from_pixels)

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(autouse=True)
def user_models(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "user-models"
    monkeypatch.setenv("BBCODEC_MODELS", str(folder))
    return folder


@pytest.fixture(scope="session")
def bits_back_file(model_file) -> tuple[bytes, imageio.Image]:
    """(.bbc bytes, image) for a 32x32 RGB image that bits-back codes below raw size."""
    image = imageio.Image(binary_pixels(32, 32, 3), "RGB")
    data = bbcodec.compress(image, model=str(model_file), settings=BITS_BACK_SETTINGS)
    assert bbcodec.info(data)["method"] == "bits-back"
    return data, image


@pytest.fixture(scope="session")
def stored_file(model_file) -> tuple[bytes, imageio.Image]:
    image = imageio.Image(noise_pixels(9, 7, 3), "RGB")
    data = bbcodec.compress(image, model=str(model_file))
    assert bbcodec.info(data)["method"] == "stored"
    return data, image


def assert_same_image(got: imageio.Image, expected: imageio.Image, metadata: bool = True) -> None:
    assert got.mode == expected.mode
    assert got.pixels.dtype == np.uint8 and got.pixels.shape == expected.pixels.shape
    assert np.array_equal(got.pixels, expected.pixels)
    assert (got.palette, got.palette_mode) == (expected.palette, expected.palette_mode)
    if metadata:
        assert got.metadata == expected.metadata


def rebuilt(data: bytes, header_changes: dict | None = None, section_changes: dict | None = None,
            version: int = container.FORMAT_VERSION) -> bytes:
    """``data`` with header fields or sections replaced, re-wrapped with valid container CRCs, so that
    only the decoder's own checks (pixel checksum, seed, header fields) can notice. Format version 1
    carries any JSON value; versions 2 and 3 only values of the types bbcodec writes (ValueError for others)."""
    box = container.from_bytes(data)
    header = {k: v for k, v in box.header.items() if k != "sections"}
    header.update(header_changes or {})
    sections = dict(box.sections)
    sections.update(section_changes or {})
    return container.to_bytes(container.Container(header, sections), version)


def flip_byte(blob: bytes, index: int) -> bytes:
    out = bytearray(blob)
    out[index] ^= 0x5A
    return bytes(out)


# -- round trips ---------------------------------------------------------------------------------


def test_compress_takes_path_bytes_file_object_and_image_alike(tmp_path, model_file):
    pixels = binary_pixels(32, 32, 3, seed=3)
    png = encoded(pil_from_pixels(pixels, "RGB"), "PNG", compress_level=0)  # larger than the model's code
    path = tmp_path / "in.png"
    path.write_bytes(png)
    model = str(model_file)
    outputs = [bbcodec.compress(source, model=model, settings=BITS_BACK_SETTINGS)
               for source in (path, str(path), png, io.BytesIO(png), imageio.read_image(png))]
    assert len(set(outputs)) == 1, "the same image must give the same bytes, whatever the source"
    assert bbcodec.info(outputs[0])["method"] == "bits-back"
    back = bbcodec.decompress(outputs[0], model=model)
    assert np.array_equal(back.pixels, pixels) and back.mode == "RGB" and back.format == "PNG"


def test_info_reads_the_header_without_a_model(bits_back_file, model_file):
    data, image = bits_back_file
    header = bbcodec.info(data)  # no model installed and none given: info never decodes
    assert (header["width"], header["height"], header["channels"], header["mode"]) == (32, 32, 3, "RGB")
    assert header["model"] == model_hash(model_file.read_bytes())[: 2 * container.DIGEST_BYTES]
    # auto: exact, even for logistic pixels; the start and the batch size the encoder kept
    assert header["coder"] == {**BITS_BACK_SETTINGS.to_dict(), "coder": "bitswap", "arithmetic": "exact",
                               "start": header["coder"]["start"], "max_batch": header["coder"]["max_batch"]}
    assert header["coder"]["max_batch"] in (BITS_BACK_SETTINGS.max_batch, 1)
    assert header["coder"]["start"] in STARTS
    assert header["pixel_checksum"] == container.short_digest(api.pixel_checksum(image.pixels))
    assert len(data) < image.pixels.nbytes


def test_stored_fallback_is_exact(stored_file):
    data, image = stored_file
    box = container.from_bytes(data)
    assert box.sections["payload"] == image.pixels.tobytes()
    assert "coder" not in box.header
    assert_same_image(bbcodec.decompress(data), image)  # stored files need no model at all


STORED_HEADER_BYTES = 30
"""What format version 3 adds to the raw pixels of an image under 128x128 without source format or metadata."""


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (3, 1)], ids=lambda s: f"{s[1]}x{s[0]}")
def test_tiny_images_are_exact_and_never_larger_than_stored(model_file, shape):
    image = imageio.Image(binary_pixels(*shape, 4), "RGBA")
    data = bbcodec.compress(image, model=str(model_file), settings=BITS_BACK_SETTINGS)
    assert len(data) <= STORED_HEADER_BYTES + image.pixels.nbytes
    if shape == (1, 1):
        assert bbcodec.info(data)["method"] == "stored" and len(data) == STORED_HEADER_BYTES + 4
    assert_same_image(bbcodec.decompress(data, model=str(model_file)), image)


LAYOUTS = {  # mode: planes; every layout of plane groups the image coder has
    "1": 1, "L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1, "CMYK": 4,
}


@pytest.mark.parametrize("mode", LAYOUTS)
@pytest.mark.parametrize("shape", [(31, 33), (9, 200)], ids=lambda s: f"{s[1]}x{s[0]}")
def test_bits_back_is_exact_for_every_plane_layout(model_file, mode, shape):
    pixels = binary_pixels(*shape, LAYOUTS[mode], seed=len(mode), high=1 if mode == "1" else 255)
    image = imageio.Image(pixels, mode, palette=palette() if mode == "P" else None,
                          palette_mode="RGB" if mode == "P" else None)
    data = bbcodec.compress(image, model=str(model_file), settings=BITS_BACK_SETTINGS)
    header = bbcodec.info(data)
    if mode != "1":  # 0/1 pixels are not cheap for an untrained model; 0/255 ones are (see fixtures.samples)
        assert header["method"] == "bits-back"
    assert_same_image(bbcodec.decompress(data, model=str(model_file)), image)


def test_an_auto_tile_is_the_model_family_s_own(tiny_model, coupled_polyphase, coupled_polyphase_file):
    assert CoderSettings().resolve(tiny_model).tile == 64 and CoderSettings().resolve(coupled_polyphase).tile == 128
    assert CoderSettings(tile=32).resolve(coupled_polyphase).tile == 32
    with pytest.raises(ValueError, match="resolve the tile"):
        CoderSettings().layout(64, 64, 3)
    for wrong in (4, "big"):
        with pytest.raises(ValueError, match="tile must be"):
            CoderSettings(tile=wrong)
    values = np.random.default_rng(0).integers(0, 16, (72, 40, 3)).astype(np.uint8) * 16 + 8   # 16 levels
    for height, tile in ((72, 128), (20, 64)):   # a tile that covers the image is written as a short one
        data = bbcodec.compress(imageio.Image(values[:height].copy(), "RGB"), model=str(coupled_polyphase_file))
        assert bbcodec.info(data)["coder"]["tile"] == tile


def test_an_encoder_keeps_its_batches_within_the_work_limit_and_a_decoder_takes_a_file_s_as_they_are(tiny_model):
    """Every encoder (compress, pack, the bench) shrinks the batches of very large tiles to the decoder's work limit
    (``for_encoding``); ``resolve``, which the decoder also runs on a file's settings, leaves them as they are."""
    assert CoderSettings(tile=1024).for_encoding(tiny_model).max_batch == 1
    assert CoderSettings(tile=256).for_encoding(tiny_model).max_batch == 16
    assert CoderSettings().for_encoding(tiny_model) == CoderSettings().resolve(tiny_model)
    assert CoderSettings(tile=1024).resolve(tiny_model).max_batch == 16


@pytest.mark.parametrize("settings", [CoderSettings(coder="bbans", tile=8, start="no-bits-back"),
                                      CoderSettings(tile=16, max_batch=2, start="bits-back"),
                                      CoderSettings(tile=24, max_batch=1)], ids=str)
def test_bits_back_with_other_coder_settings(model_file, settings):
    image = imageio.Image(binary_pixels(40, 36, 3, seed=5), "RGB")
    data = bbcodec.compress(image, model=str(model_file), settings=settings)
    header = bbcodec.info(data)
    kept = header["coder"]["start"]
    assert kept == settings.start if settings.start != "auto" else is_start(kept)  # any start, a count too
    assert header["method"] == "bits-back"
    coder = "bitswap" if settings.coder == "auto" else settings.coder  # the Markov chain's own
    batches = header["coder"]["max_batch"]   # as asked, or one where that made the smaller file
    assert batches in (settings.max_batch, 1)
    assert header["coder"] == {**settings.to_dict(), "coder": coder, "arithmetic": "exact", "start": kept,
                               "max_batch": batches}
    assert_same_image(bbcodec.decompress(data, model=str(model_file)), image)


def test_the_first_batch_is_coded_the_cheaper_way(model_file):
    """One batch: with ``start="auto"`` the file is exactly as small as the smaller of the two starts, and
    each decodes (a chain that starts without bits back pops its first batch under the prior's modes)."""
    image = imageio.Image(binary_pixels(16, 20, 3, seed=6), "RGB")
    sizes = {}
    for start in (*STARTS, "auto"):
        data = bbcodec.compress(image, model=str(model_file), settings=CoderSettings(start=start))
        assert bbcodec.info(data)["method"] == "bits-back"
        assert_same_image(bbcodec.decompress(data, model=str(model_file)), image)
        sizes[start] = len(data)
    assert sizes["bits-back"] != sizes["no-bits-back"]
    assert sizes["auto"] == min(sizes["bits-back"], sizes["no-bits-back"])


def test_a_code_that_is_mostly_initial_bits_is_made_again(model_file):
    """Pixels an untrained model codes cheaply next to its latents: doubling batches pop more than the batches
    before them pushed; in batches of one, or without bits back throughout (the header says which), the file is
    smaller and decodes."""
    image = imageio.Image(binary_pixels(64, 64, 3, seed=2), "RGB")
    settings = CoderSettings(tile=8)
    stats = {}
    data = bbcodec.compress(image, model=str(model_file), settings=settings, stats=stats)
    model = bbcodec.load_model(str(model_file))[0]
    doubling = encode_image(model, image.pixels, settings)
    assert doubling.initial_bits > api.SINGLE_BATCH_SHARE * doubling.stored_bits
    others = [encode_image(model, image.pixels, replace(settings, **change))
              for change in ({"max_batch": 1}, {"start": "no-bits-back-throughout"})]
    assert stats["payload_bits"] == min(code.stored_bits for code in others) < doubling.stored_bits
    coder = bbcodec.info(data)["coder"]
    assert coder["max_batch"] == 1 or coder["start"] == "no-bits-back-throughout"
    assert_same_image(bbcodec.decompress(data, model=str(model_file)), image)


@pytest.mark.parametrize("start, initial_words, codings", [
    ("no-bits-back", 1, 1),     # its own trial found the second batch cheaper with bits back; no initial bits
    ("no-bits-back", 400, 2),   # a later batch popped into the seed: batches of one may save that
    ("no-bits-back-first-2", 1, 2),   # latents that may not pay for themselves: without bits back throughout
    ("bits-back", 400, 3),      # the first batch's pops came from the seed: both others may pay
    ("bits-back", 1, 1),        # thrifty
])
def test_which_chains_an_image_is_coded_again_as(monkeypatch, start, initial_words, codings):
    """The encoder codes an image again without bits back throughout unless its chain coded only the first batch
    without bits back (it found the second cheaper with bits back), and in batches of one only where there are
    initial bits to save."""
    calls = []

    def chain(net, pixels, settings, progress=None):
        calls.append(settings)
        return EncodedChain(np.zeros(1000, np.uint32), untouched_seed_words=500 - initial_words, seed_words=500,
                            stack_words=[600, 900, 1500], start=start if len(calls) == 1 else "bits-back")

    monkeypatch.setattr(api, "encode_image", chain)
    api._encoded(None, None, CoderSettings(start="auto"), None)
    assert len(calls) == codings


def test_colour_under_zero_alpha_is_kept(model_file):
    pixels = binary_pixels(31, 33, 4, seed=8)
    hidden = pixels[..., 3] == 0
    assert (pixels[hidden][:, :3] != 0).any()
    image = imageio.read_image(encoded(pil_from_pixels(pixels, "RGBA"), "PNG"))
    data = bbcodec.compress(image, model=str(model_file), settings=BITS_BACK_SETTINGS)
    assert bbcodec.info(data)["method"] == "bits-back"
    assert np.array_equal(bbcodec.decompress(data, model=str(model_file)).pixels, pixels)


# -- metadata ------------------------------------------------------------------------------------


def png_with_metadata(mode: str = "RGB", transparency=None) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "a test")
    info.add_itxt("Description", "élan ☃", "fr", "Légende")
    options = {"pnginfo": info, "icc_profile": b"\0\1icc" * 30, "dpi": (300, 300)}
    if transparency is not None:
        options["transparency"] = transparency
    pixels = binary_pixels(6, 8, 1 if mode == "P" else 3, high=255)
    return encoded(pil_from_pixels(pixels, mode), "PNG", **options)


@pytest.mark.parametrize("mode, transparency", [("RGB", (255, 0, 255)), ("P", bytes(range(0, 256)))],
                         ids=["rgb-colour-key", "palette-alphas"])
def test_metadata_kept_and_stripped_but_transparency_always_kept(model_file, mode, transparency):
    original = imageio.read_image(png_with_metadata(mode, transparency))
    assert {"text", "icc_profile", "dpi", "transparency"} <= set(original.metadata)
    model = str(model_file)
    kept = bbcodec.decompress(bbcodec.compress(original, model=model), model=model)
    assert_same_image(kept, original)
    stripped = bbcodec.decompress(bbcodec.compress(original, model=model, strip_metadata=True), model=model)
    assert_same_image(stripped, original, metadata=False)
    assert stripped.metadata == {"transparency": original.metadata["transparency"]}
    # and the written file shows the same pixels as visible/transparent
    buffer = io.BytesIO()
    bbcodec.write_image(stripped, buffer)
    with PILImage.open(io.BytesIO(buffer.getvalue())) as im:
        assert im.info.get("transparency") is not None
        assert not im.text


# -- damage --------------------------------------------------------------------------------------


def test_payload_damage_behind_valid_crcs_is_caught_by_the_decoder(bits_back_file, model_file):
    data, image = bits_back_file
    payload = container.from_bytes(data).sections["payload"]
    for index in (0, len(payload) // 2, len(payload) - 1):
        damaged = rebuilt(data, section_changes={"payload": flip_byte(payload, index)})
        container.from_bytes(damaged)  # the container itself is valid
        with pytest.raises(CorruptDataError, match="checksum|seed|decode|ends early"):
            bbcodec.decompress(damaged, model=str(model_file))


def test_stored_damage_behind_valid_crcs_fails_the_checksums(stored_file):
    """Raw pixels are under the image checksum (format version 3) and under a pixel checksum where one is given."""
    data, _ = stored_file
    payload = container.from_bytes(data).sections["payload"]
    with pytest.raises(CorruptDataError, match="checksum"):
        bbcodec.decompress(rebuilt(data, section_changes={"payload": flip_byte(payload, 10)}))
    with pytest.raises(CorruptDataError, match="checksum"):
        bbcodec.decompress(rebuilt(data, {"pixel_checksum": "0" * 16}))


def test_container_damage(bits_back_file, model_file):
    data, _ = bits_back_file
    damaged = {
        "flipped byte": flip_byte(data, len(data) - 7),
        "flipped header byte": flip_byte(data, 20),
        "truncated": data[:-5],
        "trailing bytes": data + b"\0",
        "bad magic": b"\x89PNG" + data[4:],
        "future version": data[:4] + b"\x09" + data[5:],
        "empty": b"",
    }
    for name, blob in damaged.items():
        with pytest.raises(CorruptDataError):
            bbcodec.decompress(blob, model=str(model_file))
        if name not in ("flipped byte", "truncated", "trailing bytes"):  # info reads the header only
            with pytest.raises(CorruptDataError):
                bbcodec.info(blob)


HEADER_DAMAGE = {
    "huge size": {"width": 1 << 20, "height": 1 << 20},
    "zero width": {"width": 0},
    "size as text": {"height": "32"},
    "size as bool": {"channels": True},
    "channels for another mode": {"channels": 1},
    "unknown mode": {"mode": "XYZ"},
    "unknown method": {"method": "magic"},
    "no method": {"method": None},
    "coder not a dict": {"coder": "bitswap"},
    "unknown coder": {"coder": {"coder": "nope", "tile": 8, "max_batch": 16}},
    "extra coder field": {"coder": {"coder": "bitswap", "tile": 8, "max_batch": 16, "x": 1}},
    "other tile size": {"coder": {"coder": "bitswap", "tile": 16, "max_batch": 16}},
    "seed words negative": {"untouched_seed_words": -1},
    "seed words too many": {"untouched_seed_words": 10**6},
    "seed words as text": {"untouched_seed_words": "1"},
    "model not a string": {"model": 5},
}


BINARY_CARRIES = {"huge size", "zero width", "channels for another mode", "other tile size",
                  "seed words too many"}
"""The damage a binary header (format versions 2 and 3) can carry: the others are values of a type or set it has
no code for."""


@pytest.mark.parametrize("version", [1, 3])
@pytest.mark.parametrize("name", HEADER_DAMAGE)
def test_hostile_headers_raise_corrupt_data_error(bits_back_file, model_file, name, version):
    data, _ = bits_back_file
    if version == 3 and name not in BINARY_CARRIES:
        with pytest.raises(ValueError, match="format version 3"):
            rebuilt(data, HEADER_DAMAGE[name], version=3)
        return
    with pytest.raises(CorruptDataError):
        bbcodec.decompress(rebuilt(data, HEADER_DAMAGE[name], version=version), model=str(model_file))


def test_odd_payload_length_is_corrupt(bits_back_file, model_file):
    data, _ = bits_back_file
    payload = container.from_bytes(data).sections["payload"]
    with pytest.raises(CorruptDataError):
        bbcodec.decompress(rebuilt(data, section_changes={"payload": payload[:-1]}), model=str(model_file))


# -- models --------------------------------------------------------------------------------------


def test_wrong_model_is_corrupt_data_error(bits_back_file, other_model_file):
    data, _ = bits_back_file
    with pytest.raises(CorruptDataError, match="made with model"):
        bbcodec.decompress(data, model=str(other_model_file))


def test_wrong_model_by_name_and_by_hash(bits_back_file, other_model_file):
    data, _ = bits_back_file
    zoo.add(other_model_file, "other")
    with pytest.raises(CorruptDataError, match="made with model"):
        bbcodec.decompress(data, model="other")
    with pytest.raises(CorruptDataError, match="made with model"):
        bbcodec.decompress(data, model=model_hash(other_model_file.read_bytes())[:12])


def test_model_not_installed_is_reported_and_installing_it_fixes_that(bits_back_file, model_file):
    data, image = bits_back_file
    with pytest.raises(BBCodecError, match="not installed"):
        bbcodec.decompress(data)
    entry = zoo.add(model_file, "tiny")
    assert entry.hash[: 2 * container.DIGEST_BYTES] == bbcodec.info(data)["model"]
    assert_same_image(bbcodec.decompress(data), image)  # found by the hash in the header
    assert_same_image(bbcodec.decompress(data, model="tiny"), image)
    assert [e.name for e in zoo.installed() if not e.shipped] == ["tiny"]


def test_a_file_names_its_model_by_content_not_by_name(tmp_path, bits_back_file, model_file):
    data, image = bits_back_file
    renamed = tmp_path / "renamed-copy.safetensors"
    renamed.write_bytes(model_file.read_bytes())
    assert_same_image(bbcodec.decompress(data, model=str(renamed)), image)


# -- model registry edge cases --------------------------------------------------------------------


def test_zoo_ignores_a_folder_named_like_a_model(user_models, model_file, bits_back_file):
    zoo.add(model_file, "tiny")
    (user_models / "junk.safetensors").mkdir()
    data, image = bits_back_file
    assert [e.name for e in zoo.installed() if not e.shipped] == ["tiny"]
    assert_same_image(bbcodec.decompress(data), image)


def test_zoo_reports_a_missing_model_file_as_missing(tmp_path):
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(BBCodecError) as caught:
        zoo.load(str(missing))
    assert "not installed" not in str(caught.value) and "missing.safetensors" in str(caught.value)


def test_zoo_add_keeps_models_inside_the_model_folder(tmp_path, user_models, model_file):
    try:
        zoo.add(model_file, "../escaped")
    except BBCodecError:
        pass
    assert not (tmp_path / "escaped.safetensors").exists()


# -- golden files --------------------------------------------------------------------------------


def golden_cases() -> list[str]:
    manifest = json.loads((GOLDEN / "golden.json").read_text())
    return sorted(manifest["files"])


@pytest.fixture(scope="session")
def golden_manifest() -> dict:
    return json.loads((GOLDEN / "golden.json").read_text())


def test_golden_model_is_the_one_the_files_name(golden_manifest):
    data = (GOLDEN / golden_manifest["model"]).read_bytes()
    assert model_hash(data) == golden_manifest["model_hash"]
    assert hashlib.sha256(data).hexdigest() == golden_manifest["model_sha256"]


@pytest.mark.parametrize("name", golden_cases())
def test_golden_files_decode_exactly(golden_manifest, name):
    """Committed .bbc files must decode, bit for bit, for as long as the format version is unchanged.

    Exact-arithmetic and stored files on every machine; float-arithmetic files where they were made, and
    elsewhere they must be refused with a message that says why (``fixtures.golden``). If this fails, the
    change broke the format: fix the change. Never regenerate a golden file to make this test pass.
    """
    expected = golden_manifest["files"][name]
    data = (GOLDEN / name).read_bytes()
    header = bbcodec.info(data)
    assert header["method"] == expected["method"]
    assert header["model"] == golden_manifest["model_hash"]
    pixels = np.load(GOLDEN / expected["pixels"], allow_pickle=False)
    image = check_golden(data, pixels, model=str(GOLDEN / golden_manifest["model"]))
    assert image.mode == expected["mode"]
    assert image.palette == (bytes.fromhex(expected["palette"]) if expected["palette"] else None)
    assert {k: v.hex() for k, v in image.metadata.items()} == expected["metadata"]
    assert api.pixel_checksum(pixels) == header["pixel_checksum"]


def test_every_bits_back_golden_case_has_an_exact_twin_that_decodes_anywhere(golden_manifest):
    """The float golden files cannot be checked on every machine; their exact twins can, and are."""
    files = golden_manifest["files"]
    for name, expected in files.items():
        if expected["method"] == "bits-back" and not name.endswith("-exact.bbc"):
            twin = name.replace(".bbc", "-exact.bbc")
            assert twin in files and files[twin]["pixel_checksum"] == expected["pixel_checksum"], name
            assert bbcodec.info((GOLDEN / twin).read_bytes())["coder"]["arithmetic"] == "exact"


def test_compress_reports_the_coders_accounting(model_file):
    pixels = np.random.default_rng(5).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    stats = {}
    bbcodec.compress(imageio.Image(pixels=pixels, mode="RGB"), model=str(model_file), stats=stats)
    assert stats["method"] in ("bits-back", "stored")
    assert stats["payload_bits"] == stats["net_bits"] + stats["initial_bits"]
    assert stats["net_bits"] > 0 and stats["initial_bits"] >= 0


def test_compress_refuses_settings_whose_file_the_decoder_would_refuse(model_file):
    image = imageio.Image(np.zeros((2048, 2048, 1), dtype=np.uint8), "L")  # refused before any coding
    with pytest.raises(UnsupportedImageError, match="network passes"):
        bbcodec.compress(image, model=str(model_file), settings=CoderSettings(tile=8, max_batch=1))
