"""Benchmark: how much decoding work a forged payload can cause (issue 18, item 3).

A forged file is a real header (the golden file of a shipped model, with its
coder settings: ``default`` codes 64x64 tiles in batches of 16, ``mnist`` 32x32
tiles one at a time) that claims a larger image, with random payload words and
every CRC recomputed, so that only the decoder can tell it from a real file.
Cases (``--cases``, ``model:side:KiB[:checkpoints]``): the issue's claims of
2048x2048 with 200 KiB and 4096x4096 with 400 KiB; ``max``, the largest claim
that a file without stack checkpoints may make with its payload
(:mod:`bbcodec.container`'s payload limit, since issue 18); and files with
forged (random) checkpoints, as many as the claimed image has batches. Each
case runs in a fresh process, ``bbcodec.decompress`` as ``bbcodec test`` runs
it (default limits), and records the outcome, CPU seconds, peak memory and
CPU seconds per KiB of payload.

    OMP_NUM_THREADS=1 nice -n 10 python bench/forged_payload.py [--cases mnist:2048:200,...] [--label after]

Appends a run (``--label``) to ``bench/results/forged_payload.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "forged_payload.json"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def real_file(model: str) -> bytes:
    """The golden file of a shipped model (``tests/golden/zoo``): a real header, with its coder settings."""
    from bbcodec import zoo

    digest = zoo.load(model)[1]
    return (ROOT / "tests" / "golden" / "zoo" / f"{digest[:12]}.bbc").read_bytes()


def forge(data: bytes, side: int, payload_kib: int, seed: int = 0, checkpoints: bool = False) -> bytes:
    """``data`` claiming ``side`` x ``side`` pixels, with ``payload_kib`` KiB of random words and a seed
    prefix of 0 (the decoder may read the stack down to its last word), CRCs recomputed. With
    ``checkpoints``, also random stack checkpoints, as many as the claimed image has batches, the last
    one fitting the payload (the best a forger can do without decoding); else none (an older file)."""
    import numpy as np

    from bbcodec import container

    box = container.from_bytes(data)
    header = {k: v for k, v in box.header.items() if k not in ("sections", "image_checksum")}
    header.update(width=side, height=side, untouched_seed_words=0)
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 1 << 32, payload_kib * 256, dtype=np.uint64).astype("<u4")
    words[-1] |= np.uint32(1 << 31)  # a valid top word: the forgery reaches the coder
    sections = {k: v for k, v in box.sections.items() if k != "stack"}
    sections["payload"] = words.tobytes()
    if checkpoints:
        batches = container.Header.readable(header).layout().work()[0]
        stack = rng.integers(1, len(words), batches, dtype=np.uint64).astype("<u4")
        stack[-1] = len(words)
        sections["stack"] = stack.tobytes()
    return container.to_bytes(container.Container(header, sections))


def largest_allowed_side(data: bytes, payload_kib: int) -> int:
    """The largest square (a multiple of the tile) that a file without checkpoints and with this payload
    may claim under the limits (:func:`bbcodec.container._payload_work_problem`)."""
    from bbcodec import container

    layout = container.Header.readable(container.from_bytes(data).header).layout()
    allowed = container.FREE_PASSES + payload_kib * 1024 // container.PAYLOAD_BYTES_PER_PASS
    side = layout.tile
    while True:
        larger = dataclasses.replace(layout, height=side + layout.tile, width=side + layout.tile)
        if larger.work()[0] > allowed or container.work_limit_problem(larger):
            return side
        side += layout.tile


def bbcodec_mode(data: bytes) -> str:
    import bbcodec

    return bbcodec.info(data)["mode"]


def measure_child(path: str) -> None:
    """Decode one file in this (fresh) process; print its outcome, CPU seconds and peak memory as JSON."""
    import resource
    import time

    import torch

    import bbcodec
    from bbcodec.errors import BBCodecError

    torch.set_num_threads(1)
    data = Path(path).read_bytes()
    start, wall = time.process_time(), time.perf_counter()
    try:
        bbcodec.decompress(data)
        outcome = "decoded"
    except BBCodecError as error:
        outcome = f"refused: {error}"
    print(json.dumps({"outcome": outcome, "cpu_seconds": round(time.process_time() - start, 2),
                      "wall_seconds": round(time.perf_counter() - wall, 2),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


DEFAULT_CASES = ",".join(f"{model}:{case}" for model in ("mnist", "default") for case in (
    "2048:200", "4096:400", "max:200", "max:1000", "2048:200:checkpoints", "4096:400:checkpoints"))
"""The issue's two cases, the largest claims a file without checkpoints may make, and forged checkpoints."""


def parse_case(text: str) -> tuple[str, str, int, bool]:
    """``model:side:KiB[:checkpoints]``; side ``max`` is :func:`largest_allowed_side`."""
    parts = text.split(":")
    return parts[0], parts[1], int(parts[2]), parts[3:] == ["checkpoints"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=DEFAULT_CASES, help="model:side:KiB[:checkpoints], comma-separated")
    parser.add_argument("--label", default="run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return measure_child(args.child)
    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for model, side, kib, checkpoints in map(parse_case, args.cases.split(",")):
            base = real_file(model)
            side = largest_allowed_side(base, kib) if side == "max" else int(side)
            path = Path(folder) / f"forged-{model}-{side}-{kib}-{checkpoints}.bbc"
            path.write_bytes(forge(base, side, kib, checkpoints=checkpoints))
            run = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True,
                                 text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), check=True)
            row = {"model": model, "claimed": f"{side}x{side} {bbcodec_mode(base)}", "payload_kib": kib,
                   "checkpoints": "random" if checkpoints else "none",
                   **json.loads(run.stdout.strip().splitlines()[-1])}
            row["cpu_seconds_per_kib"] = round(row["cpu_seconds"] / kib, 4)
            print(json.dumps(row), flush=True)
            results.append(row)
    record = json.loads(RESULT.read_text()) if RESULT.exists() else {"script": "bench/forged_payload.py", "runs": []}
    record["runs"].append({"label": args.label, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                           "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads 1",
                           "cases": results,
                           "worst_cpu_seconds_per_kib": max(r["cpu_seconds_per_kib"] for r in results)})
    RESULT.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
