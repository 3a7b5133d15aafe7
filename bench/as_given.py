"""What a user gets from `bbcodec compress` on image files as given: each file's .bbc size and method.

`bbcodec bench` codes pixels, so its bbcodec column is the model's own rate. A user compresses files, and a .bbc
is never larger than its file: where the model's code is not smaller, the file is kept byte for byte (method
``original``). This script compresses every image file of each set as `bbcodec compress` does (the default model,
calibration, one thread) and records, per file, the .bbc's size and method, the file's own size and the size of
the file re-encoded by Pillow as an optimized PNG (as `bbcodec bench`'s PNG column); then each set's totals in bits
per sub-pixel and how many files were kept as given.

    python bench/as_given.py misc=../shared/data/usc-sipi/misc waterloo=../shared/data/waterloo \
        'photos=../shared/data/photos/04[1-9].png' --json out.json
"""
from __future__ import annotations

import argparse
import glob
import io
import json
import os
import time
from pathlib import Path

import torch
from PIL import Image

import bbcodec
from bbcodec import imageio
from bbcodec.training.data import IMAGE_SUFFIXES


def measure(path: Path, model: str) -> dict:
    data = path.read_bytes()
    pixels = imageio.read_image(data).pixels
    png = io.BytesIO()
    Image.open(path).save(png, format="PNG", optimize=True, compress_level=9)
    began = time.process_time()
    coded = bbcodec.compress(data, model=model)
    seconds = time.process_time() - began
    return {"name": path.name, "subpixels": int(pixels.size), "file_bytes": len(data),
            "png_bytes": len(png.getvalue()), "bbc_bytes": len(coded), "method": bbcodec.info(coded)["method"],
            "compress_cpu_seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", help="NAME=FOLDER or NAME='GLOB'")
    parser.add_argument("-m", "--model", default="default")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"model": args.model, "load_average": os.getloadavg(), "sets": {}}
    for spec in args.sets:
        name, where = spec.split("=", 1)
        paths = sorted(Path(where).iterdir()) if Path(where).is_dir() else sorted(map(Path, glob.glob(where)))
        rows = [measure(path, args.model) for path in paths if path.suffix.lower() in IMAGE_SUFFIXES]
        subpixels = sum(row["subpixels"] for row in rows)
        totals = {key: 8 * sum(row[f"{key}_bytes"] for row in rows) / subpixels for key in ("bbc", "file", "png")}
        kept = sum(row["method"] == "original" for row in rows)
        result["sets"][name] = {"files": len(rows), "kept_as_given": kept, "bits_per_subpixel": totals, "rows": rows}
        print(f"{name}: {len(rows)} files, .bbc {totals['bbc']:.3f}, the files {totals['file']:.3f}, optimized PNG "
              f"{totals['png']:.3f} bits per sub-pixel; {kept} kept as given", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
