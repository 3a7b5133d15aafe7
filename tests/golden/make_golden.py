"""Add golden .bbc files to this folder. Read this before running it.

    python tests/golden/make_golden.py            # from the repository root

The golden files pin the .bbc format: ``tests/test_api.py`` and ``tests/test_cli.py`` decode every
``*.bbc`` here with the committed model ``tiny.safetensors`` and compare the pixels exactly with the
``*.npy`` files, which is what users' existing files need to keep working.

The script writes only the cases of ``CASES`` that have no file yet and adds them to ``golden.json``;
it never replaces a file. Add a case when the format gains something that existing files do not
cover, and commit the new files with that change. NEVER delete a file to "fix" a failing golden
test: a failing golden test means that a change broke the decoding of existing files; fix the
change instead.

Files coded with float arithmetic decode only on the kind of machine that made them
(:mod:`bbcodec.portability`): the tests check them exactly where the file's recorded platform is
this machine's, and elsewhere accept only exact pixels or a refusal that says so. The first files
(``rgb-bitswap.bbc`` ... ``palette-alphas.bbc``) were coded in float arithmetic before files recorded
their platform; their ``*-exact.bbc`` twins decode everywhere.

The model file is kept if it exists (deleting it would change every file's model hash).

The files here are of format version 1, which bbcodec wrote until issue 20, and every case of ``CASES``
has its file: add new cases to ``make_binary_golden.py`` (the format version bbcodec writes) instead.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for fixtures.samples

import bbcodec  # noqa: E402
from bbcodec import api, imageio  # noqa: E402
from bbcodec.coding.image import CoderSettings  # noqa: E402
from bbcodec.modelfile import model_hash  # noqa: E402
from fixtures.samples import binary_pixels, encoded, make_tiny_model, noise_pixels, pil_from_pixels  # noqa: E402
from PIL import PngImagePlugin  # noqa: E402

MODEL = "tiny.safetensors"


def png(pixels: np.ndarray, mode: str, text: dict | None = None, **options) -> imageio.Image:
    """The image as bbcodec reads it from a PNG file (so it has a source format and metadata)."""
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        options["pnginfo"] = info
    return imageio.read_image(encoded(pil_from_pixels(pixels, mode), "PNG", **options))


# name -> (image, coder settings, expected method); small images, a few KB of .bbc each at most
BITS_BACK_CASES = {
    "rgb-bitswap": (png(binary_pixels(16, 24, 3, seed=1), "RGB"), CoderSettings(tile=8)),
    "grey-bitswap": (png(binary_pixels(48, 40, 1, seed=2), "L"), CoderSettings(tile=8)),
    "rgba-bbans": (png(binary_pixels(20, 16, 4, seed=3), "RGBA"), CoderSettings(coder="bbans", tile=8)),
    "palette-alphas": (png(binary_pixels(33, 31, 1, seed=4), "P", {"Title": "golden palette"},
                           transparency=bytes(range(0, 256))), CoderSettings(tile=8)),
}
CASES = {f"{name}.bbc": (image, replace(settings, arithmetic="float"), "bits-back")
         for name, (image, settings) in BITS_BACK_CASES.items()}
CASES["stored-rgb.bbc"] = (png(noise_pixels(6, 8, 3, seed=5), "RGB", {"Comment": "stored raw"}, dpi=(300, 300)),
                           CoderSettings(), "stored")
CASES.update({f"{name}-exact.bbc": (image, replace(settings, arithmetic="exact"), "bits-back")
              for name, (image, settings) in BITS_BACK_CASES.items()})


def main() -> None:
    model_path = HERE / MODEL
    if not model_path.exists():
        make_tiny_model(model_path, seed=0)
    model_bytes = model_path.read_bytes()
    manifest_path = HERE / "golden.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {
        "format_version": 1,
        "model": MODEL,
        "model_hash": model_hash(model_bytes),
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "files": {},
    }
    assert manifest["model_sha256"] == hashlib.sha256(model_bytes).hexdigest(), "the golden model changed"
    for name, (image, settings, method) in CASES.items():
        if (HERE / name).exists():
            continue  # golden files are never replaced
        data = bbcodec.compress(image, model=str(model_path), settings=settings)
        header = bbcodec.info(data)
        assert header["method"] == method, f"{name}: {header['method']}, expected {method}"
        back = bbcodec.decompress(data, model=str(model_path))
        assert np.array_equal(back.pixels, image.pixels) and back.metadata == image.metadata
        pixels_name = name.removesuffix(".bbc") + ".npy"
        (HERE / name).write_bytes(data)
        np.save(HERE / pixels_name, image.pixels, allow_pickle=False)
        manifest["files"][name] = {
            "pixels": pixels_name,
            "mode": image.mode,
            "method": method,
            "palette": image.palette.hex() if image.palette is not None else None,
            "metadata": {k: v.hex() for k, v in sorted(image.metadata.items())},
            "pixel_checksum": api.pixel_checksum(image.pixels),
        }
        print(f"{name}: {image.width}x{image.height} {image.mode}, {len(data)} bytes, {method}")
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
