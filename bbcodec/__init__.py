"""bbcodec: lossless image compression with binarized hierarchical VAEs and bits-back ANS coding.

The public API (see :mod:`bbcodec.api`)::

    import bbcodec
    data = bbcodec.compress("photo.png")          # .bbc bytes
    image = bbcodec.decompress(data)               # bbcodec.Image, exact pixels
    bbcodec.write_image(image, "restored.png")
    bbcodec.info(data)                             # the header, without decoding

The names are imported on first use (PEP 562), so that a program that needs
only the file format (``bbcodec info``) starts without importing torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "compress": "bbcodec.api", "decompress": "bbcodec.api", "info": "bbcodec.api",
    "CoderSettings": "bbcodec.coding.image",
    "BBCodecError": "bbcodec.errors", "CorruptDataError": "bbcodec.errors", "UnsupportedImageError": "bbcodec.errors",
    "Image": "bbcodec.imageio", "read_image": "bbcodec.imageio", "write_image": "bbcodec.imageio",
    "load_model": "bbcodec.zoo",
}
_RENAMED = {"load_model": "load"}

__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    """A public name on first use; a submodule (``bbcodec.zoo``) likewise."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
