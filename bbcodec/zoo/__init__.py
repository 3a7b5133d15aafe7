"""Installed codec models: those shipped inside the package and those a user added.

A model is a ``<name>.safetensors`` file (:mod:`bbcodec.models.export`). Files
refer to models by content hash, never by name or position; names are for
people. Listing models and finding one by hash read only the files' framing
and hashes (:mod:`bbcodec.modelfile`), without torch; a model is built (and
fully checked) only when it is loaded. Shipped models load through ``importlib.resources``, so nothing is
ever downloaded. User models live in ``$BBCODEC_MODELS`` (default
``~/.local/share/bbcodec/models``).

Beside the models, ``calibrations.json`` ships calibrations of the pixel
likelihood for some models' weights, by their hash (:func:`calibration_presets`),
which files name by position: a list only ever grows at the end.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bbcodec.errors import BBCodecError
from bbcodec.modelfile import MAX_MODEL_BYTES, identify
from bbcodec.safeio import atomic_write, read_regular

DEFAULT_MODEL = "default"
AUTO_MODEL = "auto"
"""Not a model but a choice among the shipped ones (:func:`choices`), what ``compress`` uses unless told; where one
model is loaded for it (a layout, an archive's one chain), the default."""
AUTO_CHOICES = (DEFAULT_MODEL, "mnist")
"""The shipped models that :data:`AUTO_MODEL` codes a small image with, the smallest file kept: on the first 100
MNIST test digits as files, the default costs 3.70 bits per sub-pixel, the mnist model 2.29 (PNG 2.73; on CIFAR-subset
images the mnist model stores 98 of 100 raw); bench/README.md, "A model chosen for each small image"."""
AUTO_PIXELS = 64 * 64
"""The largest image (in pixels) that :data:`AUTO_MODEL` codes with every model of :data:`AUTO_CHOICES`; a larger one
is coded with the default alone (coding it again would double the time for models made for small images)."""
SUFFIX = ".safetensors"
PRESETS = "calibrations.json"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    hash: str
    location: str
    shipped: bool


def user_model_dir() -> Path:
    return Path(os.environ.get("BBCODEC_MODELS", Path.home() / ".local" / "share" / "bbcodec" / "models"))


def _listing_order(item) -> tuple:
    """The default first, then by name, "mnist" before "mnist-v1"."""
    name = item.name[: -len(SUFFIX)]
    return name != DEFAULT_MODEL, name.split("-")


def _model_files():
    shipped = [item for item in resources.files(__name__).iterdir() if item.name.endswith(SUFFIX) and item.is_file()]
    for item in sorted(shipped, key=_listing_order):
        yield item.name[: -len(SUFFIX)], item, True
    folder = user_model_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*" + SUFFIX)):
            if path.is_file():
                yield path.stem, path, False


@functools.lru_cache(maxsize=32)
def _load_bytes(data: bytes):
    from bbcodec.models.export import model_from_bytes  # torch: only once a model is built

    model, digest = model_from_bytes(data), _identify(data)
    model.calibration_presets = calibration_presets(digest)
    return model, digest


@functools.lru_cache(maxsize=8)
def calibration_presets(digest: str) -> tuple[tuple[int, ...], ...]:
    """The calibrations shipped for the model weights of hash ``digest`` (their stored indices:
    :mod:`bbcodec.coding.calibration`), in the order files name them; () for none."""
    try:
        shipped = json.loads(resources.files(__name__).joinpath(PRESETS).read_text())["presets"]
        return tuple(tuple(preset["indices"]) for preset in shipped.get(digest, ()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BBCodecError(f"the package's {PRESETS} cannot be read ({error}): reinstall bbcodec") from None


@functools.lru_cache(maxsize=64)
def _identify(data: bytes) -> str:
    return identify(data)


def _read(location) -> bytes:
    """A model file's bytes: only a regular file, refused once it is larger than a model can be."""
    if isinstance(location, Path):
        return read_regular(location, MAX_MODEL_BYTES, "model file")
    try:  # a package resource that is not on the file system (a zip)
        return location.read_bytes()
    except OSError as error:
        raise BBCodecError(f"cannot read model file {location}: {error.strerror or error}") from None


def load_bytes(data: bytes):
    """(model, hash) from model file bytes; cached, so a model is built once per process."""
    return _load_bytes(bytes(data))


def installed() -> list[ModelEntry]:
    """Every installed model, shipped first (by its framing and hash: a model is built only to be loaded)."""
    entries = []
    for name, location, shipped in _model_files():
        try:
            digest = _identify(_read(location))
        except BBCodecError:
            continue  # a damaged user model is skipped here; loading it by name reports why
        entries.append(ModelEntry(name, digest, str(location), shipped))
    return entries


def locate(spec: str):
    """The file of a model name or a model file path (a path or a package resource), or None for neither."""
    if spec.endswith(SUFFIX) or "/" in spec or os.sep in spec:
        if not os.path.exists(spec):
            raise BBCodecError(f"model file {spec} not found")
        return Path(spec)  # anything but a regular file is refused when it is read
    return next((location for name, location, _ in _model_files() if name == spec), None)


def choices(spec: str, pixels: int) -> tuple[str, ...]:
    """The models ``compress`` codes an image of ``pixels`` pixels with for the model ``spec``, keeping the smallest
    file: :data:`AUTO_CHOICES` for :data:`AUTO_MODEL` and an image of at most :data:`AUTO_PIXELS` pixels, else the
    one model ``spec`` loads (:func:`load`)."""
    if spec == AUTO_MODEL:
        return AUTO_CHOICES if pixels <= AUTO_PIXELS else (DEFAULT_MODEL,)
    return (spec,)


def load(spec: str = DEFAULT_MODEL):
    """(model, hash) for a model name, a file path, or a (prefix of a) model hash; :data:`AUTO_MODEL`: the
    default."""
    location = locate(DEFAULT_MODEL if spec == AUTO_MODEL else spec)
    if location is not None:
        return load_bytes(_read(location))
    if len(spec) >= 8 and _is_hex(spec):
        try:
            return by_hash(spec)
        except BBCodecError:
            pass
    raise BBCodecError(f"unknown model {spec!r}: no installed model has this name or hash, and it is no "
                       f"{SUFFIX} file (see `bbcodec models`)")


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def by_hash(digest: str):
    """(model, hash) of the installed model whose hash starts with ``digest``."""
    for _, location, _ in _model_files():
        try:
            data = _read(location)
            full = _identify(data)
        except BBCodecError:
            continue
        if full.startswith(digest.lower()):
            return load_bytes(data)
    raise BBCodecError(f"this file needs model {digest[:16]}, which is not installed (see `bbcodec models`)")


def add(path, name: str | None = None) -> ModelEntry:
    """Install a model file for this user (checked by loading it first)."""
    data = _read(Path(path))
    digest = load_bytes(data)[1]
    name = name or Path(path).name.removesuffix(SUFFIX)
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        raise BBCodecError(f"model name {name!r} must be a plain file name")
    if name == AUTO_MODEL or any(entry_name == name for entry_name, _, shipped in _model_files() if shipped):
        raise BBCodecError(f"{name!r} is the name of a shipped model or of auto; choose another with --name")
    folder = user_model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name + SUFFIX)
    if os.path.lexists(target) and _read(target) != data:
        raise BBCodecError(f"a different model named {name!r} is already installed at {target}")
    atomic_write(target, data)  # the bytes checked above, not the file again: it may have changed
    return ModelEntry(name, digest, str(target), False)


def find(name: str) -> ModelEntry:
    """The installed model of this name (BBCodecError if none)."""
    for entry_name, location, shipped in _model_files():
        if entry_name == name:
            return ModelEntry(name, _identify(_read(location)), str(location), shipped)
    raise BBCodecError(f"no model named {name!r} is installed (see `bbcodec models`)")


def remove(name: str) -> ModelEntry:
    """Uninstall a user-added model; shipped models are part of the package and cannot be removed."""
    for entry_name, location, shipped in _model_files():
        if entry_name == name and shipped:
            raise BBCodecError(f"{name!r} is a shipped model, part of the package: only models added with "
                               "`bbcodec models add` can be removed")
        if entry_name == name:
            Path(location).unlink()
            return ModelEntry(name, "", str(location), False)
    raise BBCodecError(f"no model named {name!r} is installed (see `bbcodec models`)")
