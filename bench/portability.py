"""Benchmark: files that decode on every machine, and what exact arithmetic costs for logistic pixels.

Other CPUs are stood in for by the settings that make torch, oneDNN and MKL
pick other float kernels on this one (each changes the last bits of float
convolutions): ``ATEN_CPU_CAPABILITY=default``, ``ONEDNN_MAX_CPU_ISA=SSE41``
and ``MKL_ENABLE_INSTRUCTIONS=SSE4_2``, beside no setting at all.

* ``files``: every shipped model compresses its image (a 256x256 crop of
  ``data/chelsea.png`` for colour models, a 4x4 sheet of MNIST test digits for
  the logistic-pixel ones) in a fresh process under each setting, with 1 and
  2 torch threads, in exact and in float arithmetic. Every exact file of a
  model must be byte-identical, and each distinct file must decode to the
  image in a fresh process under every setting. The float files are the
  control: they should differ between settings, and a float file is decoded
  under each other setting to see what happens there.
* ``chain``: the ``mnist`` model codes the 10,000 MNIST test digits as one
  bits-back chain in float and in exact arithmetic, every digit decoded and
  checked: the rate cost of the exact logistic tables.

    python bench/portability.py files      # about 5 minutes on 2 cores
    python bench/portability.py chain      # the MNIST chain, twice
    python bench/portability.py chain --limit 1000

Results go to bench/results/portability_files.json and portability_chain.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bbcodec.portability import STAND_INS, environment_with

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
MNIST_TEST = SHARED / "mnist" / "t10k-images-idx3-ubyte.gz"

THREADS = (1, 2)
ARITHMETICS = ("exact", "float")


def model_image(model):
    """The image a model is checked on, as a bbcodec Image."""
    from bbcodec import imageio
    from bbcodec.training.data import load_mnist_images

    if model.config.pixel_distribution == "logistic":
        digits = load_mnist_images(MNIST_TEST)[:16, 0].numpy()               # (16, 28, 28)
        sheet = digits.reshape(4, 4, 28, 28).transpose(0, 2, 1, 3).reshape(112, 112)
        return imageio.Image(np.ascontiguousarray(sheet[:, :, None]), "L")
    photo = imageio.read_image(ROOT / "data" / "chelsea.png").pixels
    return imageio.Image(np.ascontiguousarray(photo[:256, :256]), "RGB")


def shipped_models() -> list[str]:
    from bbcodec import zoo

    return [entry.name for entry in zoo.installed() if entry.shipped]


# -- the work done in fresh processes ---------------------------------------------------------------------
def encode_worker(folder: Path, threads: int) -> None:
    """Compress every shipped model's image in both arithmetics into ``folder`` (run under one setting)."""
    import torch

    import bbcodec
    from bbcodec.coding.image import CoderSettings

    torch.set_num_threads(threads)
    for name in shipped_models():
        image = model_image(bbcodec.load_model(name)[0])
        for arithmetic in ARITHMETICS:
            settings = CoderSettings(arithmetic=arithmetic)
            if image.mode == "L":  # one digit per tile, one tile per step: later digits get bits back
                settings = replace(settings, tile=28, max_batch=1)
            start = time.perf_counter()
            data = bbcodec.compress(image, model=name, settings=settings)
            seconds = time.perf_counter() - start
            assert bbcodec.info(data)["method"] == "bits-back", (name, arithmetic)
            (folder / f"{name}.{arithmetic}.bbc").write_bytes(data)
            print(json.dumps({"model": name, "arithmetic": arithmetic, "seconds": round(seconds, 3)}), flush=True)


def decode_worker(paths: list[Path]) -> None:
    """Decode each file; print one JSON line per file: decoded exactly, or the error."""
    import torch

    import bbcodec
    from bbcodec.errors import BBCodecError

    torch.set_num_threads(1)
    for path in paths:
        model = path.name.split(".")[0]
        expected = model_image(bbcodec.load_model(model)[0]).pixels
        try:
            exact = bool(np.array_equal(bbcodec.decompress(path.read_bytes()).pixels, expected))
            outcome = "decoded exactly" if exact else "WRONG PIXELS"
        except BBCodecError as error:
            outcome = f"refused: {error}"
        print(json.dumps({"file": str(path), "outcome": outcome}), flush=True)


def _run(args: list[str], setting: str) -> list[dict]:
    done = subprocess.run([sys.executable, __file__, *args], env=environment_with(setting), capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} under {setting} failed:\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# -- the benchmarks -----------------------------------------------------------------------------------------
