"""Write the synthetic measurement set: generated images of seeds 0..N-1, never trained on.

    python bench/make_synthetic_set.py OUT_FOLDER [--count 48]

Training uses seeds from bbcodec.training.synthetic.TRAINING_SEEDS on (``bbcodec train synthetic:N``);
this set uses the seeds below, so no measured image is a training image. Grey images are written as
greyscale PNGs (mode L), as a user's greyscale files are. Then, for example:

    bbcodec bench synthetic=OUT_FOLDER --threads 1
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from bbcodec.training.synthetic import TRAINING_SEEDS, synthetic_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=48)
    args = parser.parse_args()
    if not 1 <= args.count <= TRAINING_SEEDS:
        parser.error(f"--count must be from 1 to {TRAINING_SEEDS}")
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in range(args.count):
        pixels = synthetic_image(seed)
        grey = (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
        image = Image.fromarray(pixels[..., 0] if grey else pixels)
        image.save(args.out / f"synthetic-{seed:04d}.png")
    print(f"wrote {args.count} images to {args.out}")


if __name__ == "__main__":
    main()
