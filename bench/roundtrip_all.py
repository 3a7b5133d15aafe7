"""Benchmark: every image in ../shared/data round-trips exactly through the default model.

Every image file under ``photos/``, ``usc-sipi/`` and ``waterloo/``, all 5,000
CIFAR-subset images and all 70,000 MNIST images, each coded as its own file,
the way a user codes them: the image is read from its file bytes (the CIFAR
and MNIST arrays are first written as PNG in memory), compressed with
:func:`bbcodec.compress`, decompressed from the ``.bbc`` bytes with
:func:`bbcodec.decompress`, and written back as an image file with
:func:`bbcodec.write_image` (which reads its output back and compares it).
An item passes when mode, pixels, palette and metadata all come back exactly.
Files that are not images (``SOURCES.md``) are listed as such.

The run is long on a 2-core CPU (about 40 minutes on one thread), so it is
resumable: each finished item is appended to a state file (JSON lines, by
default in the system's temporary folder) and skipped when the script runs
again. ``--report`` rebuilds ``bench/results/roundtrip_all.json`` from the
state file without coding anything.

    OMP_NUM_THREADS=1 nice -n 10 python bench/roundtrip_all.py [--limit N] [--state FILE] [--report]
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
RESULT = ROOT / "bench" / "results" / "roundtrip_all.json"
DEFAULT_STATE = Path(tempfile.gettempdir()) / "bbcodec-roundtrip-all.jsonl"
FOLDERS = ["photos", "usc-sipi", "waterloo"]
CIFAR = "cifar10-subset/cifar10_subset_uint8_nhwc.npz"
MNIST = {"mnist-train": "mnist/train-images-idx3-ubyte.gz", "mnist-test": "mnist/t10k-images-idx3-ubyte.gz"}


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    if int.from_bytes(raw[:4], "big") != 2051:
        raise ValueError(f"{path} is not an idx image file")
    count, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw, np.uint8, count * rows * cols, 16).reshape(count, rows, cols)


class Items:
    """Every item as (source, name, loader); arrays are loaded once, lazily."""

    def array(self, key: str) -> np.ndarray:
        if key not in self._arrays:
            if key.startswith("cifar"):
                with np.load(DATA / CIFAR) as data:
                    self._arrays["cifar-train"], self._arrays["cifar-test"] = data["train_x"], data["test_x"]
            else:
                self._arrays[key] = read_idx(DATA / MNIST[key])
        return self._arrays[key]

    def __init__(self, small_first: bool = False):
        self._arrays = {}
        self.small_first = small_first

    def _files(self):
        for folder in FOLDERS:
            for path in sorted((DATA / folder).rglob("*")):
                if path.is_file():
                    yield folder, str(path.relative_to(DATA)), lambda p=path: p.read_bytes()

    def _arrays_items(self):
        for key, mode in [("cifar-train", "RGB"), ("cifar-test", "RGB"), ("mnist-train", "L"), ("mnist-test", "L")]:
            for index in range(len(self.array(key))):
                yield key.split("-")[0], f"{key}/{index}", lambda k=key, i=index, m=mode: as_png(self.array(k)[i], m)

    def __iter__(self):
        parts = [self._arrays_items(), self._files()] if self.small_first else [self._files(), self._arrays_items()]
        for part in parts:
            yield from part


def as_png(pixels: np.ndarray, mode: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode).save(buffer, "PNG")
    return buffer.getvalue()


def same(a, b) -> bool:
    return (a.mode == b.mode and a.pixels.shape == b.pixels.shape and np.array_equal(a.pixels, b.pixels)
            and a.palette == b.palette and a.palette_mode == b.palette_mode and a.metadata == b.metadata)


def round_trip(source: str, name: str, load) -> dict:
    import bbcodec
    from bbcodec.errors import UnsupportedImageError

    record = {"source": source, "name": name}
    raw = load()
    try:
        image = bbcodec.read_image(raw)
    except UnsupportedImageError as error:
        record.update(outcome="not-an-image" if "not an image" in str(error) else "refused", error=str(error))
        return record
    start = time.perf_counter()
    data = bbcodec.compress(image)
    middle = time.perf_counter()
    back = bbcodec.decompress(data)
    end = time.perf_counter()
    written = io.BytesIO()
    bbcodec.write_image(back, written)  # reads the written file back and compares it
    again = bbcodec.read_image(written.getvalue(), verify=False)
    exact = same(back, image) and np.array_equal(again.pixels, image.pixels) and again.mode == image.mode
    header = bbcodec.info(data)
    coder = header.get("coder") if isinstance(header.get("coder"), dict) else {}
    record.update(outcome="exact" if exact else "MISMATCH", mode=image.mode, shape=list(image.pixels.shape),
                  method=header["method"], arithmetic=coder.get("arithmetic"), raw_bytes=len(raw), bbc_bytes=len(data),
                  compress_s=round(middle - start, 4), decompress_s=round(end - middle, 4))
    return record


def load_state(path: Path) -> dict:
    done = {}
    if path.exists():
        with open(path) as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:  # a line cut by an interrupted run: that item runs again
                    continue
                done[record["name"]] = record
    return done


def report(done: dict, state: Path, wall_seconds: float | None) -> dict:
    from bbcodec import zoo

    by_source = defaultdict(Counter)
    sizes = defaultdict(lambda: [0, 0, 0])  # raw file bytes, .bbc bytes, sub-pixels
    times = defaultdict(lambda: [0.0, 0.0])
    failures = []
    for record in done.values():
        source, outcome = record["source"], record["outcome"]
        by_source[source][outcome] += 1
        if outcome in ("exact", "MISMATCH"):
            by_source[source]["method " + record["method"]] += 1
            if record.get("arithmetic"):
                by_source[source]["arithmetic " + record["arithmetic"]] += 1
            sizes[source][0] += record["raw_bytes"]
            sizes[source][1] += record["bbc_bytes"]
            sizes[source][2] += int(np.prod(record["shape"]))
            times[source][0] += record["compress_s"]
            times[source][1] += record["decompress_s"]
        if outcome not in ("exact", "not-an-image"):
            failures.append(record)
    sources = {}
    for source, counts in sorted(by_source.items()):
        raw, bbc, subpixels = sizes[source]
        sources[source] = {
            "counts": dict(sorted(counts.items())),
            "bits_per_subpixel": round(8 * bbc / subpixels, 4) if subpixels else None,
            "compress_seconds": round(times[source][0], 1), "decompress_seconds": round(times[source][1], 1),
        }
    outcomes = Counter(record["outcome"] for record in done.values())
    previous = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    result = {
        "script": "bench/roundtrip_all.py",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "model": zoo.load()[1][:12],
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": platform.machine(),
        "items": len(done),
        "images_round_tripped": outcomes["exact"] + outcomes["MISMATCH"],
        "exact": outcomes["exact"],
        "failures": len(failures),
        "not_images": sorted(r["name"] for r in done.values() if r["outcome"] == "not-an-image"),
        "coding_seconds": round(sum(t[0] + t[1] for t in times.values()), 1),
        "wall_seconds_all_sessions": round(previous.get("wall_seconds_all_sessions", 0) + (wall_seconds or 0), 1),
        "sources": sources,
        "failure_list": failures[:100],
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="progress file (JSON lines)")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many new items")
    parser.add_argument("--report", action="store_true", help="only rebuild the result file from the state file")
    parser.add_argument("--small-first", action="store_true", help="the CIFAR and MNIST images before the files")
    parser.add_argument("--sources", help="only these sources, comma-separated (photos, usc-sipi, waterloo, cifar, "
                                          "mnist); the result file is then not rewritten")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 1
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    done = load_state(args.state)
    start, new = time.perf_counter(), 0
    if not args.report:
        with open(args.state, "a") as out:
            for source, name, load in Items(args.small_first):
                if name in done or (args.sources and source not in args.sources.split(",")):
                    continue
                if args.limit is not None and new >= args.limit:
                    break
                try:
                    record = round_trip(source, name, load)
                except Exception as error:  # recorded, never silent: this is what the benchmark looks for
                    record = {"source": source, "name": name, "outcome": "ERROR",
                              "error": f"{type(error).__name__}: {error}"}
                done[name] = record
                out.write(json.dumps(record) + "\n")
                out.flush()
                new += 1
                if new % 500 == 0:
                    print(f"{len(done)} items, {time.perf_counter() - start:.0f} s this session", flush=True)
    if args.sources:
        failed = [r for r in done.values() if r["outcome"] not in ("exact", "not-an-image")]
        print(f"{len(done)} items in {args.state}, {len(failed)} failures, {time.perf_counter() - start:.0f} s")
        return 1 if failed else 0
    result = report(done, args.state, None if args.report else time.perf_counter() - start)
    print(json.dumps({k: v for k, v in result.items() if k not in ("sources", "failure_list")}, indent=1))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
