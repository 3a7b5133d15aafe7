"""Archives: the rate of a set packed at several chunk sizes, and what extracting one image costs.

For each chunk size (sub-pixels per chunk) the set is packed into one
archive in memory (:func:`bbcodec.archive.pack`: every header, entry, CRC and
digest counted), the archive is read back and every chunk decoded and
compared with the images, and one image in the middle is extracted alone
(its chunk decoded) a few times. The chain row is the set on one bits-back
chain as ``bbcodec bench --chain`` counts it (payload only, one image a
step), the figure the archive is measured against.

    python bench/archive_rates.py ../shared/data/mnist/t10k-images-idx3-ubyte.gz -m mnist \\
        --chunks 7840 31360 125440 2097152 --limit 2000 --json bench/results/archive_mnist.json

One torch thread; the load average before and after is recorded (compare times only within a run).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time

import numpy as np
import torch

from bbcodec import archive, imageio
from bbcodec.benchmark.measure import measure_chain
from bbcodec.benchmark.sets import open_set

def measure(images, model: str, chunk: int, extractions: int) -> dict:
    members = [archive.Member(f"set/{i:05d}", imageio.Image(im, imageio.PLAIN_MODES[im.shape[2]])) for i, im in enumerate(images)]
    buffer = io.BytesIO()
    start = time.perf_counter()
    report = archive.pack(members, buffer, model=model, chunk_subpixels=chunk)
    pack_seconds = time.perf_counter() - start
    data = buffer.getvalue()
    box = archive.Archive(data, model=model)
    start = time.perf_counter()
    exact = box.complete and all(np.array_equal(image.pixels, m.image.pixels) for (_, image), m in zip(box, members))
    unpack_seconds = time.perf_counter() - start
    middle = members[len(members) // 2]
    times = []
    for _ in range(extractions):
        start = time.perf_counter()
        assert np.array_equal(box.extract(middle.name).pixels, middle.image.pixels)
        times.append(time.perf_counter() - start)
    return {"chunk_subpixels": chunk, "images": report.images, "chunks": report.chunks,
            "stored_chunks": report.stored_chunks, "bytes": len(data), "subpixels": report.subpixels,
            "bits_per_subpixel": 8 * len(data) / report.subpixels, "pack_seconds": pack_seconds,
            "unpack_seconds": unpack_seconds, "extract_one_seconds": statistics.median(times),
            "images_per_chunk": report.images / report.chunks, "exact": exact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("set", help="a folder, .npz or MNIST idx file (equal-sized images for the chain row)")
    parser.add_argument("-m", "--model", default="default")
    parser.add_argument("--chunks", type=int, nargs="+", default=[archive.DEFAULT_CHUNK_SUBPIXELS])
    parser.add_argument("--limit", type=int, default=None, help="the first images only")
    parser.add_argument("--extractions", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    images = open_set(args.set, limit=args.limit).images
    chain = measure_chain(args.model, images, 1, "cpu")
    rows = [measure(images, args.model, chunk, args.extractions) for chunk in args.chunks]
    result = {"set": args.set, "model": args.model, "limit": args.limit, "images": len(images),
              "chain_bits_per_subpixel": chain.stored_bits / chain.subpixels, "chain_exact": chain.exact,
              "rows": rows, "load_before": load_before, "load_after": os.getloadavg(), "threads": 1}
    print(f"chain: {result['chain_bits_per_subpixel']:.4f} bits per sub-pixel, {len(images)} images")
    for row in rows:
        print(f"chunks of {row['chunk_subpixels']:>9,} sub-pixels ({row['images_per_chunk']:.0f} images): "
              f"{row['bits_per_subpixel']:.4f} ({100 * (row['bits_per_subpixel'] / result['chain_bits_per_subpixel'] - 1):+.1f}% "
              f"vs chain), pack {row['pack_seconds']:.1f} s, unpack {row['unpack_seconds']:.1f} s, "
              f"extract one {row['extract_one_seconds']:.2f} s, exact {row['exact']}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=1)


if __name__ == "__main__":
    main()
