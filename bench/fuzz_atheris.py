"""Coverage-guided fuzzing (atheris / libFuzzer) of the three readers of untrusted bytes.

Targets:

* ``bbc``: a ``.bbc`` file, read as ``bbcodec decompress`` reads it: the header
  (``bbcodec.info``), the whole decoder with the golden files' tiny model
  installed (``bbcodec.decompress``), and the decoded image written to memory
  in its output format;
* ``image``: an image file, read as ``bbcodec compress`` reads it
  (``bbcodec.imageio.read_image``, which also writes it back and compares);
* ``model``: a model file, loaded as ``bbcodec models add`` loads it
  (``bbcodec.models.export.model_from_bytes``).

An input passes if it is accepted or refused with a :class:`~bbcodec.errors.BBCodecError` whose message is
one line; anything else (another exception, a message of several lines) is a finding: it is re-raised, and
libFuzzer stops and saves the input (``crash-*``). A hang or memory blow-up is libFuzzer's to catch:
``-timeout`` and ``-rss_limit_mb`` are always passed. The bbcodec, Pillow and safetensors Python code is
instrumented for coverage; the seed corpus is the repository's own files of each kind.

Each input's wall time and peak resident memory (``VmHWM``, reset before each input through
``/proc/self/clear_refs``; memory an earlier input freed but the allocator kept still counts) are measured;
the worst of each, with the executions and findings so far, are written to ``stats.json`` in ``--work``
every ten seconds, and the slowest and most memory-hungry inputs so far to ``slowest-input`` and
``largest-rss-input`` there.

    pip install -e '.[fuzz]'
    OMP_NUM_THREADS=1 nice -n 10 python bench/fuzz_atheris.py bbc --seconds 1800 --work /tmp/fuzz18/bbc

``--work`` holds the growing corpus, findings and the stats file; nothing is written in the checkout.
``--replay`` times every input kept there once more (the corpus, findings and worst inputs) and prints
the five slowest.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy  # noqa: E402,F401  (imported before instrumentation: its code is not ours to fuzz)
import torch  # noqa: E402,F401

import atheris  # noqa: E402

with atheris.instrument_imports(include=["bbcodec", "PIL", "safetensors"]):
    import io

    from PIL import Image as PILImage

    import bbcodec
    from bbcodec import imageio
    from bbcodec.errors import BBCodecError
    from bbcodec.models.export import model_from_bytes

GOLDEN = ROOT / "tests" / "golden"
TINY_MODEL = GOLDEN / "tiny.safetensors"


def _decode_bbc(data: bytes) -> None:
    bbcodec.info(data)
    image = bbcodec.decompress(data)
    imageio.write_image(image, io.BytesIO())


def _read_image(data: bytes) -> None:
    imageio.read_image(data)


def _load_model(data: bytes) -> None:
    model_from_bytes(data)


TARGETS = {"bbc": _decode_bbc, "image": _read_image, "model": _load_model}


def _image_seeds() -> dict[str, bytes]:
    """Small images in every input format, from the golden files' pixels."""
    import numpy as np

    seeds = {}
    pixels = np.load(GOLDEN / "rgba-bbans.npy")[:16, :16]
    rgba = PILImage.fromarray(pixels, "RGBA")
    for mode in ("RGB", "RGBA", "L", "LA", "P", "1", "CMYK"):
        im = rgba.convert(mode)
        for fmt in ("PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "TGA", "QOI", "JPEG"):
            buffer = io.BytesIO()
            try:
                im.save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
            except (OSError, ValueError, KeyError):
                continue
            seeds[f"{mode}.{fmt.lower()}"] = buffer.getvalue()
    return seeds


def seed_corpus(target: str) -> dict[str, bytes]:
    """name -> bytes: the repository's own files of the target's kind."""
    if target == "bbc":
        files = sorted(GOLDEN.glob("*.bbc"))
    elif target == "model":
        files = [TINY_MODEL, ROOT / "bbcodec" / "zoo" / "mnist.safetensors"]
    else:
        return _image_seeds()
    return {path.name: path.read_bytes() for path in files}


class Meter:
    """Executions, findings, and the worst wall time and peak memory of one input, saved as JSON."""

    def __init__(self, target: str, path: Path):
        self.path, self.started, self.saved = path, time.time(), 0.0
        self.stats = {"target": target, "executions": 0, "findings": 0, "worst_seconds": 0.0,
                      "worst_seconds_input_bytes": 0, "worst_peak_rss_mib": 0.0, "worst_rss_input_bytes": 0,
                      "largest_input_bytes": 0, "outcomes": {}}

    def measure(self, function, data: bytes) -> None:
        _reset_peak_memory()
        start = time.perf_counter()
        outcome = "accepted"
        try:
            function(data)
        except BBCodecError as error:
            outcome = "refused"
            if "\n" in str(error) or "\r" in str(error):
                self._count("multi-line message")
                raise AssertionError(f"a message of several lines: {str(error)!r}") from None
        except Exception:
            self._count("finding")
            raise
        finally:
            self._record(time.perf_counter() - start, data)
        self._count(outcome)

    def _count(self, outcome: str) -> None:
        outcomes = self.stats["outcomes"]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome in ("finding", "multi-line message"):
            self.stats["findings"] += 1
            self.save()

    def _record(self, seconds: float, data: bytes) -> None:
        """Count one input; the slowest and the most memory-hungry so far are kept beside the stats."""
        stats, size = self.stats, len(data)
        stats["executions"] += 1
        stats["largest_input_bytes"] = max(stats["largest_input_bytes"], size)
        if seconds > stats["worst_seconds"]:
            stats["worst_seconds"], stats["worst_seconds_input_bytes"] = round(seconds, 4), size
            self.path.with_name("slowest-input").write_bytes(data)
        peak = _peak_memory_mib()
        if peak > stats["worst_peak_rss_mib"]:
            stats["worst_peak_rss_mib"], stats["worst_rss_input_bytes"] = round(peak, 1), size
            self.path.with_name("largest-rss-input").write_bytes(data)
        if time.time() - self.saved > 10:
            self.save()

    def save(self) -> None:
        self.saved = time.time()
        self.stats["seconds_run"] = round(self.saved - self.started, 1)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.stats, indent=1) + "\n")
        tmp.replace(self.path)


