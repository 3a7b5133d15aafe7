"""How long extracting one image takes from archives of the same images, the archives in alternation.

Each round extracts two images from the middle of each archive (their chunks
decoded alone, as ``bbcodec unpack ARCHIVE NAME`` does), after one warm-up
extraction that loads the model. Prints and records wall and CPU seconds and
the archive version; compare archives within one run only (this machine's
speed drifts), and pause other work while it runs.

    python bench/extract_speed.py -m mnist OLD.bba NEW.bba --rounds 4 --threads 1 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from bbcodec import archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("archives", nargs="+")
    parser.add_argument("-m", "--model", default=None, help="the archives' model (default: found by its id)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    boxes = {path: archive.Archive(open(path, "rb").read(), model=args.model) for path in args.archives}
    wanted = {}
    for path, box in boxes.items():
        names = box.names()
        wanted[path] = [names[len(names) // 2], names[len(names) // 2 - 37]]
        box.extract(wanted[path][0])
    times = {path: {"wall": [], "cpu": []} for path in boxes}
    for _ in range(args.rounds):
        for path, box in boxes.items():
            for name in wanted[path]:
                wall, cpu = time.perf_counter(), time.process_time()
                box.extract(name)
                times[path]["wall"].append(time.perf_counter() - wall)
                times[path]["cpu"].append(time.process_time() - cpu)
    rows = []
    for path, box in boxes.items():
        wall, cpu = times[path]["wall"], times[path]["cpu"]
        rows.append({"archive": path, "version": box.header.version, "bytes": len(box.data), "images": wanted[path],
                     "wall_median": statistics.median(wall), "wall_min": min(wall), "wall_max": max(wall),
                     "cpu_median": statistics.median(cpu), "extractions": len(wall)})
        print(f"{path}: version {box.header.version}, one image extracted in {rows[-1]['wall_median']:.3f} s "
              f"(median; {min(wall):.3f}-{max(wall):.3f}), CPU {rows[-1]['cpu_median']:.3f} s, {len(wall)} times")
    result = {"threads": args.threads, "rounds": args.rounds, "rows": rows, "load_before": load_before,
              "load_after": os.getloadavg()}
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=1)


if __name__ == "__main__":
    main()
