"""Training and measurement data: CIFAR-style .npz arrays, MNIST idx files, folders of images.

Every loader returns uint8 tensors shaped (N, C, H, W). Nothing is downloaded:
the caller names files that are already on disk.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".jpg", ".jpeg", ".webp", ".gif"}


def load_npz(path, key: str) -> torch.Tensor:
    """A uint8 array (N, H, W, C) or (N, H, W) from an .npz file, as (N, C, H, W)."""
    with np.load(path) as archive:
        array = archive[key]
    if array.dtype != np.uint8:
        raise ValueError(f"{path}:{key} holds {array.dtype}, expected uint8 images")
    if array.ndim == 3:
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


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
