"""Benchmark of the core: BB-ANS and Bit-Swap on a chain of CIFAR-subset test images.

Trains (or loads) a small binary Markov-chain VAE on the CIFAR-10 subset in
../shared/data, then codes the first N test images as one chain with each
coder and reports, per coder:

* the model's −ELBO on those images (mean of several posterior samples),
* the actual bits per sub-pixel of the stored payload, with the initial bits
  (what a file holds) and without them (stack growth over the seed),
* the initial-bit overhead of the first image, alone,
* encode and decode seconds, after checking that every image decodes exactly,

and the model's size as float32 and packed, beside its float twin's.

    python bench/core_rates.py                       # train 3000 steps (CPU: ~30 min), then measure
    python bench/core_rates.py --model runs/core/model.safetensors --images 100
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from bbcodec.coding.chain import decode_chain, encode_chain
from bbcodec.training.data import load_npz
from bbcodec.models.config import VAEConfig
from bbcodec.models.export import load_model, model_size, save_model
from bbcodec.models.markov_vae import MarkovVAE
from bbcodec.training.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-subset" / "cifar10_subset_uint8_nhwc.npz"
MODEL_CONFIG = VAEConfig(hidden_channels=64, latent_channels=8, latent_layers=4, blocks_per_net=2)


def mean_nelbo(model, images, samples: int) -> float:
    """−ELBO in bits per sub-pixel, averaged over images and posterior samples."""
    torch.manual_seed(1234)
    with torch.no_grad():
        return sum(float(model(images)["nelbo"]) for _ in range(samples)) / samples


def measure(model, images, coder: str) -> dict:
    dims = images[0].numel()
    batches = [image[None] for image in images]
    start = time.perf_counter()
    encoded = encode_chain(model, batches, coder, track=True)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decode_chain(model, encoded, [b.shape for b in batches], coder)
    decode_s = time.perf_counter() - start
    failures = sum(not torch.equal(a, b) for a, b in zip(batches, decoded))
    first_nelbo = mean_nelbo(model, images[:1], 16)
    first_bits = encoded.stored_bits_after[0]
    return {
        "coder": coder,
        "images": len(images),
        "failures": failures,
        "bpd_with_initial_bits": encoded.stored_bits / (len(images) * dims),
        "bpd_without_initial_bits": encoded.net_bits / (len(images) * dims),
        "initial_bits": encoded.initial_bits,
        "first_image_bpd": first_bits / dims,
        "first_image_nelbo": first_nelbo,
        "first_image_overhead_bpd": first_bits / dims - first_nelbo,
        "encode_seconds": encode_s,
        "decode_seconds": decode_s,
    }


def get_model(args) -> MarkovVAE:
    if args.model and Path(args.model).exists():
        return load_model(args.model)
    data = load_npz(CIFAR, "train_x")
    held_out = load_npz(CIFAR, "test_x")[500:1000]
    cfg = TrainConfig(steps=args.train_steps, batch_size=32, eval_every=250, checkpoint_every=250, threads=args.threads)
    out_dir = ROOT / "runs" / "core"

    def sample_batch(generator, size):
        return data[torch.randint(len(data), (size,), generator=generator)]

    def report(record):
        if "eval_nelbo" in record:
            print(f"step {record['step']}: held-out -ELBO {record['eval_nelbo']:.3f} bits/dim "
                  f"({record['seconds']:.0f} s)", file=sys.stderr, flush=True)

    model = train(MODEL_CONFIG, cfg, sample_batch, held_out, out_dir, resume=True, progress=report)
    save_model(model, out_dir / "model.safetensors")
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "runs" / "core" / "model.safetensors"))
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--grid", type=float, nargs=2, metavar=("BITS", "BOUND"),
                        default=[VAEConfig.grid_bits, VAEConfig.grid_bound],
                        help="the latent grid to code with (step 2**-BITS over [-BOUND, BOUND]); not a trained setting")
    parser.add_argument("--sweep", default="4:8,5:8,6:8,7:8,8:8,3:4,4:4,5:4,6:4,5:3",
                        help="also code with Bit-Swap on these BITS:BOUND grids, same weights")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "core_rates.json"))
    args = parser.parse_args(argv)
    if not CIFAR.exists():
        print(f"needs {CIFAR} (the shared data sets)", file=sys.stderr)
        return 2
    model = get_model(args).eval()
    model.config = model.config.replace(grid_bits=int(args.grid[0]), grid_bound=args.grid[1])
    images = load_npz(CIFAR, "test_x")[: args.images]
    nelbo = mean_nelbo(model, images, 8)
    float_twin = model_size(MarkovVAE(model.config.replace(binary_weights=False)))
    size = model_size(model)
    results = {
        "model_config": json.loads(model.config.to_json()),
        "nelbo_bpd": nelbo,
        "size": {"parameters": size.parameters, "float32_bytes": size.float32_bytes,
                 "packed_bytes": size.packed_bytes, "float_twin_float32_bytes": float_twin.float32_bytes,
                 "packed_reduction_vs_float_twin": 1 - size.packed_bytes / float_twin.float32_bytes},
        "coders": [measure(model, images, coder) for coder in ("bbans", "bitswap")],
        "torch_threads": torch.get_num_threads(),
    }
    sweep = []
    for pair in args.sweep.split(",") if args.sweep else []:
        bits, bound = pair.split(":")
        model.config = model.config.replace(grid_bits=int(bits), grid_bound=float(bound))
        sweep.append({"grid_bits": int(bits), "grid_bound": float(bound), **measure(model, images, "bitswap")})
    results["bitswap_grid_sweep"] = sweep
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"-ELBO on {len(images)} CIFAR-subset test images: {nelbo:.4f} bits/dim")
    print(f"model: {size.parameters} parameters, float32 {size.float32_bytes / 1e6:.2f} MB, packed "
          f"{size.packed_bytes / 1e6:.3f} MB; float twin {float_twin.float32_bytes / 1e6:.2f} MB "
          f"({100 * results['size']['packed_reduction_vs_float_twin']:.1f}% smaller)")
    header = f"{'coder':8} {'bpd+init':>9} {'bpd-init':>9} {'vs -ELBO':>9} {'1st img':>8} {'1st ovh':>8} {'enc s':>7} {'dec s':>7} fail"
    print(header)
    for r in results["coders"]:
        gap = 100 * (r["bpd_with_initial_bits"] / nelbo - 1)
        print(f"{r['coder']:8} {r['bpd_with_initial_bits']:9.4f} {r['bpd_without_initial_bits']:9.4f} {gap:+8.2f}% "
              f"{r['first_image_bpd']:8.3f} {r['first_image_overhead_bpd']:8.3f} {r['encode_seconds']:7.2f} "
              f"{r['decode_seconds']:7.2f} {r['failures']}")
    print("Bit-Swap with other latent grids (same weights):")
    for r in sweep:
        print(f"  grid 2^-{r['grid_bits']} over +-{r['grid_bound']:g}: {r['bpd_with_initial_bits']:.4f} with initial bits, "
              f"{r['bpd_without_initial_bits']:.4f} without, first image {r['first_image_bpd']:.3f}")
    return 0 if all(r["failures"] == 0 for r in results["coders"] + sweep) else 1


if __name__ == "__main__":
    sys.exit(main())
