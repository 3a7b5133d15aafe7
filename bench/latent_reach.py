"""How far a model's posteriors reach: is its latent grid's bound wide enough?

Bits-back coding pops each latent from the posterior discretized on the
model's grid (``bbcodec.distributions.LatentGrid``). Posterior mass
beyond the bound is clipped onto the outer grid points, and those pops give
back far fewer bits than the −ELBO counts. This prints, for each latent layer,
the share of posterior elements with |mean| + 3 std beyond several bounds,
and the largest |mean| + 3 std, on the images of each set (one posterior
sample per layer feeds the next, as in coding). Pick the export's
``--grid-bound`` so that this share is small, then check the real rate with
``bbcodec bench``.

    python bench/latent_reach.py default photos=../shared/data/photos/041.png ../shared/data/waterloo
    python bench/latent_reach.py mnist mnist=../shared/data/mnist/t10k-images-idx3-ubyte.gz --limit 200
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

import bbcodec
from bbcodec.benchmark import open_sets
from bbcodec.coding.image import TileView
from bbcodec.models.latent_reach import posterior_reach, share_beyond

BOUNDS = (4.0, 6.0, 8.0)


def reach(model, images: list[np.ndarray]) -> list[torch.Tensor]:
    """|mean| + 3 std of every posterior element, per layer, over the images, each coded as the coder sees it."""
    stride = model.config.stride
    per_layer = [[] for _ in range(model.depth)]
    for pixels in images:
        height, width = pixels.shape[0] - pixels.shape[0] % stride, pixels.shape[1] - pixels.shape[1] % stride
        planes = pixels[:height, :width, : min(3, pixels.shape[2])]
        x = torch.from_numpy(np.ascontiguousarray(planes)).permute(2, 0, 1)[None]
        for layer, values in enumerate(posterior_reach(TileView(model, x.shape[1], height, width), x)):
            per_layer[layer].append(values)
    return [torch.cat(values) for values in per_layer]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model name, file or hash")
    parser.add_argument("paths", nargs="+", help="sets, as for `bbcodec bench`")
    parser.add_argument("--limit", type=int, help="the first N images of each set")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, digest = bbcodec.load_model(args.model)
    print(f"model {args.model} ({digest[:12]}), grid 2^-{model.config.grid_bits} over ±{model.config.grid_bound:g}")
    print("set | layer | " + " | ".join(f"beyond {b:g}" for b in BOUNDS) + " | largest")
    for image_set in open_sets(args.paths, limit=args.limit):
        for layer, values in enumerate(reach(model, image_set.images)):
            shares = " | ".join(f"{share_beyond([values], b):.2%}" for b in BOUNDS)
            print(f"{image_set.name} | z{layer + 1} | {shares} | {values.max().item():.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
