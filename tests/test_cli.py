"""The ``bbcodec`` command: zstd/xz conventions, exact round trips, refusals, exit codes, no tracebacks.

Most tests run the command in-process with click's CliRunner (click >= 8.2 has no ``mix_stderr``: it always
captures ``result.stdout`` and ``result.stderr`` apart, and ``result.output`` has both). A few run the real executable in a
subprocess for what CliRunner cannot show: pipes of binary data, a terminal on stdout, progress bars.

Every test uses a tiny random model file (``-m path``); ``BBCODEC_MODELS`` points at an empty
temporary folder, and every test runs in its own temporary working directory.
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image as PILImage
from PIL import ImageDraw, PngImagePlugin

import bbcodec
from bbcodec import api, container, imageio
from bbcodec.modelfile import model_hash
from bbcodec.portability import float_platform
from bbcodec_cli import parallel
from bbcodec_cli.each import KILLED
from bbcodec_cli.main import main
from fixtures.golden import must_decode_here
from fixtures.samples import (MODE_CASES, binary_pixels, encoded, make_tiny_model, noise_pixels, pil_from_pixels,
                              sample_file)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch) -> Path:
    """Each test in an empty folder, with an empty user model folder outside it."""
    monkeypatch.setenv("BBCODEC_MODELS", str(tmp_path / "user-models"))
    monkeypatch.delenv("BBCODEC_DEBUG", raising=False)
    monkeypatch.setattr(parallel, "available_cores", lambda: 1)  # in-process, one torch thread, unless a test says
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def run(*args, input=None):
    """Invoke ``bbcodec ARGS`` in-process; fails the test on any traceback or uncaught exception."""
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}\n{result.output}") from result.exception
    return result


def ok(*args, input=None):
    result = run(*args, input=input)
    assert result.exit_code == 0, result.output
    return result


def assert_error(result, name: str | None, *fragments: str) -> str:
    """Exit status 1 and exactly one line on stderr: ``bbcodec: [NAME: ]message`` containing ``fragments``."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    prefix = f"bbcodec: {name}: " if name else "bbcodec: "
    assert lines[0].startswith(prefix), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_usage_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr


def write_png(path, pixels: np.ndarray, mode: str = "RGB", **options) -> Path:
    path = Path(path)
    path.write_bytes(encoded(pil_from_pixels(pixels, mode), "PNG", **options))
    return path


def bits_back_png(path, seed: int = 0) -> Path:
    """A 32x32 RGB PNG that the tiny model codes with bits-back (under ``--tile 8``), stored without deflate
    so that the code beats the file."""
    return write_png(path, binary_pixels(32, 32, 3, seed=seed), compress_level=0)


def kept_png(path, seed: int = 0) -> Path:
    """A 7x9 PNG of one noise row repeated, which PNG codes smaller than its pixels and no model codes smaller
    than PNG: its .bbc keeps the file byte for byte (a noise PNG this small is now stored raw: its pixels
    and a binary header take fewer bytes than the PNG and a header)."""
    return write_png(path, np.repeat(noise_pixels(1, 7, 3, seed=seed), 9, axis=0))


def pixels_of(path) -> np.ndarray:
    return imageio.read_image(Path(path)).pixels


def listing(folder=".") -> list[str]:
    return sorted(os.listdir(folder))


def compressed(model_file, path, *extra) -> Path:
    ok("compress", "-m", model_file, "--tile", "8", *extra, path)
    return Path(f"{path}.bbc")


# -- round trips: every mode, odd sizes ------------------------------------------------------------

SIZES = {"1x1": (1, 1), "1x50": (50, 1), "50x1": (1, 50), "31x33": (33, 31), "1000x7": (7, 1000)}  # WxH: (h, w)
ROUND_TRIPS = [(case, "31x33") for case in MODE_CASES] + [
    ("1", "1x1"), ("RGBA", "1x1"), ("P+index", "1x1"), ("CMYK-JPEG", "1x1"),
    ("L", "1x50"), ("RGB", "1x50"), ("P+alphas", "50x1"), ("LA", "50x1"), ("RGBA", "50x1"),
    ("1", "1000x7"), ("L", "1000x7"), ("RGB", "1000x7"), ("RGBA", "1000x7"), ("P+index", "1000x7"),
]
BITS_BACK_EXPECTED = {  # robust margins with 0/255 pixels and --tile 8 (see fixtures.samples)
    (case, size) for case, size in ROUND_TRIPS
    if case not in ("1", "CMYK-JPEG", "P+alphas") and size in ("31x33", "1000x7")}


@pytest.mark.parametrize("case, size", ROUND_TRIPS, ids=[f"{c}-{s}" for c, s in ROUND_TRIPS])
def test_round_trip_every_mode_and_size(model_file, case, size):
    """compress --rm FILE -> FILE.bbc only; decompress --rm FILE.bbc -> FILE, exact (a JPEG byte for byte)."""
    data, suffix = sample_file(case, *SIZES[size], seed=len(case))
    source = Path("image" + suffix)
    source.write_bytes(data)
    expected = imageio.read_image(data)
    ok("compress", "-m", model_file, "--tile", "8", source)
    source.unlink()  # --rm would keep it: bbcodec writes another PNG (test_rm_needs_the_exact_bytes_back)
    method = api.info(Path(source.name + ".bbc").read_bytes())["method"]
    if (case, size) in BITS_BACK_EXPECTED:
        assert method == "bits-back"
    ok("decompress", "--rm", "-m", model_file, source.name + ".bbc")
    restored = source.name
    assert listing() == [restored]  # no .bbc left (--rm), no temporary file
    if case == "CMYK-JPEG":  # lossy: kept as it was
        assert method == "original" and Path(restored).read_bytes() == data
    got = imageio.read_image(Path(restored))
    assert got.format == ("JPEG" if case == "CMYK-JPEG" else "PNG")
    assert got.mode == expected.mode and got.pixels.shape == expected.pixels.shape
    assert np.array_equal(got.pixels, expected.pixels)
    assert (got.palette, got.palette_mode) == (expected.palette, expected.palette_mode)
    assert got.metadata.get("transparency") == expected.metadata.get("transparency")
    if suffix == ".png":  # independent of bbcodec.imageio: Pillow sees the same pixels and palette
        with PILImage.open(io.BytesIO(data)) as a, PILImage.open(restored) as b:
            assert a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))
            assert a.getpalette() == b.getpalette() and a.info.get("transparency") == b.info.get("transparency")


def test_colour_under_zero_alpha_survives_the_cli(model_file):
    pixels = binary_pixels(33, 31, 4, seed=11)
    assert (pixels[pixels[..., 3] == 0][:, :3] > 0).any()
    write_png("a.png", pixels, "RGBA")
    compressed(model_file, "a.png")
    ok("decompress", "-m", model_file, "-o", "b.png", "a.png.bbc")
    assert np.array_equal(pixels_of("b.png"), pixels)


