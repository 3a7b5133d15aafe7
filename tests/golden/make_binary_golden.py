"""Add the golden files of the .bbc format version bbcodec writes (``tests/golden/vN``). Read this before running it.

    python tests/golden/make_binary_golden.py        # from the repository root

The binary format versions (2 and 3, issue 20) must stay decodable for as long as
files of them may exist. ``tests/test_zoo.py`` decodes every file of each
``vN/golden.json`` with the installed models, found by the model id the file
carries alone (the first bytes of the model's hash), and compares the pixels
exactly with the ``*.npy`` files (and a kept file's bytes with their SHA-256).
Each version has one file per coding method, and one per way of starting a
chain. Version 2's files (``v2``; this script wrote them while bbcodec wrote
version 2, and no longer can):

* ``bits-back.bbc``: a 32x32 crop of ``data/chelsea.png``, exact arithmetic
  (decodes on every machine), with its stack checkpoints;
* ``stored.bbc``: a 12x10 palette image of noise with transparency and a text
  chunk, stored raw (palette, palette mode and ``meta.KEY`` sections);
* ``original.bbc``: a 16x16 JPEG, kept byte for byte (source format JPEG);
* ``no-bits-back.bbc``: a drawn 28x28 digit coded by the shipped ``mnist`` model
  with the chain's only batch coded without bits back (``start``);
* ``calibrated.bbc``: a 64x64 crop of ``data/chelsea.png``, exact arithmetic,
  with the per-image calibration of its likelihood (``pixel_calibration``);
* ``copied.bbc``: a 96x96 drawing (flat boxes and lines), exact arithmetic,
  whose calibration lets its pixels copy their decoded neighbours in the
  order of a copy pyramid (copy weights after ``COPY_MARK`` in
  ``pixel_calibration``; :mod:`bbcodec.neighbour_copy`), made with the
  Markov default of its day (now ``default-v2``);
* ``copied-polyphase.bbc``: the same drawing coded by the polyphase
  ``default`` of 2026-12-07, its phases copying their decoded neighbours and
  its coarsest image copying in pyramid order.

Each file was made with the ``default`` of its day (``golden.json`` names its
model by hash; the files before ``copied-polyphase.bbc`` with what is now
``default-v2``).

Version 3's (``v3``; made with the default of 2026-12-07, ``copied.bbc`` with
``default-v2``, the Markov model, and ``no-bits-back.bbc`` with ``mnist``): the same cases, where ``bits-back.bbc`` and ``no-bits-back.bbc`` are single batches without
stack checkpoints and ``stored.bbc`` (256 palette entries) has no pixel
checksum (its image checksum covers the pixels), and

* ``stored-1x1.bbc``: one RGB pixel stored raw, 33 bytes (an image without a source format);
* ``batches.bbc``: a 64x192 crop of ``data/chelsea.png`` in 32-pixel tiles,
  several batches, with stack checkpoints;
* ``no-bits-back-throughout.bbc``: the drawing of ``copied.bbc`` with every
  batch's latents at the prior's modes (``start``);
* ``no-bits-back-first.bbc``: the crop of ``batches.bbc`` with its first two
  batches coded without bits back (``start`` ``no-bits-back-first-2``, an
  escaped value, written since 2026-12-07's third session);
* ``level-sets.bbc``: the 64x64 crop of ``calibrated.bbc`` quantized to every
  fourth value, each plane coded among the values it takes
  (``pixel_level_sets``, :mod:`bbcodec.coding.level_sets`; since 2026-12-07's
  seventh session);
* ``bucketed.bbc``: a 128x192 crop of ``data/chelsea.png`` in 32-pixel tiles,
  whose calibration also scales the Laplace's scales bucket by bucket
  (:data:`~bbcodec.coding.calibration.BUCKET_MARK` and factors in
  ``pixel_calibration``; since the same session);
* ``fed-back.bbc``: a 128x128 crop of ``data/chelsea.png`` whose calibration
  also moves and scales each step's Laplace by its decoded neighbours'
  residuals (error feedback, :mod:`bbcodec.error_feedback`;
  :data:`~bbcodec.coding.calibration.FEEDBACK_MARK` and rows in
  ``pixel_calibration``; since 2026-12-07's eighth session);
* ``preset.bbc``: a 32x32 crop of ``data/chelsea.png`` whose calibration is the
  default's first shipped one, named by
  :data:`~bbcodec.coding.calibration.PRESET_MARK` and its number
  (``bbcodec/zoo/calibrations.json``; since 2026-12-07's tenth session).

The script writes only the files that do not exist yet and never replaces one:
a failing test means that a change broke the decoding of existing files; fix
the change instead.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, PngImagePlugin

import bbcodec
from bbcodec import container, imageio, zoo
from bbcodec.coding import calibration
from bbcodec.coding.image import CoderSettings

HERE = Path(__file__).resolve().parent / f"v{container.FORMAT_VERSION}"
ROOT = HERE.parents[2]
MODEL = zoo.DEFAULT_MODEL


def chelsea(height: int, width: int) -> np.ndarray:
    """A crop of the committed photo ``data/chelsea.png`` (RGB)."""
    photo = imageio.read_image((ROOT / "data" / "chelsea.png").read_bytes()).pixels
    return np.ascontiguousarray(photo[100:100 + height, 150:150 + width])


def palette_png() -> bytes:
    """A 12x10 PNG of noise in a 256-entry palette (version 2's file: 16 entries, which a version 3 header makes
    worth coding), one entry transparent, with a text chunk."""
    rng = np.random.default_rng(20)
    image = Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8), "P")
    image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", f"format version {container.FORMAT_VERSION}")
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=text, transparency=3)
    return out.getvalue()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(chelsea(16, 16)).save(out, "JPEG", quality=90)
    return out.getvalue()


def digit() -> np.ndarray:
    """A 28x28 grey "7" drawn on black, MNIST-like."""
    image = Image.new("L", (28, 28))
    draw = ImageDraw.Draw(image)
    draw.line([(7, 7), (21, 7), (12, 23)], fill=255, width=3)
    return np.asarray(image)[:, :, None].copy()


def drawing() -> np.ndarray:
    """A 96x96 RGB drawing: flat boxes of a few colours and lines on white, what charts and screens hold."""
    image = Image.new("RGB", (96, 96), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 8, 40, 30), fill=(200, 40, 40))
    draw.rectangle((50, 20, 88, 70), fill=(30, 90, 200), outline=(0, 0, 0))
    draw.line([(0, 80), (95, 60)], fill=(20, 140, 20), width=2)
    draw.ellipse((10, 45, 40, 75), outline=(0, 0, 0), width=2)
    return np.asarray(image).copy()


def has_checkpoints(header: dict) -> bool:
    return any(name == container.CHECKPOINTS for name, *_ in header["sections"])


def calibrated(header: dict) -> bool:
    return "pixel_calibration" in header


def has_level_sets(header: dict) -> bool:
    return "pixel_level_sets" in header


def bucketed(header: dict) -> bool:
    return calibration.BUCKET_MARK in header.get("pixel_calibration", ())


def fed_back(header: dict) -> bool:
    return calibration.FEEDBACK_MARK in header.get("pixel_calibration", ())


def names_preset(header: dict) -> bool:
    return header.get("pixel_calibration", [None])[0] == calibration.PRESET_MARK


def copied(header: dict) -> bool:
    return calibration.COPY_MARK in header.get("pixel_calibration", ())


EXACT = CoderSettings(arithmetic="exact")
CASES = {  # name -> (what compress is given, the method its .bbc must have, the model, the coder settings,
    #                 a test its header must pass or None)
    "bits-back.bbc": (imageio.Image(chelsea(32, 32), "RGB", format="PNG"), "bits-back", MODEL, EXACT, None),
    "stored.bbc": (imageio.read_image(palette_png()), "stored", MODEL, EXACT, None),  # alone: PNG keeps the file
    "original.bbc": (jpeg(), "original", MODEL, EXACT, None),
    # a chain whose first (and only) batch is coded without bits back, latents at the prior's modes
    "no-bits-back.bbc": (imageio.Image(digit(), "L", format="PNG"), "bits-back", "mnist",
                         CoderSettings(arithmetic="exact", start="no-bits-back"), None),
    "calibrated.bbc": (imageio.Image(chelsea(64, 64), "RGB", format="PNG"), "bits-back", MODEL, EXACT, calibrated),
    "copied.bbc": (imageio.Image(drawing(), "RGB"), "bits-back", "default-v2", EXACT, copied),
    "copied-polyphase.bbc": (imageio.Image(drawing(), "RGB"), "bits-back", MODEL, EXACT, copied),
    "stored-1x1.bbc": (imageio.Image(np.array([[[10, 20, 30]]], np.uint8), "RGB"), "stored", MODEL, EXACT, None),
    "batches.bbc": (imageio.Image(chelsea(64, 192), "RGB", format="PNG"), "bits-back", MODEL,
                    CoderSettings(arithmetic="exact", tile=32), has_checkpoints),
    "no-bits-back-throughout.bbc": (imageio.Image(drawing(), "RGB"), "bits-back", MODEL,
                                    CoderSettings(arithmetic="exact", start="no-bits-back-throughout"), None),
    "no-bits-back-first.bbc": (imageio.Image(chelsea(64, 192), "RGB", format="PNG"), "bits-back", MODEL,
                               CoderSettings(arithmetic="exact", tile=32, start="no-bits-back-first-2"),
                               has_checkpoints),
    "level-sets.bbc": (imageio.Image(chelsea(64, 64) & 0xFC, "RGB", format="PNG"), "bits-back", MODEL, EXACT,
                       has_level_sets),
    "bucketed.bbc": (imageio.Image(chelsea(128, 192), "RGB", format="PNG"), "bits-back", MODEL,
                     CoderSettings(arithmetic="exact", tile=32), bucketed),
    "fed-back.bbc": (imageio.Image(chelsea(128, 128), "RGB", format="PNG"), "bits-back", MODEL, EXACT, fed_back),
    "preset.bbc": (imageio.Image(chelsea(32, 32), "RGB", format="PNG"), "bits-back", MODEL,
                   CoderSettings(arithmetic="exact", calibration=calibration.preset(0)), names_preset),
}


def main() -> int:
    manifest_path = HERE / "golden.json"
    version = container.FORMAT_VERSION
    HERE.mkdir(exist_ok=True)
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"format_version": version,
                                                                                      "files": {}}
    for name, (source, method, model, settings, check) in CASES.items():
        if (HERE / name).exists():
            continue  # golden files are never replaced
        data = bbcodec.compress(source, model=model, settings=settings)
        header = bbcodec.info(data)
        if settings.start != "auto" and header.get("coder", {}).get("start", settings.start) != settings.start:
            print(f"{name}: start {header['coder']['start']}, expected {settings.start}", file=sys.stderr)
            return 1
        if check and not check(header):
            print(f"{name}: its header fails {check.__name__}; nothing written", file=sys.stderr)
            return 1
        if container.format_version(data) != version or header["method"] != method:
            print(f"{name}: format {container.format_version(data)}, method {header['method']}, expected {version} and "
                  f"{method}; nothing written", file=sys.stderr)
            return 1
        image = bbcodec.decompress(data)
        pixels_name = name.removesuffix(".bbc") + ".npy"
        (HERE / name).write_bytes(data)
        np.save(HERE / pixels_name, image.pixels, allow_pickle=False)
        manifest["files"][name] = {
            "method": method, "mode": image.mode, "pixels": pixels_name,
            "model": model if "model" in header else None,
            "model_hash": zoo.find(model).hash if "model" in header else None,
            "metadata": {k: v.hex() for k, v in sorted(image.metadata.items())},
            "original_sha256": hashlib.sha256(image.original).hexdigest() if image.original else None,
        }
        print(f"{name}: {image.width}x{image.height} {image.mode}, {len(data)} bytes, {method}")
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
