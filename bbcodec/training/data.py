"""Training and measurement data: CIFAR-style .npz arrays, MNIST idx files, folders of images, generated images.

Every loader returns uint8 tensors shaped (N, C, H, W). Nothing is downloaded:
the caller names files that are already on disk, or ``synthetic:N`` for N
generated images (:mod:`bbcodec.training.synthetic`).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bbcodec.training.synthetic import synthetic_images

IMAGE_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".jpg", ".jpeg", ".webp", ".gif"}


def read_npz(path, key: str | None = None, preferred: str = "train_x") -> np.ndarray:
    """uint8 images (N, H, W, C), C in 1, 3, 4, from an .npz file (an array (N, H, W) gets C = 1).

    The array is ``key``; without one, ``preferred`` if the file has it, else
    the file's only array. Anything else is a ValueError that names the arrays.
    """
    with np.load(path) as archive:
        names = list(archive.keys())
        if key is None:
            key = preferred if preferred in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise ValueError(f"{path} holds {', '.join(names)}: say which array (--npz-key)")
        if key not in names:
            raise ValueError(f"{path} has no array {key!r} (it has {', '.join(names)})")
        array = archive[key]
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: {key} holds {array.dtype}, expected uint8 images")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[3] not in (1, 3, 4):
        raise ValueError(f"{path}: expected images (N, H, W) or (N, H, W, C) with C 1, 3 or 4, got {array.shape}")
    return array


def load_npz(path, key: str | None = None, preferred: str = "train_x") -> torch.Tensor:
    """:func:`read_npz` as a (N, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(read_npz(path, key, preferred).transpose(0, 3, 1, 2)))


def load_mnist_images(path) -> torch.Tensor:
    """MNIST idx3 image file (optionally gzipped) as (N, 1, 28, 28) uint8."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if int.from_bytes(raw[:4], "big") != 0x00000803:
        raise ValueError(f"{path} is not an idx3 (uint8 images) file")
    count, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    pixels = np.frombuffer(raw, dtype=np.uint8, count=count * rows * cols, offset=16)
    return torch.from_numpy(pixels.reshape(count, 1, rows, cols).copy())


def image_files(folder) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_image(path, channels: int = 3) -> torch.Tensor:
    """One image file as (C, H, W) uint8, converted to RGB (3) or greyscale (1) for training."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB" if channels == 3 else "L"))
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def random_crops(images: list[torch.Tensor], count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random size x size crops from a list of (C, H, W) images, as one batch."""
    crops = []
    picks = torch.randint(len(images), (count,), generator=generator).tolist()
    for index in picks:
        image = images[index]
        _, height, width = image.shape
        top = int(torch.randint(height - size + 1, (1,), generator=generator))
        left = int(torch.randint(width - size + 1, (1,), generator=generator))
        crops.append(image[:, top : top + size, left : left + size])
    return torch.stack(crops)


class CropSource:
    """Random crops (or whole images, when they are the crop size) from a set of images of any sizes."""

    def __init__(self, images: list[torch.Tensor], name: str):
        self.images, self.name = images, name
        self._usable: dict[int, list[torch.Tensor]] = {}  # crop size -> images that large, found once

    def sample(self, generator: torch.Generator, count: int, size: int) -> torch.Tensor:
        if size not in self._usable:
            self._usable[size] = [im for im in self.images if im.shape[1] >= size and im.shape[2] >= size]
        if not self._usable[size]:
            raise ValueError(f"{self.name}: no image is at least {size}x{size}")
        return random_crops(self._usable[size], count, size, generator)


HELD_OUT_EVERY = 20
"""By default every 20th image of each training source is held out for evaluation."""


def split_held_out(sources: list[CropSource], every: int = HELD_OUT_EVERY) -> tuple[list[CropSource], list[CropSource]]:
    """(training sources, held-out sources): of each source, every ``every``-th image is held out (a source of
    2 to ``every`` images holds out its last one, a single image none), so no held-out image is trained on."""
    training, held_out = [], []
    for source in sources:
        count = len(source.images)
        held = {i for i in range(count) if i % every == every - 1} or ({count - 1} if count > 1 else set())
        training.append(CropSource([im for i, im in enumerate(source.images) if i not in held], source.name))
        if held:
            held_out.append(CropSource([source.images[i] for i in sorted(held)], f"{source.name} (held out)"))
    return training, held_out


def open_sources(specs, channels: int = 3) -> list[CropSource]:
    """Training sources; single image files given together form one source."""
    files = [s for s in specs if Path(s).suffix.lower() in IMAGE_SUFFIXES]
    sources = [open_source(s, channels) for s in specs if s not in files]
    if files:
        sources.append(CropSource([load_image(f, channels) for f in files], f"{len(files)} image files"))
    return sources


SYNTHETIC = "synthetic:"
"""``synthetic:N`` names N generated training images."""


def open_source(spec: str, channels: int = 3, npz_key: str | None = None) -> CropSource:
    """A training source from a folder of images, an .npz array file, an MNIST idx file or ``synthetic:N``."""
    path = Path(spec)
    if spec.startswith(SYNTHETIC) and not path.exists():
        images = _match_channels(torch.stack(synthetic_images(_synthetic_count(spec))), channels)
        return CropSource(list(images), spec)
    if path.is_dir():
        images = [load_image(p, channels) for p in image_files(path)]
    elif path.suffix == ".npz":
        images = list(_match_channels(load_npz(path, npz_key), channels))
    elif "idx3" in path.name:
        images = list(_match_channels(load_mnist_images(path), channels))
    else:
        raise ValueError(f"{spec}: expected a folder of images, an .npz file or an MNIST idx3 file")
    if not images:
        raise ValueError(f"{spec}: no images found")
    return CropSource(images, str(spec))


def _synthetic_count(spec: str) -> int:
    count = spec[len(SYNTHETIC):]
    if not count.isdigit() or not 1 <= int(count) <= 100_000:
        raise ValueError(f"{spec}: expected synthetic:N with N from 1 to 100000 generated images")
    return int(count)


def _match_channels(batch: torch.Tensor, channels: int) -> torch.Tensor:
    if batch.shape[1] == channels:
        return batch
    if batch.shape[1] == 1 and channels == 3:
        return batch.expand(-1, 3, -1, -1).contiguous()
    raise ValueError(f"cannot train a {channels}-channel model on {batch.shape[1]}-channel images")


def mixed_batch(sources: list[CropSource], generator: torch.Generator, count: int, size: int) -> torch.Tensor:
    """A batch drawn evenly from every source."""
    shares = [count // len(sources) + (i < count % len(sources)) for i in range(len(sources))]
    return torch.cat([s.sample(generator, n, size) for s, n in zip(sources, shares) if n])