def test_jpeg_is_kept_byte_for_byte_and_converts_only_when_asked(model_file):
    pixels = noise_pixels(12, 10, 3, seed=2, high=64) + 100
    jpeg = encoded(pil_from_pixels(pixels, "RGB"), "JPEG", quality=85)
    Path("photo.JPG").write_bytes(jpeg)
    expected = pixels_of("photo.JPG")
    ok("compress", "--rm", "-m", model_file, "photo.JPG")
    assert api.info(Path("photo.JPG.bbc").read_bytes())["method"] == "original"
    result = ok("decompress", "-v", "photo.JPG.bbc")  # no model needed
    assert listing() == ["photo.JPG", "photo.JPG.bbc"] and "(JPEG)" in result.stderr
    assert Path("photo.JPG").read_bytes() == jpeg
    ok("decompress", "-o", "photo.png", "photo.JPG.bbc")  # another format only when named
    assert imageio.read_image(Path("photo.png")).format == "PNG"
    assert np.array_equal(pixels_of("photo.png"), expected)
    result = run("compress", "--strip-metadata", "-m", model_file, "-o", "x.bbc", "photo.JPG")
    assert_error(result, "photo.JPG", "JPEG files are kept byte for byte")


def test_original_name_is_restored_whatever_its_suffix(model_file):
    kept_png("scan.v2")  # PNG content, odd suffix
    jpeg = encoded(pil_from_pixels(noise_pixels(8, 8, 3), "RGB"), "JPEG")
    Path("noext").write_bytes(jpeg)
    ok("compress", "--rm", "-m", model_file, "scan.v2", "noext")
    ok("decompress", "--rm", "-m", model_file, "scan.v2.bbc", "noext.bbc")
    assert listing() == ["noext", "scan.v2"] and Path("noext").read_bytes() == jpeg


def test_output_next_to_input_in_another_folder(model_file):
    Path("sub").mkdir()
    kept_png("sub/x.png")
    ok("compress", "-m", model_file, "sub/x.png")
    assert listing("sub") == ["x.png", "x.png.bbc"] and listing() == ["sub"]


