"""Where a polyphase model's rate goes: the −ELBO of real images split by coding step and latent layer.

A ``markov-vae-polyphase`` model codes its pixels in the steps of
``bbcodec.models.polyphase_vae.coding_steps``: the coarsest image (1/4^L of
the pixels, given the latent features alone), then phases 1-3 of each level
given the pixels decoded before. This prints, for each set, each step's share
of the sub-pixels, its bits per sub-pixel and what it adds to the whole
image's rate, and the KL of each latent layer (the bits-back cost of the
latents): what a deeper split, wider context networks or more useful latents
could win. Whole images (cropped to a multiple of the stride), one posterior
sample per layer, float arithmetic; a grey image counts its coded plane only,
as the coder does.

    python bench/multiscale_steps.py MODEL 'photos=../shared/data/photos/04[1-9].png' \
        waterloo=../shared/data/waterloo synthetic=RUNS/synthetic-set --json OUT.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import torch

import bbcodec
from bbcodec.benchmark import open_sets
from bbcodec.models.polyphase_vae import coding_steps


def step_map(height: int, width: int, levels: int) -> torch.Tensor:
    """The index (into ``coding_steps(levels)``) of the step that codes each pixel of a height x width image."""
    index = {step: i for i, step in enumerate(coding_steps(levels))}
    rows, columns = torch.arange(height)[:, None], torch.arange(width)[None, :]
    steps = torch.full((height, width), index[(levels, 0)])
    for level in range(levels, 0, -1):
        scale = 2 ** (level - 1)
        on_grid = (rows % scale == 0) & (columns % scale == 0)
        phase = (rows // scale % 2) * 2 + columns // scale % 2
        for k in range(1, 4):
            steps[on_grid & (phase == k)] = index[(level, k)]
    return steps


def image_breakdown(model, pixels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nats per step, coded sub-pixels per step, KL nats per latent layer) of one HxWxC uint8 image."""
    stride = model.config.stride
    height, width = pixels.shape[0] - pixels.shape[0] % stride, pixels.shape[1] - pixels.shape[1] % stride
    planes = np.array(pixels[:height, :width, :3])
    if planes.shape[2] == 1:
        planes = np.repeat(planes, 3, axis=2)
    x = torch.from_numpy(np.ascontiguousarray(planes)).permute(2, 0, 1)[None]
    with torch.no_grad():
        torch.manual_seed(seed)
        kl = model(x)["kl"].numpy() * math.log(2.0)  # bits per sub-pixel -> nats per sub-pixel
        torch.manual_seed(seed)  # the same first posterior sample as the forward pass drew
        z1 = model.posterior(0, x).rsample()
        nats = -model.conditional(0, z1).log_prob(x)[0]
    grey = bool((x[0, 0] == x[0, 1]).all() and (x[0, 1] == x[0, 2]).all())
    if grey:
        nats = nats[model.grey_channel:model.grey_channel + 1]
    steps = step_map(height, width, model.config.levels).flatten()
    count = len(coding_steps(model.config.levels))
    per_step = torch.zeros(count, dtype=torch.float64).index_add_(0, steps, nats.sum(0).flatten().double())
    sub_pixels = torch.bincount(steps, minlength=count).double() * nats.shape[0]
    return per_step.numpy(), sub_pixels.numpy(), kl * sub_pixels.sum().item()


def set_breakdown(model, images) -> dict:
    """Bits per sub-pixel of each step (within the step, and added to the whole) and of each latent layer,
    and each image's -ELBO."""
    totals = [image_breakdown(model, pixels) for pixels in images]
    nats, sub_pixels, kl = (np.sum([t[i] for t in totals], axis=0) for i in range(3))
    whole = sub_pixels.sum() * math.log(2.0)
    return {
        "images": [float((t[0].sum() + t[2].sum()) / (t[1].sum() * math.log(2.0))) for t in totals],
        "steps": [{"level": level, "phase": k, "share": sub_pixels[i] / sub_pixels.sum(),
                   "bits_within": nats[i] / (sub_pixels[i] * math.log(2.0)), "bits_added": nats[i] / whole}
                  for i, (level, k) in enumerate(coding_steps(model.config.levels))],
        "kl_bits": (kl / whole).tolist(),
        "nelbo": float((nats.sum() + kl.sum()) / whole),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a markov-vae-polyphase model: name, file or hash")
    parser.add_argument("paths", nargs="+", help="sets, as for `bbcodec bench`")
    parser.add_argument("--limit", type=int, help="the first N images of each set")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--per-image", action="store_true", help="also print each image's -ELBO")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, digest = bbcodec.load_model(args.model)
    if not hasattr(model.config, "levels"):
        parser.error(f"{args.model} is not a polyphase model")
    results = {"model": args.model, "hash": digest, "sets": {}}
    for image_set in open_sets(args.paths, limit=args.limit):
        found = results["sets"][image_set.name] = set_breakdown(model, image_set.images)
        print(f"\n{image_set.name}: -ELBO {found['nelbo']:.3f} bits per sub-pixel "
              f"(latents {sum(found['kl_bits']):.3f}: " + ", ".join(f"{b:.3f}" for b in found["kl_bits"]) + ")")
        print("step (level, phase) | share of sub-pixels | bits within | bits added")
        for step in found["steps"]:
            print(f"({step['level']}, {step['phase']}) | {step['share']:.4f} | {step['bits_within']:.3f} | "
                  f"{step['bits_added']:.3f}")
        if args.per_image:
            for name, nelbo in zip(image_set.labels, found["images"]):
                print(f"  {name}: -ELBO {nelbo:.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
