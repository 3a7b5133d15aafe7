"""Training a codec model: a loop that reads top to bottom (in the spirit of nanoGPT).

Adam with an exponentially decaying learning rate, free bits (Kingma et al.
2016) so that no latent layer collapses early, gradient-norm clipping, and,
for binary weight-normalized layers, clipping of the real-valued weights to
[-1, 1] after each step (Bird, Kingma & Barber 2021). The held-out −ELBO in
bits per sub-pixel is measured at intervals. With ``ema_decay`` an
exponential moving average of the weights (PyTorch's ``AveragedModel``) is
kept, evaluated beside the raw weights and returned as the trained model.
Checkpoints (:mod:`bbcodec.training.checkpoints`) are safetensors files (no
pickle) written atomically, and ``resume`` continues from one.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bbcodec.errors import BBCodecError
from bbcodec.models.family import CodecModel, build
from bbcodec.training.checkpoints import checkpoint_model_config, load_checkpoint, save_checkpoint
from bbcodec.nn import BinaryConv2d


@dataclass
class TrainConfig:
    steps: int = 10_000
    batch_size: int = 32
    lr: float = 2e-3
    final_lr_fraction: float = 0.05   # the learning rate decays exponentially to lr * this
    warmup_steps: int = 200
    free_bits: float = 0.05            # bits per latent dimension, per layer
    grad_clip: float = 100.0
    eval_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0
    threads: int = 0                   # 0: torch's default
    ema_decay: float = 0.0             # 0: no moving average of the weights
    device: str = "cpu"                # "cuda": each torchrun process on its own GPU (cuda:LOCAL_RANK)


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps`` (at most a tenth of a short run), then exponential decay."""
    warmup_steps = max(1, min(cfg.warmup_steps, cfg.steps // 10))
    warmup = min(1.0, (step + 1) / warmup_steps)
    return cfg.lr * warmup * cfg.final_lr_fraction ** (step / max(1, cfg.steps))


@torch.no_grad()
def evaluate(model: CodecModel, images: torch.Tensor, batch_size: int = 100) -> float:
    """Mean −ELBO in bits per sub-pixel over ``images`` (one posterior sample each)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        total += float(model(batch)["nelbo"]) * len(batch)
    model.train(was_training)
    return total / len(images)


def _clip_binary_weights(model) -> None:
    for module in model.modules():
        if isinstance(module, BinaryConv2d):
            module.clip_()


def _check_run_folder(out_dir: Path, checkpoint: Path, resume: bool) -> None:
    """A new run never appends to another's log or overwrites its checkpoint; a resumed one needs its checkpoint."""
    if resume and not checkpoint.exists():
        raise BBCodecError(f"{out_dir}: no checkpoint to resume (start a new run without --resume)")
    if not resume and (checkpoint.exists() or (out_dir / "log.jsonl").exists()):
        raise BBCodecError(f"{out_dir} holds a run already: --resume continues it, or choose another --out")


def _step_seed(cfg: TrainConfig, rank: int, step: int) -> int:
    """Every (run seed, process, step) draws its own batch and noise, so a resumed run
    needs no random state from the checkpoint and continues exactly."""
    return (cfg.seed * 1_000_003 + rank * 100_003 + step) % (2**63)


def is_main_process() -> bool:
    """False in the ranks > 0 of a torchrun job: they neither log nor write files."""
    return int(os.environ.get("RANK", "0")) == 0


def _start_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, this process's device); under torchrun, joins the process group (NCCL for CUDA
    training, gloo on the CPU) and takes the GPU of its local rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        placed = torch.device("cuda", local)
    else:
        placed = torch.device(device)
    return (dist.get_rank() if world > 1 else 0), world, placed


def train(
    model_cfg,
    cfg: TrainConfig,
    sample_batch: Callable[[torch.Generator, int], torch.Tensor],
    held_out: torch.Tensor,
    out_dir,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
    init_from: CodecModel | None = None,
    about: dict | None = None,
) -> CodecModel:
    """Train a model of ``model_cfg``'s family on batches from ``sample_batch(generator, size)``; logs and
    checkpoints in ``out_dir``.

    ``init_from`` starts a new run (step 0, fresh optimizer) from a model's
    weights. A new run needs an ``out_dir`` without a run in it; ``resume``
    needs its checkpoint. ``about`` (the data, the held-out split) opens the
    log of each start as a ``{"run": ...}`` line. Under ``torchrun`` each process trains on its own batches and
    DistributedDataParallel averages the gradients; rank 0 alone evaluates,
    logs and writes checkpoints.
    """
    rank, world, device = _start_distributed(cfg.device)
    out_dir = Path(out_dir)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator()
    checkpoint = out_dir / "checkpoint.safetensors"
    _check_run_folder(out_dir, checkpoint, resume)
    if resume:  # the run continues with the model it started with, whatever the preset says now
        model_cfg = checkpoint_model_config(checkpoint)
    elif init_from is not None:  # a new run that starts from these weights (and their config)
        model_cfg = init_from.config
    model = build(model_cfg)
    if init_from is not None and not resume:
        model.load_state_dict(init_from.state_dict())
    model.to(device)
    held_out = held_out.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay)) if cfg.ema_decay else None
    start = load_checkpoint(checkpoint, model, optimizer, ema) if resume else 0
    step_model = DistributedDataParallel(model) if world > 1 else model
    log = (out_dir / "log.jsonl").open("a") if rank == 0 else None
    if log and about is not None:
        log.write(json.dumps({"run": {**about, "starts_at_step": start}}) + "\n")
    model.train()
    began = time.time()
    for step in range(start, cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        generator.manual_seed(_step_seed(cfg, rank, step))
        torch.manual_seed(_step_seed(cfg, rank, step))
        out = step_model(sample_batch(generator, cfg.batch_size).to(device), free_bits=cfg.free_bits)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        if math.isfinite(grad_norm):
            optimizer.step()
            _clip_binary_weights(model)
            if ema is not None:
                ema.update_parameters(model)
        if rank != 0:
            continue
        record = {"step": step + 1, "train_nelbo": float(out["nelbo"].detach()), "lr": group["lr"],
                  "grad_norm": grad_norm, "seconds": round(time.time() - began, 1)}
        last = step + 1 == cfg.steps
        if (step + 1) % cfg.eval_every == 0 or last:
            record["eval_nelbo"] = evaluate(model, held_out)
            if ema is not None:
                record["eval_nelbo_ema"] = evaluate(ema.module, held_out)
            if "kl" in out:  # per-layer KL, where the family reports it
                record["kl"] = [round(float(k), 4) for k in out["kl"].detach()]
        if (step + 1) % cfg.checkpoint_every == 0 or last:
            save_checkpoint(checkpoint, model, optimizer, step + 1, cfg, ema)
        if "eval_nelbo" in record or (step + 1) % 50 == 0:
            log.write(json.dumps(record) + "\n")
            log.flush()
        if progress:
            progress(record)
    if log:
        log.close()
    return (ema.module if ema is not None else model).eval()
