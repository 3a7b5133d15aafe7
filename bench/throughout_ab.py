"""Bits back or not: each image's code as ``bbcodec compress`` makes it, next to the code with every batch's
latents at the prior's modes (``start="no-bits-back-throughout"``, :mod:`bbcodec.coding.chain`).

For a model whose pixels see their decoded neighbours, the latents may cost more than they save: their KL
outweighs what they tell the pixels, and where pops outrun pushes the seed pays initial bits. This prints, per
image, both payloads in bits per sub-pixel (the initial bits of the shipped code in brackets) and, for the whole
set, each and the best of the two per image: what a coder that always picked the smaller could win, against
what ``bbcodec.api`` wins by trying it only where the chain shows it (``api.SINGLE_BATCH_SHARE``).

    python bench/throughout_ab.py default 'RUNS/synthetic-set/*.png' '../shared/data/waterloo/*.png'
"""
from __future__ import annotations

import argparse
import glob

import torch

from bbcodec import api, imageio
from bbcodec.coding.image import CoderSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("patterns", nargs="+", help="quoted globs of image files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    totals = {"sub-pixels": 0, "shipped": 0, "throughout": 0, "best": 0}
    for path in sorted(p for pattern in args.patterns for p in glob.glob(pattern)):
        image = imageio.read_image(open(path, "rb").read())
        stats, without = {}, {}
        api.compress(image, model=args.model, stats=stats)
        api.compress(image, model=args.model, settings=CoderSettings(start="no-bits-back-throughout"), stats=without)
        throughout = without["payload_bits"]
        count = image.pixels.size
        totals["sub-pixels"] += count
        totals["shipped"] += stats["payload_bits"]
        totals["throughout"] += throughout
        totals["best"] += min(throughout, stats["payload_bits"])
        print(f"{path.rsplit('/', 1)[-1]:24s} shipped {stats['payload_bits'] / count:.3f} "
              f"(initial {stats['initial_bits'] / count:.3f})  throughout {throughout / count:.3f}", flush=True)
    count = totals.pop("sub-pixels")
    print("  ".join(f"{name} {bits / count:.4f}" for name, bits in totals.items()), "bits per sub-pixel (payloads)")


if __name__ == "__main__":
    main()
