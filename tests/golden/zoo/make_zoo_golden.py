"""Add the exact-arithmetic golden file of a shipped model. Read this before running it.

    python tests/golden/zoo/make_zoo_golden.py MODEL     # from the repository root

Files name their model by hash, so a model that was ever shipped must stay
installable for as long as files made with it may exist. ``tests/test_zoo.py``
checks that every shipped model has a golden file here in exact arithmetic,
``HASH.bbc`` (the first 12 hex digits of the model hash) with its pixels in
``HASH.npy``, made with that model by the bits-back coder, and that each decodes
exactly. The ``mnist`` models' first files were coded in float arithmetic,
before exact arithmetic covered logistic pixels; their exact files are
``HASH-exact.bbc``.

Run this ONCE, when a model is added to ``bbcodec/zoo``. It refuses to add a
file for a model that has an exact golden file, and never replaces a file: a
failing zoo test means a change broke the decoding of files made with a
shipped model; fix the change instead.

The image is chosen for the model: a 64x64 crop of ``data/chelsea.png`` for
colour models; for models with logistic pixels (the MNIST kind) a drawing of
white strokes on black, coded in 32x32 tiles one at a time, so that the
posterior's initial bits are paid once and bits-back beats storing the pixels.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import bbcodec
from bbcodec import api, imageio
from bbcodec.coding.image import CoderSettings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def strokes() -> np.ndarray:
    """A 96x96 grey drawing of white strokes on black, like handwriting at MNIST's contrast."""
    canvas = Image.new("L", (96, 96), 0)
    pen = ImageDraw.Draw(canvas)
    pen.ellipse((10, 8, 44, 44), outline=255, width=4)
    pen.line((60, 10, 80, 86), fill=255, width=4)
    pen.arc((14, 52, 50, 90), 0, 270, fill=255, width=4)
    return np.asarray(canvas)[:, :, None]


def golden_image(model) -> tuple[np.ndarray, str, CoderSettings]:
    """(pixels, mode, coder settings) of the golden file for this model."""
    if model.config.pixel_distribution == "logistic":
        return strokes(), "L", CoderSettings(tile=32, max_batch=1)
    photo = imageio.read_image((ROOT / "data" / "chelsea.png").read_bytes()).pixels
    return np.ascontiguousarray(photo[100:164, 150:214]), "RGB", CoderSettings()


def main(name: str) -> int:
    model, digest = bbcodec.load_model(name)
    existing = sorted(HERE.glob(f"{digest[:12]}*.bbc"))
    if any(api.info(path)["coder"]["arithmetic"] == "exact" for path in existing):
        print(f"{name} has an exact golden file; golden files are never replaced", file=sys.stderr)
        return 1
    target = HERE / (f"{digest[:12]}-exact.bbc" if existing else f"{digest[:12]}.bbc")
    pixels, mode, settings = golden_image(model)
    data = api.compress(imageio.Image(pixels=pixels, mode=mode), model=name,
                        settings=replace(settings, arithmetic="exact"))
    if api.info(data)["method"] != "bits-back":
        print("the model stores this image raw, so its golden file would not test it", file=sys.stderr)
        return 1
    np.save(target.with_suffix(".npy"), pixels)
    target.write_bytes(data)
    print(f"{target.name}: {name}, {pixels.shape}, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
