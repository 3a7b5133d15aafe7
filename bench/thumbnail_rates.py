"""Thumbnails as files, with and without the calibrations shipped with the model (issue 20).

Each image is shrunk (Lanczos, its longer side to each ``--sides`` value, aspect kept), written as PNG and
compressed as ``bbcodec compress`` does, once with the model's shipped calibrations and once with none; every
file is decoded and compared. ``--force`` tries the shipped calibrations on every image, however large (the
encoder tries them only where a calibration takes over ``calibration.SIDE_SHARE`` of the raw bytes).

    python bench/thumbnail_rates.py ../shared/data/photos/04?.png ../shared/data/usc-sipi/misc --sides 32 64 128

One torch thread; bits per sub-pixel of all the thumbnails of each side.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import bbcodec
from bbcodec import zoo
from bbcodec.coding import calibration


def images_of(paths: list[str]) -> list[Path]:
    found = []
    for path in map(Path, paths):
        found += sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return found


def coded_bytes(png: bytes, pixels: np.ndarray) -> tuple[int, bool]:
    """The file's size, and whether it names a shipped calibration; SystemExit if it does not decode exactly."""
    data = bbcodec.compress(png)
    if not np.array_equal(bbcodec.decompress(data).pixels, pixels):
        raise SystemExit("a file did not decode to its pixels")
    return len(data), (bbcodec.info(data).get("pixel_calibration") or [None])[0] == calibration.PRESET_MARK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--force", action="store_true", help="try the shipped calibrations at every size")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.force:
        calibration.SIDE_SHARE = 0.0
    model, _ = zoo.load(zoo.DEFAULT_MODEL)   # the model compress loads for these (zoo's cache)
    shipped = model.calibration_presets
    files, rows = images_of(args.paths), []
    for side in args.sides:
        row = {"side": side, "images": len(files), "subpixels": 0, "png": 0, "without": 0, "with": 0, "named": 0}
        for path in files:
            image = Image.open(path).convert("RGB")
            image.thumbnail((side, side), Image.LANCZOS)
            png = io.BytesIO()
            image.save(png, format="PNG")
            pixels = np.asarray(image)
            row["subpixels"] += pixels.size
            row["png"] += len(png.getvalue())
            try:
                model.calibration_presets = ()
                row["without"] += coded_bytes(png.getvalue(), pixels)[0]
            finally:
                model.calibration_presets = shipped
            size, named = coded_bytes(png.getvalue(), pixels)
            row["with"] += size
            row["named"] += named
        for key in ("png", "without", "with"):
            row[key] = round(8 * row[key] / row["subpixels"], 4)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps({"paths": args.paths, "force": args.force, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
