"""The shipped models: each loads, has its own hash, codes in exact arithmetic, and decodes its golden files.

Files name their model by hash, so a shipped model must stay installed for as
long as files made with it may exist; a new default is added beside the old one
(``tests/golden/zoo/make_zoo_golden.py`` explains how its golden files are made).
Golden files are ``HASH.bbc`` and ``HASH-exact.bbc`` (the first 12 hex digits
of the model hash); every shipped model has at least one in exact arithmetic,
which decodes on every machine; float files are checked where they were made
(``fixtures.golden``). The golden files of the binary format versions (``tests/golden/v2``, ``v3``: one per coding
method and per start of a chain, made with the shipped models by ``tests/golden/make_binary_golden.py``) find their
model by the id they carry.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import bbcodec
from bbcodec import container, zoo
from bbcodec.coding import calibration
from bbcodec.coding.chain import STARTS
from bbcodec.coding.image import CoderSettings, decode_image, encode_image
from fixtures.golden import check_golden

GOLDEN = Path(__file__).resolve().parent / "golden" / "zoo"
BINARY_VERSIONS = (2, 3)
BINARY_GOLDEN = {version: Path(__file__).resolve().parent / "golden" / f"v{version}" for version in BINARY_VERSIONS}
BINARY_MANIFESTS = {version: json.loads((folder / "golden.json").read_text()) for version, folder in BINARY_GOLDEN.items()}
SHIPPED = [entry for entry in zoo.installed() if entry.shipped]


def test_the_default_and_every_shipped_model_load_with_distinct_hashes():
    names = [entry.name for entry in SHIPPED]
    assert zoo.DEFAULT_MODEL in names
    assert len({entry.hash for entry in SHIPPED}) == len(SHIPPED)


def test_auto_chooses_among_the_shipped_models_for_small_images_and_loads_the_default():
    assert zoo.choices(zoo.AUTO_MODEL, zoo.AUTO_PIXELS) == zoo.AUTO_CHOICES
    assert zoo.choices(zoo.AUTO_MODEL, zoo.AUTO_PIXELS + 1) == (zoo.DEFAULT_MODEL,)
    assert zoo.choices("mnist", 1) == ("mnist",)
    assert set(zoo.AUTO_CHOICES) <= {entry.name for entry in SHIPPED}
    assert zoo.load(zoo.AUTO_MODEL)[1] == zoo.load(zoo.DEFAULT_MODEL)[1]


def test_auto_keeps_the_smaller_file_of_its_choices_and_it_decodes():
    """A 28x28 grey digit-like image: auto writes the smaller of the default's and the mnist model's files, which
    decodes by the model it names (also when auto is given to the decoder)."""
    pixels = np.zeros((28, 28, 1), np.uint8)
    pixels[6:22, 12:16] = 255
    pixels[6:9, 9:16] = 200
    image = bbcodec.imageio.Image(pixels, "L")
    auto = bbcodec.compress(image)
    each = {name: bbcodec.compress(image, model=name) for name in zoo.AUTO_CHOICES}
    assert len(auto) == min(len(data) for data in each.values())
    assert len({len(data) for data in each.values()}) == 2
    for model in (None, zoo.AUTO_MODEL):
        assert np.array_equal(bbcodec.decompress(auto, model=model).pixels, pixels)


def golden_files(entry) -> list[Path]:
    return sorted(GOLDEN.glob(f"{entry.hash[:12]}*.bbc"))


@pytest.mark.parametrize("entry", SHIPPED, ids=[entry.name for entry in SHIPPED])
def test_every_shipped_model_has_an_exact_golden_file(entry):
    arithmetics = [bbcodec.info(path)["coder"]["arithmetic"] for path in golden_files(entry)]
    assert "exact" in arithmetics, f"no exact golden file for {entry.name}: run make_zoo_golden.py {entry.name}"


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.bbc")), ids=lambda path: path.stem)
def test_every_golden_file_decodes_with_its_shipped_model(golden):
    """Exact files on every machine; float files where they were made, else refused saying so."""
    header = container.Header.readable(bbcodec.info(golden))
    assert any(header.names_model(entry.hash) for entry in SHIPPED), "no model whose files exist may leave the package"
    assert header.method == "bits-back"
    check_golden(golden.read_bytes(), np.load(golden.with_suffix(".npy")))


@pytest.mark.parametrize("version, name", [(version, name) for version, manifest in BINARY_MANIFESTS.items()
                                           for name in sorted(manifest["files"])])
def test_every_binary_format_golden_file_decodes_exactly(version, name):
    """One file per method, made with the default model: each decodes, bit for bit, on every machine, its model
    found by the model id it carries alone. If this fails, the change broke that format version: fix the change."""
    expected = BINARY_MANIFESTS[version]["files"][name]
    data = (BINARY_GOLDEN[version] / name).read_bytes()
    header = container.Header.readable(bbcodec.info(data))
    assert container.format_version(data) == version and header.method == expected["method"]
    if expected["model_hash"]:
        assert header.names_model(expected["model_hash"])
        assert expected["model_hash"] in {entry.hash for entry in SHIPPED}, "no model whose files exist may leave"
    image = check_golden(data, np.load(BINARY_GOLDEN[version] / expected["pixels"]))
    assert image.mode == expected["mode"]
    assert {k: v.hex() for k, v in image.metadata.items()} == expected["metadata"]
    assert (hashlib.sha256(image.original).hexdigest() if image.original else None) == expected["original_sha256"]


@pytest.mark.parametrize("version", BINARY_VERSIONS)
def test_there_is_a_binary_format_golden_file_of_every_method_and_start(version):
    manifest, folder = BINARY_MANIFESTS[version], BINARY_GOLDEN[version]
    assert {entry["method"] for entry in manifest["files"].values()} == set(container.METHODS)
    starts = {container.from_bytes((folder / name).read_bytes()).header.get("coder", {}).get("start")
              for name in manifest["files"]}
    assert set(STARTS if version >= 3 else STARTS[:2]) <= starts  # throughout: since version 3
    if version >= 3:   # and the level sets of version 3's own field, and the calibration's bucket factors
        headers = [container.from_bytes((folder / name).read_bytes()).header for name in manifest["files"]]
        assert any("pixel_level_sets" in header for header in headers)
        assert any(calibration.BUCKET_MARK in header.get("pixel_calibration", ()) for header in headers)


def test_the_format_version_bbcodec_writes_has_golden_files():
    assert container.FORMAT_VERSION in BINARY_VERSIONS


@pytest.mark.parametrize("entry", SHIPPED, ids=[entry.name for entry in SHIPPED])
def test_every_shipped_model_codes_in_exact_arithmetic_by_default(entry):
    """The default settings are exact, and every model's weights fit the integer path (a round trip here)."""
    model = bbcodec.load_model(entry.name)[0]
    settings = CoderSettings(tile=16).resolve(model)
    assert settings.arithmetic == "exact"
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(model, encode_image(model, pixels, settings), 16, 16, 3, settings), pixels)
