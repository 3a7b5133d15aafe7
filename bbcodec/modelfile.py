"""The codec model file format, as far as it can be read without torch: framing, metadata and identity.

A model file is a safetensors file whose metadata holds a format tag
(:data:`FORMAT`), the model's config and, for families other than the first,
the family's name. A model is identified by :func:`model_hash`, the SHA-256
of its canonical content, never by a name or a position in a list. Building
a model from a file, with every tensor checked against its config, is
:mod:`bbcodec.models.export`; this module is what listing installed models
(``bbcodec models``) needs, so that it starts without importing torch.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from bbcodec.errors import BBCodecError, shorten

FORMAT = "bbcodec-model-1"
MAX_MODEL_BYTES = 256 << 20
"""Largest model file read (the ``large`` preset is about 2 MB packed, 17 MB as float32)."""


def read_header(data: bytes) -> dict:
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


def metadata_of(header: dict) -> dict:
    """The metadata of a model file's safetensors header, with the bbcodec format tag checked."""
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict):
        raise BBCodecError("model file: its metadata is not a JSON object")
    if "format" not in metadata:
        raise BBCodecError("not a bbcodec model file (no format tag; a training checkpoint becomes a model file "
                           "with `bbcodec export CHECKPOINT -o MODEL.safetensors`)")
    if metadata.get("format") != FORMAT:
        raise BBCodecError(f"not a bbcodec model file (format {shorten(metadata.get('format'))})")
    return metadata


def model_hash(data: bytes) -> str:
    """The model's identity: SHA-256 (hex) of its canonical content.

    The content is the format, the config (and the family, for families other
    than the first, whose files do not name it) and every tensor's name,
    dtype, shape and bytes in name order. It does not depend on how the
    safetensors header happens to be laid out (its key order is not fixed),
    only on what the decoder will compute with.
    """
    from safetensors.numpy import load as st_load

    metadata = read_header(data).get("__metadata__", {})
    digest = hashlib.sha256()
    named = [metadata.get("format"), metadata.get("config")]
    if "family" in metadata:
        named.append(metadata["family"])
    digest.update(json.dumps(named).encode())
    for name, array in sorted(st_load(data).items()):
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def identify(data: bytes) -> str:
    """The hash of a model file whose framing, format tag and tensors read (BBCodecError with one line if
    not), without building the model: what a listing checks. Loading checks the rest."""
    metadata_of(read_header(data))
    try:
        return model_hash(data)
    except Exception as error:  # safetensors errors from a damaged file
        raise BBCodecError(f"cannot read model file: {shorten(error, 200)}") from None
