"""How an image of any size becomes the batches of tiles the model codes.

The plan is a pure function of the image size and the tiling settings, so the
decoder, which knows only the header, rebuilds exactly the encoder's batches:
same tiles, same batch composition, same order (batch composition changes
convolution results in the last bits, so it must match).

Tiles are ``tile`` x ``tile`` pixels, smaller at the right and bottom edges;
tiles of one shape are batched together. The batch sizes grow (1, 2, 4, ...
up to ``max_batch``): the first batch's bits-back pop is paid for by initial
bits, and later batches pop bits that earlier batches have pushed, so a small
first batch keeps the initial-bits overhead small. This works when a tile's
pixels cost more than its first-layer pop (the default model on photos: the
pop is about 0.4 of the pixels' cost); when they cost less (MNIST digits,
whose latents carry more entropy than the digits' own code), every batch
dips further into the seed and the file falls back to storing raw pixels.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    top: int
    left: int
    height: int
    width: int


def tiles(height: int, width: int, tile: int) -> list[Tile]:
    """All tiles in raster order."""
    if height < 1 or width < 1 or tile < 2:
        raise ValueError(f"cannot tile {height}x{width} with tile size {tile}")
    return [Tile(top, left, min(tile, height - top), min(tile, width - left))
            for top in range(0, height, tile) for left in range(0, width, tile)]


def batch_sizes(count: int, max_batch: int) -> list[int]:
    """1, 2, 4, ... capped at ``max_batch``, summing to ``count``."""
    sizes, size = [], 1
    while count > 0:
        take = min(size, max_batch, count)
        sizes.append(take)
        count -= take
        size *= 2
    return sizes


def plan(height: int, width: int, tile: int, max_batch: int) -> list[list[Tile]]:
    """Batches of same-shaped tiles, in coding order."""
    by_shape: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles(height, width, tile):
        by_shape.setdefault((t.height, t.width), []).append(t)
    batches = []
    for group in by_shape.values():
        start = 0
        for size in batch_sizes(len(group), max_batch):
            batches.append(group[start:start + size])
            start += size
    return batches