def files_benchmark(work: Path) -> dict:
    """Encode under every setting and thread count; decode every distinct file under every setting."""
    made = {}   # (setting, threads) -> folder
    seconds = {}
    for setting in STAND_INS:
        for threads in THREADS:
            folder = work / f"{setting.replace('=', '-')}-{threads}"
            folder.mkdir(parents=True)
            for line in _run(["encode-worker", str(folder), str(threads)], setting):
                seconds.setdefault(f"{line['model']} {line['arithmetic']}", []).append(line["seconds"])
            made[setting, threads] = folder
            print(f"encoded under {setting}, {threads} thread(s)", file=sys.stderr)
    models = sorted({key.split()[0] for key in seconds})
    result = {"settings": list(STAND_INS), "threads": list(THREADS), "models": {}}
    to_decode = {}
    for model in models:
        entry = result["models"][model] = {}
        for arithmetic in ARITHMETICS:
            distinct = {}  # file bytes -> (where it was made, one path to it)
            for (setting, threads), folder in made.items():
                path = folder / f"{model}.{arithmetic}.bbc"
                distinct.setdefault(path.read_bytes(), ([], path))[0].append(f"{setting}, {threads} thread(s)")
            entry[arithmetic] = {
                "distinct_files": len(distinct),
                "made_under": [where for where, _ in distinct.values()],
                "sizes": [len(data) for data in distinct],
                "compress_seconds_median": float(np.median(seconds[f"{model} {arithmetic}"])),
            }
            to_decode.setdefault(arithmetic, []).extend((model, where, path) for where, path in distinct.values())
    for arithmetic, items in to_decode.items():
        for setting in STAND_INS:
            lines = _run(["decode-worker", *(str(path) for _, _, path in items)], setting)
            for (model, where, _), line in zip(items, lines):
                result["models"][model][arithmetic].setdefault("decoded", []).append(
                    {"made_under": where, "decoded_under": setting, "outcome": line["outcome"][:200]})
            print(f"decoded {arithmetic} files under {setting}", file=sys.stderr)
    exact_ok = all(entry["exact"]["distinct_files"] == 1
                   and all(d["outcome"] == "decoded exactly" for d in entry["exact"]["decoded"])
                   for entry in result["models"].values())
    result["exact_files_identical_and_decoded_everywhere"] = exact_ok
    result["float_files_never_wrong"] = all(d["outcome"] != "WRONG PIXELS" for entry in result["models"].values()
                                            for d in entry["float"]["decoded"])
    return result


def chain_benchmark(limit: int) -> dict:
    """The mnist model's chain over the MNIST test digits in float and in exact arithmetic."""
    import torch

    from bbcodec.benchmark.measure import measure_chain
    from bbcodec.coding.image import CoderSettings
    from bbcodec.training.data import load_mnist_images

    torch.set_num_threads(1)
    digits = load_mnist_images(MNIST_TEST)
    images = [np.ascontiguousarray(d.permute(1, 2, 0).numpy()) for d in digits[:limit or len(digits)]]
    out = {"set": f"MNIST test, first {len(images)} digits", "model": "mnist", "chain_batch": 1, "arithmetic": {}}
    for arithmetic in ARITHMETICS:
        chain = measure_chain("mnist", images, 1, "cpu", CoderSettings(arithmetic=arithmetic))
        if not chain.exact:
            raise SystemExit(f"{arithmetic}: the chain did not decode exactly")
        subpixels = sum(im.size for im in images)
        out["arithmetic"][arithmetic] = {
            "bits_per_subpixel": chain.stored_bits / subpixels, "net_bits_per_subpixel": chain.net_bits / subpixels,
            "nelbo_bits_per_subpixel": chain.nelbo_bits / subpixels,
            "encode_seconds": round(chain.encode_seconds, 1), "decode_seconds": round(chain.decode_seconds, 1)}
        print(arithmetic, out["arithmetic"][arithmetic], file=sys.stderr)
    rates = out["arithmetic"]
    out["exact_cost_percent"] = 100 * (rates["exact"]["bits_per_subpixel"] / rates["float"]["bits_per_subpixel"] - 1)
    return out


def _environment() -> dict:
    import platform

    from bbcodec.portability import float_platform

    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": float_platform("cpu"),
            "python": platform.python_version(), "load_average": list(os.getloadavg())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("files")
    chain = sub.add_parser("chain")
    chain.add_argument("--limit", type=int, default=0, help="first N digits (0: all 10,000)")
    encode = sub.add_parser("encode-worker")
    encode.add_argument("folder", type=Path)
    encode.add_argument("threads", type=int)
    decode = sub.add_parser("decode-worker")
    decode.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.what == "encode-worker":
        return encode_worker(args.folder, args.threads)
    if args.what == "decode-worker":
        return decode_worker(args.paths)
    if not MNIST_TEST.exists():
        raise SystemExit(f"needs the MNIST test set at {MNIST_TEST}")
    start = time.perf_counter()
    if args.what == "files":
        with tempfile.TemporaryDirectory(prefix="bbcodec-portability-") as work:
            result = files_benchmark(Path(work))
        name = "portability_files.json"
    else:
        result = chain_benchmark(args.limit)
        name = "portability_chain.json"
    result["environment"] = {**_environment(), "seconds": round(time.perf_counter() - start)}
    result["command"] = "python bench/portability.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "models"}, indent=1))


if __name__ == "__main__":
    main()
