"""Benchmark of the tool: the default model's real file sizes next to PNG, WebP and JPEG XL.

For every image of the chosen sets (photos 041-049 and Waterloo from
../shared/data by default), compresses with ``bbcodec.compress`` (the bytes of
a real .bbc file, container and metadata included, with --strip-metadata so
the comparison is pixels against pixels), decodes it and checks the pixels,
and measures the classical codecs on the same pixels in the same run. Then
times compress and decompress of a 768x512 crop of photo 041 (the size of a
Kodak image) through the Python API.

    python bench/tool_rates.py                     # default model, both sets
    python bench/tool_rates.py -m runs/default/default-xxxx.safetensors --limit 3
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import bbcodec
from bbcodec.benchmark import classical_codecs, measure_classical
from bbcodec.training.data import image_files

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {
    "photos 041-049": [SHARED / "photos" / f"{i:03d}.png" for i in range(41, 50)],
    "waterloo": image_files(SHARED / "waterloo") if (SHARED / "waterloo").is_dir() else [],
}


def bbcodec_measure(image, model: str, device: str) -> tuple[int, float, float]:
    """(bytes, encode s, decode s) of bbcodec on one image, checked."""
    start = time.perf_counter()
    data = bbcodec.compress(image, model=model, strip_metadata=True, device=device)
    middle = time.perf_counter()
    decoded = bbcodec.decompress(data, model=model, device=device)
    end = time.perf_counter()
    if not np.array_equal(decoded.pixels, image.pixels):
        raise SystemExit(f"bbcodec did not reproduce {image.width}x{image.height} exactly")
    return len(data), middle - start, end - middle


def codec_measure(codec, pixels) -> tuple[int, float, float]:
    """(bytes, encode s, decode s) of a classical codec on one image, checked."""
    size, encode_seconds, decode_seconds, exact, error = measure_classical(codec, pixels)
    if not exact:
        raise SystemExit(f"{codec.name}: {error}")
    return size, encode_seconds, decode_seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images per set")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "tool_rates.json"))
    args = parser.parse_args(argv)
    codecs, notes = classical_codecs(["png", "webp", "jxl", "j2k"])
    for note in notes:
        print("note:", note, file=sys.stderr)
    names = ["bbcodec"] + [c.name for c in codecs]
    results = {"model": bbcodec.load_model(args.model)[1], "device": args.device,
               "torch_threads": torch.get_num_threads(), "sets": {}, "notes": notes}
    for set_name, files in SETS.items():
        files = files[: args.limit] if args.limit else files
        if not files:
            print(f"skipping {set_name}: no files", file=sys.stderr)
            continue
        totals = {name: [0, 0.0, 0.0] for name in names}
        subpixels = 0
        for path in files:
            image = bbcodec.read_image(path)
            subpixels += image.pixels.size
            rows = [("bbcodec", bbcodec_measure(image, args.model, args.device))]
            rows += [(c.name, codec_measure(c, image.pixels)) for c in codecs]
            for name, (size, encode_seconds, decode_seconds) in rows:
                totals[name][0] += size
                totals[name][1] += encode_seconds
                totals[name][2] += decode_seconds
            print(f"{set_name}: {path.name} " + " ".join(f"{n}={8 * m[0] / image.pixels.size:.3f}" for n, m in rows),
                  file=sys.stderr, flush=True)
        results["sets"][set_name] = {
            "images": len(files), "subpixels": subpixels,
            "bits_per_subpixel": {n: 8 * t[0] / subpixels for n, t in totals.items()},
            "encode_seconds": {n: t[1] for n, t in totals.items()},
            "decode_seconds": {n: t[2] for n, t in totals.items()},
        }
    photo = bbcodec.read_image(SHARED / "photos" / "041.png")
    top, left = (photo.height - 512) // 2, (photo.width - 768) // 2
    crop = bbcodec.Image(pixels=np.ascontiguousarray(photo.pixels[top:top + 512, left:left + 768]), mode="RGB",
                         palette=None, palette_mode=None, format="PNG", metadata={})
    bbcodec_measure(crop, args.model, args.device)  # warm-up: model load, allocator
    timing = bbcodec_measure(crop, args.model, args.device)
    results["kodak_size_timing"] = {"width": 768, "height": 512, "compress_seconds": timing.encode_seconds,
                                    "decompress_seconds": timing.decode_seconds,
                                    "bits_per_subpixel": 8 * timing.bytes / crop.pixels.size}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"model {results['model'][:16]}, device {args.device}, {results['torch_threads']} torch threads")
    print("bits per sub-pixel (lower is better):")
    print(f"{'set':16}" + "".join(f"{n:>11}" for n in names))
    for set_name, r in results["sets"].items():
        print(f"{set_name:16}" + "".join(f"{r['bits_per_subpixel'][n]:11.3f}" for n in names))
    t = results["kodak_size_timing"]
    print(f"768x512 photo crop: compress {t['compress_seconds']:.2f} s, decompress {t['decompress_seconds']:.2f} s, "
          f"{t['bits_per_subpixel']:.3f} bits/sub-pixel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
