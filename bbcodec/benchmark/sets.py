"""The images to measure: sets opened from folders, image files, globs, ``.npz`` arrays and MNIST files."""
from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bbcodec import imageio
from bbcodec.training.data import IMAGE_SUFFIXES, image_files, load_mnist_images, read_npz


@dataclass
class ImageSet:
    """Images to measure: (H, W, C) uint8 arrays with C in {1, 3, 4}, and a label for each."""

    name: str
    source: str
    kind: str                      # "files", "npz" or "mnist"
    images: list[np.ndarray]
    labels: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def subpixels(self) -> int:
        return int(sum(im.size for im in self.images))

    @property
    def same_shape(self) -> bool:
        return len({im.shape for im in self.images}) == 1


def plain_planes(image: imageio.Image, path=None) -> np.ndarray:
    """The image's pixels as grey, RGB or RGBA planes, as it looks (see :mod:`bbcodec.benchmark`)."""
    if image.mode in ("L", "RGB", "RGBA"):
        return image.pixels
    if image.mode == "1":
        return (image.pixels * 255).astype(np.uint8)
    if image.mode in ("CMYK", "YCbCr", "LAB"):
        return image.pixels  # three or four planes, coded as such by every codec
    from PIL import Image as PILImage

    if path is not None:  # palette transparency lives in the file's info, which Pillow applies
        with PILImage.open(path) as im:
            rgba = np.asarray(im.convert("RGBA"))
    else:
        rgba = np.asarray(imageio.to_pil(image).convert("RGBA"))
    planes = rgba if (rgba[..., 3] != 255).any() else rgba[..., :3]
    if planes.shape[2] == 3 and (planes[..., :1] == planes).all():
        planes = planes[..., :1]
    return np.ascontiguousarray(planes)


def _files_set(name: str, source: str, files, limit: int | None) -> ImageSet:
    files = list(files)[:limit] if limit else list(files)
    if not files:
        raise ValueError(f"{source}: no image files")
    images, notes = [], []
    for path in files:
        image = imageio.read_image(path)
        planes = plain_planes(image, path)
        if image.mode not in ("L", "RGB", "RGBA"):
            notes.append(f"{Path(path).name}: mode {image.mode} measured as {planes.shape[2]} plane(s)")
        images.append(planes)
    return ImageSet(name, source, "files", images, [Path(p).name for p in files], notes)


def _array_set(name: str, source: str, kind: str, array: np.ndarray, limit: int | None) -> ImageSet:
    """A set from uint8 images (N, H, W, C) (:func:`bbcodec.training.data.read_npz` checks an .npz's)."""
    array = array[:limit] if limit else array
    images = [np.ascontiguousarray(a) for a in array]
    return ImageSet(name, source, kind, images, [str(i) for i in range(len(images))])


def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def open_set(spec: str, limit: int | None = None, npz_key: str | None = None) -> ImageSet:
    """One set from ``[NAME=]PATH``: a folder of images, an image file, a quoted glob of image files,
    an ``.npz`` array of uint8 images (key ``npz_key``, default ``test_x`` or its only array) or an
    MNIST idx3 image file (optionally gzipped). ``limit`` takes the first images only."""
    name, path = _split_label(spec)
    label = name or path
    p = Path(path)
    if p.is_dir():
        return _files_set(label, path, image_files(p), limit)
    if p.is_file():
        if p.suffix == ".npz":
            return _array_set(label, path, "npz", read_npz(p, npz_key, preferred="test_x"), limit)
        if "idx3" in p.name:
            mnist = load_mnist_images(p).numpy().transpose(0, 2, 3, 1)
            return _array_set(label, path, "mnist", mnist, limit)
        if p.suffix.lower() in IMAGE_SUFFIXES:
            return _files_set(label, path, [p], limit)
        raise ValueError(f"{path}: expected a folder, an image file, an .npz file or an MNIST idx3 file")
    if _has_glob(path):
        files = [Path(f) for f in sorted(glob.glob(path)) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise ValueError(f"{path}: no image files match")
        return _files_set(label, path, files, limit)
    raise ValueError(f"{path}: no such file or folder")


def _split_label(spec: str) -> tuple[str | None, str]:
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        if name.strip():
            return name.strip(), path
    return None, spec


def open_sets(specs, limit: int | None = None, npz_key: str | None = None) -> list[ImageSet]:
    """Sets from command-line PATHs: see :func:`open_set`; consecutive plain image files
    (a shell-expanded glob) form one set."""
    sets, loose = [], []

    def flush():
        if loose:
            source = loose[0] if len(loose) == 1 else f"{loose[0]} ... {Path(loose[-1]).name}"
            sets.append(_files_set(f"{len(loose)} image files" if len(loose) > 1 else loose[0], source,
                                   [Path(f) for f in loose], limit))
            loose.clear()

    for spec in specs:
        name, path = _split_label(spec)
        if name is None and Path(path).is_file() and Path(path).suffix.lower() in IMAGE_SUFFIXES:
            loose.append(path)
            continue
        flush()
        sets.append(open_set(spec, limit, npz_key))
    flush()
    return sets
