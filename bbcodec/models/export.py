"""Codec model files: one safetensors file with the config and the packed weights.

Binary weights are stored at one bit each (``np.packbits`` of sign(v) >= 0,
big-endian bit order within a byte); every other tensor is float32. The config
and a format tag sit in the safetensors metadata. A model is identified by the
SHA-256 of its file bytes, never by a name or a position in a list. Loading
uses safetensors only: nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from bbcodec.errors import BBCodecError
from bbcodec.models.config import VAEConfig
from bbcodec.models.markov_vae import MarkovVAE
from bbcodec.nn import BinaryConv2d

FORMAT = "bbcodec-model-1"
PACKED_SUFFIX = ".packed_signs"


@dataclass(frozen=True)
class ModelSize:
    parameters: int
    binary_parameters: int

    @property
    def float32_bytes(self) -> int:
        """Size with every parameter stored as float32."""
        return 4 * self.parameters

    @property
    def packed_bytes(self) -> int:
        """Size with binary weights at one bit each and the rest as float32."""
        return (self.binary_parameters + 7) // 8 + 4 * (self.parameters - self.binary_parameters)


def _binary_weight_names(model) -> set[str]:
    return {f"{name}.v" for name, module in model.named_modules() if isinstance(module, BinaryConv2d)}


def model_size(model) -> ModelSize:
    binary = _binary_weight_names(model)
    params = dict(model.named_parameters())
    return ModelSize(
        parameters=sum(p.numel() for p in params.values()),
        binary_parameters=sum(params[n].numel() for n in binary),
    )


def model_to_bytes(model: MarkovVAE) -> bytes:
    """Serialize a model: config in the metadata, binary weights packed."""
    binary = _binary_weight_names(model)
    tensors = {}
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().numpy()
        if name in binary:
            tensors[name + PACKED_SUFFIX] = np.packbits((array >= 0).reshape(-1))
        else:
            tensors[name] = np.ascontiguousarray(array, dtype=np.float32)
    return st_save(tensors, metadata={"format": FORMAT, "config": model.config.to_json()})


def model_from_bytes(data: bytes) -> MarkovVAE:
    """Rebuild a model from :func:`model_to_bytes` output; raises BBCodecError if it is malformed."""
    try:
        metadata = _read_metadata(data)
        if metadata.get("format") != FORMAT:
            raise BBCodecError(f"not a bbcodec model file (format {metadata.get('format')!r})")
        model = MarkovVAE(VAEConfig.from_json(metadata["config"]))
        tensors = st_load(data)
        state = {}
        for name, reference in model.state_dict().items():
            if name + PACKED_SUFFIX in tensors:
                bits = np.unpackbits(tensors.pop(name + PACKED_SUFFIX))[: reference.numel()]
                value = np.where(bits.reshape(reference.shape) == 1, 1.0, -1.0).astype(np.float32)
            else:
                value = tensors.pop(name)
            if tuple(value.shape) != tuple(reference.shape):
                raise BBCodecError(f"model file: {name} has shape {value.shape}, expected {tuple(reference.shape)}")
            state[name] = torch.from_numpy(np.array(value, dtype=np.float32))
        if tensors:
            raise BBCodecError(f"model file has unexpected tensors: {sorted(tensors)[:3]}")
        model.load_state_dict(state)
    except BBCodecError:
        raise
    except Exception as error:  # safetensors, JSON and shape errors from a damaged or hostile file
        raise BBCodecError(f"cannot read model file: {error}") from None
    return model.eval()


def _read_metadata(data: bytes) -> dict:
    if len(data) < 8:
        raise BBCodecError("model file is too short")
    header_length = int.from_bytes(data[:8], "little")
    if header_length > len(data) - 8:
        raise BBCodecError("model file header is truncated")
    return json.loads(data[8 : 8 + header_length]).get("__metadata__", {})


def model_hash(data: bytes) -> str:
    """The model's identity: SHA-256 (hex) of its canonical content.

    The content is the format, the config and every tensor's name, dtype, shape
    and bytes in name order. It does not depend on how the safetensors header
    happens to be laid out (its key order is not fixed), only on what the
    decoder will compute with.
    """
    metadata = _read_metadata(data)
    digest = hashlib.sha256()
    digest.update(json.dumps([metadata.get("format"), metadata.get("config")]).encode())
    for name, array in sorted(st_load(data).items()):
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def save_model(model: MarkovVAE, path) -> str:
    """Write ``path`` atomically; returns the model hash."""
    data = model_to_bytes(model)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return model_hash(data)


def load_model(path) -> MarkovVAE:
    return model_from_bytes(Path(path).read_bytes())
