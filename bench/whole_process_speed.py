"""Whole-process speed: `bbcodec compress` and `decompress` against JPEG XL lossless, timed in alternation.

Each round runs, one after another, every command of the comparison as its
own process (start-up, imports, model loading and file writes included):
bbcodec compress and decompress of one image with the model given (the
image as a raw PPM file, so that the model codes it: a file whose code
would not beat it would be kept as it is, and nothing timed), then JPEG
XL lossless encode and decode at effort 7 and effort 9 through libjxl
(imagecodecs, also a fresh Python process, so that both sides pay an
interpreter's start). Rounds alternate the commands so that a change in the
machine's load touches all of them alike. For each command: the median,
minimum and maximum wall time and the median CPU time (user + system of
the process), and the ratio of bbcodec's medians to JPEG XL effort 7's
encode. The load average before and after is recorded; on a shared machine
compare ratios, not seconds.

    python bench/whole_process_speed.py ../shared/data/photos/041.png --crop 768x512 --threads 1 2 \\
        --rounds 5 --json results/whole_process_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

JXL_ENCODE = ("import sys, imagecodecs, numpy as np; from PIL import Image; "
              "open(sys.argv[2], 'wb').write(imagecodecs.jpegxl_encode(np.asarray(Image.open(sys.argv[1])), "
              "lossless=True, effort=int(sys.argv[3]), numthreads=int(sys.argv[4])))")
JXL_DECODE = ("import sys, imagecodecs, numpy as np; from PIL import Image; "
              "Image.fromarray(imagecodecs.jpegxl_decode(open(sys.argv[1], 'rb').read(), "
              "numthreads=int(sys.argv[3]))).save(sys.argv[2])")


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one run; fails loudly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def commands(image: Path, work: Path, model: str, threads: int) -> dict[str, list[str]]:
    """The commands of one comparison, by name, in the order a round runs them."""
    bbcodec = [sys.executable, "-m", "bbcodec"]
    bbc, back = work / "image.bbc", work / "back.ppm"
    jxl = {effort: work / f"image-e{effort}.jxl" for effort in (7, 9)}
    named = {
        "bbcodec compress": [*bbcodec, "compress", "-q", "-f", "-T", str(threads), "-m", model, str(image),
                             "-o", str(bbc)],
        "bbcodec decompress": [*bbcodec, "decompress", "-q", "-f", "-T", str(threads), "-m", model, str(bbc),
                               "-o", str(back)],  # raw pixels, as JPEG XL's decoder below writes
    }
    for effort, path in jxl.items():
        named[f"JPEG XL e{effort} encode"] = [sys.executable, "-c", JXL_ENCODE, str(image), str(path), str(effort),
                                              str(threads)]
        named[f"JPEG XL e{effort} decode"] = [sys.executable, "-c", JXL_DECODE, str(path), str(work / "jxl.ppm"),
                                              str(threads)]
    return named


def measure(image: Path, model: str, threads: int, rounds: int) -> dict:
    """Medians (and extremes) of every command over ``rounds`` alternating rounds, after one warm-up round."""
    with tempfile.TemporaryDirectory() as folder:
        named = commands(image, Path(folder), model, threads)
        times = {name: [] for name in named}
        for round_ in range(rounds + 1):
            for name, command in named.items():
                wall, cpu = timed(command)
                if round_:  # the first round warms the page cache and writes the files the decoders read
                    times[name].append((wall, cpu))
        decoded = np.asarray(Image.open(Path(folder) / "back.ppm"))
        if not np.array_equal(decoded, np.asarray(Image.open(image))):
            raise SystemExit("bbcodec's decoded image differs from the input")
        method = json.loads(subprocess.run([sys.executable, "-m", "bbcodec", "info", "--json",
                                            str(Path(folder) / "image.bbc")], check=True, capture_output=True,
                                           text=True).stdout)["method"]
        if method != "bits-back":
            raise SystemExit(f"bbcodec did not code the image with the model (method {method})")
    result = {}
    for name, runs in times.items():
        walls = [w for w, _ in runs]
        result[name] = {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
                        "cpu_median_s": statistics.median(c for _, c in runs)}
    reference = result["JPEG XL e7 encode"]["median_s"]
    for entry in result.values():
        entry["vs_jxl_e7_encode"] = entry["median_s"] / reference
    return result


def as_raw_file(path: str, size: str | None, folder: Path) -> Path:
    """The image (or its top-left WIDTHxHEIGHT crop) as a PPM/PGM file in ``folder``: raw pixels, which the
    model's code always beats, so that bbcodec times its coder, never a file kept as it was given."""
    image = Image.open(path)
    if size:
        width, height = map(int, size.split("x"))
        image = image.crop((0, 0, width, height))
    out = folder / f"{Path(path).stem}-{image.width}x{image.height}.ppm"
    image.save(out)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image")
    parser.add_argument("--crop", help="WIDTHxHEIGHT: time the top-left crop of this size")
    parser.add_argument("-m", "--model", default="default")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        image = as_raw_file(args.image, args.crop, Path(folder))
        report = {"image": args.image, "crop": args.crop, "model": args.model, "rounds": args.rounds,
                  "machine": f"{platform.machine()}, {os.cpu_count()} logical cores",
                  "load_before": os.getloadavg(), "threads": {}}
        for threads in args.threads:
            found = report["threads"][threads] = measure(image, args.model, threads, args.rounds)
            print(f"\n{threads} thread(s), {args.rounds} rounds: median (min-max) wall s, median CPU s, "
                  "ratio to JPEG XL e7 encode")
            for name, entry in found.items():
                print(f"  {name:22s} {entry['median_s']:7.3f} ({entry['min_s']:.3f}-{entry['max_s']:.3f})  "
                      f"cpu {entry['cpu_median_s']:6.3f}  {entry['vs_jxl_e7_encode']:6.2f}x")
        report["load_after"] = os.getloadavg()
    print(f"\nload average before {report['load_before']}, after {report['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