def _reset_peak_memory() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _peak_memory_mib() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def replay(target: str, folder: Path) -> None:
    """Time every input of a corpus (and the kept worst inputs) once more; print the five slowest as JSON."""
    meter = Meter(target, folder / "replay.json")
    times = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(".json") and "models" not in path.parts:
            start = time.perf_counter()
            try:
                meter.measure(TARGETS[target], path.read_bytes())
            except Exception as error:  # noqa: BLE001  (a finding: reported, the replay goes on)
                print(json.dumps({"finding": str(path), "error": repr(error)[:300]}))
            times.append((round(time.perf_counter() - start, 3), path.stat().st_size, str(path)))
    meter.save()
    print(json.dumps({"inputs": len(times), "slowest": sorted(times, reverse=True)[:5],
                      "worst_peak_rss_mib": meter.stats["worst_peak_rss_mib"]}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz")
    parser.add_argument("--work", type=Path, required=True, help="folder for the corpus, findings and stats")
    parser.add_argument("--timeout", type=int, default=60, help="seconds one input may take")
    parser.add_argument("--rss-limit-mb", type=int, default=3072)
    parser.add_argument("--max-len", type=int, default=1 << 20)
    parser.add_argument("--replay", action="store_true", help="time every input kept in --work, no fuzzing")
    args, extra = parser.parse_known_args()
    if args.replay:
        os.environ["BBCODEC_MODELS"] = str(args.work / "models")
        torch.set_num_threads(1)
        return replay(args.target, args.work)

    corpus = args.work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for name, data in seed_corpus(args.target).items():
        (corpus / f"seed-{name}").write_bytes(data)
    models = args.work / "models"  # the decoder finds the tiny model by the hash in each file
    models.mkdir(exist_ok=True)
    shutil.copyfile(TINY_MODEL, models / TINY_MODEL.name)
    os.environ["BBCODEC_MODELS"] = str(models)
    torch.set_num_threads(1)

    meter = Meter(args.target, args.work / "stats.json")
    function = TARGETS[args.target]
    atexit.register(meter.save)
    libfuzzer = [sys.argv[0], str(corpus), f"-max_total_time={args.seconds}", f"-timeout={args.timeout}",
                 f"-rss_limit_mb={args.rss_limit_mb}", f"-max_len={args.max_len}",
                 f"-artifact_prefix={args.work}/", "-print_final_stats=1", *extra]
    atheris.Setup(libfuzzer, lambda data: meter.measure(function, data))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
