"""Benchmark of the exact arithmetic path: its rate cost, and files that decode on any device.

Two measurements, both on real .bbc files through the Python API, every file
decoded and checked:

* ``rate``: photos 041-049 compressed with ``arithmetic="float"`` and with
  ``arithmetic="exact"`` (the same model): bits per sub-pixel of each, the
  exact path's cost in percent, and compress/decompress seconds.
* ``devices``: every image of photos 041-049, Waterloo and the 1,000
  CIFAR-subset test images compressed on one device and decompressed on the
  other, both ways (needs CUDA). Without CUDA it runs the CPU-only version of
  the check: compress with 2 torch threads and the networks run on 3 images at
  a time, decompress with 1 thread and whole batches.

    python bench/exact_arithmetic.py rate
    python bench/exact_arithmetic.py devices            # cuda <-> cpu where CUDA exists
    python bench/exact_arithmetic.py devices --limit 5  # a quick look
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import bbcodec
from bbcodec.coding.image import CoderSettings
from bbcodec.training.data import image_files, load_npz
from bbcodec.exact.backend import exact_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
PHOTOS = [SHARED / "photos" / f"{i:03d}.png" for i in range(41, 50)]


def _images(set_name: str, limit: int):
    """(name, bbcodec.imageio.Image) for every image of a set."""
    if set_name == "cifar test":
        pixels = load_npz(SHARED / "cifar10-subset" / "cifar10_subset_uint8_nhwc.npz", "test_x")
        pixels = pixels.permute(0, 2, 3, 1).contiguous().numpy()
        items = ((f"cifar-test-{i}", bbcodec.imageio.Image(p, "RGB")) for i, p in enumerate(pixels))
    else:
        files = PHOTOS if set_name == "photos 041-049" else image_files(SHARED / "waterloo")
        items = ((path.name, bbcodec.read_image(path)) for path in files)
    for count, item in enumerate(items):
        if limit and count >= limit:
            return
        yield item


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def measure_rate(limit: int) -> dict:
    totals = {a: {"bytes": 0, "compress_s": 0.0, "decompress_s": 0.0} for a in ("float", "exact")}
    subpixels = 0
    for name, image in _images("photos 041-049", limit):
        subpixels += image.pixels.size
        for arithmetic, total in totals.items():
            settings = CoderSettings(arithmetic=arithmetic)
            data, seconds = _timed(bbcodec.compress, image, settings=settings, strip_metadata=True)
            back, back_seconds = _timed(bbcodec.decompress, data)
            if not np.array_equal(back.pixels, image.pixels):
                raise SystemExit(f"{name}: {arithmetic} round trip failed")
            total["bytes"] += len(data)
            total["compress_s"] += seconds
            total["decompress_s"] += back_seconds
            print(f"{name} {arithmetic}: {8 * len(data) / image.pixels.size:.4f} bits/sub-pixel, "
                  f"{seconds:.2f} s / {back_seconds:.2f} s", file=sys.stderr, flush=True)
    for total in totals.values():
        total["bits_per_subpixel"] = 8 * total["bytes"] / subpixels
    cost = totals["exact"]["bits_per_subpixel"] / totals["float"]["bits_per_subpixel"] - 1
    return {"set": "photos 041-049", "subpixels": subpixels, "arithmetic": totals, "exact_cost_percent": 100 * cost}


def _crossings() -> list[tuple[str, str]]:
    if torch.cuda.is_available():
        return [("cuda", "cpu"), ("cpu", "cuda")]
    return [("cpu, 2 threads, 3 images at a time", "cpu, 1 thread")]


def _configure(side: str) -> str:
    """Set threads and network batching for one side of the CPU-only check; returns the torch device."""
    if side.startswith("cpu, "):
        torch.set_num_threads(2 if "2 threads" in side else 1)
        exact_model(bbcodec.load_model("default")[0]).ops.max_images = 3 if "3 images" in side else None
        return "cpu"
    return side


def measure_devices(limit: int) -> dict:
    results = {}
    for encoder, decoder in _crossings():
        for set_name in ("photos 041-049", "waterloo", "cifar test"):
            counts = {"images": 0, "failures": 0, "bits_back_files": 0}
            for name, image in _images(set_name, limit):
                data = bbcodec.compress(image, device=_configure(encoder), strip_metadata=True)
                counts["bits_back_files"] += bbcodec.info(data)["method"] == "bits-back"
                try:
                    ok = np.array_equal(bbcodec.decompress(data, device=_configure(decoder)).pixels, image.pixels)
                except bbcodec.BBCodecError as error:
                    print(f"{name}: {error}", file=sys.stderr)
                    ok = False
                counts["images"] += 1
                counts["failures"] += not ok
            print(f"{encoder} -> {decoder}, {set_name}: {counts}", file=sys.stderr, flush=True)
            results[f"{encoder} -> {decoder}: {set_name}"] = counts
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["rate", "devices"])
    parser.add_argument("--limit", type=int, default=0, help="at most this many images per set")
    args = parser.parse_args(argv)
    started = time.time()
    result = measure_rate(args.limit) if args.what == "rate" else measure_devices(args.limit)
    record = {"benchmark": args.what, "model": bbcodec.load_model("default")[1], "result": result,
              "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
              "machine": platform.machine(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "seconds": round(time.time() - started, 1), "limit": args.limit}
    print(json.dumps(record, indent=1))
    if not args.limit:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"exact_{args.what}.json").write_text(json.dumps(record, indent=1) + "\n")
    failures = sum(c["failures"] for c in result.values()) if args.what == "devices" else 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
