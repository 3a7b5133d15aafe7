"""A classical yardstick for the polyphase likelihood's last step: what interpolation and context counting give.

The two-level polyphase likelihood codes its last step (phase 3 of level 1:
odd rows and odd columns, a quarter of the pixels) after every other pixel,
so each of these pixels has its four nearest neighbours decoded. This script
predicts such a pixel as the rounded mean of those four and counts the
empirical entropy of the residuals per image, in 12 contexts of local
activity (log2 of the neighbours' absolute differences): an oracle that knows
each image's histograms (their cost is not counted), the kind of statistics a
classical codec adapts to as it codes. Printed per image, for the residuals
as they are and with the channels decorrelated (G - R and B - G of the
residuals, as a fixed colour transform would), on the top-left crop of each
image that ``--crop`` gives (the crop the step breakdowns use).

    python bench/interpolation_baseline.py ../shared/data/photos/04[1-9].png --crop 512
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

CONTEXTS = 12


def conditional_entropy(residuals: np.ndarray, contexts: np.ndarray) -> float:
    """Bits per value of ``residuals`` coded with one histogram per context, each the values' own."""
    bits = 0.0
    for context in np.unique(contexts):
        _, counts = np.unique(residuals[contexts == context], return_counts=True)
        bits -= float((counts * np.log2(counts / counts.sum())).sum())
    return bits / residuals.size


def last_step_entropies(pixels: np.ndarray) -> tuple[float, float]:
    """(plain, decorrelated) bits per sub-pixel of phase 3 of level 1 of an (H, W, 3) image."""
    x = pixels.astype(np.int64)
    centre = x[1:-1:2, 1:-1:2]
    up, down, left, right = x[0:-2:2, 1:-1:2], x[2::2, 1:-1:2], x[1:-1:2, 0:-2:2], x[1:-1:2, 2::2]
    residual = centre - (up + down + left + right + 2) // 4
    activity = (np.abs(up - down) + np.abs(left - right)).sum(axis=-1)
    contexts = np.minimum(np.log2(activity + 1).astype(int), CONTEXTS - 1).ravel()
    plain = [residual[..., c].ravel() for c in range(3)]
    decorrelated = [plain[0], plain[1] - plain[0], plain[2] - plain[1]]
    return tuple(float(np.mean([conditional_entropy(r, contexts) for r in channels]))
                 for channels in (plain, decorrelated))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--crop", type=int, default=512, help="the top-left crop's side (0: whole images)")
    args = parser.parse_args()
    results = []
    for path in args.images:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        if args.crop:
            pixels = pixels[:args.crop, :args.crop]
        results.append(last_step_entropies(pixels))
        print(f"{path}: plain {results[-1][0]:.3f}, channels decorrelated {results[-1][1]:.3f} bits per sub-pixel")
    plain, decorrelated = np.mean(results, axis=0)
    print(f"mean: plain {plain:.3f}, channels decorrelated {decorrelated:.3f}")


if __name__ == "__main__":
    main()
