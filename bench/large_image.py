"""Benchmark: a 4000x3000 photo compresses and decompresses in bounded memory.

Builds a 4000x3000 RGB image by upscaling photo 041 from ../shared/data (the
shared photos are about 1 megapixel), then runs ``bbcodec compress`` and
``bbcodec decompress`` as separate processes and reports each one's wall time
and peak resident memory (``ru_maxrss`` of the child), and checks the pixels.

    python bench/large_image.py [-m MODEL]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "data" / "photos" / "041.png"


MEASURED = """
import resource, sys
from bbcodec_cli.main import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def run(arguments: list[str]) -> tuple[float, float]:
    """(seconds, peak MiB) of one ``bbcodec`` run in its own process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURED] + arguments, check=True, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kib / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default="default")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "large_image.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "large.png"
        with Image.open(PHOTO) as photo:
            photo.convert("RGB").resize((4000, 3000), Image.LANCZOS).save(source, compress_level=1)
        compress_s, compress_mib = run(["compress", "-q", "-m", args.model, str(source)])
        restored = Path(folder) / "restored.png"
        decompress_s, decompress_mib = run(["decompress", "-q", "-m", args.model, "-o", str(restored),
                                                      str(source) + ".bbc"])
        with Image.open(source) as a, Image.open(restored) as b:
            exact = np.array_equal(np.asarray(a), np.asarray(b))
        size = (Path(str(source) + ".bbc")).stat().st_size
    result = {"width": 4000, "height": 3000, "exact": exact, "bbc_bytes": size,
              "bits_per_subpixel": 8 * size / (4000 * 3000 * 3),
              "compress_seconds": compress_s, "compress_peak_mib": compress_mib,
              "decompress_seconds": decompress_s, "decompress_peak_mib": decompress_mib}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
