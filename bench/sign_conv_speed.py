"""The XNOR-popcount convolution against the float convolutions of the same shape, one thread.

For each shape (a binary residual block's 3x3 convolution as the photo presets
run it on a 512x768 image: 64 channels at 1/4 resolution, 32 channels on the
polyphase steps' sub-images), times on random ±1 inputs:

* ``xnor``: :class:`bbcodec.exact.sign_conv.SignConv` (packing included);
* ``float32``: torch's float32 convolution, what the exact backend runs where
  its 2**24 bound holds (casts to and from float64 included);
* ``float64``: the exact backend's float64 path (k*k matrix products).

Checks that all three give the same sums, and prints the minimum and median
milliseconds of ``--repeats`` calls and each float path's time over the XNOR's.

    python bench/sign_conv_speed.py --json bench/results/sign_conv_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from bbcodec.exact import sign_conv
from bbcodec.exact.backend import ExactConv
from bbcodec.nn.binary import BinaryConv2d

SHAPES = [(64, 128, 192), (32, 256, 384), (32, 128, 192)]   # channels, height, width


def timed(function, repeats: int) -> dict:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return {"min_ms": 1e3 * min(seconds), "median_ms": 1e3 * statistics.median(seconds)}


def measure(channels: int, height: int, width: int, repeats: int) -> dict:
    generator = torch.Generator().manual_seed(channels * height)
    layer = BinaryConv2d(channels, channels, 3).eval()
    x = torch.where(torch.rand(1, channels, height, width, generator=generator) < 0.5, -1024.0, 1024.0).double()
    exact = ExactConv(layer, 2.0 ** -10, 1 << 17)
    xnor = sign_conv.SignConv(exact.weights, 1, 1024.0)
    weights32 = exact.weights32

    def float32():
        return F.conv2d(x.float(), weights32, padding=1).double()

    def float64():
        exact.row_l1 = float("inf")   # the bound fails: the exact float64 path
        return exact._sums(x)

    reference = float64()
    assert torch.equal(xnor(x), reference) and torch.equal(float32(), reference)
    row = {"shape": [channels, height, width],
           "macs": channels * channels * 9 * height * width}
    for name, function in (("xnor", lambda: xnor(x)), ("float32", float32), ("float64", float64)):
        row[name] = timed(function, repeats)
    for name in ("float32", "float64"):
        row[f"{name}_over_xnor"] = row[name]["median_ms"] / row["xnor"]["median_ms"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(*shape, args.repeats) for shape in SHAPES]
    load = os.getloadavg()
    print("milliseconds, minimum / median; each float path's median over the XNOR's")
    for row in rows:
        c, h, w = row["shape"]
        times = {name: f"{row[name]['min_ms']:.2f} / {row[name]['median_ms']:.2f}" for name in ("xnor", "float32", "float64")}
        print(f"{c:3d} channels {h}x{w}: xnor {times['xnor']}, float32 {times['float32']} "
              f"({row['float32_over_xnor']:.1f}x), float64 {times['float64']} ({row['float64_over_xnor']:.1f}x)")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"rows": rows, "load_average": load, "threads": 1}, out, indent=1)


if __name__ == "__main__":
    main()
