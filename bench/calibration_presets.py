"""A calibration shipped with a model for images too small to pay for their own (issue 20).

Fits one calibration of the pixel likelihood (:func:`bbcodec.coding.calibration.choose_on`) on ``--fit``
training images of an .npz set (its ``train_x``, spread evenly; never its test images), then codes the first
``--files`` test images (``test_x``) one per file as ``bbcodec.compress`` does, once with the model's shipped
calibrations only and once with the fitted one added (the encoder keeps the smaller file), decodes every file
and compares its pixels. With ``--write`` it appends the calibration to ``bbcodec/zoo/calibrations.json`` under
the model's hash unless it is shipped already; a shipped one is never changed (files name it by position). The fit
runs the float model, so another kind of machine may fit a slightly different calibration: measure there without
``--write``. The default's calibration 0 (2026-12-08; ``bash bench/train_zoo.sh calibrations``):

    python bench/calibration_presets.py ../shared/data/cifar10-subset/cifar10_subset_uint8_nhwc.npz \\
        --fit 2048 --files 200 --json bench/results/calibration_preset_cifar.json --write

One torch thread; the load average is recorded.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import bbcodec
from bbcodec import zoo
from bbcodec.coding import calibration

PRESETS = Path(zoo.__file__).parent / zoo.PRESETS


def fit(model, images: np.ndarray) -> tuple[int, ...]:
    """One calibration for ``images`` (N, H, W, 3) uint8, each counted as standing for many files."""
    batch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    return calibration.choose_on(model, batch, weight=1e4)


def file_bits(images: np.ndarray, model_name: str) -> tuple[float, int]:
    """Bits per sub-pixel of ``images`` coded one per file (from PNG bytes), and how many files name a preset."""
    total, named = 0, 0
    for pixels in images:
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG")
        data = bbcodec.compress(png.getvalue(), model=model_name)
        if not np.array_equal(bbcodec.decompress(data).pixels, pixels):
            raise SystemExit("a file did not decode to its pixels")
        total += len(data)
        named += (bbcodec.info(data).get("pixel_calibration") or [None])[0] == calibration.PRESET_MARK
    return 8 * total / images.size, named


def shipped_json(presets: dict) -> str:
    """The shipped calibrations as JSON, each calibration's indices on one line."""
    text = json.dumps(presets, indent=1)
    return re.sub(r"\[\s*(\d[\d,\s]*?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]",
                  text) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz")
    parser.add_argument("--model", default=zoo.DEFAULT_MODEL)
    parser.add_argument("--fit", type=int, default=512, help="training images the calibration is fitted on")
    parser.add_argument("--files", type=int, default=200, help="test images coded one per file")
    parser.add_argument("--write", action="store_true", help="append the calibration to the shipped ones")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    arrays = np.load(args.npz)
    train, test = arrays["train_x"], arrays["test_x"][:args.files]
    model, digest = zoo.load(args.model)
    shipped = model.calibration_presets
    start = time.perf_counter()
    fitted = fit(model, train[np.linspace(0, len(train) - 1, args.fit).round().astype(int)])
    fit_seconds = time.perf_counter() - start
    without, _ = file_bits(test, args.model)
    model.calibration_presets = shipped + (fitted,)   # the loaded model is the one compress uses (zoo's cache)
    try:
        with_preset, named = file_bits(test, args.model)
    finally:
        model.calibration_presets = shipped
    result = {"model": digest, "set": os.path.basename(args.npz), "fitted_on": f"train_x, {args.fit} images",
              "fit_seconds": round(fit_seconds, 1), "files": len(test), "indices": len(fitted),
              "bits_per_subpixel_shipped_presets": round(without, 4), "bits_per_subpixel_with_it": round(with_preset, 4),
              "files_naming_a_preset": named, "load_average": os.getloadavg()}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.write and fitted in shipped:
        print(f"already shipped as calibration {shipped.index(fitted)} of {digest[:12]}: nothing written")
    elif args.write:
        presets = json.loads(PRESETS.read_text())
        entry = {"fitted_on": f"{result['set']}: {result['fitted_on']}", "indices": list(fitted)}
        presets["presets"].setdefault(digest, []).append(entry)
        PRESETS.write_text(shipped_json(presets))
        print(f"appended as shipped calibration {len(presets['presets'][digest]) - 1} of {digest[:12]}")


if __name__ == "__main__":
    main()
