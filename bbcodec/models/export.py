"""Codec model files: one safetensors file with the config and the packed weights.

Binary weights are stored at one bit each (``np.packbits`` of sign(v) >= 0,
big-endian bit order within a byte); every other tensor is float32, or
float16 when the file is written with ``float_storage="float16"`` (half the
size of a float model; loading widens it to float32 exactly, so the model
computes with float32 either way and its hash names the rounded weights). The config
and a format tag sit in the safetensors metadata. A model is identified by the
SHA-256 of its file bytes, never by a name or a position in a list. Loading
uses safetensors only: nothing is unpickled.

A model file may come from anyone (``-m FILE``, ``bbcodec models add``), so
:func:`model_from_bytes` trusts nothing in it: the file size, the header
length, the config (every field's type and range, checked before anything is
built), then every tensor's name, dtype and shape against a skeleton of the
model built on PyTorch's ``meta`` device (which allocates nothing), so that a
config that asks for billions of parameters costs nothing; only then are the
weights read, and they must be finite. Every problem is a BBCodecError with
one line.
"""
from __future__ import annotations

import hashlib
import json
import math
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
MAX_MODEL_BYTES = 256 << 20
"""Largest model file read (the ``large`` preset is about 2 MB packed, 17 MB as float32)."""
MAX_PARAMETERS = 1 << 26
CONFIG_LIMITS = {"image_channels": (1, 4), "hidden_channels": (1, 1024), "latent_channels": (1, 256),
                 "latent_layers": (1, 16), "stride": (1, 8), "blocks_per_net": (0, 16), "head_kernel_size": (1, 7),
                 "grid_bits": (0, 12)}
"""Allowed ranges of the integer config fields of a model file (generous: the presets are far inside)."""
MAX_GRID_POINTS = 1 << 16
FILE_CONFIG_DEFAULTS = {
    "image_channels": 3, "hidden_channels": 64, "latent_channels": 8, "latent_layers": 4, "stride": 2,
    "blocks_per_net": 2, "head_kernel_size": 1, "binary_weights": True, "binary_activations": False,
    "pixel_distribution": "logistic", "channel_coupling": False, "min_std": 0.02, "grid_bits": 5, "grid_bound": 4.0,
}
"""What a config field missing from a model file means, fixed for this format (VAEConfig's defaults may change)."""
FLOAT_STORAGE = {"float32": (np.float32, "F32"), "float16": (np.float16, "F16")}
"""How the non-binary tensors of a model file may be stored: numpy dtype and safetensors dtype tag."""


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


def model_to_bytes(model: MarkovVAE, float_storage: str = "float32") -> bytes:
    """Serialize a model: config in the metadata, binary weights packed, other tensors as ``float_storage``."""
    if float_storage not in FLOAT_STORAGE:
        raise BBCodecError(f"float storage {float_storage!r} is not one of {', '.join(FLOAT_STORAGE)}")
    dtype = FLOAT_STORAGE[float_storage][0]
    binary = _binary_weight_names(model)
    tensors = {}
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().numpy()
        if name in binary:
            tensors[name + PACKED_SUFFIX] = np.packbits((array >= 0).reshape(-1))
        else:
            with np.errstate(over="ignore"):  # an overflow becomes inf, refused below
                tensors[name] = np.ascontiguousarray(array, dtype=dtype)
            if not np.isfinite(tensors[name]).all():
                raise BBCodecError(f"{name} holds weights that {float_storage} cannot store")
    return st_save(tensors, metadata={"format": FORMAT, "config": model.config.to_json()})


def model_from_bytes(data: bytes) -> MarkovVAE:
    """Rebuild a model from :func:`model_to_bytes` output; raises BBCodecError if it is malformed."""
    try:
        header = _read_header(data)
        metadata = _metadata(header)
        if metadata.get("format") != FORMAT:
            raise BBCodecError(f"not a bbcodec model file (format {_short(metadata.get('format'))})")
        config = check_config(metadata.get("config"))
        expected = _expected_tensors(config)
        _check_tensor_table(header, expected)
        tensors = st_load(data)
        state = {}
        for name, shape in expected.items():
            if name + PACKED_SUFFIX in tensors:
                bits = np.unpackbits(tensors.pop(name + PACKED_SUFFIX))[: math.prod(shape)]
                value = np.where(bits.reshape(shape) == 1, 1.0, -1.0).astype(np.float32)
            else:
                value = tensors.pop(name)
                if not np.isfinite(value).all():
                    raise BBCodecError(f"model file: {name} holds NaN or infinite weights")
            state[name] = torch.from_numpy(np.array(value, dtype=np.float32))
        model = MarkovVAE(config)
        model.load_state_dict(state)
    except BBCodecError:
        raise
    except Exception as error:  # safetensors and torch errors from a damaged or hostile file
        raise BBCodecError(f"cannot read model file: {_short(error, 200)}") from None
    return model.eval()


