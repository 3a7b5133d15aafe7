"""Training checkpoints: the model, its optimizer state and moving average in one safetensors file.

A checkpoint records the step, the model's family and config and the training
config in its metadata, so that a run resumes with the model it started with
and a checkpoint can be exported mid-run. No pickle: tensors and JSON only.
Written atomically (:func:`bbcodec.safeio.atomic_write`).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from bbcodec.models.family import LEGACY_FAMILY, CodecModel, build, family
from bbcodec.safeio import atomic_write


def save_checkpoint(path: Path, model, optimizer, step: int, train_cfg, ema=None) -> None:
    """Write the run's state at ``step`` to ``path`` (``train_cfg``: the dataclass of the training settings)."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().contiguous() for k, v in ema.state_dict().items()})
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).contiguous()
    metadata = {"step": str(step), "model_family": model.family, "model_config": model.config.to_json(),
                "train_config": json.dumps(asdict(train_cfg))}
    atomic_write(path, save(tensors, metadata=metadata))


def checkpoint_model_config(path: Path):
    """The config of the model a checkpoint holds, of its family (checkpoints before the field: the first)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    return family(metadata.get("model_family", LEGACY_FAMILY)).config_type.from_json(metadata["model_config"])


def model_from_checkpoint(path: Path, **config_changes) -> CodecModel:
    """The model of a training checkpoint, e.g. to export it mid-run.

    ``config_changes`` may change coding settings that training does not fix
    (``grid_bits``, ``grid_bound``); the weights stay as trained (their
    moving average, where the run kept one).
    """
    model = build(checkpoint_model_config(path).replace(**config_changes))
    tensors = load_file(str(path))
    prefix = "ema.module." if any(k.startswith("ema.module.") for k in tensors) else "model."
    model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return model.eval()


def load_checkpoint(path: Path, model, optimizer, ema=None) -> int:
    """Restore model, optimizer (and moving average) from a checkpoint; returns the step to continue from."""
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    if ema is not None:
        ema.load_state_dict({k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")})
    state = optimizer.state_dict()
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state["state"].setdefault(int(index), {})[key] = value
    optimizer.load_state_dict(state)
    return int(metadata["step"])
