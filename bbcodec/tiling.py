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

An image's channels are coded in plane groups (:func:`plane_groups`): the
three colour channels together, every other plane alone, each group cut into
the same tiles. :class:`TileLayout` is the one object that the coder, the
container's work limits, the command line and the benchmark ask for the
groups, the batch schedule, the tile count and the work an image takes.
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


def plane_groups(channels: int) -> list[slice]:
    """Channel groups coded together: RGB as one, every other plane (grey, alpha, palette indices) alone."""
    if channels in (3, 4):
        return [slice(0, 3)] + ([slice(3, 4)] if channels == 4 else [])
    return [slice(c, c + 1) for c in range(channels)]


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


def _batch_count(count: int, max_batch: int) -> tuple[int, int]:
    """(number of batches, largest batch) of :func:`batch_sizes`, without listing them."""
    batches = largest = 0
    size = 1
    while count > 0 and size < max_batch:  # 1, 2, 4, ... below max_batch
        take = min(size, count)
        batches, largest, count, size = batches + 1, max(largest, take), count - take, size * 2
    if count > 0:
        batches += -(-count // max_batch)
        largest = max(largest, min(max_batch, count))
    return batches, largest


@dataclass(frozen=True)
class TileLayout:
    """How an image of ``height`` x ``width`` x ``channels`` is coded in ``tile`` x ``tile`` tiles, batches of
    at most ``max_batch``: everything here follows from these five numbers (a header holds them)."""

    height: int
    width: int
    channels: int
    tile: int
    max_batch: int

    def __post_init__(self):
        if min(self.height, self.width, self.channels, self.max_batch) < 1 or self.tile < 2:
            raise ValueError(f"cannot tile {self.height}x{self.width}x{self.channels} with tile size {self.tile} "
                             f"and batches of {self.max_batch}")

    @property
    def groups(self) -> list[slice]:
        return plane_groups(self.channels)

    def batches(self) -> list[list[Tile]]:
        """The batches of one plane group (every group has the same), in coding order."""
        return plan(self.height, self.width, self.tile, self.max_batch)

    def steps(self):
        """(plane group, batch of tiles) for every network pass, in coding order."""
        batches = self.batches()
        for group in self.groups:
            for batch in batches:
                yield group, batch

    @property
    def tile_count(self) -> int:
        """How many tiles the image is coded as, all plane groups together (for progress bars)."""
        return len(self.groups) * -(-self.height // self.tile) * -(-self.width // self.tile)

    def work(self) -> tuple[int, int]:
        """(network passes, most pixels in one pass), counted from the sizes alone (an image of 2^26 pixels
        has a million 8x8 tiles): exactly what :meth:`steps` yields."""
        full_rows, last_row = divmod(self.height, self.tile)
        full_cols, last_col = divmod(self.width, self.tile)
        tile = self.tile
        shapes = [(tile, tile, full_rows * full_cols), (tile, last_col, full_rows * bool(last_col)),
                  (last_row, tile, bool(last_row) * full_cols), (last_row, last_col, bool(last_row and last_col))]
        passes = pixels = 0
        for tile_height, tile_width, count in shapes:
            if count:
                batches, largest = _batch_count(count, self.max_batch)
                passes += batches
                pixels = max(pixels, tile_height * tile_width * largest)
        return len(self.groups) * passes, pixels
