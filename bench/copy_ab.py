"""Copy or escape, what it costs: images coded with their calibration with and without copy weights, in process.

For each image the encoder's own calibration is taken (``bbcodec.compress``), then the image is compressed and
decompressed with it, with its Laplace rows alone and (where the first step copies in pyramid order and there are
steps after it) without the first step's copy weights, alternating, every file decoded and compared. Prints the
file sizes and the CPU seconds of each round (bench/README.md, "Copy or escape").

    python bench/copy_ab.py MODEL IMAGE... [--rounds 2]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

import bbcodec
from bbcodec.coding import calibration
from bbcodec.coding.image import CoderSettings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a polyphase model: name, file or hash")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for path in args.images:
        image = bbcodec.read_image(path)
        chosen = tuple(bbcodec.info(bbcodec.compress(image, model=args.model))["pixel_calibration"] or ())
        laplace = chosen[:chosen.index(calibration.COPY_MARK)] if calibration.COPY_MARK in chosen else chosen
        variants = {"with copies": chosen, "Laplace rows only": laplace}
        steps = len(laplace) // calibration.ROW
        if len(chosen) == len(laplace) + 1 + steps * calibration.COPY_ROW and steps > 1:
            # the first step's pixels copying in pyramid order, or not (as before they could)
            variants["first step without copies"] = laplace + chosen[len(laplace):len(laplace) + 1] \
                + chosen[len(laplace) + 1 + calibration.COPY_ROW:]
        rounds = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, values in variants.items():
                settings = CoderSettings(calibration=values)
                start = time.process_time()
                data = bbcodec.compress(image, model=args.model, settings=settings)
                encoded = time.process_time() - start
                start = time.process_time()
                back = bbcodec.decompress(data, model=args.model)
                decoded = time.process_time() - start
                if not np.array_equal(back.pixels, image.pixels):
                    raise SystemExit(f"{path}: {name} did not round-trip")
                rounds[name].append(f"{len(data)} bytes, encode {encoded:.2f} s, decode {decoded:.2f} s")
        print(f"{path} ({'x'.join(map(str, image.pixels.shape))}):")
        for name, lines in rounds.items():
            print(f"  {name}: " + "; ".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
