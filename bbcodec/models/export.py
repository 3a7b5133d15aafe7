"""Codec model files: one safetensors file with the config and the packed weights.

Binary weights are stored at one bit each (``np.packbits`` of sign(v) >= 0,
big-endian bit order within a byte); every other tensor is float32, or
float16 when the file is written with ``float_storage="float16"`` (half the
size of a float model; loading widens it to float32 exactly, so the model
computes with float32 either way and its hash names the rounded weights). The config
and a format tag sit in the safetensors metadata. A model is identified by
:func:`bbcodec.modelfile.model_hash` (its framing and identity are read there,
without torch), never by a name or a position in a list. Loading uses
safetensors only: nothing is unpickled.

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

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from bbcodec.errors import BBCodecError, shorten
from bbcodec.modelfile import FORMAT, metadata_of, model_hash, read_header
from bbcodec.models.family import LEGACY_FAMILY, CodecModel, family
from bbcodec.nn import BinaryConv2d
from bbcodec.safeio import atomic_write

PACKED_SUFFIX = ".packed_signs"
MAX_PARAMETERS = 1 << 26
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


def model_to_bytes(model: CodecModel, float_storage: str = "float32") -> bytes:
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
    metadata = {"format": FORMAT, "config": model.config.to_json()}
    if model.family != LEGACY_FAMILY:  # files of the first family do not name it, as before the field
        metadata["family"] = model.family
    return st_save(tensors, metadata=metadata)


def model_from_bytes(data: bytes) -> CodecModel:
    """Rebuild a model from :func:`model_to_bytes` output; raises BBCodecError if it is malformed."""
    try:
        header = read_header(data)
        metadata = metadata_of(header)
        cls = family(metadata.get("family", LEGACY_FAMILY))
        config = _config(cls, metadata.get("config"))
        expected = _expected_tensors(cls, config)
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
        with torch.device("meta"):  # no random values to overwrite: the file's tensors become the parameters
            model = cls(config)
        model.load_state_dict(state, assign=True)
    except BBCodecError:
        raise
    except Exception as error:  # safetensors and torch errors from a damaged or hostile file
        raise BBCodecError(f"cannot read model file: {shorten(error, 200)}") from None
    return model.eval()


def _config(cls: type[CodecModel], text):
    """The family's config from a file's metadata, checked by the family before anything is built."""
    if not isinstance(text, str):
        raise BBCodecError("model file: no model config in its metadata")
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError):
        raise BBCodecError("model file: its config is not JSON") from None
    if not isinstance(fields, dict):
        raise BBCodecError("model file: its config is not a JSON object")
    return cls.config_type.from_file(fields)


def _expected_tensors(cls: type[CodecModel], config) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a model with this config, from a skeleton that allocates nothing."""
    with torch.device("meta"):
        skeleton = cls(config)
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
            raise BBCodecError(f"model file: tensor {shorten(name)} is missing")
        if not isinstance(entry, dict) or entry.get("dtype") not in dtypes:
            found = entry.get("dtype") if isinstance(entry, dict) else None
            raise BBCodecError(f"model file: tensor {name} has dtype {shorten(found)}, expected {' or '.join(dtypes)}")
        if not isinstance(entry.get("shape"), list) or tuple(entry["shape"]) != want:
            raise BBCodecError(f"model file: tensor {name} has shape {shorten(entry.get('shape'))}, expected "
                               f"{list(want)}")
    if table:
        raise BBCodecError(f"model file has unexpected tensors: {shorten(sorted(table)[:3])}")


def save_model(model: CodecModel, path, float_storage: str = "float32") -> str:
    """Write ``path`` atomically; returns the model hash."""
    data = model_to_bytes(model, float_storage)
    atomic_write(path, data)
    return model_hash(data)


def load_model(path) -> CodecModel:
    return model_from_bytes(Path(path).read_bytes())