def _short(value, limit: int = 60) -> str:
    text = " ".join(repr(value).split()) if not isinstance(value, BaseException) else " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _read_header(data: bytes) -> dict:
    """The safetensors header (JSON) of a model file, after checks on the file's size and framing."""
    if len(data) > MAX_MODEL_BYTES:
        raise BBCodecError(f"model file too large ({len(data)} bytes, the limit is {MAX_MODEL_BYTES})")
    if len(data) < 8:
        raise BBCodecError("not a model file (too short)")
    header_length = int.from_bytes(data[:8], "little")
    if header_length > len(data) - 8:
        raise BBCodecError("not a safetensors model file (its header length is past the end of the file)")
    try:
        header = json.loads(data[8 : 8 + header_length])
    except (ValueError, RecursionError):
        raise BBCodecError("not a safetensors model file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise BBCodecError("not a safetensors model file (its header is not a JSON object)")
    return header


def _metadata(header: dict) -> dict:
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict):
        raise BBCodecError("model file: its metadata is not a JSON object")
    return metadata


def _read_metadata(data: bytes) -> dict:
    return _metadata(_read_header(data))


def check_config(text) -> VAEConfig:
    """The model config from a file's metadata, every field checked for type and range before use."""
    if not isinstance(text, str):
        raise BBCodecError("model file: no model config in its metadata")
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError):
        raise BBCodecError("model file: its config is not JSON") from None
    if not isinstance(fields, dict):
        raise BBCodecError("model file: its config is not a JSON object")
    fields = {**FILE_CONFIG_DEFAULTS, **fields}
    for name, (low, high) in CONFIG_LIMITS.items():
        value = fields[name]
        if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
            raise BBCodecError(f"model file: config {name} = {_short(value)}, expected an integer in {low}..{high}")
    for name in ("min_std", "grid_bound"):
        value = fields[name]
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                and 0 < value <= 64):
            raise BBCodecError(f"model file: config {name} = {_short(value)}, expected a number in (0, 64]")
    for name in ("binary_weights", "binary_activations", "channel_coupling"):
        if not isinstance(fields[name], bool):
            raise BBCodecError(f"model file: config {name} = {_short(fields[name])}, expected true or false")
    if not isinstance(fields["pixel_distribution"], str):
        raise BBCodecError("model file: config pixel_distribution is not a name")
    try:
        config = VAEConfig.from_json(json.dumps(fields))
    except (ValueError, TypeError) as error:
        raise BBCodecError(f"model file: bad config ({_short(error, 120)})") from None
    if 2 * config.grid_bound * 2 ** config.grid_bits + 1 > MAX_GRID_POINTS:
        raise BBCodecError(f"model file: a latent grid of more than {MAX_GRID_POINTS} points")
    return config


def _expected_tensors(config: VAEConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a model with this config, from a skeleton that allocates nothing."""
    with torch.device("meta"):
        skeleton = MarkovVAE(config)
    shapes = {name: tuple(tensor.shape) for name, tensor in skeleton.state_dict().items()}
    if sum(math.prod(shape) for shape in shapes.values()) > MAX_PARAMETERS:
        raise BBCodecError(f"model file: its config asks for more than {MAX_PARAMETERS} parameters")
    return shapes


def _check_tensor_table(header: dict, expected: dict[str, tuple[int, ...]]) -> None:
    """Every tensor the model needs, with the dtype and shape it needs, and no other (before reading any)."""
    table = {name: entry for name, entry in header.items() if name != "__metadata__"}
    for name, shape in expected.items():
        packed = name + PACKED_SUFFIX
        if packed in table:
            name, dtypes, want = packed, ("U8",), ((math.prod(shape) + 7) // 8,)
        else:
            dtypes, want = tuple(tag for _, tag in FLOAT_STORAGE.values()), shape
        entry = table.pop(name, None)
        if entry is None:
            raise BBCodecError(f"model file: tensor {_short(name)} is missing")
        if not isinstance(entry, dict) or entry.get("dtype") not in dtypes:
            found = entry.get("dtype") if isinstance(entry, dict) else None
            raise BBCodecError(f"model file: tensor {name} has dtype {_short(found)}, expected {' or '.join(dtypes)}")
        if not isinstance(entry.get("shape"), list) or tuple(entry["shape"]) != want:
            raise BBCodecError(f"model file: tensor {name} has shape {_short(entry.get('shape'))}, expected "
                               f"{list(want)}")
    if table:
        raise BBCodecError(f"model file has unexpected tensors: {_short(sorted(table)[:3])}")


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


def save_model(model: MarkovVAE, path, float_storage: str = "float32") -> str:
    """Write ``path`` atomically; returns the model hash."""
    data = model_to_bytes(model, float_storage)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return model_hash(data)


def load_model(path) -> MarkovVAE:
    return model_from_bytes(Path(path).read_bytes())
