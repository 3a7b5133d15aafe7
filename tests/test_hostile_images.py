"""Hostile images: decompression bombs, damaged files, non-images, animations, unsupported modes and formats.

Each is refused before any model runs, with an UnsupportedImageError (one line) from
:func:`bbcodec.read_image`, and through ``bbcodec compress`` with exit status 1, one stderr line per
file, no output, the input untouched, quickly and without allocating what a bomb declares. The files
are built here byte by byte where Pillow cannot write them.
"""
from __future__ import annotations

import io
import os
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from PIL import PngImagePlugin

from bbcodec import imageio
from bbcodec.errors import UnsupportedImageError
from bbcodec_cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, depth: int = 8, colour: int = 2, idat: bytes | None = None, extra: bytes = b"",
        iend: bool = True) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    if idat is None:
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
        idat = zlib.compress((b"\0" + bytes(width * channels * depth // 8)) * height)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", idat)
            + (chunk(b"IEND", b"") if iend else b""))


def saved(im, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def frames(fmt: str, **options) -> bytes:
    images = [PILImage.new("RGB", (6, 5), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return saved(images[0], fmt, save_all=True, append_images=images[1:], **options)


def tiff_declaring(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF whose tags declare a size; its single strip holds 8 bytes."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 8)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + bytes(4)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(8)


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(saved(PILImage.new("RGB", (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def zlib_bomb(size: int) -> bytes:
    return zlib.compress(bytes(size), 9)


BOMBS = {  # declared sizes far over the 2^26-pixel limit, in files of a few hundred bytes
    "png-100000x100000": png(100000, 100000, idat=zlib_bomb(1000)),
    "png-just-over": png(8193, 8192, colour=0, idat=zlib_bomb(1000)),
    "png-4-billion-wide": png(0xFFFFFFFF, 1, idat=zlib_bomb(100)),
    "bmp-30000x30000": saved(PILImage.new("L", (4, 4)), "BMP")[:18] + struct.pack("<ii", 30000, 30000)
                       + saved(PILImage.new("L", (4, 4)), "BMP")[26:],
    "gif-65535x65535": b"GIF89a" + struct.pack("<HH", 65535, 65535) + saved(PILImage.new("P", (4, 4)), "GIF")[10:],
    "tiff-100000x100000": tiff_declaring(100000, 100000),
    "jpeg-65500x65500": jpeg_declaring(65500, 65500),
    "ppm-100000x100000": b"P6 100000 100000 255\n" + bytes(30),
    "webp-16383x16383": None,  # made below: VP8L header edited
}


def webp_bomb() -> bytes:
    data = bytearray(saved(PILImage.new("RGB", (4, 4)), "WEBP", lossless=True))
    at = data.index(b"VP8L") + 8 + 1  # after the signature byte: 14 bits width-1, 14 bits height-1
    bits = int.from_bytes(data[at: at + 4], "little")
    bits = (bits & ~((1 << 28) - 1)) | (16382) | (16382 << 14)
    data[at: at + 4] = bits.to_bytes(4, "little")
    return bytes(data)


BOMBS["webp-16383x16383"] = webp_bomb()

TEXT_BOMB = png(8, 8, extra=chunk(b"zTXt", b"Comment\0\0" + zlib_bomb(200 << 20)))
ICC_BOMB = png(8, 8, extra=chunk(b"iCCP", b"icc\0\0" + zlib_bomb(200 << 20)))


def good_png() -> bytes:
    rng = np.random.default_rng(0)
    return saved(PILImage.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)), "PNG")


DAMAGED = {
    "png-cut-in-signature": good_png()[:5],
    "png-cut-in-ihdr": good_png()[:20],
    "png-cut-in-idat": good_png()[:200],
    "png-cut-in-last-idat": good_png()[:-30],
    "png-idat-crc": (lambda d: d[:-20] + bytes([d[-20] ^ 1]) + d[-19:])(good_png()),
    "png-idat-garbage": png(20, 20, idat=np.random.default_rng(1).bytes(300)),
    "png-idat-short": png(20, 20, idat=zlib.compress(bytes(100))),
    "png-depth-3": png(4, 4, depth=3, colour=0),
    "png-colour-type-7": png(4, 4, colour=7, idat=zlib.compress(bytes(40))),
    "png-zero-size": png(0, 0, idat=zlib.compress(b"")),
    "png-chunk-length-huge": good_png()[:33] + struct.pack(">I", 0x7FFFFFF0) + b"IDAT" + bytes(20),
    "png-text-bomb": TEXT_BOMB,
    "png-icc-bomb": ICC_BOMB,
    "jpeg-cut": saved(PILImage.new("RGB", (64, 64), (10, 200, 30)), "JPEG")[:300],
    "gif-cut": saved(PILImage.new("P", (30, 30)), "GIF")[:40],
    "bmp-cut": saved(PILImage.new("RGB", (30, 30)), "BMP")[:100],
    "tiff-cut": saved(PILImage.new("RGB", (30, 30)), "TIFF")[:150],
    "webp-cut": saved(PILImage.new("RGB", (30, 30)), "WEBP", lossless=True)[:30],
}

NOT_IMAGES = {
    "empty": b"",
    "text": b"a text file, not a picture\n" * 10,
    "random": np.random.default_rng(2).bytes(4096),
    "bbc-file": b"\xbbBBC\x01" + bytes(40),
    "pdf": b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n",
    "zip": b"PK\x03\x04" + bytes(26) + b"PK\x05\x06" + bytes(18),
    "elf": b"\x7fELF" + bytes(60),
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",  # never handed to Ghostscript
}

ANIMATED = {
    "gif-3-frames": frames("GIF"),
    "apng-3-frames": frames("PNG"),
    "webp-3-frames": frames("WEBP", lossless=True),
    "tiff-3-pages": frames("TIFF"),
}

UNSUPPORTED = {  # modes and formats refused rather than altered
    "png-16-bit-grey": (png(3, 2, depth=16, colour=0), "16-bit"),
    "png-16-bit-rgba": (png(3, 2, depth=16, colour=6), "16-bit"),
    "tiff-32-bit-int": (saved(PILImage.new("I", (3, 2), 70000), "TIFF"), "mode I"),
    "tiff-float": (saved(PILImage.new("F", (3, 2), 0.5), "TIFF"), "floating-point"),
    "ppm-16-bit": (b"P5 2 2 65535\n" + bytes(8), "16-bit"),
    "pcx": (saved(PILImage.new("RGB", (4, 4)), "PCX"), "PCX images are not supported"),
    "ico": (saved(PILImage.new("RGBA", (16, 16)), "ICO"), "not supported"),
    "sgi": (saved(PILImage.new("RGB", (4, 4)), "SGI"), "not supported"),
    "xbm": (saved(PILImage.new("1", (8, 8)), "XBM"), "not supported"),
}


def cases() -> dict[str, tuple[bytes, str]]:
    out = {f"bomb/{k}": (v, "") for k, v in BOMBS.items()}
    out.update({f"damaged/{k}": (v, "") for k, v in DAMAGED.items()})
    out.update({f"not-image/{k}": (v, "") for k, v in NOT_IMAGES.items()})
    out.update({f"animated/{k}": (v, "frames") for k, v in ANIMATED.items()})
    out.update({f"unsupported/{k}": v for k, v in UNSUPPORTED.items()})
    return out


CASES = cases()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_one_line_quickly_and_in_little_memory(case):
    data, fragment = CASES[case]
    start, peak = time.perf_counter(), peak_rss_mib()
    with pytest.raises(UnsupportedImageError) as caught:
        imageio.read_image(data)
    message = str(caught.value)
    assert message and "\n" not in message and len(message) < 300, message
    assert fragment in message, message
    if case.startswith("bomb/"):
        assert "pixels" in message or "too large" in message, message
    assert time.perf_counter() - start < 5
    assert peak_rss_mib() - peak < 100  # a bomb's declared pixels are never allocated


def test_bomb_messages_name_the_declared_size():
    message = str(pytest.raises(UnsupportedImageError, imageio.read_image, BOMBS["png-100000x100000"]).value)
    assert "100000x100000" in message and "decompression bomb" in message


def test_the_limit_is_exact():
    ok = png(1024, 1024, colour=0, idat=zlib.compress((b"\0" + bytes(1024)) * 1024))
    assert imageio.read_image(ok, max_pixels=1024 * 1024).pixels.shape == (1024, 1024, 1)
    with pytest.raises(UnsupportedImageError, match="more than the limit"):
        imageio.read_image(ok, max_pixels=1024 * 1024 - 1)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BBCODEC_MODELS", str(tmp_path / "user-models"))
    monkeypatch.delenv("BBCODEC_DEBUG", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def file_names() -> dict[str, bytes]:
    return {case.replace("/", "-") + ".img": data for case, (data, _) in CASES.items()}


def test_compress_refuses_every_case_and_leaves_nothing(workdir, model_file):
    """In-process: all files on one command line, one stderr line each, nothing written, inputs intact."""
    names = file_names()
    for name, data in names.items():
        Path(name).write_bytes(data)
    result = CliRunner().invoke(main, ["compress", "--rm", "-m", str(model_file), *names])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == len(names), result.stderr
    for name, line in zip(names, lines):
        assert line.startswith(f"bbcodec: {name}: "), line
    assert sorted(os.listdir()) == sorted(names)
    assert all(Path(name).read_bytes() == data for name, data in names.items())


def test_compress_refuses_bombs_in_a_memory_limited_process(workdir, model_file, tmp_path):
    """The real command under a 2 GiB address-space limit: bombs and damaged files, one line each."""
    names = {k: v for k, v in file_names().items() if k.startswith(("bomb", "damaged-png-text", "damaged-png-icc"))}
    for name, data in names.items():
        Path(name).write_bytes(data)
    env = dict(os.environ, OMP_NUM_THREADS="1", BBCODEC_MODELS=str(tmp_path / "user-models"), PYTHONPATH=str(ROOT))
    env.pop("BBCODEC_DEBUG", None)
    limit = 2 << 30
    done = subprocess.run([sys.executable, "-m", "bbcodec_cli.main", "compress", "-m", str(model_file), *names],
                          env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == len(names) and all(line.startswith("bbcodec: ") for line in lines), done.stderr
    assert sorted(os.listdir()) == sorted(names)


def test_a_folder_named_like_an_image(workdir, model_file):
    Path("photo.png").mkdir()
    result = CliRunner().invoke(main, ["compress", "-m", str(model_file), "photo.png"])
    assert result.exit_code == 1
    assert result.stderr == "bbcodec: photo.png: is a folder (use -r to process the files under it)\n"


def _png_chunks(data: bytes) -> list[tuple[bytes, int]]:
    """(type, offset of its CRC) of every chunk of a PNG file."""
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        chunks.append((kind, offset + 8 + length))
        offset += 12 + length
    return chunks


def test_a_png_chunk_with_a_wrong_crc_is_refused():
    """Pillow does not check every chunk's CRC: a damaged file must not be archived as sound (issue 18,
    item 8). Only the CRC field is changed, so that the pixels themselves still decode."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "kept")
    good = saved(PILImage.fromarray(np.random.default_rng(3).integers(0, 256, (12, 10, 3), dtype=np.uint8)),
                 "PNG", pnginfo=info)
    imageio.read_image(good)
    chunks = _png_chunks(good)
    assert {kind for kind, _ in chunks} >= {b"IHDR", b"tEXt", b"IDAT", b"IEND"}
    for kind, crc_at in chunks:
        damaged = good[:crc_at] + bytes([good[crc_at] ^ 0x10]) + good[crc_at + 1:]
        with pytest.raises(UnsupportedImageError) as caught:
            imageio.read_image(damaged)
        message = str(caught.value)
        assert "damaged PNG file" in message and kind.decode() in message and "CRC" in message, message
    with pytest.raises(UnsupportedImageError, match="ends before its IEND"):
        imageio.read_image(good[:-12])


def _tiff_claiming_rows(rows: int) -> bytes:
    """A 16x16 grey TIFF (one strip) whose ImageLength tag says ``rows``: its strips hold 256 pixels."""
    data = bytearray(saved(PILImage.new("L", (16, 16), 7), "TIFF"))
    assert data[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for entry in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * entry
        if struct.unpack_from("<H", data, at)[0] == 257:  # ImageLength
            field_type = struct.unpack_from("<H", data, at + 2)[0]
            struct.pack_into("<I" if field_type == 4 else "<H", data, at + 8, rows)
    return bytes(data)


def test_a_tiff_whose_strips_do_not_cover_the_image_is_refused():
    """Found by bench/fuzz_atheris.py: a 391-byte TIFF declaring 16x3145728 pixels was accepted, all but
    its first 256 pixels black (Pillow fills what no strip holds), after seconds of work."""
    imageio.read_image(_tiff_claiming_rows(16))
    for rows in (17, 1000, 3 << 20):
        with pytest.raises(UnsupportedImageError, match="incomplete TIFF"):
            imageio.read_image(_tiff_claiming_rows(rows))