def test_times_and_permissions_follow_the_input(model_file):
    path = kept_png("t.png")
    os.chmod(path, 0o640)
    os.utime(path, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    ok("compress", "--rm", "-m", model_file, path)
    ok("decompress", "--rm", "-m", model_file, "t.png.bbc")
    stat = os.stat("t.png")
    assert stat.st_mode & 0o777 == 0o640 and stat.st_mtime_ns == 1_600_000_000_123_456_789


# -- never larger than the file given ------------------------------------------------------------------

KEPT_FILE_HEADER = 64
"""Most bytes a .bbc that keeps its file adds to it (magic, header, checksums: 31 in format version 3, about 40
in version 2, 230 in version 1)."""


def synthetic(kind: str, height: int, width: int) -> PILImage.Image:
    """Images a user archives besides photos: flat, a gradient, text, a screen of lines and boxes."""
    if kind == "flat":
        return PILImage.new("RGB", (width, height), (200, 30, 90))
    if kind == "gradient":
        ramp = np.linspace(0, 255, width, dtype=np.float64)[None, :, None] * np.ones((height, 1, 3))
        return PILImage.fromarray(ramp.astype(np.uint8))
    im = PILImage.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    if kind == "text":
        for row in range(0, height, 12):
            draw.text((2, row), "bbcodec keeps every pixel 0123456789", fill="black")
    else:  # screen
        for x in range(0, width, 17):
            draw.line((x, 0, x, height), fill=(40, 40, 160))
        draw.rectangle((width // 4, height // 4, width // 2, height // 2), fill=(250, 220, 0), outline="black")
    return im


GROWTH_CASES = {
    **{f"noise-{h}x{w}.png": (lambda h=h, w=w: encoded(pil_from_pixels(noise_pixels(h, w, 3), "RGB"), "PNG"))
       for h, w in ((1, 1), (16, 16), (40, 64))},
    **{f"{kind}-{h}x{w}.png": (lambda kind=kind, h=h, w=w: encoded(synthetic(kind, h, w), "PNG"))
       for kind in ("flat", "gradient", "text", "screen") for h, w in ((1, 1), (16, 16), (48, 96))},
    "grey-32x32.png": lambda: encoded(synthetic("text", 32, 32).convert("L"), "PNG"),
    "photo.jpg": lambda: encoded(synthetic("screen", 40, 56), "JPEG", quality=90),
    "photo.webp": lambda: encoded(synthetic("text", 40, 56), "WEBP", quality=80),
    "lossless.webp": lambda: encoded(synthetic("text", 40, 56), "WEBP", lossless=True),
    "raw.bmp": lambda: encoded(synthetic("flat", 40, 56), "BMP"),
}


@pytest.mark.parametrize("name", sorted(GROWTH_CASES))
def test_a_file_never_grows_and_comes_back(model_file, name):
    """Whatever the model does with it, the .bbc is at most the file plus a header; a file kept as it was comes
    back byte for byte, and a lossy one is always kept."""
    data = GROWTH_CASES[name]()
    Path(name).write_bytes(data)
    ok("compress", "--rm", "-m", model_file, name)
    bbc = Path(name + ".bbc").read_bytes()
    method = api.info(bbc)["method"]
    assert len(bbc) <= len(data) + KEPT_FILE_HEADER, method
    assert method == "original" or len(bbc) < len(data)  # another method only when it beats the file
    if name.endswith((".jpg", "photo.webp")):
        assert method == "original"
    ok("decompress", "--rm", "-m", model_file, name + ".bbc")
    assert listing() == [name]
    if method == "original":
        assert Path(name).read_bytes() == data
    assert np.array_equal(pixels_of(name), imageio.read_image(data).pixels)


def test_a_kept_file_is_checked_before_it_is_given_back(model_file):
    data = encoded(synthetic("text", 16, 16), "PNG")
    kept = api.compress(data, model=str(model_file))
    box = container.from_bytes(kept)
    assert box.header["method"] == "original"
    changed = bytearray(box.sections[container.ORIGINAL])
    changed[-20] ^= 1  # the CRC is recomputed below: only the image checksum can tell
    forged = container.to_bytes(container.Container({k: v for k, v in box.header.items() if k != "sections"},
                                                    {container.ORIGINAL: bytes(changed)}))
    Path("forged.bbc").write_bytes(forged)
    assert_error(run("decompress", "forged.bbc"), "forged.bbc", "does not match its checksum")
    assert listing() == ["forged.bbc"]


# -- options ---------------------------------------------------------------------------------------


def test_compress_keeps_input_and_never_overwrites_without_force(model_file):
    path = bits_back_png("a.png")
    ok("compress", "-m", model_file, "--tile", "8", path)
    assert listing() == ["a.png", "a.png.bbc"]
    Path("a.png.bbc").write_bytes(b"precious")
    assert_error(run("compress", "-m", model_file, path), "a.png", "a.png.bbc already exists", "-f")
    assert Path("a.png.bbc").read_bytes() == b"precious"
    ok("compress", "-f", "-m", model_file, "--tile", "8", path)
    assert api.info(Path("a.png.bbc").read_bytes())["method"] == "bits-back"
    assert listing() == ["a.png", "a.png.bbc"]


def test_decompress_never_overwrites_without_force(model_file):
    bbc = compressed(model_file, kept_png("a.png"))
    Path("a.png").write_bytes(b"precious")
    assert_error(run("decompress", "-m", model_file, bbc), "a.png.bbc", "a.png already exists")
    assert Path("a.png").read_bytes() == b"precious"
    ok("decompress", "--force", "-m", model_file, bbc)
    assert imageio.read_image(Path("a.png")).pixels.shape == (9, 7, 3)


def test_output_option(model_file):
    path = bits_back_png("a.png")
    ok("compress", "-m", model_file, "--tile", "8", "-o", "packed", path)
    assert listing() == ["a.png", "packed"]
    ok("decompress", "-m", model_file, "--output", "unpacked.png", "packed")  # any name with -o
    assert np.array_equal(pixels_of("unpacked.png"), pixels_of("a.png"))
    assert_error(run("compress", "-m", model_file, "-o", "packed", path), "a.png", "packed already exists")


def test_output_suffix_chooses_a_lossless_format_or_is_refused(model_file):
    bbc = compressed(model_file, bits_back_png("a.png"))
    ok("decompress", "-m", model_file, "-o", "a.tiff", bbc)
    assert imageio.read_image(Path("a.tiff")).format == "TIFF"
    assert np.array_equal(pixels_of("a.tiff"), pixels_of("a.png"))
    assert_error(run("decompress", "-m", model_file, "-o", "a.gif", bbc), "a.png.bbc", "GIF cannot store", ".png")
    assert not Path("a.gif").exists()


@pytest.mark.parametrize("args, fragment", [
    (["compress", "-o", "x", "a.png", "b.png"], "single input"),
    (["decompress", "-o", "x", "a.bbc", "b.bbc"], "single input"),
    (["compress", "-o", "x", "-c", "a.png"], "cannot be used together"),
    (["compress", "-c", "a.png", "b.png"], "single input"),
    (["compress", "-", "-"], "only once"),
    (["compress"], "Missing argument"),
    (["decompress", "--bogus", "a.bbc"], "No such option"),
    (["compress", "--device", "tpu", "a.png"], "Invalid value"),
    (["compress", "--tile", "4", "a.png"], "Invalid value"),
    (["compress", "--tile", "big", "a.png"], "not auto or a side"),
    (["info", "-", "-"], "only once"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_usage_errors_exit_2_and_touch_nothing(args, fragment):
    kept_png("a.png")
    assert_usage_error(run(*args), fragment)
    assert listing() == ["a.png"]


def test_stdout_option(model_file):
    path = bits_back_png("a.png")
    result = ok("compress", "-c", "-m", model_file, "--tile", "8", path)
    assert listing() == ["a.png"]
    assert result.stdout_bytes[:4] == container.MAGIC
    assert api.info(result.stdout_bytes)["method"] == "bits-back"
    Path("x.bbc").write_bytes(result.stdout_bytes)
    image = ok("decompress", "--stdout", "-m", model_file, "x.bbc").stdout_bytes
    assert listing() == ["a.png", "x.bbc"]
    assert np.array_equal(imageio.read_image(image).pixels, pixels_of(path))
    assert ok("compress", "-o", "-", "-m", model_file, "--tile", "8", path).stdout_bytes == result.stdout_bytes


def test_stdin_to_stdout_and_to_a_file(model_file):
    png = bits_back_png("a.png").read_bytes()
    bbc = ok("compress", "-m", model_file, "--tile", "8", "-", input=png).stdout_bytes
    assert bbc == ok("compress", "-c", "-m", model_file, "--tile", "8", "a.png").stdout_bytes
    image = ok("decompress", "-m", model_file, "-", input=bbc).stdout_bytes
    assert np.array_equal(imageio.read_image(image).pixels, imageio.read_image(png).pixels)
    ok("compress", "-m", model_file, "-", "-o", "from-stdin.bbc", input=png)
    ok("decompress", "-m", model_file, "-", "-o", "from-stdin.png", input=bbc)
    assert listing() == ["a.png", "from-stdin.bbc", "from-stdin.png"]
    # --rm never removes standard input, nor an input written to stdout
    ok("compress", "--rm", "-c", "-m", model_file, "a.png")
    assert Path("a.png").exists()


def test_refuses_to_read_binary_from_a_terminal(model_file):
    class Terminal(io.BytesIO):
        def isatty(self):
            return True

    assert_error(run("compress", "-m", model_file, "-", "-o", "x.bbc", input=Terminal(b"")), "-", "terminal")
    assert listing() == []


def test_rm_removes_the_input_only_on_success(model_file, monkeypatch):
    good, bad = kept_png("good.png"), Path("bad.png")
    bad.write_text("not an image")
    taken = kept_png("taken.png")
    Path("taken.png.bbc").write_bytes(b"precious")
    result = run("compress", "--rm", "-m", model_file, good, bad, taken)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 2
    assert listing() == ["bad.png", "good.png.bbc", "taken.png", "taken.png.bbc"]
    assert Path("taken.png.bbc").read_bytes() == b"precious"
    # a failed write (disk full) leaves the input, and neither a partial output nor a temporary file
    kept_png("full.png")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk_full)
        assert_error(run("compress", "--rm", "-m", model_file, "full.png"), "full.png", "No space left", "full.png.bbc")
    assert listing() == ["bad.png", "full.png", "good.png.bbc", "taken.png", "taken.png.bbc"]


def test_rm_needs_the_exact_bytes_back(model_file):
    """A file kept as it was, or written as bbcodec writes it, is removed; a PNG that would come back with the
    same image but other bytes is kept, with a warning."""
    Path("photo.jpg").write_bytes(encoded(synthetic("screen", 24, 24), "JPEG"))
    own = imageio.read_image(sample_file("RGB", 33, 31)[0])
    imageio.write_image(own, "own.bmp", format="BMP")  # raw: the model beats it
    write_png("other.png", own.pixels, compress_level=0)
    result = ok("compress", "--rm", "-m", model_file, "--tile", "8", "photo.jpg", "own.bmp", "other.png")
    assert listing() == ["other.png", "other.png.bbc", "own.bmp.bbc", "photo.jpg.bbc"]
    assert result.stderr.strip() == ("bbcodec: other.png: kept: decompressing gives back its image, not its exact "
                                     "bytes (--rm removes only a file that comes back byte for byte)")
    assert api.info(Path("own.bmp.bbc").read_bytes())["method"] == "bits-back"


def test_failed_decompress_write_leaves_nothing(model_file, monkeypatch):
    bbc = compressed(model_file, kept_png("a.png"), "--rm")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk_full)
        assert_error(run("decompress", "--rm", "-m", model_file, bbc), "a.png.bbc", "No space left")
    assert listing() == ["a.png.bbc"]


def test_input_and_output_the_same_file_is_refused_even_with_force(model_file):
    path = kept_png("a.png")
    before = path.read_bytes()
    assert_error(run("compress", "-f", "--rm", "-m", model_file, "-o", "a.png", path), "a.png", "input file itself")
    assert path.read_bytes() == before


def test_verbose_quiet_and_default_output(model_file):
    path = bits_back_png("a.png")
    result = ok("compress", "-v", "-m", model_file, "--tile", "8", path)
    assert result.stdout == ""
    line, = result.stderr.splitlines()
    assert line.startswith("a.png: ") and "bits/sub-pixel" in line and "bits-back" in line and "a.png.bbc" in line
    result = ok("decompress", "-v", "-m", model_file, "-o", "b.png", "a.png.bbc")
    assert "a.png.bbc" in result.stderr and "b.png" in result.stderr
    result = ok("decompress", "-m", model_file, "-o", "c.png", "a.png.bbc")
    assert result.output == ""  # silent on success by default (progress bars only on a terminal)
    result = ok("compress", "-q", "-f", "-m", model_file, path)
    assert result.output == ""
    assert_error(run("compress", "-q", "-m", model_file, "missing.png"), "missing.png", "No such file")


def test_model_by_name_path_and_errors(model_file):
    path = kept_png("a.png")
    assert_error(run("compress", "-m", "nothere.safetensors", path), None, "model file nothere.safetensors not found")
    assert_error(run("compress", "-m", "dir/model", path), None, "not found")
    Path("plain").write_bytes(model_file.read_bytes())
    assert_error(run("compress", "-m", "./plain", path), None, ".safetensors")
    assert_error(run("compress", "-m", "tiny", path), None, "unknown model 'tiny'")
    assert listing() == ["a.png", "plain"]
    ok("models", "add", model_file)
    ok("compress", "-m", "tiny", path)
    ok("test", "-m", model_hash(model_file.read_bytes())[:10], "a.png.bbc")


def test_one_model_error_line_for_many_files(model_file):
    kept_png("a.png"), kept_png("b.png")
    assert_error(run("compress", "-m", "missing.safetensors", "a.png", "b.png"), None, "not found")


def test_device_option(model_file):
    path = bits_back_png("a.png")
    ok("compress", "--device", "cpu", "-m", model_file, path)
    ok("decompress", "--device", "auto", "-m", model_file, "-o", "b.png", "a.png.bbc")
    assert np.array_equal(pixels_of("b.png"), pixels_of(path))
    if not torch.cuda.is_available():
        assert_error(run("decompress", "--device", "cuda", "-o", "c.png", "a.png.bbc"), None, "no CUDA device")


def test_verify_and_strip_metadata(model_file):
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "kept unless stripped")
    write_png("a.png", binary_pixels(8, 8, 3), pnginfo=info, transparency=(255, 0, 255))
    ok("compress", "--verify", "-m", model_file, "-o", "kept.bbc", "a.png")
    ok("compress", "--strip-metadata", "-m", model_file, "-o", "stripped.bbc", "a.png")
    ok("decompress", "-m", model_file, "-o", "kept.png", "kept.bbc")
    ok("decompress", "-m", model_file, "-o", "stripped.png", "stripped.bbc")
    with PILImage.open("kept.png") as kept, PILImage.open("stripped.png") as stripped:
        assert kept.text == {"Title": "kept unless stripped"} and not stripped.text
        assert kept.info["transparency"] == stripped.info["transparency"] == (255, 0, 255)


def test_unexpected_errors_are_one_line_too(model_file, monkeypatch):
    kept_png("a.png")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "compress", broken)
    assert_error(run("compress", "-m", model_file, "a.png"), "a.png", "internal error", "RuntimeError: boom")
    assert listing() == ["a.png"]


# -- refusals and partial failure --------------------------------------------------------------------


def handmade_png16(width: int = 3, height: int = 2) -> bytes:
    """A 16-bit RGB PNG built byte by byte (as tests/test_imageio.py does; Pillow cannot write one)."""
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\0" + bytes(range(width * 6))) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


REFUSED_INPUTS = {
    "deep.png": (handmade_png16(), "16-bit"),
    "notes.txt": (b"just some text\n", "not an image"),
    "empty.png": (b"", "empty"),
    "cut.png": (None, "truncated"),
}


@pytest.mark.parametrize("name", REFUSED_INPUTS)
def test_compress_refusals(model_file, name):
    data, fragment = REFUSED_INPUTS[name]
    if data is None:
        data = kept_png("whole.png").read_bytes()[:60]
        os.remove("whole.png")
    Path(name).write_bytes(data)
    assert_error(run("compress", "--rm", "-m", model_file, name), name, fragment)
    assert listing() == [name]


def test_compress_missing_file_and_directory(model_file):
    Path("folder").mkdir()
    result = run("compress", "-m", model_file, "missing.png", "folder")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["bbcodec: missing.png: No such file or directory: missing.png",
                                          "bbcodec: folder: is a folder (use -r to process the files under it)"]


def damaged_copies(bbc: Path) -> dict[str, bytes]:
    data = bbc.read_bytes()
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    return {"flipped.bbc": bytes(flipped), "cut.bbc": data[:-20], "junk.bbc": b"\xbbBBC" + b"\0" * 3,
            "text.bbc": b"hello"}


def test_decompress_refusals(model_file, other_model_file):
    bbc = compressed(model_file, bits_back_png("a.png"))
    for name, blob in damaged_copies(bbc).items():
        Path(name).write_bytes(blob)
        line = assert_error(run("decompress", "--rm", "-m", model_file, name), name)
        assert any(word in line for word in ("corrupt", "truncated", "not a .bbc", "checksum")), line
        assert Path(name).exists() and not Path(name[:-4]).exists()
    assert_error(run("decompress", bbc), "a.png.bbc", "a.png already exists")  # seen in the header, before decoding
    assert_error(run("decompress", "-o", "b.png", bbc), "a.png.bbc", "needs model", "not installed")
    assert_error(run("decompress", "-o", "b.png", "-m", other_model_file, bbc), "a.png.bbc", "made with model")
    assert_error(run("decompress", "-m", model_file, "a.png"), "a.png", "unknown suffix")
    assert listing() == ["a.png", "a.png.bbc", "cut.bbc", "flipped.bbc", "junk.bbc", "text.bbc"]


def test_decompress_checks_the_name_from_the_file_before_decoding(model_file, monkeypatch):
    """The name a BMP, a JPEG kept as it was and a PNG come back under is known from the .bbc itself, so an
    existing target is refused before any decoding."""
    own = imageio.read_image(sample_file("RGB", 33, 31)[0])
    imageio.write_image(own, "raw.bmp", format="BMP")  # the model beats it: bits-back
    Path("photo.jpg").write_bytes(encoded(synthetic("screen", 24, 24), "JPEG"))
    bbcs = [compressed(model_file, name) for name in ("raw.bmp", "photo.jpg", bits_back_png("a.png"))]
    assert [api.info(b.read_bytes())["method"] for b in bbcs] == ["bits-back", "original", "bits-back"]

    def never(*args, **kwargs):
        raise AssertionError("decoded before checking the target")

    monkeypatch.setattr(api, "decompress", never)
    for bbc in bbcs:
        assert_error(run("decompress", "-m", model_file, bbc), bbc.name, f"{bbc.name[:-4]} already exists")


def test_several_files_one_failing(model_file):
    kept_png("a.png"), kept_png("c.png", seed=1)
    Path("b.png").write_text("not an image")
    result = run("compress", "-m", model_file, "a.png", "b.png", "c.png")
    assert_error(result, "b.png", "not an image")
    assert listing() == ["a.png", "a.png.bbc", "b.png", "c.png", "c.png.bbc"]
    for name in ("a.png", "c.png"):
        os.rename(name, name + ".orig")
    Path("b.png.bbc").write_bytes(b"garbage")
    result = run("decompress", "-m", model_file, "a.png.bbc", "b.png.bbc", "c.png.bbc")
    assert_error(result, "b.png.bbc", "not a .bbc file")
    assert np.array_equal(pixels_of("a.png"), pixels_of("a.png.orig"))
    assert np.array_equal(pixels_of("c.png"), pixels_of("c.png.orig"))
    assert Path("b.png").read_text() == "not an image"  # the failed file wrote nothing


# -- info, test, models ------------------------------------------------------------------------------


def test_info_shows_the_header_without_decoding(model_file):
    bbc = compressed(model_file, bits_back_png("a.png"))
    stored = compressed(model_file, kept_png("s.png"))
    digest = model_hash(model_file.read_bytes())
    result = ok("info", bbc, stored)  # no model installed: info never needs one
    bbc_line, stored_line = result.stdout.splitlines()
    size = bbc.stat().st_size
    assert bbc_line == (f"a.png.bbc: 32x32 RGB, {size} bytes, {8 * size / (32 * 32 * 3):.3f} bits/sub-pixel, "
                        f"method bits-back, coder bitswap, model {digest[:16]}, format 3, decodes on any machine")
    assert "7x9 RGB" in stored_line and "method original" in stored_line and "model -" in stored_line
    assert ok("info", "-", input=bbc.read_bytes()).stdout == bbc_line.replace("a.png.bbc", "-") + "\n"
    assert ", format 1, " in ok("info", GOLDEN / "stored-rgb.bbc").stdout  # files of the old format: the same line
    float_file = compressed(model_file, bits_back_png("f.png"), "--arithmetic", "float")
    assert f"decodes on only where it was made ({float_platform('cpu')}" in ok("info", float_file).stdout
    Path("bad.bbc").write_bytes(b"nope")
    result = run("info", "bad.bbc", bbc)
    assert_error(result, "bad.bbc", "not a .bbc file")
    assert result.stdout == bbc_line + "\n"


def test_info_on_a_header_with_odd_fields_is_still_one_line(model_file):
    bbc = compressed(model_file, bits_back_png("a.png"))
    box = container.from_bytes(bbc.read_bytes())
    header = {k: v for k, v in box.header.items() if k != "sections"}
    header.update(width="wide", coder=7, model=None, method="two\nlines")
    del header["mode"]
    Path("odd.bbc").write_bytes(container.to_bytes(container.Container(header, box.sections), version=1))
    line = ok("info", "odd.bbc").stdout.strip()
    assert line.startswith("odd.bbc: ?x?") and "\n" not in line


def test_info_on_a_header_with_huge_fields_is_a_short_line(model_file):
    bbc = compressed(model_file, bits_back_png("a.png"))
    box = container.from_bytes(bbc.read_bytes())
    header = {k: v for k, v in box.header.items() if k != "sections"}
    header.update(mode="x" * 100_000, method="y\n" * 1000, width=10 ** 30, model="z" * 5000)
    Path("huge.bbc").write_bytes(container.to_bytes(container.Container(header, box.sections), version=1))
    line = ok("info", "huge.bbc").stdout.strip()
    assert line.startswith("huge.bbc: ?x? ") and "\n" not in line and len(line) < 200, line
    result = run("decompress", "-m", model_file, "huge.bbc")  # refused by the decoder, also in one short line
    assert_error(result, "huge.bbc", "corrupt .bbc header")
    assert len(result.stderr) < 400


def test_work_limits_and_no_limits(model_file):
    """A header that asks for too much work is refused with a hint; --no-limits lets the decoder try (and
    this forged one then fails on its payload); compress never writes such a file."""
    bbc = compressed(model_file, bits_back_png("a.png"))
    box = container.from_bytes(bbc.read_bytes())
    header = {k: v for k, v in box.header.items() if k != "sections"}
    header.update(width=4096, height=4096, coder={**header["coder"], "tile": 1024, "max_batch": 16})
    Path("heavy.bbc").write_bytes(container.to_bytes(container.Container(header, box.sections)))
    for command in ("decompress", "test"):
        assert_error(run(command, "-m", model_file, "heavy.bbc"), "heavy.bbc", "network pass", "--no-limits")
        line = assert_error(run(command, "--no-limits", "-m", model_file, "heavy.bbc"), "heavy.bbc")
        assert "--no-limits" not in line
    assert container.MAX_BATCH_PIXELS == 1 << 20  # restored after the command

    ok("compress", "-m", model_file, "--tile", "1024", "-o", "big.bbc", bits_back_png("b.png"))
    assert bbcodec.info("big.bbc")["coder"]["max_batch"] == 1  # batches of 1024x1024 tiles within MAX_BATCH_PIXELS


def test_test_command_decodes_fully_and_writes_nothing(model_file, other_model_file):
    bbc = compressed(model_file, bits_back_png("a.png"))
    stored = compressed(model_file, kept_png("s.png"))
    before = listing()
    result = ok("test", "-m", model_file, bbc, stored)
    assert result.stdout.splitlines() == ["a.png.bbc: OK", "s.png.bbc: OK"]
    assert ok("test", "-q", "-m", model_file, bbc).output == ""
    damaged = bytearray(bbc.read_bytes())
    payload_start = len(damaged) - container.from_bytes(bytes(damaged)).header["sections"][0][1]
    damaged[payload_start + 5] ^= 1
    Path("damaged.bbc").write_bytes(bytes(damaged))
    assert_error(run("test", "-q", "-m", model_file, "damaged.bbc"), "damaged.bbc", "checksum")
    assert_error(run("test", "-q", "-m", other_model_file, bbc), "a.png.bbc", "made with model")
    assert_error(run("test", "-q", bbc), "a.png.bbc", "not installed")
    assert listing() == sorted(before + ["damaged.bbc"])


def test_models_list_and_add(model_file, other_model_file, workdir):
    user_models = workdir.parent / "user-models"
    assert user_lines(ok("models").stdout) == []
    bbc = compressed(model_file, bits_back_png("a.png"))
    digest = model_hash(model_file.read_bytes())
    result = ok("models", "add", model_file)
    assert result.stdout.strip() == f"installed tiny ({digest[:16]}) at {user_models / 'tiny.safetensors'}"
    ok("models", "add", "--name", "second", other_model_file)
    lines = user_lines(ok("models").stdout)
    assert [line.split()[:3] for line in lines] == [["second", model_hash(other_model_file.read_bytes())[:16], "user"],
                                                    ["tiny", digest[:16], "user"]]
    ok("decompress", "-o", "b.png", bbc)  # the model is found by the hash in the file
    assert np.array_equal(pixels_of("b.png"), pixels_of("a.png"))
    assert_error(run("models", "add", "--name", "tiny", other_model_file), None, "different model named 'tiny'")
    Path("junk.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b"{}")
    assert_error(run("models", "add", "junk.safetensors"), None, "model file")
    assert_usage_error(run("models", "add", "missing.safetensors"), "does not exist")
    assert_usage_error(run("models", "add", "--name", "../up", model_file), "plain file name")
    shutil.copy("junk.safetensors", user_models / "broken.safetensors")  # a damaged user model is skipped
    assert [line.split()[0] for line in user_lines(ok("models").stdout)] == ["second", "tiny"]


def user_lines(listing: str) -> list[str]:
    """The lines of `bbcodec models` for user-installed models (shipped models are listed too)."""
    return [line for line in listing.splitlines() if len(line.split()) > 2 and line.split()[2] == "user"]


def test_models_lists_the_shipped_default():
    lines = [line.split() for line in ok("models").stdout.splitlines()]
    assert any(words[0] == "default" and words[2] == "shipped" for words in lines if len(words) > 2)


def test_help_and_version():
    result = ok("--help")
    for command in ("compress", "decompress", "info", "test", "models"):
        assert command in result.stdout
    assert ok("--version").stdout.strip().endswith("0.1.0")
    assert "--rm" in ok("compress", "-h").stdout


def test_golden_files_pass_the_test_command():
    """Every golden file this machine must decode passes ``bbcodec test``; a float file from another kind of
    machine is refused in one line that says why (``fixtures.golden``)."""
    manifest = json.loads((GOLDEN / "golden.json").read_text())
    names = sorted(manifest["files"])
    here = [name for name in names if must_decode_here(bbcodec.info(GOLDEN / name))]
    assert len(here) >= 5  # the exact twins and the stored file at least
    result = ok("test", "-m", GOLDEN / manifest["model"], *(GOLDEN / name for name in here))
    assert result.stdout.splitlines() == [f"{GOLDEN / name}: OK" for name in here]
    for name in sorted(set(names) - set(here)):
        result = run("test", "-m", GOLDEN / manifest["model"], GOLDEN / name)
        if result.exit_code:
            assert len(result.stderr.splitlines()) == 1 and "coded with float arithmetic" in result.stderr


# -- the real executable: pipes, terminals, progress bars ---------------------------------------------


def command() -> list[str]:
    script = Path(sys.executable).parent / "bbcodec"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bbcodec_cli.main"]


def environment(tmp_path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", BBCODEC_MODELS=str(tmp_path / "user-models"))
    env.pop("BBCODEC_DEBUG", None)
    return env


def terminal(columns: int = 100) -> tuple[int, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))  # tqdm draws nothing at width 0
    return master, slave


def read_all(master: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once the other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return out


def test_binary_pipe_through_stdin_and_stdout(model_file, tmp_path):
    png = bits_back_png("a.png").read_bytes()
    env = environment(tmp_path)
    first = subprocess.Popen([*command(), "compress", "-m", str(model_file), "--tile", "8", "-"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    second = subprocess.Popen([*command(), "decompress", "-m", str(model_file), "-"],
                              stdin=first.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first.stdout.close()
    first.stdin.write(png)
    first.stdin.close()
    out, err2 = second.communicate(timeout=120)
    err1 = first.stderr.read()
    first.stderr.close()
    assert first.wait(timeout=120) == 0 and second.returncode == 0, (err1, err2)
    assert err1 == err2 == b""  # stderr is not a terminal: no progress bar
    assert np.array_equal(imageio.read_image(out).pixels, imageio.read_image(png).pixels)
    assert listing() == ["a.png"]


def test_refuses_binary_to_a_terminal_unless_forced(model_file, tmp_path):
    kept_png("a.png")
    master, slave = terminal()
    done = subprocess.run([*command(), "compress", "-c", "-m", str(model_file), "a.png"], stdout=slave,
                          stderr=subprocess.PIPE, env=environment(tmp_path), timeout=120)
    os.close(slave)
    assert read_all(master) == b""
    assert done.returncode == 1
    assert done.stderr.decode().splitlines() == ["bbcodec: refusing to write binary data to a terminal (use -f to force)"]
    assert listing() == ["a.png"]
    master, slave = terminal()
    done = subprocess.run([*command(), "compress", "-c", "-f", "-m", str(model_file), "a.png"], stdout=slave,
                          stderr=subprocess.PIPE, env=environment(tmp_path), timeout=120)
    os.close(slave)
    shown = read_all(master)
    assert done.returncode == 0 and done.stderr == b""
    assert shown.startswith(container.MAGIC) and len(shown) >= Path("a.png").stat().st_size // 2


def test_progress_bars_on_a_terminal_only(model_file, tmp_path):
    bits_back_png("a.png"), bits_back_png("b.png", seed=1)
    master, slave = terminal()
    done = subprocess.run([*command(), "compress", "-T", "1", "-m", str(model_file), "--tile", "8", "a.png", "b.png"],
                          stdout=subprocess.PIPE, stderr=slave, env=environment(tmp_path), timeout=120)
    os.close(slave)
    shown = read_all(master).decode(errors="replace")
    assert done.returncode == 0 and done.stdout == b""
    assert "compress" in shown and "2/2" in shown and "tile" in shown and "Traceback" not in shown
    assert listing() == ["a.png", "a.png.bbc", "b.png", "b.png.bbc"]
    master, slave = terminal()  # two workers: the bar over files, with its speed
    done = subprocess.run([*command(), "decompress", "-T", "2", "-f", "-m", str(model_file), "a.png.bbc",
                           "b.png.bbc"], stdout=subprocess.PIPE, stderr=slave, env=environment(tmp_path), timeout=120)
    os.close(slave)
    shown = read_all(master).decode(errors="replace")
    assert done.returncode == 0 and "2/2" in shown and "MB/s" in shown and "Traceback" not in shown, shown


# -- issue 18: help on a full disk, names with newlines, Ctrl-C at start-up --------------------------------


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["compress", "--help"]])
def test_help_and_version_on_a_full_disk_are_one_line(tmp_path, args):
    with open("/dev/full", "wb") as full:
        done = subprocess.run([*command(), *args], stdout=full, stderr=subprocess.PIPE, text=True,
                              env=environment(tmp_path), timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["bbcodec: cannot write to standard output: No space left on device"]


def test_a_name_with_a_newline_makes_one_error_line():
    Path("a\nb.png").write_bytes(b"not an image")
    assert_error(run("compress", "a\nb.png"), "a\\nb.png", "not an image")


# Ctrl-C during start-up (here: while the model is being loaded, before any file).
INTERRUPTED_AT_START = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
import bbcodec_cli.codec
def interrupt(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
bbcodec_cli.codec.resolve_model_option = interrupt
from bbcodec_cli.main import main
main(sys.argv[1:])
"""


def test_ctrl_c_at_start_up_is_reported_as_later(tmp_path):
    write_png("a.png", noise_pixels(8, 8, 3))
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_AT_START, "compress", "a.png"], capture_output=True,
                          text=True, env=dict(environment(tmp_path), PYTHONPATH=str(ROOT)), timeout=120)
    assert done.stderr.splitlines() == ["bbcodec: interrupted by SIGINT"]
    assert done.returncode == -2
    assert sorted(os.listdir()) == ["a.png"]


# Ctrl-C while the command imports its modules (here: as torch is imported), before any of its code runs.
INTERRUPTED_WHILE_IMPORTING = """
import os, runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, Interrupt())
sys.argv = ["bbcodec", *sys.argv[1:]]
runpy.run_module("bbcodec_cli.main", run_name="__main__")
"""


def test_ctrl_c_while_importing_is_reported_as_later(tmp_path):
    write_png("a.png", noise_pixels(8, 8, 3))
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_WHILE_IMPORTING, "compress", "a.png"],
                          capture_output=True, text=True, env=dict(environment(tmp_path), PYTHONPATH=str(ROOT)),
                          timeout=120)
    assert done.stderr.splitlines() == ["bbcodec: interrupted by SIGINT"]
    assert done.returncode == -2 and sorted(os.listdir()) == ["a.png"]


# Ctrl-C while Python runs a destructor (here: while the model is loaded): Python reports such exceptions
# as "Exception ignored" and goes on, which lost the interruption (found by bench/soak.py).
INTERRUPTED_IN_A_DESTRUCTOR = """
import gc, os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
import bbcodec_cli.codec
class Interrupting:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
def load(*args, **kwargs):
    Interrupting()
    gc.collect()
    return "default"
bbcodec_cli.codec.resolve_model_option = load
from bbcodec_cli.main import main
main(sys.argv[1:])
"""


def test_ctrl_c_in_a_destructor_is_not_lost(tmp_path):
    write_png("a.png", noise_pixels(8, 8, 3))
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_IN_A_DESTRUCTOR, "compress", "a.png"],
                          capture_output=True, text=True, env=dict(environment(tmp_path), PYTHONPATH=str(ROOT)),
                          timeout=120)
    assert done.stderr.splitlines() == ["bbcodec: interrupted by SIGINT"]
    assert done.returncode == -2 and sorted(os.listdir()) == ["a.png"]


def test_python_dash_m_bbcodec_runs_the_command():
    done = subprocess.run([sys.executable, "-m", "bbcodec", "info", str(GOLDEN / "zoo" / "464be377d5f2.bbc")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "64x64 RGB" in done.stdout and "decodes on any machine" in done.stdout


NO_TORCH = """
import sys
from bbcodec_cli.main import main
try:
    main(sys.argv[1:])
finally:
    assert "torch" not in sys.modules, "torch was imported"
"""


@pytest.mark.parametrize("args", [["--help"], ["info", str(GOLDEN / "zoo" / "464be377d5f2.bbc")], ["models"]],
                         ids=["help", "info", "models"])
def test_commands_that_need_no_network_start_without_torch(args, tmp_path, model_file):
    """Importing torch costs about 2 s of CPU: `bbcodec --help`, `bbcodec info` and `bbcodec models` (with a
    user model and a damaged one installed) do without it."""
    user_models = tmp_path / "user-models"
    user_models.mkdir()
    shutil.copy(model_file, user_models / "tiny.safetensors")
    (user_models / "broken.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b"{}")
    done = subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), BBCODEC_MODELS=str(user_models)))
    assert done.returncode == 0 and "torch was imported" not in done.stderr, done.stderr
    if args == ["models"]:
        assert "default " in done.stdout and "tiny " in done.stdout and "broken" not in done.stdout


# -- issue 17: threads, many files, folders, zstd habits, info --json, models info/remove ----------------


def test_threads_never_exceed_the_cores(monkeypatch):
    monkeypatch.setattr(parallel, "available_cores", lambda: 4)
    assert parallel.plan(0, 1) == (0, 4)  # one file: this process, every core
    assert parallel.plan(9, 1) == (0, 4)  # never more than the cores
    assert parallel.plan(0, 2) == (2, 2) and parallel.plan(0, 20) == (4, 1) and parallel.plan(3, 20) == (3, 1)
    assert parallel.plan(1, 20) == (0, 1)  # one core: no worker


def test_workers_only_for_enough_work(monkeypatch):
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    Path("a").write_bytes(bytes(1000)), Path("b").write_bytes(bytes(2000))
    monkeypatch.setattr(parallel, "WORKER_MIN_BYTES", 3001)
    assert parallel.plan_for(0, ["a", "b"]) == (0, 2)  # small inputs: this process, both cores
    monkeypatch.setattr(parallel, "WORKER_MIN_BYTES", 3000)
    assert parallel.plan_for(0, ["a", "b"]) == (2, 1)
    assert parallel.plan_for(0, ["a", "-"]) == (0, 2)  # standard input is read here


def test_threads_option_sets_torch_threads_once(model_file, monkeypatch):
    monkeypatch.setattr(parallel, "available_cores", lambda: 3)
    seen = []
    monkeypatch.setattr(parallel, "set_torch_threads", seen.append)
    kept_png("a.png")
    ok("compress", "-T", "2", "-m", model_file, "a.png")
    ok("test", "--threads", "9", "-m", model_file, "a.png.bbc")
    ok("decompress", "-m", model_file, "-o", "b.png", "a.png.bbc")
    assert seen == [2, 3, 3]
    assert_usage_error(run("compress", "-T", "-1", "a.png"), "-1")


def test_many_files_in_worker_processes_keep_order_and_status(model_file, monkeypatch):
    """Two cores, three files: two spawned workers; the messages come in the order of the files, the failed
    file is one line, and the others are done."""
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    monkeypatch.setattr(parallel, "WORKER_MIN_BYTES", 0)
    kept_png("a.png"), bits_back_png("c.png", seed=1)
    Path("b.png").write_text("not an image")
    result = run("compress", "-v", "-m", model_file, "--tile", "8", "a.png", "b.png", "c.png")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["a.png", "bbcodec", "c.png"], lines
    assert lines[1] == "bbcodec: b.png: not an image" or lines[1].startswith("bbcodec: b.png: "), lines
    assert listing() == ["a.png", "a.png.bbc", "b.png", "c.png", "c.png.bbc"]
    result = ok("test", "-m", model_file, "c.png.bbc", "a.png.bbc")
    assert result.stdout.splitlines() == ["c.png.bbc: OK", "a.png.bbc: OK"]


def test_recursive_folders(model_file):
    Path("photos/deeper").mkdir(parents=True)
    kept_png("photos/a.png"), kept_png("photos/deeper/b.png", seed=1)
    Path("photos/old.bbc").write_bytes(b"not compressed again")
    Path("photos/notes.txt").write_text("not an image: skipped")
    assert_error(run("compress", "-m", model_file, "photos"), "photos", "is a folder", "-r")
    ok("compress", "-r", "-m", model_file, "photos")
    assert listing("photos") == ["a.png", "a.png.bbc", "deeper", "notes.txt", "old.bbc"]
    assert listing("photos/deeper") == ["b.png", "b.png.bbc"]
    for name in ("photos/a.png", "photos/deeper/b.png"):
        os.rename(name, name + ".orig")
    result = run("decompress", "-r", "-m", model_file, "photos")  # every .bbc: old.bbc fails, the others come back
    assert_error(result, "photos/old.bbc", "not a .bbc file")
    assert np.array_equal(pixels_of("photos/deeper/b.png"), pixels_of("photos/deeper/b.png.orig"))
    assert_error(run("test", "-m", model_file, "photos"), "photos", "use -r")
    Path("empty").mkdir()
    assert_usage_error(run("compress", "-r", "empty"), "no file to process")


def test_keep_is_the_default_and_contradicts_rm(model_file):
    kept_png("a.png")
    ok("compress", "-k", "-m", model_file, "a.png")
    assert listing() == ["a.png", "a.png.bbc"]
    assert_usage_error(run("compress", "-k", "--rm", "a.png"), "--keep")
    assert_usage_error(run("decompress", "--keep", "--rm", "a.png.bbc"), "--keep")


def test_verbose_gives_sizes_ratio_time_and_speed(model_file):
    path = bits_back_png("a.png")
    line = ok("compress", "-v", "-m", model_file, "--tile", "8", path).stderr.strip()
    size_in, size_out = path.stat().st_size, Path("a.png.bbc").stat().st_size
    assert line.startswith(f"a.png: {size_in} -> {size_out} bytes ({size_in / size_out:.3f}x), "), line
    assert " s, " in line and "MB/s" in line
    line = ok("decompress", "-v", "-m", model_file, "-o", "b.png", "a.png.bbc").stderr.strip()
    assert line.startswith(f"a.png.bbc: {size_out} -> ") and "MB/s" in line and "-> b.png (PNG)" in line


def test_a_long_run_says_how_far_it_is_when_not_on_a_terminal(model_file, monkeypatch):
    from bbcodec_cli import each

    monkeypatch.setattr(each, "REPORT_EVERY", 0.0)
    kept_png("a.png"), kept_png("b.png", seed=1)
    result = ok("compress", "-v", "-m", model_file, "a.png", "b.png")
    assert any(line.startswith("bbcodec: compress: 2/2 files, ") and "MB/s" in line
               for line in result.stderr.splitlines()), result.stderr
    assert "files, " not in ok("compress", "-f", "-m", model_file, "a.png", "b.png").stderr  # only with -v


def test_decompress_checks_a_target_known_from_the_header_before_decoding(model_file, monkeypatch):
    compressed(model_file, kept_png("a.png"))
    decoded = []
    real = api.decompress
    monkeypatch.setattr(api, "decompress", lambda *a, **k: decoded.append(1) or real(*a, **k))
    assert_error(run("decompress", "-m", model_file, "a.png.bbc"), "a.png.bbc", "a.png already exists")
    assert decoded == []


def test_info_json(model_file):
    bbc = compressed(model_file, bits_back_png("a.png"))
    stored = compressed(model_file, kept_png("s.png"))
    ok("models", "add", "--name", "mine", model_file)
    first, second = (json.loads(line) for line in ok("info", "--json", bbc, stored).stdout.splitlines())
    assert first["file"] == "a.png.bbc" and first["bytes"] == bbc.stat().st_size
    assert first["model"] == model_hash(model_file.read_bytes())[: 2 * container.DIGEST_BYTES]
    assert first["model_name"] == "mine"
    assert first["format_version"] == second["format_version"] == container.FORMAT_VERSION == 3
    assert first["decodes_anywhere"] is True and first["method"] == "bits-back"
    assert first["original_bytes"] is None and first["ratio"] is None
    assert second["method"] == "original" and second["original_bytes"] == Path("s.png").stat().st_size
    assert second["ratio"] == pytest.approx(Path("s.png").stat().st_size / stored.stat().st_size)


def test_models_info_remove_and_names_of_shipped_models(model_file, tmp_path):
    ok("models", "add", model_file)
    lines = ok("models", "info", "tiny").stdout.splitlines()
    assert lines[:3] == ["name: tiny", f"hash: {model_hash(model_file.read_bytes())}", "origin: user"]
    assert "origin: shipped" in ok("models", "info", "default").stdout
    assert_error(run("models", "add", "--name", "default", model_file), None, "shipped model", "--name")
    assert_error(run("models", "remove", "default"), None, "shipped model", "models add")
    assert_error(run("models", "add", "--name", "auto", model_file), None, "auto", "--name")
    assert ok("models", "remove", "tiny").stdout.startswith("removed tiny")
    assert user_lines(ok("models").stdout) == []
    assert_error(run("models", "remove", "tiny"), None, "no model named 'tiny'")
    assert_error(run("models", "info", "tiny"), None, "no model named 'tiny'")


def test_model_errors_name_what_is_missing(model_file, tmp_path):
    kept_png("a.png")
    assert_error(run("compress", "-m", "nosuchmodel", "a.png"), None, "unknown model 'nosuchmodel'",
                 "no installed model has this name or hash")
    assert_error(run("compress", "-m", "deadbeef1234", "a.png"), None, "unknown model 'deadbeef1234'")
    checkpoint = {"__metadata__": {"step": "3"}}  # a safetensors file without the model format tag
    header = json.dumps(checkpoint).encode()
    Path("run.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    assert_error(run("models", "add", "run.safetensors"), None, "bbcodec export")


def test_output_closed_early_is_quiet(model_file, tmp_path):
    """`bbcodec info ... | head -1`: no traceback, no "Broken pipe" line, the usual status."""
    bbc = str(GOLDEN / "zoo" / "464be377d5f2.bbc")
    for args in (["info", *[bbc] * 2000], ["models"]):
        done = subprocess.Popen([*command(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=environment(tmp_path))
        done.stdout.readline()
        done.stdout.close()
        error = done.stderr.read()
        assert done.wait(timeout=120) in (0, 1) and error == b"", error


def test_shell_completion_as_the_readme_says(tmp_path):
    env = dict(environment(tmp_path), _BBCODEC_COMPLETE="bash_source")
    done = subprocess.run(command(), capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and "_bbcodec_completion" in done.stdout and done.stderr == ""
    env.update(_BBCODEC_COMPLETE="bash_complete", COMP_WORDS="bbcodec decomp", COMP_CWORD="1")
    done = subprocess.run(command(), capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.split() == ["plain,decompress"]


STOPPED_WORKERS = """
from bbcodec_cli import parallel
from bbcodec_cli.each import KILLED
from bbcodec_cli.each import job, run_each
parallel.available_cores = lambda: 2  # two workers, whatever this machine has
parallel.WORKER_MIN_BYTES = 0  # however small the files
run_each(["a", "b"], job("fixtures.slow_job:action", seconds=60.0), False, True, "test", threads=2)
"""


KILLED_WORKER = """
import sys
from bbcodec_cli import parallel
from bbcodec_cli.each import KILLED
from bbcodec_cli.each import job, run_each
parallel.available_cores = lambda: 2
parallel.WORKER_MIN_BYTES = 0
run_each(list("abcde"), job("fixtures.slow_job:killer", victim="c", seconds=0.5), False, True, "test", threads=2)
"""


def test_a_killed_worker_fails_its_file_only(tmp_path):
    """A worker killed on one file (as out of memory): that file gets one error line, every other file is
    coded, in order, and the command ends with status 1 instead of waiting for the lost file forever."""
    env = dict(environment(tmp_path), PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    done = subprocess.run([sys.executable, "-c", KILLED_WORKER], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 1
    assert done.stdout.split() == ["a", "b", "d", "e"]
    assert done.stderr.splitlines() == [f"bbcodec: c: {KILLED}"]


def test_a_signal_ends_the_workers_and_their_files(tmp_path):
    """SIGTERM while two workers code: each removes what it was writing, and the command ends with one line
    (no warning from multiprocessing about what it left)."""
    env = dict(environment(tmp_path), PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    process = subprocess.Popen([sys.executable, "-c", STOPPED_WORKERS], stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 100
    while listing() != ["a.partial", "b.partial"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert listing() == ["a.partial", "b.partial"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == -signal.SIGTERM
    assert process.stderr.read().decode().splitlines() == ["bbcodec: interrupted by SIGTERM"]
    assert listing() == []
