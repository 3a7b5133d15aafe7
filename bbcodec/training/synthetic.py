"""Generated images of what people compress besides photos: flat areas, gradients, text, charts, screens.

A photo-trained model has never seen a pixel-exact edge, a flat area of one
colour or anti-aliased text, and those are where PNG and WebP are strongest.
:func:`synthetic_image` draws one such image from a seed, deterministically
(numpy's PCG64 and Pillow's drawing, no files, nothing downloaded), so a
training run names its data as ``synthetic:N`` (:func:`synthetic_source`:
N images of seeds from :data:`TRAINING_SEEDS` on) and a measurement set is
written once with other seeds (``bench/make_synthetic_set.py``), never
trained on.

Each image is one of :data:`KINDS`, drawn in a random palette; a quarter of
them are turned grey (three equal channels, as a greyscale file enters a
three-channel model).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

TRAINING_SEEDS = 1_000_000
"""Training images use seeds from here on; measurement sets use seeds below it."""
SIZE = 192
"""Side of a generated image (training crops are taken from it)."""
WORDS = ("the", "bits", "back", "archive", "image", "lossless", "codec", "2026", "file", "pixel", "model", "rate",
         "0.125", "Total", "Name", "OK", "Cancel", "x", "=", "+", "#", "(", ")", "data", "PNG", "WebP", "42")


def _colour(rng: np.random.Generator, palette: np.ndarray) -> tuple[int, ...]:
    return tuple(int(c) for c in palette[rng.integers(len(palette))])


def _font(rng: np.random.Generator, low: int = 8, high: int = 28) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=int(rng.integers(low, high)))


def _text(rng: np.random.Generator, words: int) -> str:
    return " ".join(WORDS[i] for i in rng.integers(len(WORDS), size=words))


def _flat(draw: ImageDraw.ImageDraw, rng, palette, size: int) -> None:
    """Overlapping rectangles, ellipses and polygons of single colours."""
    for _ in range(rng.integers(3, 14)):
        box = np.sort(rng.integers(-size // 4, size + size // 4, (2, 2)), 0)  # rows: top-left, bottom-right
        shape = ((int(box[0, 0]), int(box[0, 1])), (int(box[1, 0]) + 1, int(box[1, 1]) + 1))
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle(shape, fill=_colour(rng, palette))
        elif kind == 1:
            draw.ellipse(shape, fill=_colour(rng, palette))
        else:
            draw.polygon([tuple(p) for p in rng.integers(0, size, (3, 2)).tolist()], fill=_colour(rng, palette))


def _text_page(draw, rng, palette, size: int) -> None:
    """Lines of text in one font on a plain page, as a document or a terminal."""
    font = _font(rng)
    ink = _colour(rng, palette)
    line = font.size + int(rng.integers(1, 6))
    for top in range(int(rng.integers(0, line)), size, line):
        draw.text((int(rng.integers(0, 12)), top), _text(rng, int(rng.integers(2, 10))), fill=ink, font=font)


def _chart(draw, rng, palette, size: int) -> None:
    """Axes, grid lines, bars or polylines and labels."""
    margin = int(rng.integers(14, 40))
    grid = _colour(rng, palette)
    for x in range(margin, size, int(rng.integers(12, 40))):
        draw.line((x, 0, x, size - margin), fill=grid)
    draw.line((margin, 0, margin, size - margin), fill=(0, 0, 0), width=int(rng.integers(1, 3)))
    draw.line((margin, size - margin, size, size - margin), fill=(0, 0, 0), width=int(rng.integers(1, 3)))
    for _ in range(rng.integers(1, 4)):
        xs = np.linspace(margin, size, int(rng.integers(4, 20)))
        ys = np.clip(size - margin - np.cumsum(rng.normal(0, 12, len(xs))) - size / 3, 0, size - margin)
        if rng.random() < 0.5:
            draw.line(list(zip(xs.tolist(), ys.tolist())), fill=_colour(rng, palette), width=int(rng.integers(1, 4)))
        else:
            for x, y in zip(xs.tolist(), ys.tolist()):
                draw.rectangle((x, y, x + 6, size - margin), fill=_colour(rng, palette))
    draw.text((2, size - margin + 2), _text(rng, 3), fill=(0, 0, 0), font=_font(rng, 8, 14))


def _screen(draw, rng, palette, size: int) -> None:
    """Windows with title bars, buttons and text, as a screenshot."""
    for _ in range(rng.integers(1, 4)):
        left, top = rng.integers(0, size // 2, 2).tolist()
        right, bottom = left + int(rng.integers(size // 3, size)), top + int(rng.integers(size // 3, size))
        draw.rectangle((left, top, right, bottom), fill=_colour(rng, palette), outline=(0, 0, 0))
        draw.rectangle((left, top, right, top + 14), fill=_colour(rng, palette))
        draw.text((left + 3, top + 1), _text(rng, 2), fill=(255, 255, 255), font=_font(rng, 9, 12))
        for row in range(top + 20, bottom - 10, 16):
            draw.text((left + 6, row), _text(rng, int(rng.integers(1, 5))), fill=(0, 0, 0), font=_font(rng, 9, 13))
        draw.rounded_rectangle((right - 50, bottom - 20, right - 6, bottom - 5), radius=3,
                               fill=_colour(rng, palette), outline=(60, 60, 60))


def _gradient(rng: np.random.Generator, palette: np.ndarray, size: int) -> np.ndarray:
    """A linear or radial blend of two colours, sometimes in bands (posterized)."""
    y, x = np.mgrid[0:size, 0:size] / size
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = (x * np.cos(angle) + y * np.sin(angle)) % 1.0
    else:
        cx, cy = rng.random(2)
        t = np.clip(np.hypot(x - cx, y - cy) * rng.uniform(0.8, 2.0), 0, 1)
    if rng.random() < 0.3:
        t = np.floor(t * rng.integers(3, 12)) / 11
    a, b = palette[rng.integers(len(palette), size=2)].astype(np.float64)
    return np.rint(a + (b - a) * t[..., None]).astype(np.uint8)


KINDS = {"flat": _flat, "text": _text_page, "chart": _chart, "screen": _screen, "gradient": _gradient}
"""The kinds of image, each a drawing on a plain background (``gradient``: the pixels themselves)."""


def synthetic_image(seed: int, size: int = SIZE) -> np.ndarray:
    """The synthetic image of ``seed``: (size, size, 3) uint8, the same on every machine with this Pillow."""
    rng = np.random.Generator(np.random.PCG64(seed))
    kind = list(KINDS)[rng.integers(len(KINDS))]
    palette = rng.integers(0, 256, (int(rng.integers(2, 9)), 3))
    if kind == "gradient":
        pixels = _gradient(rng, palette, size)
    else:
        background = (255, 255, 255) if rng.random() < 0.5 else _colour(rng, palette)
        image = Image.new("RGB", (size, size), background)
        draw = ImageDraw.Draw(image)
        draw.fontmode = "1" if rng.random() < 0.3 else "L"  # aliased or anti-aliased text
        KINDS[kind](draw, rng, palette, size)
        pixels = np.asarray(image)
    if rng.random() < 0.25:
        grey = np.asarray(Image.fromarray(pixels).convert("L"))
        pixels = np.repeat(grey[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels)


def synthetic_images(count: int, first_seed: int = TRAINING_SEEDS, size: int = SIZE) -> list[torch.Tensor]:
    """``count`` synthetic images of consecutive seeds, as (3, H, W) uint8 tensors."""
    return [torch.from_numpy(synthetic_image(first_seed + i, size).transpose(2, 0, 1).copy()) for i in range(count)]
