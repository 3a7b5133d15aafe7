"""Density rates of Flow++ and the VAE families on 32x32 images: issue 22's table.

For each model (an installed model's name or a model file) and each set, the mean
bound in bits per sub-pixel (one dequantization or posterior sample per image:
the flow's variational-dequantization bound, a VAE's −ELBO), with the
model's parameters, binary parameters, file size (of the model file as stored) and, given its training
log(s), the training time those logs record. The sets: the 1,000
CIFAR-subset test images and every non-overlapping 32x32 crop of photos
041-049 (../shared/data; neither is trained on).

    python bench/flow_density.py RUNS/flowpp/binary/flowpp-binary-*.safetensors:RUNS/flowpp/binary/log.jsonl \\
        RUNS/flowpp/float/flowpp-float-*.safetensors:RUNS/flowpp/float/log.jsonl default --json out.json

A ``MODEL:LOG[:LOG...]`` argument names the logs of the runs that trained it.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from bbcodec import zoo
from bbcodec.models.export import model_size
from bbcodec.training.data import load_image, load_npz
from bbcodec.training.loop import evaluate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CROP = 32


def measurement_sets() -> dict[str, torch.Tensor]:
    """name -> uint8 images (N, 3, 32, 32)."""
    cifar = load_npz(SHARED / "cifar10-subset" / "cifar10_subset_uint8_nhwc.npz", "test_x")
    crops = []
    for index in range(41, 50):
        photo = load_image(SHARED / "photos" / f"{index:03d}.png")
        rows, columns = photo.shape[1] // CROP, photo.shape[2] // CROP
        tiles = photo[:, :rows * CROP, :columns * CROP].unfold(1, CROP, CROP).unfold(2, CROP, CROP)
        crops.append(tiles.permute(1, 2, 0, 3, 4).reshape(-1, photo.shape[0], CROP, CROP))
    return {"CIFAR-subset test (1000)": cifar, "photos 041-049, 32x32 crops": torch.cat(crops)}


def training_seconds(logs: list[str]) -> float | None:
    """The seconds each run's log records at its last step, summed over the runs (None without logs)."""
    if not logs:
        return None
    total = 0.0
    for log in logs:
        records = [json.loads(line) for line in Path(log).read_text().splitlines() if '"seconds"' in line]
        total += records[-1]["seconds"]
    return total


def measure(spec: str, sets: dict[str, torch.Tensor]) -> dict:
    name, *logs = spec.split(":")
    location = zoo.locate(name)
    if location is None:
        raise SystemExit(f"{name}: not an installed model's name nor a model file")
    data = location.read_bytes()
    model, digest = zoo.load_bytes(data)
    size = model_size(model)
    row = {"model": name, "hash": digest[:12], "family": model.family, "file_bytes": len(data),
           "binary": bool(getattr(model.config, "binary_weights", False)), "parameters": size.parameters,
           "binary_parameters": size.binary_parameters, "packed_bytes": size.packed_bytes,
           "float32_bytes": size.float32_bytes, "training_seconds": training_seconds(logs), "bits": {}}
    for set_name, images in sets.items():
        torch.manual_seed(0)
        began = time.process_time()
        row["bits"][set_name] = round(evaluate(model, images, batch_size=50), 4)
        row.setdefault("eval_cpu_seconds", {})[set_name] = round(time.process_time() - began, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="MODEL or MODEL:LOG[:LOG...]")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sets = measurement_sets()
    rows = []
    for spec in args.models:
        rows.append(measure(spec, sets))
        row = rows[-1]
        bits = "  ".join(f"{value:.3f}" for value in row["bits"].values())
        print(f"{row['model']} ({row['family']}, {row['hash']}): {bits} bits/sub-pixel; {row['parameters']:,} "
              f"parameters ({row['binary_parameters']:,} binary), {row['packed_bytes']:,} bytes packed", flush=True)
    if args.json:
        result = {"sets": {name: len(images) for name, images in sets.items()}, "threads": args.threads,
                  "load_average": os.getloadavg(), "rows": rows}
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
