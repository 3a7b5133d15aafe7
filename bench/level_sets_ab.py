"""Level sets or not: each image's file as ``bbcodec compress`` makes it, next to the file without level sets
(:mod:`bbcodec.coding.level_sets`), both decoded and checked.

Without: the calibration chosen as before level sets existed (on the pixels as they are) and no sets; with: what
:func:`bbcodec.compress` does now (level sets where they pay, the calibration chosen for the pixels coded among
them). Files of the pixels alone (no source file to keep, metadata stripped), as ``bbcodec bench`` measures
them. Prints bytes and bits per sub-pixel per image, and per glob the totals.

    python bench/level_sets_ab.py default '../shared/data/usc-sipi/misc/*' '../shared/data/waterloo/*' \\
        --json bench/results/level_sets_ab.json
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np
import torch

from bbcodec import api, imageio, zoo
from bbcodec.coding import calibration
from bbcodec.coding.image import CoderSettings


def file_sizes(model: str, pixels: np.ndarray, tile: int) -> tuple[int, int, int]:
    """(bytes without level sets, bytes with them, level-set bytes in the header) of one image's file."""
    image = imageio.Image(pixels, imageio.PLAIN_MODES[pixels.shape[2]])
    net, _ = zoo.load(model)
    before = CoderSettings(tile=tile, calibration=calibration.choose(net, pixels, tile))
    without = api.compress(image, model=model, settings=before, strip_metadata=True, calibrate=False)
    with_sets = api.compress(image, model=model, settings=CoderSettings(tile=tile), strip_metadata=True)
    for data in (without, with_sets):
        if not np.array_equal(api.decompress(data).pixels, pixels):
            raise SystemExit("a file did not decode to its pixels")
    return len(without), len(with_sets), len(api.info(with_sets).get("pixel_level_sets") or ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("patterns", nargs="+", help="quoted globs of image files")
    parser.add_argument("--tile", type=int, default=CoderSettings().tile)
    parser.add_argument("--json", help="write the per-image sizes and the totals here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {"model": args.model, "load_average": list(os.getloadavg()), "sets": []}
    for pattern in args.patterns:
        rows, total = [], {"sub-pixels": 0, "without": 0, "with": 0}
        for path in sorted(glob.glob(pattern)):
            pixels = imageio.read_image(open(path, "rb").read()).pixels
            without, with_sets, stored = file_sizes(args.model, pixels, args.tile)
            rows.append({"image": path, "sub-pixels": int(pixels.size), "without": without, "with": with_sets,
                         "level_set_bytes": stored})
            for key, value in (("sub-pixels", pixels.size), ("without", without), ("with", with_sets)):
                total[key] += int(value)
            print(f"{os.path.basename(path):24s} {without:9d} {with_sets:9d} bytes  "
                  f"{8 * without / pixels.size:6.3f} -> {8 * with_sets / pixels.size:6.3f} bits/sub-pixel"
                  f"{'  (' + str(stored) + ' set bytes)' if stored else ''}", flush=True)
        print(f"{pattern}: {8 * total['without'] / total['sub-pixels']:.3f} -> "
              f"{8 * total['with'] / total['sub-pixels']:.3f} bits per sub-pixel ({len(rows)} images)", flush=True)
        report["sets"].append({"pattern": pattern, "images": rows, "total": total})
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
