"""Add the golden archives (``bbcodec pack``'s format, versions 1 to 4). Read this before running it.

    python tests/golden/archive/make_archive_golden.py        # from the repository root

Archives must stay readable for as long as they may exist. ``tests/test_archive.py``
reads every archive of ``golden.json`` with the installed models, found by the model id the archive
carries alone, and compares every member's name, mode, palette, metadata and
pixels (and a kept file's bytes) exactly with ``golden.json`` and the ``.npz``
files. They are made with the shipped ``default`` model. ``mixed.bba``, in small
chunks, holds several chunks, a chunk stored raw and a counting series:

* ``photo/chelsea.png``: a 24x24 RGB crop of ``data/chelsea.png`` (source format PNG);
* ``noise/palette.png``: a 12x10 palette image of noise with a transparent entry and a
  text chunk (raw: the model cannot code noise smaller);
* ``digits/00`` ... ``digits/05``: six 8x8 grey images, one series entry;

and ``kept.bba``, one chunk in which a flat PNG is kept byte for byte (its code would be larger than
the file) beside a coded crop of ``data/chelsea.png``. Those two are version 1; version 2 added

* ``growing-v2.bba``: one chunk of 40 8x8 grey images, a 24x24 crop of ``data/chelsea.png`` after the
  twentieth: runs of one shape in growing batches (``bbcodec.archive.layout.BATCH_GROWTH``);

and version 3

* ``grouped-v3.bba``: the same images in batches the encoder chose and listed in the chunk
  (``bbcodec.coding.chain.encode_growing``);

and version 4

* ``calibrated-v4.bba``: 32 16x16 crops of ``data/chelsea.png`` in one chunk with its own calibration of the
  pixel likelihood (``bbcodec.coding.calibration.choose_for_images``; the script checks there is one).

The script writes only what does not exist yet and never replaces a file: a
failing test means that a change broke reading existing archives; fix the
change instead.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from bbcodec import archive, imageio, zoo
from bbcodec.coding.calibration import choose_for_images

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
MODEL = zoo.DEFAULT_MODEL
CHUNK_SUBPIXELS = 150


def members() -> list[archive.Member]:
    photo = imageio.read_image((ROOT / "data" / "chelsea.png").read_bytes()).pixels
    crop = imageio.Image(np.ascontiguousarray(photo[100:124, 150:174]), "RGB", format="PNG")
    rng = np.random.default_rng(21)
    noise = Image.fromarray(rng.integers(0, 16, (10, 12), dtype=np.uint8), "P")
    noise.putpalette(rng.integers(0, 256, 48, dtype=np.uint8).tobytes())
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "archive version 1")
    buffer = io.BytesIO()
    noise.save(buffer, "PNG", pnginfo=text, transparency=3)
    y, x = np.mgrid[:8, :8]
    digits = [imageio.Image(((x * (i + 3) + y * 7) % 256).astype(np.uint8)[:, :, None], "L") for i in range(6)]
    return ([archive.Member("photo/chelsea.png", crop), archive.Member("noise/palette.png",
                                                                         imageio.read_image(buffer.getvalue()))]
            + [archive.Member(f"digits/{i:02d}", image) for i, image in enumerate(digits)])


def kept_members() -> list[archive.Member]:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 32), (200, 60, 20)).save(buffer, "PNG", optimize=True)
    flat = dataclasses.replace(imageio.read_image(buffer.getvalue()), original=buffer.getvalue())
    return [archive.Member("flat.png", flat), members()[0]]


def growing_members() -> list[archive.Member]:
    y, x = np.mgrid[:8, :8]
    grey = [archive.Member(f"grey/{i:02d}", imageio.Image(((x * (i % 7 + 2) + y * (i % 5 + 1)) * 9 % 256)
                                                          .astype(np.uint8)[:, :, None], "L")) for i in range(40)]
    return grey[:20] + [members()[0]] + grey[20:]


def crop_members() -> list[archive.Member]:
    photo = imageio.read_image((ROOT / "data" / "chelsea.png").read_bytes()).pixels
    return [archive.Member(f"crop/{i:02d}", imageio.Image(np.ascontiguousarray(
        photo[(i // 8) * 16:(i // 8) * 16 + 16, (i % 8) * 16:(i % 8) * 16 + 16]), "RGB")) for i in range(32)]


def calibrated(report) -> bool:
    net = zoo.load(MODEL)[0]
    return report.chunks == 1 and bool(choose_for_images(net, [m.image.pixels for m in crop_members()]))


CASES = {  # archive -> (members, chunk sub-pixels, what its report must show)
    "mixed.bba": (members, CHUNK_SUBPIXELS, lambda r: r.stored_chunks > 0 and r.chunks >= 3),
    "kept.bba": (kept_members, archive.DEFAULT_CHUNK_SUBPIXELS, lambda r: r.kept_files == 1 and r.chunks == 1),
    "growing-v2.bba": (growing_members, archive.DEFAULT_CHUNK_SUBPIXELS,
                       lambda r: r.chunks == 1 and r.stored_chunks == 0),
    "grouped-v3.bba": (growing_members, archive.DEFAULT_CHUNK_SUBPIXELS,
                       lambda r: r.chunks == 1 and r.stored_chunks == 0),
    "calibrated-v4.bba": (crop_members, archive.DEFAULT_CHUNK_SUBPIXELS, calibrated),
}


def main() -> int:
    manifest_path = HERE / "golden.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name, (make, chunk, expected) in CASES.items():
        if (HERE / name).exists():
            continue  # golden files are never replaced
        packed = make()
        buffer = io.BytesIO()
        report = archive.pack(packed, buffer, model=MODEL, chunk_subpixels=chunk)
        box = archive.Archive(buffer.getvalue())
        if not box.complete or not expected(report) or box.header.version != archive.VERSION:
            print(f"{name}: not the archive this case is for: {report}", file=sys.stderr)
            return 1
        decoded = dict(box)
        (HERE / name).write_bytes(buffer.getvalue())
        pixels = name.removesuffix(".bba") + ".npz"
        np.savez(HERE / pixels, **{f"m{i}": decoded[m.name].pixels for i, m in enumerate(packed)})
        manifest[name] = {
            "model": MODEL, "model_hash": zoo.find(MODEL).hash, "chunks": report.chunks, "pixels": pixels,
            "members": [{"name": m.name, "array": f"m{i}", "mode": decoded[m.name].mode,
                         "palette": (decoded[m.name].palette or b"").hex(),
                         "metadata": {k: v.hex() for k, v in sorted(decoded[m.name].metadata.items())},
                         "original_sha256": hashlib.sha256(decoded[m.name].original).hexdigest()
                         if decoded[m.name].original else None}
                        for i, m in enumerate(packed)]}
        print(f"{name}: {report.images} images, {report.chunks} chunks ({report.stored_chunks} raw, "
              f"{report.kept_files} kept), {report.bytes} bytes")
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
