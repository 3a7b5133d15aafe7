"""How an archive chunk's chain starts and batches: the payload for each count of first batches coded
without bits back, and the rate and decode time for each growth share of the batches.

A chunk of small images (MNIST digits with the ``mnist`` model) is one chain. Table 1 codes its images one a
batch with the first k batches without bits back, for each k (and what ``start="auto"`` chooses). Table 2
groups them into batches that grow by a share of the images before (``bbcodec.archive.layout.BATCH_GROWTH``,
3/20 in archive version 2) and times decoding the chain.

    python bench/chain_starts.py ../shared/data/mnist/t10k-images-idx3-ubyte.gz --first 5000 --count 40 \\
        --leading 0 8 --shares 0 0.1 0.15 0.2 0.25 0.5

One torch thread; the load average is printed (compare times within a run).
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from bbcodec import zoo
from bbcodec.archive import layout
from bbcodec.benchmark.sets import open_set
from bbcodec.coding.chain import decode_steps, encode_steps, start_named
from bbcodec.coding.image import CoderSettings, coding_model


def chain_batches(model, images, settings, share: float | None):
    """The images' batches as an archive chunk codes them: one an image (``share`` None) or growing by
    ``share`` of the images before."""
    if share is not None:
        layout.BATCH_GROWTH = (round(share * 1000), 1000)
    steps = layout.chain_steps(model, [im.shape for im in images], settings, grows_batches=share is not None)
    return [(step.view, step.cut(images, model.device)) for step in steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("set", help="a folder, .npz or MNIST idx file of images of one shape")
    parser.add_argument("-m", "--model", default="mnist")
    parser.add_argument("--first", type=int, default=0, help="the first image of the chunk")
    parser.add_argument("--count", type=int, default=40, help="images in the chunk")
    parser.add_argument("--leading", type=int, nargs=2, default=(0, 8), help="k from, to (table 1)")
    parser.add_argument("--shares", type=float, nargs="*", default=[0, 0.1, 0.15, 0.2, 0.25, 0.5])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load before: {os.getloadavg()}")
    images = open_set(args.set, limit=args.first + args.count).images[args.first:]
    settings = CoderSettings(coder="bitswap", arithmetic="exact", start="auto")
    model = coding_model(zoo.load(args.model)[0], settings.arithmetic)
    subpixels = sum(im.size for im in images)
    batches = chain_batches(model, images, settings, None)
    grown = encode_steps(batches, settings.coder, start="bits-back")
    print(f"{args.count} images {args.first}..{args.first + args.count - 1}: the chain's growth "
          f"{grown.net_bits / subpixels:.4f} bits per sub-pixel")
    for k in [*range(args.leading[0], args.leading[1] + 1), len(batches)]:
        bits = encode_steps(batches, settings.coder, start=start_named(k)).stored_bits
        print(f"  {k:3d} first batches without bits back: {bits / subpixels:.4f}")
    auto = encode_steps(batches, settings.coder, start="auto")
    print(f"  auto: {auto.start}, {auto.stored_bits / subpixels:.4f}")
    for share in args.shares:
        batches = chain_batches(model, images, settings, share or None)
        encoded = encode_steps(batches, settings.coder, start="auto")
        start = time.perf_counter()
        decode_steps([(view, batch.shape) for view, batch in batches], encoded, settings.coder)
        seconds = time.perf_counter() - start
        print(f"share {share}: {len(batches)} batches, {encoded.stored_bits / subpixels:.4f} bits per sub-pixel, "
              f"decoded in {seconds:.2f} s ({encoded.start})")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
