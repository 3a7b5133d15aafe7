"""Benchmark: the polyphase pixel likelihood against the plain one, after the same short training.

Reads the training runs that ``bbcodec train`` wrote for each preset (their
``log.jsonl`` and exported model, in ``RUNS/<preset>/``), summarises the
held-out −ELBO along the way, and codes one 256x256 crop of photo 041 with
each exported model on one thread, in exact and float arithmetic: real file
size, compress and decompress microseconds per pixel (the fastest of three
runs), and a check of the pixels.

    python bench/polyphase_smoke.py --runs RUNS [--presets photo photo-polyphase]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import bbcodec
from bbcodec import imageio
from bbcodec.coding.image import CoderSettings

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "data" / "photos" / "041.png"
CROP = 256
REPEATS = 3


def training_summary(run: Path) -> dict:
    """Steps, wall seconds and the held-out −ELBO (bits per sub-pixel) at every evaluation of one run."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    evaluations = [{"step": r["step"], "eval_nelbo": round(r["eval_nelbo"], 4), "seconds": r["seconds"]}
                   for r in records if "eval_nelbo" in r]
    last = records[-1]
    return {"steps": last["step"], "seconds": last["seconds"], "final_train_nelbo": round(last["train_nelbo"], 4),
            "final_eval_nelbo": evaluations[-1]["eval_nelbo"], "evaluations": evaluations}


def photo_crop() -> np.ndarray:
    """The centre 256x256 of photo 041, (H, W, 3) uint8."""
    with Image.open(PHOTO) as photo:
        photo = photo.convert("RGB")
        left, top = (photo.width - CROP) // 2, (photo.height - CROP) // 2
        return np.asarray(photo.crop((left, top, left + CROP, top + CROP)), dtype=np.uint8).copy()


def coding_speed(model: str, pixels: np.ndarray, arithmetic: str, repeats: int = REPEATS) -> dict:
    """File size, and the fastest of ``repeats`` compress and decompress runs of ``pixels`` (the first run
    also loads the model and builds its exact layers)."""
    image = imageio.Image(pixels, "RGB")
    compress_s, decompress_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        data = bbcodec.compress(image, model=model, settings=CoderSettings(arithmetic=arithmetic))
        compressed = time.perf_counter()
        restored = bbcodec.decompress(data, model=model)
        compress_s.append(compressed - start)
        decompress_s.append(time.perf_counter() - compressed)
    pixel_count = pixels.shape[0] * pixels.shape[1]
    return {"bits_per_subpixel": round(8 * len(data) / pixels.size, 4),
            "compress_us_per_pixel": round(1e6 * min(compress_s) / pixel_count, 2),
            "decompress_us_per_pixel": round(1e6 * min(decompress_s) / pixel_count, 2),
            "exact": bool(np.array_equal(restored.pixels, pixels))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="the folder holding one training run per preset")
    parser.add_argument("--presets", nargs="+", default=["photo", "photo-polyphase"])
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "polyphase_smoke.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pixels = photo_crop()
    report = {"crop": f"photo 041, centre {CROP}x{CROP}", "threads": 1, "runs": {}}
    for name in args.presets:
        run = Path(args.runs) / name
        model = str(next(run.glob(f"{name}-*.safetensors")))
        entry = training_summary(run)
        entry["coding"] = {arithmetic: coding_speed(model, pixels, arithmetic) for arithmetic in ("exact", "float")}
        report["runs"][name] = entry
        print(name, json.dumps(entry))
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
