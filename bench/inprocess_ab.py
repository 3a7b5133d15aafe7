"""In-process coding time of one checkout of bbcodec, for A/B comparisons of two commits.

Codes a crop of a photo with a model in exact arithmetic (after one small
warm-up image), decodes it and checks the pixels, and prints the CPU time
(process time: less sensitive than wall time to other jobs on a shared
machine) of each, and the payload's size (equal sizes: the same code). Run it
alternately on two checkouts (``git worktree add /tmp/old COMMIT``):

    for i in 1 2 3; do python bench/inprocess_ab.py /tmp/old; python bench/inprocess_ab.py .; done
"""
from __future__ import annotations

import argparse
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkout", help="the repository root whose bbcodec is timed")
    parser.add_argument("--image", default="../shared/data/photos/041.png")
    parser.add_argument("--crop", default="256x384", help="HEIGHTxWIDTH from the top left")
    parser.add_argument("-m", "--model", default="default")
    parser.add_argument("--calibrated", action="store_true",
                        help="code with the image's calibration (chosen before the clock starts), as compress does")
    args = parser.parse_args()
    sys.path.insert(0, args.checkout)
    import numpy as np
    import torch

    from bbcodec import imageio, zoo
    from bbcodec.coding import calibration
    from bbcodec.coding.image import CoderSettings, decode_image, encode_image

    torch.set_num_threads(1)
    height, width = (int(v) for v in args.crop.split("x"))
    pixels = imageio.read_image(open(args.image, "rb").read()).pixels[:height, :width]
    model, digest = zoo.load(args.model)
    settings = CoderSettings(arithmetic="exact")
    encode_image(model, pixels[:64, :64], settings)
    if args.calibrated:
        settings = CoderSettings(arithmetic="exact", calibration=calibration.choose(model, pixels, settings.tile))
    start = time.process_time()
    encoded = encode_image(model, pixels, settings)
    encode_seconds = time.process_time() - start
    start = time.process_time()
    decoded = decode_image(model, encoded, *pixels.shape, settings)
    decode_seconds = time.process_time() - start
    assert np.array_equal(decoded, pixels)
    print(f"{args.checkout}: model {digest[:12]}, {args.crop}: encode {encode_seconds:.3f} s, decode "
          f"{decode_seconds:.3f} s CPU, payload {4 * len(encoded.payload)} bytes")


if __name__ == "__main__":
    main()
