"""The model table: size and −ELBO of codec models on every measurement set.

For each model: parameters, size as float32, size with binary weights packed
at one bit and the rest as float32, the size of its file (which may store the
float weights as float16), and the −ELBO in bits per sub-pixel (one posterior sample per
image, weighted by sub-pixels) on the CIFAR-subset test images (1,000),
photos 041-049, Waterloo and the MNIST test set (10,000), all from
../shared/data. Whole images are used, cut down to a multiple of the model's
stride (at most 3 rows and columns dropped); grey images are given to an RGB
model as three equal channels and scored on one plane, as the coder codes
them.

    python bench/zoo_table.py default default-float mnist
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import bbcodec
from bbcodec import zoo
from bbcodec.training.data import image_files, load_image, load_mnist_images, load_npz
from bbcodec.models.export import model_size

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def image_sets() -> dict:
    """name -> list of uint8 batches (N, 3, H, W)."""
    cifar = load_npz(SHARED / "cifar10-subset" / "cifar10_subset_uint8_nhwc.npz", "test_x")
    mnist = load_mnist_images(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz").expand(-1, 3, -1, -1)
    photos = [load_image(SHARED / "photos" / f"{i:03d}.png")[None] for i in range(41, 50)]
    waterloo = [load_image(p)[None] for p in image_files(SHARED / "waterloo")]
    return {"CIFAR-subset test (1000)": list(cifar.split(250)), "photos 041-049": photos,
            "Waterloo": waterloo, "MNIST test (10000)": list(mnist.split(1000))}


def file_bytes(spec: str) -> int:
    """Size of the model file a name or path refers to."""
    return len(zoo.locate(spec).read_bytes())


@torch.no_grad()
def nelbo(model, batches) -> float:
    stride = model.config.stride
    bits = dims = 0.0
    for batch in batches:
        height, width = batch.shape[2] - batch.shape[2] % stride, batch.shape[3] - batch.shape[3] % stride
        batch = batch[:, :, :height, :width].contiguous()
        grey = ((batch[:, 0] == batch[:, 1]) & (batch[:, 1] == batch[:, 2])).flatten(1).all(1)
        coded = float(sum(height * width * (1 if g else 3) for g in grey.tolist()))
        bits += float(model(batch)["nelbo"]) * coded  # the model's -ELBO is per coded sub-pixel
        dims += coded
    return bits / dims


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model names or files")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "zoo_table.json"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    sets = image_sets()
    rows = []
    for spec in args.models:
        model, digest = bbcodec.load_model(spec)
        size = model_size(model)
        row = {"model": spec, "hash": digest[:12], "binary_weights": model.config.binary_weights,
               "parameters": size.parameters, "float32_mb": size.float32_bytes / 1e6,
               "packed_mb": size.packed_bytes / 1e6, "file_mb": file_bytes(spec) / 1e6}
        for name, batches in sets.items():
            row[name] = nelbo(model, batches)
            print(f"{spec}: {name} {row[name]:.3f}", file=sys.stderr, flush=True)
        rows.append(row)
    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    names = list(sets)
    print("| model | weights | parameters | float32 MB | packed MB | file MB | " + " | ".join(names) + " |")
    print("|---" * (6 + len(names)) + "|")
    for r in rows:
        print(f"| {r['model']} ({r['hash']}) | {'binary' if r['binary_weights'] else 'float'} | {r['parameters']:,} | "
              f"{r['float32_mb']:.2f} | {r['packed_mb']:.2f} | {r['file_mb']:.2f} | " + " | ".join(f"{r[n]:.3f}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
