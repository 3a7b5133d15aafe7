"""Which latent grid step to export a checkpoint with: the coded size of training-side images, grid by grid.

Bits-back coding pops every latent from its posterior discretized on the
grid (step 2**-bits): the finer the grid, the more bits each pop takes from
the stack. A chain gets them back, but only from bits already on the stack:
where the first batches of a chain pop more than earlier batches pushed, the
difference comes from the seed and is stored as initial bits. A model whose
latents carry little (a pixel likelihood that sees decoded pixels) pays this
for nothing, and a coarser grid removes it. The −ELBO does not depend on the
grid; the net and stored sizes do.

The images are training-side only, never a measurement set: photos 010, 020
and 030 of ``../shared/data/photos`` and generated synthetic images of the
training seeds (``bbcodec.training.synthetic.TRAINING_SEEDS`` on).

    python bench/latent_grid_bits.py CHECKPOINT --bits 1 2 3 5 [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from bbcodec import imageio, zoo
from bbcodec.coding.image import CoderSettings, encode_image
from bbcodec.models.export import save_model
from bbcodec.training.checkpoints import model_from_checkpoint
from bbcodec.training.synthetic import TRAINING_SEEDS, synthetic_image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [ROOT.parent / "shared" / "data" / "photos" / f"{n:03d}.png" for n in (10, 20, 30)]


def training_side_images(synthetic: int) -> dict:
    """name -> (H, W, 3) uint8 pixels: three training photos and ``synthetic`` generated training images."""
    images = {path.name: imageio.read_image(path).pixels for path in PHOTOS}
    images.update({f"synthetic-{TRAINING_SEEDS + i}": synthetic_image(TRAINING_SEEDS + i) for i in range(synthetic)})
    return images


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--bits", type=int, nargs="+", default=[1, 2, 3, 5])
    parser.add_argument("--synthetic", type=int, default=16, help="generated training images to code")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    images = training_side_images(args.synthetic)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for bits in args.bits:
            model = model_from_checkpoint(Path(args.checkpoint), grid_bits=bits)
            path = Path(folder) / f"grid{bits}.safetensors"
            save_model(model, path)
            model, digest = zoo.load(str(path))
            for group in ("photos", "synthetic"):
                chosen = {k: v for k, v in images.items() if k.startswith("synthetic") == (group == "synthetic")}
                stored = net = subpixels = 0
                start = time.perf_counter()
                for pixels in chosen.values():
                    encoded = encode_image(model, pixels, CoderSettings())
                    stored, net, subpixels = stored + encoded.stored_bits, net + encoded.net_bits, subpixels + pixels.size
                rows.append({"grid_bits": bits, "model": digest[:12], "images": group, "count": len(chosen),
                             "stored": stored / subpixels, "net": net / subpixels,
                             "initial": (stored - net) / subpixels, "seconds": time.perf_counter() - start})
                r = rows[-1]
                print(f"grid 2^-{bits}: {group} ({r['count']}): stored {r['stored']:.4f}, net {r['net']:.4f}, "
                      f"initial {r['initial']:.4f} bits/sub-pixel ({r['seconds']:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": args.checkpoint, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
