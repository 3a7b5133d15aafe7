"""Flow++ as a codec: real flow chain files of 32x32 images, their rate next to the flow's bound, and their speed.

For each model (an installed model's name or a model file) and each set (issue 22's: the CIFAR-subset test images
and 32x32 crops of photos 041-049, ``--images`` of each evenly spaced through it), the images are coded as one flow chain file
(bbcodec/coding/flow_file.py) in batches of ``--batch``, written to ``--out``, read back, decoded and compared with
the pixels. Reported: the file's bits per sub-pixel; the net rate (the stack's growth: the payload less the seed
bits the first pops took, without the header, as the papers count a chain); those initial bits; the bound on the same images (one dequantization
sample each, as bench/flow_density.py); process CPU time to code and decode, and throughput in KB/s of raw pixels.

    python bench/flow_codec.py RUNS/flowpp/binary/flowpp-binary-*.safetensors --images 200 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from bbcodec import zoo
from bbcodec.coding import flow_file
from bbcodec.portability import float_platform
from bbcodec.training.loop import evaluate
from flow_density import measurement_sets


def spread(images: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` images evenly spaced through the set (all of them if it has no more)."""
    if count >= len(images):
        return images
    return images[torch.linspace(0, len(images) - 1, count).round().long()]


def code_set(model, digest: str, images: torch.Tensor, batch: int, path: Path) -> dict:
    pixels = images.permute(0, 2, 3, 1).contiguous().numpy()
    began = time.process_time()
    data = flow_file.compress_images(model, digest, pixels, batch=batch)
    encode_seconds = time.process_time() - began
    path.write_bytes(data)
    began = time.process_time()
    decoded = flow_file.decompress_images(path.read_bytes(), model, digest)
    decode_seconds = time.process_time() - began
    if not np.array_equal(decoded, pixels):
        raise SystemExit(f"{path}: decoded pixels differ")
    header, payload = flow_file.read_header(data)
    subpixels = pixels.size
    torch.manual_seed(0)
    bound = evaluate(model, images, batch_size=50)
    initial_bits = 32 * (header["seed_words"] - header["untouched_seed_words"])  # seed the first pops took
    return {"images": len(pixels), "subpixels": subpixels, "batch": batch, "file_bytes": len(data),
            "header_bytes": len(data) - len(payload), "file_bits_per_subpixel": 8 * len(data) / subpixels,
            "initial_bits": initial_bits, "net_bits_per_subpixel": (8 * len(payload) - initial_bits) / subpixels,
            "bound": bound,
            "encode_cpu_seconds": round(encode_seconds, 2), "decode_cpu_seconds": round(decode_seconds, 2),
            "encode_kb_per_s": round(subpixels / encode_seconds / 1e3, 2),
            "decode_kb_per_s": round(subpixels / decode_seconds / 1e3, 2), "grid_bits": header["grid_bits"],
            "decoded_exactly": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="an installed model's name or a model file")
    parser.add_argument("--images", type=int, default=1000, help="this many images of each set, evenly spaced")
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="flow_chains", help="folder for the files")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = {name: spread(images, args.images) for name, images in measurement_sets().items()}
    rows = []
    for spec in args.models:
        model, digest = zoo.load(spec)
        for set_name, images in sets.items():
            for batch in args.batch:
                row = {"model": spec, "hash": digest[:12], "set": set_name,
                       **code_set(model, digest, images, batch, out / f"{digest[:12]}-{len(rows)}.bbf")}
                rows.append(row)
                print(f"{spec} {set_name} batch {batch}: file {row['file_bits_per_subpixel']:.3f}, net "
                      f"{row['net_bits_per_subpixel']:.3f}, bound "
                      f"{row['bound']:.3f} bits/sub-pixel; initial {row['initial_bits']:,} bits; "
                      f"{row['encode_kb_per_s']} / {row['decode_kb_per_s']} KB/s", flush=True)
    if args.json:
        result = {"threads": args.threads, "load_average": os.getloadavg(), "float_platform": float_platform("cpu"),
                  "rows": rows}
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
