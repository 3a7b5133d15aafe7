"""The per-image side information of 2026-12-07's seventh session, one piece at a time: each image's file without
level sets and bucket factors, with level sets, and with both (what ``bbcodec compress`` does now), every file
decoded and checked.

Level sets: :mod:`bbcodec.coding.level_sets`; bucket factors: the calibration's factor on each octave of the
predicted scales (:mod:`bbcodec.coding.calibration`). Files of the pixels alone (no source file to keep,
metadata stripped), as ``bbcodec bench`` measures them. Prints bytes and bits per sub-pixel per image and, per
glob, the totals.

    python bench/side_info_ab.py default '../shared/data/photos/04[1-9].png' '../shared/data/usc-sipi/misc/*' \\
        '../shared/data/waterloo/*' --json bench/results/side_info_ab.json
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np
import torch

from bbcodec import api, imageio, zoo
from bbcodec.coding import calibration, level_sets
from bbcodec.coding.image import CoderSettings

VARIANTS = ("before", "level sets", "and buckets")


def file_sizes(model: str, pixels: np.ndarray, tile: int) -> dict:
    """Each variant's file size in bytes for one image, and the level-set bytes of the last one's header."""
    image = imageio.Image(pixels, imageio.PLAIN_MODES[pixels.shape[2]])
    net, _ = zoo.load(model)
    sets = level_sets.choose(net, pixels)
    plane_sets = level_sets.parse(sets, pixels.shape[2])
    chosen = {
        "before": CoderSettings(tile=tile, calibration=calibration.choose(net, pixels, tile, buckets=False)),
        "level sets": CoderSettings(tile=tile, level_sets=sets,
                                    calibration=calibration.choose(net, pixels, tile, plane_sets, buckets=False)),
    }
    files = {name: api.compress(image, model=model, settings=settings, strip_metadata=True, calibrate=False)
             for name, settings in chosen.items()}
    files["and buckets"] = api.compress(image, model=model, settings=CoderSettings(tile=tile), strip_metadata=True)
    for data in files.values():
        if not np.array_equal(api.decompress(data).pixels, pixels):
            raise SystemExit("a file did not decode to its pixels")
    header = api.info(files["and buckets"])
    return {**{name: len(data) for name, data in files.items()},
            "level_set_bytes": len(header.get("pixel_level_sets") or ()),
            "bucketed": calibration.BUCKET_MARK in (header.get("pixel_calibration") or ())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("patterns", nargs="+", help="quoted globs of image files")
    parser.add_argument("--tile", type=int, default=CoderSettings().tile)
    parser.add_argument("--json", help="write the per-image sizes and the totals here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {"model": args.model, "variants": VARIANTS, "load_average": list(os.getloadavg()), "sets": []}
    for pattern in args.patterns:
        rows, total = [], dict.fromkeys(("sub-pixels",) + VARIANTS, 0)
        for path in sorted(glob.glob(pattern)):
            pixels = imageio.read_image(open(path, "rb").read()).pixels
            sizes = file_sizes(args.model, pixels, args.tile)
            rows.append({"image": path, "sub-pixels": int(pixels.size), **sizes})
            total["sub-pixels"] += int(pixels.size)
            for name in VARIANTS:
                total[name] += sizes[name]
            rates = " -> ".join(f"{8 * sizes[name] / pixels.size:6.3f}" for name in VARIANTS)
            print(f"{os.path.basename(path):24s} {rates} bits/sub-pixel ({sizes['and buckets']} bytes"
                  f"{', level sets' if sizes['level_set_bytes'] else ''}{', buckets' if sizes['bucketed'] else ''})",
                  flush=True)
        rates = " -> ".join(f"{8 * total[name] / total['sub-pixels']:.3f}" for name in VARIANTS)
        print(f"{pattern}: {rates} bits per sub-pixel ({len(rows)} images; {', '.join(VARIANTS)})", flush=True)
        report["sets"].append({"pattern": pattern, "images": rows, "total": total})
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
