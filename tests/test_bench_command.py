"""``bbcodec bench`` on tiny inputs: real file sizes, the overhead split, chains, archives, missing codecs, lossless
failures.

Every test uses a tiny random model file and images of a few dozen pixels, written by the test: a
folder of PNGs (grey, RGB, RGBA, palette), an .npz array and a gzipped MNIST idx file.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bbcodec import archive, benchmark
from bbcodec.benchmark import codecs
from bbcodec.benchmark import measure
from bbcodec_cli.main import main
from fixtures.samples import binary_pixels, encoded, noise_pixels, pil_from_pixels


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BBCODEC_MODELS", str(tmp_path / "user-models"))
    monkeypatch.delenv("BBCODEC_DEBUG", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def run(*args):
    result = CliRunner().invoke(main, ["bench", *[str(a) for a in args]])
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}\n{result.output}") from result.exception
    return result


@pytest.fixture
def folder(workdir) -> Path:
    """Four PNGs of different sizes and modes; two cheap for bits-back (0/255 pixels), two stored raw."""
    path = workdir / "pngs"
    path.mkdir()
    images = {"a.png": (binary_pixels(32, 32, 3, seed=1), "RGB"), "b.png": (noise_pixels(9, 7, 1), "L"),
              "c.png": (binary_pixels(16, 24, 4, seed=2), "RGBA"), "d.png": (noise_pixels(5, 6, 1, high=16), "P")}
    for name, (pixels, mode) in images.items():
        (path / name).write_bytes(encoded(pil_from_pixels(pixels, mode), "PNG"))
    return path


@pytest.fixture
def npz(workdir) -> Path:
    path = workdir / "tiny.npz"
    np.savez(path, test_x=binary_pixels(8 * 3, 8, 3, seed=3).reshape(3, 8, 8, 3),
             train_x=np.zeros((2, 8, 8, 3), np.uint8))
    return path


@pytest.fixture
def mnist(workdir) -> Path:
    """A gzipped idx3 file of five 12x12 grey images."""
    images = binary_pixels(5 * 12, 12, 1, seed=4).reshape(5, 12, 12)
    header = b"".join(n.to_bytes(4, "big") for n in (0x803, 5, 12, 12))
    path = workdir / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + images.tobytes()))
    return path


def test_bench_reports_real_file_sizes_split_and_chains(model_file, folder, npz, mnist, workdir):
    result = run(f"pngs={folder}", npz, mnist, "-m", model_file, "--codecs", "png,webp", "--tile", "8",
                 "--chain", "--keep", "kept", "--json", "out.json", "--plot", "out.png", "--markdown", "out.md")
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "out.json").read_text())
    assert report["format"] == "bbcodec-bench/1" and report["failures"] == []
    assert report["environment"]["device"] == "cpu"
    assert [s["name"] for s in report["sets"]] == ["pngs", str(npz), str(mnist)]
    assert [s["images"] for s in report["sets"]] == [4, 3, 5]
    # palette images are measured as they look (their palette is not grey: three planes)
    assert report["sets"][0]["subpixels"] == 32 * 32 * 3 + 9 * 7 + 16 * 24 * 4 + 5 * 6 * 3
    kept = sorted((workdir / "kept").iterdir())
    for index, image_set in enumerate(report["sets"]):
        model, png, webp = image_set["codecs"]
        assert (model["codec"], png["codec"], webp["codec"]) == ("bbcodec tiny", "PNG", "WebP")
        for codec in image_set["codecs"]:
            assert codec["verified"] == codec["images"] == image_set["images"] and codec["failures"] == 0
            assert codec["bits_per_subpixel"] == pytest.approx(8 * codec["file_bytes"] / image_set["subpixels"])
            assert codec["compress_mbps"] > 0 and codec["decompress_mbps"] > 0
        files = [p for p in kept if p.name.startswith(f"set{index}-")]
        assert len(files) == image_set["images"]
        assert model["file_bytes"] == sum(p.stat().st_size for p in files)  # sizes on disk, nothing estimated
        split = model["split_bits_per_subpixel"]
        parts = split["nelbo"] + split["discretization"] + split["initial"] + split["fallback"] + split["container"]
        assert parts == pytest.approx(split["file"])
        assert split["container"] > 0 and split["initial"] >= 0 and split["fallback"] <= 0
    assert report["sets"][0]["codecs"][0]["stored_files"] >= 2  # the noise images go raw
    assert report["sets"][0]["chains"] == [] and any("one size" in n for n in report["sets"][0]["notes"])
    for image_set in report["sets"][1:]:
        (chain,) = image_set["chains"]
        assert chain["exact"] and chain["images"] == image_set["images"]
        assert chain["bits_per_subpixel"] == pytest.approx(chain["stored_bits"] / image_set["subpixels"])
        assert chain["stored_bits"] == chain["net_bits"] + chain["initial_bits"]
    assert (workdir / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (workdir / "out.md").read_text()
    assert "| pngs | 4 |" in text and "(out.png)" in text and "One chain per set" in text and "bbcodec bench" in text
    assert "bbcodec tiny" in result.stdout and "verified" in result.stdout


def test_bench_limit_npz_key_and_from_json(model_file, npz, workdir):
    result = run(npz, "-m", model_file, "--codecs", "png", "--limit", "2", "--npz-key", "train_x",
                 "--no-calibrate", "--json", "a.json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "a.json").read_text())
    assert "--no-calibrate" in report["command"] and "--limit 2" in report["command"]   # typed again, the same run
    assert report["sets"][0]["images"] == 2 and report["sets"][0]["subpixels"] == 2 * 8 * 8 * 3
    again = run("--from-json", "a.json", "--markdown", "a.md", "--note", "a remark")
    assert again.exit_code == 0, again.output
    text = (workdir / "a.md").read_text()
    assert "PNG" in text and "- a remark" in text and "--from-json a.json" in text
    assert benchmark.read_json(workdir / "a.json").sets[0].codecs[0].bits_per_subpixel == pytest.approx(
        report["sets"][0]["codecs"][0]["bits_per_subpixel"])


def test_missing_optional_codec_is_skipped_with_a_note(model_file, npz, workdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import imagecodecs now fails as if not installed
    result = run(npz, "-m", model_file, "--codecs", "png,jxl,j2k,jpegls", "--json", "out.json")
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "out.json").read_text())
    assert [c["codec"] for c in report["sets"][0]["codecs"]] == ["bbcodec tiny", "PNG"]
    assert any("JPEG XL" in n and "not installed" in n for n in report["notes"])
    assert any("JPEG-LS" in n and "not installed" in n for n in report["notes"])
    assert "not installed" in result.stderr


def test_classical_codecs_without_imagecodecs(monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    codecs, notes = benchmark.classical_codecs(benchmark.ALL_KEYS)
    assert [c.key for c in codecs] == ["png", "webp"]
    assert notes and all("skipped" in n for n in notes)
    assert benchmark.classical_codecs(["png"])[1] == []  # no note about codecs nobody asked for


def test_a_lossy_classical_codec_is_a_loud_failure(model_file, npz, workdir, monkeypatch):
    real = codecs.pil_decode

    def corrupt(data):
        pixels = real(data).copy()
        pixels[0, 0, 0] ^= 1
        return pixels

    monkeypatch.setattr(codecs, "pil_decode", corrupt)  # PNG and WebP now lose one pixel
    result = run(npz, "-m", model_file, "--codecs", "png", "--json", "out.json")
    assert result.exit_code == 1
    assert "LOSSLESS FAILURE" in result.stderr and "PNG" in result.stderr
    report = json.loads((workdir / "out.json").read_text())
    png = report["sets"][0]["codecs"][1]
    assert png["failures"] == 3 and png["verified"] == 0 and len(report["failures"]) == 3


def test_a_wrong_bbcodec_decode_is_a_loud_failure(model_file, npz, workdir, monkeypatch):
    real = measure.api.decompress

    def corrupt(*args, **kwargs):
        image = real(*args, **kwargs)
        image.pixels[-1, -1, -1] ^= 1
        return image

    monkeypatch.setattr(measure.api, "decompress", corrupt)
    result = run(npz, "-m", model_file, "--codecs", "none", "--limit", "1")
    assert result.exit_code == 1
    assert "LOSSLESS FAILURE" in result.stderr and "bbcodec tiny" in result.stderr


def test_bench_packs_each_set_into_one_archive(model_file, folder, workdir):
    result = run(f"pngs={folder}", "-m", model_file, "--codecs", "none", "--archive", "--archive-chunk", "2000",
                 "--json", "out.json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "out.json").read_text())
    image_set = report["sets"][0]
    (packed,) = image_set["archives"]
    assert report["failures"] == [] and packed["exact"] and packed["codec"] == "bbcodec tiny"
    # images of every size and mode; the 32x32 RGB one is more than a chunk, so a chunk of its own
    assert packed["images"] == 4 and packed["subpixels"] == image_set["subpixels"]
    assert (packed["chunks"], packed["chunk_subpixels"]) == (2, 2000)
    assert packed["bits_per_subpixel"] == pytest.approx(8 * packed["bytes"] / packed["subpixels"])
    assert packed["compress_mbps"] > 0 and packed["decompress_mbps"] > 0
    assert "one archive of 4 images in 2 chunk(s)" in result.stdout
    assert benchmark.read_json(workdir / "out.json").sets[0].archives[0].to_dict() == packed
    again = run("--from-json", "out.json", "--markdown", "out.md")
    assert again.exit_code == 0, again.output
    text = (workdir / "out.md").read_text()
    assert "One archive per set" in text and "4 files, 0 chained images and 4 archived images" in text
    del image_set["archives"]  # a file written before archives were measured
    assert benchmark.report_from_dict(report).sets[0].archives == []


@pytest.mark.parametrize("damage", ["pixel", "end record"])
def test_a_wrong_or_damaged_archive_is_a_loud_failure(model_file, npz, workdir, monkeypatch, damage):
    class Flipping(measure.Archive):
        def decode_chunk(self, chunk):
            images = super().decode_chunk(chunk)
            images[-1][1].pixels[-1, -1, -1] ^= 1
            return images

    def truncated(members, target, **options):
        packed = archive.pack(members, target, **options)
        target.truncate(target.tell() - 1)
        return packed

    monkeypatch.setattr(measure, *(("Archive", Flipping) if damage == "pixel" else ("pack", truncated)))
    result = run(npz, "-m", model_file, "--codecs", "none", "--limit", "1", "--archive", "--json", "out.json")
    assert result.exit_code == 1
    assert "LOSSLESS FAILURE" in result.stderr and "archive of 1 images: bbcodec tiny" in result.stderr
    assert ("decoded images differ" if damage == "pixel" else "the end record is missing") in result.stderr
    assert json.loads((workdir / "out.json").read_text())["sets"][0]["archives"][0]["exact"] is False


def test_usage_errors(model_file, npz):
    assert run().exit_code == 2
    bad = run(npz, "-m", model_file, "--codecs", "png,gif")
    assert bad.exit_code == 2 and "unknown codec 'gif'" in bad.stderr
    chunk = run(npz, "-m", model_file, "--archive", "--archive-chunk", "0")
    assert chunk.exit_code == 2 and "--archive-chunk" in chunk.stderr
    missing = run("nothing-here", "-m", model_file, "--codecs", "none")
    assert missing.exit_code == 1 and "no such file or folder" in missing.stderr


def test_parse_codec_keys():
    assert benchmark.parse_codec_keys("default") == benchmark.DEFAULT_KEYS
    assert benchmark.parse_codec_keys("all") == benchmark.ALL_KEYS
    assert benchmark.parse_codec_keys("none") == []
    assert benchmark.parse_codec_keys("WebP, png,webp") == ["webp", "png"]


def test_a_flow_gives_chain_rows_next_to_a_vae_and_only_with_chain(model_file, npz, mnist, workdir):
    from bbcodec.models.export import model_to_bytes
    from tests.test_flow_coder import small_flow

    flow = workdir / "flow.safetensors"
    flow.write_bytes(model_to_bytes(small_flow()))
    result = run(npz, mnist, "-m", model_file, "-m", flow, "--codecs", "png", "--tile", "8", "--chain",
                 "--chain-batch", "2", "--json", "out.json")
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "out.json").read_text())
    cifar_like, digits = report["sets"]
    assert [c["codec"] for c in cifar_like["codecs"]] == ["bbcodec tiny", "PNG"]  # a flow codes no files
    vae, flow_chain = cifar_like["chains"]
    assert flow_chain["codec"] == "bbcodec flow" and "local bits-back" in flow_chain["coder"]
    assert flow_chain["exact"] and flow_chain["stored_bits"] == flow_chain["net_bits"] + flow_chain["initial_bits"]
    assert flow_chain["nelbo_bits"] > 0 and report["failures"] == []
    # the flow codes three channels: the grey digits get a note, not a failure
    assert len(digits["chains"]) == 1 and any("bbcodec flow" in note for note in digits["notes"])
    refused = run(npz, "-m", flow, "--codecs", "png")
    assert refused.exit_code == 1 and "--chain" in refused.stderr and "flow chains" in refused.stderr


def test_bench_measures_auto_with_the_model_each_file_names(workdir):
    """Without -m the bench measures auto, as compress codes: each small grey image with the smaller of the
    shipped choices; its −ELBO is that of the model each file names."""
    y, x = np.mgrid[:28, :28]
    ring = 255 * np.exp(-(np.hypot(y - 14, x - 14) - 7) ** 2 / 3)             # the default codes it smaller
    bar = 255 * np.exp(-(x - 14) ** 2 / 4) * ((y > 5) & (y < 23))            # the mnist model does
    digits = np.stack([ring, bar]).clip(0, 255).astype(np.uint8)
    header = b"".join(n.to_bytes(4, "big") for n in (0x803, 2, 28, 28))
    (workdir / "digits-idx3-ubyte").write_bytes(header + digits.tobytes())
    result = run(workdir / "digits-idx3-ubyte", "--codecs", "none", "--json", "out.json", "-q")
    assert result.exit_code == 0, result.output
    (measured,) = json.loads((workdir / "out.json").read_text())["sets"][0]["codecs"]
    assert measured["codec"] == "bbcodec auto" and measured["verified"] == 2 and "mnist" in measured["settings"]
    images = [digit[:, :, None] for digit in digits]
    files = [measure.api.compress(measure._image(pixels), strip_metadata=True) for pixels in images]
    assert measured["file_bytes"] == sum(len(data) for data in files)
    headers = [measure.api.info(data) for data in files]
    assert [header["model"][:12] for header in headers] == [measure.zoo.find(name).hash[:12]
                                                           for name in ("default", "mnist")]
    settings = [measure.CoderSettings(calibration=tuple(header.get("pixel_calibration") or ()),
                                      level_sets=tuple(header.get("pixel_level_sets") or ())) for header in headers]
    expected = sum(measure.image_nelbo_bits(measure.zoo.by_hash(header["model"])[0], pixels, setting)
                   for _ in range(4) for pixels, header, setting in zip(images, headers, settings)) / 4
    # the bench takes one posterior sample an image (about 1.5 % apart on the calibrated ring); one model for both
    # images would be 9 % (the default) or 40 % (mnist) away
    assert measured["nelbo_bits"] == pytest.approx(expected, rel=0.04)
