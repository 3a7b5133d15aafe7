"""Timing of ``bbcodec compress`` under ``-T``: one photo-like image on 1 and 2 threads, and a folder of
small images in one process and in two worker processes.

Runs the installed ``bbcodec`` command (start-up, model loading and worker
start-up included: what a user waits for), once per case, and prints a
Markdown table and the load average. The images are generated: a smooth
photo-like picture with grain, and small tiles of it.

    python bench/threads_and_files.py                      # 384x384 photo, 20 images of 48x48
    python bench/threads_and_files.py --size 512 --files 40 --small 64
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def photo_like(size: int, seed: int) -> np.ndarray:
    """A smooth RGB picture (sums of low-frequency waves) with a little grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3):
        wave = sum(rng.uniform(0.2, 1) * np.sin(2 * np.pi * (rng.uniform(0.3, 3) * x + rng.uniform(0.3, 3) * y)
                                               + rng.uniform(0, 6)) for _ in range(4))
        channels.append(127 + 30 * wave + rng.normal(0, 3, wave.shape))
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=384, help="side of the photo-like image")
    parser.add_argument("--files", type=int, default=20, help="small images in the folder")
    parser.add_argument("--small", type=int, default=48, help="side of each small image")
    args = parser.parse_args()
    tool = shutil.which("bbcodec") or sys.exit("bbcodec is not installed (pip install -e .)")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        photo = work / "photo.png"
        Image.fromarray(photo_like(args.size, 0)).save(photo)
        folder = work / "small"
        folder.mkdir()
        for i in range(args.files):
            Image.fromarray(photo_like(args.small, i + 1)).save(folder / f"{i:02d}.png")
        rows = []
        for threads in (1, 2):
            seconds = timed([tool, "compress", "-f", "-q", "-T", str(threads), "-o", str(work / "photo.bbc"),
                             str(photo)])
            rows.append((f"one {args.size}x{args.size} image", f"-T {threads}", "1", seconds))
        for threads in (1, 2):
            seconds = timed([tool, "compress", "-f", "-q", "-r", "-T", str(threads), str(folder)])
            rows.append((f"{args.files} images of {args.small}x{args.small}", f"-T {threads}",
                         "1" if threads == 1 else f"{threads} workers", seconds))
    print("| case | threads | processes | seconds |\n|---|---|---|---|")
    for case, threads, processes, seconds in rows:
        print(f"| {case} | {threads} | {processes} | {seconds:.1f} |")
    print("\nload average after the run: " + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
