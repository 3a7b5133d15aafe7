"""Samples of a codec model, tiled into one picture: a look at what a model has learned.

A model's generative side draws images (:meth:`CodecModel.sample
<bbcodec.models.family.CodecModel.sample>`); :func:`sample_grid` lays
``rows`` x ``columns`` of them out as an RGB array, cells apart by a white
border, for ``bbcodec sample`` to write as a PNG. One seed gives the same
grid every time.
"""
from __future__ import annotations

import numpy as np
import torch

BORDER = 2
"""Pixels of white between neighbouring cells of a grid."""
WHITE = 255


def sample_grid(model, rows: int, columns: int, size: int, seed: int = 0) -> np.ndarray:
    """``rows`` x ``columns`` samples of ``model``, each ``size`` x ``size`` pixels, tiled with a white border of
    :data:`BORDER` pixels between cells: a uint8 (H, W, 3) array.

    The rows are drawn one after another from one generator seeded with ``seed`` (a batch of ``columns``
    images at a time, to bound the memory a large grid takes). A model of three or more channels shows its
    first three as RGB, one of fewer its first as grey. ``size`` must be a multiple of the model's stride
    (ValueError, as :meth:`CodecModel.sample` says).
    """
    if rows < 1 or columns < 1:
        raise ValueError(f"a grid of {rows}x{columns} cells: rows and columns must be positive")
    generator = torch.Generator().manual_seed(seed)
    samples = [model.sample(columns, size, size, generator).cpu().numpy() for _ in range(rows)]
    return tile(as_rgb(np.concatenate(samples)), rows, columns)


def as_rgb(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) uint8 planes as (N, H, W, 3): the first three channels, or the first one as grey."""
    planes = images[:, :3] if images.shape[1] >= 3 else np.repeat(images[:, :1], 3, axis=1)
    return planes.transpose(0, 2, 3, 1)


def tile(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """(rows * columns, h, w, 3) images, row by row, as one (H, W, 3) picture with white borders between."""
    _, height, width, channels = images.shape
    step_y, step_x = height + BORDER, width + BORDER
    grid = np.full((rows * step_y - BORDER, columns * step_x - BORDER, channels), WHITE, dtype=np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * step_y:row * step_y + height, column * step_x:column * step_x + width] = image
    return grid
