"""Measuring bbcodec against the classical lossless codecs, with real files.

What :func:`run` measures, for every image of every set:

* each bbcodec model: a real ``.bbc`` file written to disk (metadata
  stripped, so that pixels are compared with pixels), its size on disk, and
  the file decoded again and compared with the pixels; beside it the model's
  −ELBO on exactly the tiles the coder codes, and the split of the file's
  size into −ELBO + discretization + initial bits + stored fallback +
  container (:class:`ModelResult`);
* each classical codec (:func:`classical_codecs`): the bytes it writes,
  decoded again and compared with the pixels;
* compress and decompress time of every codec, as throughput in MB/s of raw
  pixels (one byte per sub-pixel);
* optionally (``chain=True``), for sets of equal-sized images, every image
  coded on ONE bits-back chain, which is how the bits-back papers count a
  data set's rate (:class:`ChainResult`).

A file that does not decode to the exact pixels is a *failure*: it is
recorded in :attr:`Report.failures` (the command reports it loudly and exits
non-zero), and the rest is still measured.

    from bbcodec import benchmark
    sets = benchmark.open_sets(["waterloo=../shared/data/waterloo"], limit=4)
    codecs, notes = benchmark.classical_codecs(["png", "webp"])
    report = benchmark.run(sets, models=["default"], codecs=codecs, notes=notes)
    print(benchmark.format_table(report))
    benchmark.write_json(report, "bench.json")
    benchmark.plot(report, "bench.png")          # needs matplotlib

Images are measured as they look: palette images are expanded to their
colours (to grey when the palette is grey), bilevel images become 0/255 grey,
so every codec gets the same plain planes: grey, RGB or RGBA.
"""
from __future__ import annotations

import dataclasses
import datetime
import glob
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bbcodec import api, classical, imageio, zoo
from bbcodec.coding.chain import decode_steps, encode_steps
from bbcodec.coding.image import CoderSettings, TileView, coding_model, plane_groups
from bbcodec.data import IMAGE_SUFFIXES, image_files, load_mnist_images
from bbcodec.errors import BBCodecError
from bbcodec.tiling import batch_sizes, plan

# -- the codecs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """A classical codec as the benchmark runs it: a command-line key and an encode/decode pair."""

    key: str
    name: str
    settings: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]


CLASSICAL_KEYS = {"PNG": "png", "WebP": "webp", "JPEG XL": "jxl", "JPEG 2000": "j2k"}
"""Display name (as :mod:`bbcodec.classical` names them) -> command-line key."""

EXTRA_CODECS = {
    # key: (name, settings, imagecodecs flag)
    "jxl-e9": ("JPEG XL e9", "imagecodecs/libjxl, lossless, effort 9", "JPEGXL"),
    "jpegls": ("JPEG-LS", "imagecodecs/CharLS, lossless (near 0)", "JPEGLS"),
    "jpegxr": ("JPEG XR", "imagecodecs/jxrlib, lossless (level 1.0)", "JPEGXR"),
    "qoi": ("QOI", "imagecodecs/qoi (grey as RGB)", "QOI"),
    "avif": ("AVIF", "imagecodecs/libavif, lossless (level 100, speed 0); slow", "AVIF"),
}

ALL_KEYS = ["png", "webp", "jxl", "jxl-e9", "j2k", "jpegls", "jpegxr", "qoi", "avif"]
DEFAULT_KEYS = [k for k in ALL_KEYS if k != "avif"]
"""Measured unless told otherwise; AVIF lossless is left out by default (about 30 s per megapixel here)."""


def _plane(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels


def _hwc(array: np.ndarray) -> np.ndarray:
    return array[..., None] if array.ndim == 2 else array


def _extra_codec(key: str, imagecodecs) -> Codec:
    name, settings, _ = EXTRA_CODECS[key]
    ic = imagecodecs

    def encode(pixels: np.ndarray) -> bytes:
        if key == "jxl-e9":
            return ic.jpegxl_encode(_plane(pixels), lossless=True, effort=9)
        if key == "jpegls":
            return ic.jpegls_encode(_plane(pixels), level=0)
        if key == "jpegxr":
            return ic.jpegxr_encode(_plane(pixels), level=1.0)
        if key == "qoi":  # QOI has no grey: a lone plane goes as three equal channels
            return ic.qoi_encode(np.ascontiguousarray(np.repeat(pixels, 3, axis=2)) if pixels.shape[2] == 1 else pixels)
        return ic.avif_encode(_plane(pixels), level=100, speed=0)

    decoder = {"jxl-e9": ic.jpegxl_decode, "jpegls": ic.jpegls_decode, "jpegxr": ic.jpegxr_decode,
               "qoi": ic.qoi_decode, "avif": ic.avif_decode}[key]
    return Codec(key, name, settings, encode, lambda data: _hwc(decoder(data)))


def parse_codec_keys(text: str | None) -> list[str]:
    """``"png,webp"``, ``"default"``, ``"all"`` or ``"none"`` -> codec keys (ValueError for unknown ones)."""
    if text is None or text.strip().lower() in ("", "default"):
        return list(DEFAULT_KEYS)
    keys = []
    for word in (w.strip().lower() for w in text.split(",")):
        if word == "all":
            keys += ALL_KEYS
        elif word == "default":
            keys += DEFAULT_KEYS
        elif word == "none":
            continue
        elif word in ALL_KEYS:
            keys.append(word)
        elif word:
            raise ValueError(f"unknown codec {word!r} (choose from {', '.join(ALL_KEYS)}, default, all, none)")
    return list(dict.fromkeys(keys))


def classical_codecs(keys=None) -> tuple[list[Codec], list[str]]:
    """(the requested classical codecs that can run here, notes on those that cannot).

    A codec whose package is not installed is skipped with a note, never an
    error: PNG and WebP need only Pillow; the others need the optional
    ``imagecodecs`` (``pip install "bbcodec[bench]"``).
    """
    keys = list(DEFAULT_KEYS if keys is None else keys)
    base, base_notes = classical.available_codecs()
    by_key = {CLASSICAL_KEYS[c.name]: Codec(CLASSICAL_KEYS[c.name], c.name, c.settings, c.encode, c.decode)
              for c in base if c.name in CLASSICAL_KEYS}
    notes = [n for n in base_notes if any(name in n and key in keys for name, key in CLASSICAL_KEYS.items())]
    extras = [k for k in keys if k in EXTRA_CODECS]
    if extras:
        try:
            import imagecodecs
        except ImportError:
            imagecodecs = None
            names = ", ".join(EXTRA_CODECS[k][0] for k in extras)
            notes.append(f"{names} skipped: imagecodecs is not installed (pip install 'bbcodec[bench]')")
        for key in extras if imagecodecs is not None else []:
            if getattr(imagecodecs, EXTRA_CODECS[key][2]).available:
                by_key[key] = _extra_codec(key, imagecodecs)
            else:
                notes.append(f"{EXTRA_CODECS[key][0]} skipped: not built into this imagecodecs")
    codecs = [by_key[k] for k in keys if k in by_key]
    return codecs, notes


# -- the images ------------------------------------------------------------------------------------


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
    """The image's pixels as grey, RGB or RGBA planes, as it looks (see the module doc)."""
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
    if array.dtype != np.uint8:
        raise ValueError(f"{source}: holds {array.dtype}, expected uint8 images")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[3] not in (1, 3, 4):
        raise ValueError(f"{source}: expected images (N, H, W) or (N, H, W, C) with C 1, 3 or 4, "
                         f"got {array.shape}")
    array = array[:limit] if limit else array
    images = [np.ascontiguousarray(a) for a in array]
    return ImageSet(name, source, kind, images, [str(i) for i in range(len(images))])


def _npz_array(path: Path, key: str | None) -> np.ndarray:
    with np.load(path) as archive:
        names = list(archive.keys())
        if key is None:
            key = "test_x" if "test_x" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise ValueError(f"{path} holds {', '.join(names)}: say which with npz_key (--npz-key)")
        if key not in names:
            raise ValueError(f"{path} has no array {key!r} (it has {', '.join(names)})")
        return archive[key]


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
            return _array_set(label, path, "npz", _npz_array(p, npz_key), limit)
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


# -- results ---------------------------------------------------------------------------------------


@dataclass
class CodecResult:
    """One codec on one set: totals over its images."""

    codec: str                     # display name
    key: str                       # "png", ..., or "bbcodec:<model>"
    settings: str
    images: int = 0
    subpixels: int = 0
    file_bytes: int = 0
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0
    verified: int = 0              # images decoded to exactly their pixels
    failures: int = 0

    @property
    def bits_per_subpixel(self) -> float:
        return 8.0 * self.file_bytes / self.subpixels if self.subpixels else math.nan

    @property
    def compress_mbps(self) -> float:
        return self.subpixels / 1e6 / self.encode_seconds if self.encode_seconds > 0 else math.nan

    @property
    def decompress_mbps(self) -> float:
        return self.subpixels / 1e6 / self.decode_seconds if self.decode_seconds > 0 else math.nan

    def add(self, subpixels: int, size: int, encode_seconds: float, decode_seconds: float, exact: bool):
        self.images += 1
        self.subpixels += subpixels
        self.file_bytes += size
        self.encode_seconds += encode_seconds
        self.decode_seconds += decode_seconds
        self.verified += bool(exact)
        self.failures += not exact

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.update(bits_per_subpixel=self.bits_per_subpixel, compress_mbps=self.compress_mbps,
                    decompress_mbps=self.decompress_mbps)
        return data


@dataclass
class ModelResult(CodecResult):
    """A bbcodec model on one set: real files, and their size split up (all in bits).

    ``8 * file_bytes = nelbo + discretization + initial + fallback + container``:

    * ``nelbo_bits``: the model's −ELBO on the coded tiles (one posterior sample);
    * ``discretization_bits``: the bits-back code's net cost minus the −ELBO
      (latents coded on a grid, probabilities quantized by the coder, and,
      with exact arithmetic, the integer network's approximation of the float one);
    * ``initial_bits``: the seed bits the first bits-back pops consumed;
    * ``fallback_bits``: raw pixels stored minus the bits-back payload, for
      the files stored raw because bits-back would have been larger (<= 0);
    * ``container_bits``: the file beyond its payload (header, checksums).
    """

    model_hash: str = ""
    nelbo_bits: float = 0.0
    net_bits: int = 0
    initial_bits: int = 0
    payload_bits: int = 0          # what the files' payloads hold (raw pixels for stored files)
    bits_back_bits: int = 0        # what the bits-back payloads were (stored files included)
    stored_files: int = 0

    @property
    def discretization_bits(self) -> float:
        return self.net_bits - self.nelbo_bits

    @property
    def fallback_bits(self) -> int:
        return self.payload_bits - self.bits_back_bits

    @property
    def container_bits(self) -> int:
        return 8 * self.file_bytes - self.payload_bits

    def split(self) -> dict:
        """The file's bits per sub-pixel, split up (the parts add up to ``file``)."""
        per = 1.0 / self.subpixels if self.subpixels else math.nan
        return {"nelbo": self.nelbo_bits * per, "discretization": self.discretization_bits * per,
                "initial": self.initial_bits * per, "fallback": self.fallback_bits * per,
                "container": self.container_bits * per, "file": self.bits_per_subpixel}

    def to_dict(self) -> dict:
        data = super().to_dict()
        data.update(discretization_bits=self.discretization_bits, fallback_bits=self.fallback_bits,
                    container_bits=self.container_bits, split_bits_per_subpixel=self.split())
        return data


@dataclass
class ChainResult:
    """Every image of a set coded on one bits-back chain (payload only, no container: the papers' count)."""

    codec: str
    model_hash: str
    coder: str
    batch: int                     # the largest number of images per step (steps grow 1, 2, 4, ...)
    images: int = 0
    subpixels: int = 0
    stored_bits: int = 0
    net_bits: int = 0
    initial_bits: int = 0
    nelbo_bits: float = 0.0
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0
    exact: bool = False

    @property
    def bits_per_subpixel(self) -> float:
        return self.stored_bits / self.subpixels if self.subpixels else math.nan

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        per = 1.0 / self.subpixels if self.subpixels else math.nan
        data.update(bits_per_subpixel=self.bits_per_subpixel, net_bits_per_subpixel=self.net_bits * per,
                    initial_bits_per_subpixel=self.initial_bits * per, nelbo_bits_per_subpixel=self.nelbo_bits * per,
                    compress_mbps=self.subpixels / 1e6 / self.encode_seconds if self.encode_seconds else math.nan,
                    decompress_mbps=self.subpixels / 1e6 / self.decode_seconds if self.decode_seconds else math.nan)
        return data


@dataclass
class SetResult:
    name: str
    source: str
    kind: str
    images: int
    subpixels: int
    shapes: str
    codecs: list = field(default_factory=list)   # ModelResult first, then CodecResult
    chains: list = field(default_factory=list)   # ChainResult
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in ("name", "source", "kind", "images", "subpixels", "shapes")}
        data["codecs"] = [c.to_dict() for c in self.codecs]
        data["chains"] = [c.to_dict() for c in self.chains]
        data["notes"] = list(self.notes)
        return data


@dataclass
class Report:
    sets: list = field(default_factory=list)      # SetResult
    environment: dict = field(default_factory=dict)
    command: str = ""
    notes: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # one line per image that did not come back exactly

    def to_dict(self) -> dict:
        return {"format": "bbcodec-bench/1", "command": self.command, "environment": self.environment,
                "notes": self.notes, "failures": self.failures, "sets": [s.to_dict() for s in self.sets]}


def report_from_dict(data: dict) -> Report:
    """Read back what :meth:`Report.to_dict` (the JSON file) holds."""
    def fields(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    sets = []
    for s in data.get("sets", []):
        result = fields(SetResult, {k: v for k, v in s.items() if k not in ("codecs", "chains")})
        result.codecs = [fields(ModelResult if c["key"].startswith("bbcodec:") else CodecResult, c)
                         for c in s.get("codecs", [])]
        result.chains = [fields(ChainResult, c) for c in s.get("chains", [])]
        sets.append(result)
    return Report(sets, data.get("environment", {}), data.get("command", ""), data.get("notes", []),
                  data.get("failures", []))


# -- measuring -------------------------------------------------------------------------------------


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BBCodecError("device cuda: no CUDA device is available")
    return name


def environment(device: str) -> dict:
    """Where the measurement ran: machine, device, threads, package versions."""
    from importlib import metadata

    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    device_name = (torch.cuda.get_device_name() if device == "cuda"
                   else f"CPU ({platform.machine()}, {os.cpu_count()} logical cores)")
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} logical cores",
            "device": device, "device_name": device_name, "cuda_available": torch.cuda.is_available(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "versions": {p: version(p) for p in ("bbcodec", "torch", "constriction", "Pillow", "imagecodecs")}}


def _same_pixels(decoded: np.ndarray, pixels: np.ndarray) -> bool:
    if pixels.shape[2] == 1 and decoded.ndim == 3 and decoded.shape[2] == 3 and decoded.shape[:2] == pixels.shape[:2] \
            and (decoded == decoded[..., :1]).all():
        decoded = decoded[..., :1]  # codecs without a grey mode return three equal channels
    return decoded.shape == pixels.shape and np.array_equal(decoded, pixels)


def measure_classical(codec: Codec, pixels: np.ndarray) -> tuple[int, float, float, bool, str]:
    """(bytes, encode s, decode s, exact, error) for one image; never raises for a codec's failure."""
    try:
        start = time.perf_counter()
        data = codec.encode(pixels)
        middle = time.perf_counter()
        decoded = codec.decode(data)
        end = time.perf_counter()
    except Exception as error:  # a codec that cannot code this image is a failure, reported
        return 0, 0.0, 0.0, False, f"{type(error).__name__}: {error}"
    exact = _same_pixels(np.asarray(decoded), pixels)
    return len(data), middle - start, end - middle, exact, "" if exact else "decoded pixels differ"


def _image(pixels: np.ndarray) -> imageio.Image:
    return imageio.Image(pixels=pixels, mode={1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[2]])


@torch.no_grad()
def _nelbo_nats(view, x: torch.Tensor) -> float:
    """−ELBO (nats) of a batch under a coder's view of the model, one posterior sample:
    −log p(x|z1) − Σ log p(z_i|z_i+1) − log p(zL) + Σ log q(z_i|z_i-1)."""
    below, nats = x, 0.0
    for layer in range(view.depth):
        q = view.posterior(layer, below)
        z = q.rsample()
        nats += float(q.log_prob(z).double().sum()) - float(view.conditional(layer, z).log_prob(below).double().sum())
        below = z
    return nats - float(view.top_prior(below).log_prob(below).double().sum())


def image_nelbo_bits(model, pixels: np.ndarray, settings: CoderSettings = CoderSettings()) -> float:
    """The model's −ELBO, in bits, of an (H, W, C) image on exactly the tiles and planes the coder codes.

    This is the trained (float) model's bound, whatever arithmetic the coder uses."""
    height, width, channels = pixels.shape
    nats = 0.0
    for group in plane_groups(channels):
        for batch in plan(height, width, settings.tile, settings.max_batch):
            tiles = [pixels[t.top:t.top + t.height, t.left:t.left + t.width, group] for t in batch]
            x = torch.from_numpy(np.ascontiguousarray(np.stack(tiles).transpose(0, 3, 1, 2))).to(model.device)
            view = TileView(model, group.stop - group.start, batch[0].height, batch[0].width)
            nats += _nelbo_nats(view, x)
    return nats / math.log(2.0)


def measure_model(result: ModelResult, spec: str, pixels: np.ndarray, path: Path, device: str,
                  settings: CoderSettings) -> str:
    """Compress one image to a real file, decode the file, check it, account for its size; '' or an error."""
    stats: dict = {}
    try:
        start = time.perf_counter()
        data = api.compress(_image(pixels), model=spec, settings=settings, strip_metadata=True, device=device,
                            stats=stats)
        encode_seconds = time.perf_counter() - start
    except BBCodecError as failure:
        result.add(pixels.size, 0, 0.0, 0.0, False)
        return f"compress: {type(failure).__name__}: {failure}"
    path.write_bytes(data)
    size = path.stat().st_size  # the real file's size is what counts
    written = path.read_bytes()
    try:
        start = time.perf_counter()
        decoded = api.decompress(written, model=spec, device=device)
        decode_seconds = time.perf_counter() - start
        exact = _same_pixels(decoded.pixels, pixels)
        error = "" if exact else "decoded pixels differ"
    except BBCodecError as failure:  # the checksum or the seed check caught a wrong decode
        decode_seconds, exact, error = 0.0, False, f"{type(failure).__name__}: {failure}"
    result.add(pixels.size, size, encode_seconds, decode_seconds, exact)
    model, _ = zoo.load(spec)
    result.nelbo_bits += image_nelbo_bits(model.to(device), pixels, settings)
    result.net_bits += stats["net_bits"]
    result.initial_bits += stats["initial_bits"]
    result.bits_back_bits += stats["payload_bits"]
    stored_raw = stats["method"] == "stored"
    result.payload_bits += 8 * pixels.nbytes if stored_raw else stats["payload_bits"]
    result.stored_files += stored_raw
    return error


def model_label(spec: str) -> str:
    """A model's name in tables: its name, or a model file's stem."""
    return Path(spec).stem if spec.endswith(zoo.SUFFIX) or "/" in spec or os.sep in spec else spec


def chain_steps(model, images: list[np.ndarray], batch: int, device: str):
    """(coder view, uint8 batch (B, C, H, W)) for a chain of equal-sized images: batches of
    1, 2, 4, ... up to ``batch`` images, each plane group (RGB, alpha, grey) a step of its own."""
    height, width, channels = images[0].shape
    steps, start = [], 0
    for size in batch_sizes(len(images), batch):
        block = np.stack(images[start:start + size]).transpose(0, 3, 1, 2)
        start += size
        for group in plane_groups(channels):
            x = torch.from_numpy(np.ascontiguousarray(block[:, group])).to(device)
            steps.append((TileView(model, group.stop - group.start, height, width), x))
    return steps


def measure_chain(spec: str, images: list[np.ndarray], batch: int, device: str,
                  settings: CoderSettings = CoderSettings(), progress=None) -> ChainResult:
    """Code all ``images`` (equal sizes) on one chain, decode it and check every image.

    The chain is coded with the files' coder and arithmetic (``settings``);
    its −ELBO is the model's own (float) bound on the same batches.
    """
    model, digest = zoo.load(spec)
    model = model.to(device)
    settings = settings.resolve(model)
    coder = coding_model(model, settings.arithmetic)
    steps = chain_steps(coder, images, batch, device)
    result = ChainResult(f"bbcodec {model_label(spec)}", digest, f"{settings.coder}, {settings.arithmetic}", batch,
                         len(images), int(sum(im.size for im in images)))
    start = time.perf_counter()
    encoded = encode_steps(steps, settings.coder, progress=progress)
    result.encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    try:
        decoded = decode_steps([(view, tuple(x.shape)) for view, x in steps], encoded, settings.coder,
                               progress=progress)
        result.exact = all(torch.equal(d.cpu(), x.cpu()) for d, (_, x) in zip(decoded, steps))
    except BBCodecError:
        result.exact = False
    result.decode_seconds = time.perf_counter() - start
    result.stored_bits, result.net_bits = encoded.stored_bits, encoded.net_bits
    result.initial_bits = encoded.initial_bits
    result.nelbo_bits = sum(_nelbo_nats(TileView(model, view.channels, view.height, view.width), x)
                            for view, x in steps) / math.log(2.0)
    return result


def _warm_up(models, codecs, device, settings):
    """One small image through every codec first, so that no measurement pays for loading or first calls."""
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for spec in models:
        api.decompress(api.compress(_image(pixels), model=spec, settings=settings, device=device),
                       model=spec, device=device)
    for codec in codecs:
        measure_classical(codec, pixels)


def _shapes(images: list[np.ndarray]) -> str:
    shapes = sorted({im.shape for im in images})
    if len(shapes) == 1:
        h, w, c = shapes[0]
        return f"{w}x{h}x{c}"
    pixels = [im.shape[0] * im.shape[1] for im in images]
    return f"mixed, {min(pixels) / 1e6:.2g}-{max(pixels) / 1e6:.2g} Mpixel"


MAX_CHAIN_PIXELS = 256 * 256
"""Chains are for small images (each image is one step, whole); larger ones are coded as tiled files."""


def run(sets: list[ImageSet], models=(zoo.DEFAULT_MODEL,), codecs: list[Codec] | None = None, *,
        chain: bool = False, chain_batch: int = 1, device: str = "cpu",
        settings: CoderSettings = CoderSettings(), workdir=None, notes=(), command: str = "",
        seed: int = 0, progress: Callable[[str, int, int], None] | None = None,
        on_set: Callable[[Report], None] | None = None) -> Report:
    """Measure every model and codec on every set (see the module doc); returns the :class:`Report`.

    ``workdir`` keeps the ``.bbc`` files (default: a temporary folder, removed).
    ``progress(set name, images done, images)`` is called as images are done;
    ``on_set(report)`` after each set (to save partial results).
    """
    device = resolve_device(device)
    codecs = classical_codecs()[0] if codecs is None else list(codecs)
    torch.manual_seed(seed)
    report = Report(environment=environment(device), command=command, notes=list(notes))
    report.environment["coder_settings"] = settings.to_dict()
    hashes = {spec: zoo.load(spec)[1] for spec in models}
    _warm_up(models, codecs, device, settings)
    with tempfile.TemporaryDirectory(prefix="bbcodec-bench-") as temporary:
        folder = Path(workdir) if workdir else Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        for index, image_set in enumerate(sets):
            out = SetResult(image_set.name, image_set.source, image_set.kind, len(image_set.images),
                            image_set.subpixels, _shapes(image_set.images), notes=list(image_set.notes))
            model_results = [ModelResult(f"bbcodec {model_label(spec)}", f"bbcodec:{model_label(spec)}",
                                         f"model {hashes[spec][:12]}, {settings.coder}, tile {settings.tile}, "
                                         f"{settings.resolve(zoo.load(spec)[0]).arithmetic} arithmetic",
                                         model_hash=hashes[spec]) for spec in models]
            codec_results = [CodecResult(c.name, c.key, c.settings) for c in codecs]
            for number, (pixels, label) in enumerate(zip(image_set.images, image_set.labels)):
                for spec, result in zip(models, model_results):
                    path = folder / f"set{index}-{Path(spec).stem}-{number:05d}.bbc"
                    error = measure_model(result, spec, pixels, path, device, settings)
                    if error:
                        report.failures.append(f"{image_set.name}: {label}: bbcodec {model_label(spec)}: {error}")
                for codec, result in zip(codecs, codec_results):
                    size, encode_s, decode_s, exact, error = measure_classical(codec, pixels)
                    result.add(pixels.size, size, encode_s, decode_s, exact)
                    if not exact:
                        report.failures.append(f"{image_set.name}: {label}: {codec.name}: {error}")
                if progress:
                    progress(image_set.name, number + 1, len(image_set.images))
            out.codecs = model_results + codec_results
            if chain:
                height, width = image_set.images[0].shape[:2]
                if len(image_set.images) < 2 or not image_set.same_shape:
                    out.notes.append("chain not measured: it needs two or more images of one size")
                elif height * width > MAX_CHAIN_PIXELS:
                    out.notes.append(f"chain not measured: images over {MAX_CHAIN_PIXELS:,} pixels are coded "
                                     f"as tiles (the files)")
                else:
                    for spec in models:
                        result = measure_chain(spec, image_set.images, chain_batch, device, settings)
                        if not result.exact:
                            report.failures.append(f"{image_set.name}: chain of {result.images} images: "
                                                   f"bbcodec {model_label(spec)}: decoded images differ")
                        out.chains.append(result)
            report.sets.append(out)
            if on_set:
                on_set(report)
    return report


# -- output ----------------------------------------------------------------------------------------


def write_json(report: Report, path) -> None:
    import json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report.to_dict(), indent=1, allow_nan=True) + "\n")


def read_json(path) -> Report:
    import json

    return report_from_dict(json.loads(Path(path).read_text()))


def _f(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _speed(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def format_table(report: Report) -> str:
    """Plain-text tables for a terminal: per set, every codec's rate and speed, the model's overhead split."""
    lines = [f"device {report.environment.get('device_name', report.environment.get('device'))}, "
             f"{report.environment.get('torch_threads')} torch threads, {report.environment.get('date', '')}"]
    for s in report.sets:
        lines += ["", f"{s.name}: {s.images} images ({s.shapes}), {s.subpixels:,} sub-pixels"]
        lines.append(f"  {'codec':22} {'bits/sub-px':>11} {'compress MB/s':>14} {'decompress MB/s':>16}  verified")
        for c in s.codecs:
            lines.append(f"  {c.codec:22} {_f(c.bits_per_subpixel):>11} {_speed(c.compress_mbps):>14} "
                         f"{_speed(c.decompress_mbps):>16}  {c.verified}/{c.images}"
                         + ("  LOSSLESS FAILURE" if c.failures else ""))
        for c in s.codecs:
            if isinstance(c, ModelResult):
                p = c.split()
                lines.append(f"  {c.codec}: file {_f(p['file'])} = -ELBO {_f(p['nelbo'])} + discretization "
                             f"{_f(p['discretization'])} + initial bits {_f(p['initial'])} + stored fallback "
                             f"{_f(p['fallback'])} + container {_f(p['container'])}  ({c.stored_files} of "
                             f"{c.images} files stored raw)")
        for ch in s.chains:
            d = ch.to_dict()
            lines.append(f"  {ch.codec}, one chain of {ch.images} images: {_f(ch.bits_per_subpixel)} bits/sub-px "
                         f"(-ELBO {_f(d['nelbo_bits_per_subpixel'])}, "
                         f"initial bits {_f(d['initial_bits_per_subpixel'], 4)}), "
                         f"{_speed(d['compress_mbps'])} / {_speed(d['decompress_mbps'])} MB/s, "
                         f"{'exact' if ch.exact else 'LOSSLESS FAILURE'}")
        lines += [f"  note: {n}" for n in s.notes]
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"LOSSLESS FAILURE: {f}" for f in report.failures]
    return "\n".join(lines)


def _codec_names(reports) -> list[str]:
    names = []
    for report in reports:
        for s in report.sets:
            for c in s.codecs:
                if c.codec not in names:
                    names.append(c.codec)
    return names


def _summary(reports) -> list[str]:
    """Who measured what, where: the opening paragraph of the Markdown report."""
    files = sum(c.images for r in reports for s in r.sets for c in s.codecs)
    chained = sum(ch.images for r in reports for s in r.sets for ch in s.chains)
    failures = sum(len(r.failures) for r in reports)
    dates = sorted({r.environment.get("date", "?") for r in reports})
    machines = sorted({r.environment.get("machine", "?") for r in reports})
    devices = sorted({r.environment.get("device_name", "?") for r in reports})
    gpu = "a CUDA GPU was available" if any(r.environment.get("cuda_available") for r in reports) else "no GPU"
    loads = [str(r.environment.get("load_average")) for r in reports if r.environment.get("load_average")]
    verdict = (f"all {files:,} files and {chained:,} chained images decoded to exactly their pixels" if not failures
               else f"**{failures} LOSSLESS FAILURE(S)**, listed under Runs")
    return [f"Measured with `bbcodec bench` on {', '.join(dates)}. Machine: {'; '.join(machines)}, {gpu}; "
            f"measured on {'; '.join(devices)}. Every size is that of a real file (a whole file format, header "
            f"included; bbcodec's written to disk and measured there), and every file was decoded again and "
            f"compared with the pixels: {verdict}. Speeds are wall-clock times of one process"
            + (f" on a machine shared with other jobs (load average at the start of each run: {', '.join(loads)}), "
               "so they are indicative" if loads else "") + "."]


def markdown(reports, title: str = "bbcodec bench results", preamble: str = "", made_by: str = "",
             chart: str = "") -> str:
    """A Markdown report of one or more runs: rates, chains, overhead split, speeds, commands.

    ``made_by``: the command that wrote the report, recorded under Runs;
    ``chart``: a link to the bar chart (:func:`plot`), shown under the rates."""
    reports = list(reports)
    names = _codec_names(reports)
    sets = [s for r in reports for s in r.sets]
    lines = [f"# {title}", ""] + _summary(reports) + [""]
    if preamble:
        lines += [preamble.strip(), ""]
    lines += ["## Bits per sub-pixel (lower is better; real files, every one decoded and checked)", "",
              "| set | images | sub-pixels | " + " | ".join(names) + " |",
              "|---|---:|---:|" + "---:|" * len(names)]
    for s in sets:
        by_name = {c.codec: c for c in s.codecs}
        best = min((c.bits_per_subpixel for c in s.codecs), default=math.nan)
        cells = []
        for n in names:
            c = by_name.get(n)
            text = _f(c.bits_per_subpixel) if c else "-"
            if c and c.failures:
                text += " (FAILED)"
            bold = c and len(s.codecs) > 1 and c.bits_per_subpixel == best
            cells.append(f"**{text}**" if bold else text)
        lines.append(f"| {s.name} | {s.images:,} | {s.subpixels:,} | " + " | ".join(cells) + " |")
    if chart:
        lines += ["", f"![bits per sub-pixel and throughput per codec]({chart})"]
    chains = [(s, ch) for s in sets for ch in s.chains]
    if chains:
        lines += ["", "## One chain per set (the papers' count: all images on one bits-back chain, payload only)", "",
                  "| set | model | images | bits/sub-pixel | −ELBO | net (stack growth) | initial bits | "
                  "compress MB/s | decompress MB/s | exact |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for s, ch in chains:
            d = ch.to_dict()
            lines.append(f"| {s.name} | {ch.codec} ({ch.model_hash[:12]}), {ch.coder}, {ch.batch} image(s)/step | "
                         f"{ch.images:,} | **{_f(ch.bits_per_subpixel)}** | {_f(d['nelbo_bits_per_subpixel'])} | "
                         f"{_f(d['net_bits_per_subpixel'])} | {_f(d['initial_bits_per_subpixel'], 4)} | "
                         f"{_speed(d['compress_mbps'])} | {_speed(d['decompress_mbps'])} | "
                         f"{'yes' if ch.exact else 'NO'} |")
    lines += ["", "## bbcodec: where the bits of the files go (bits per sub-pixel)", "",
              "file = −ELBO + discretization + initial bits + stored fallback + container. −ELBO: the model's "
              "bound on the coded tiles (one posterior sample, the float model); discretization: the bits-back "
              "code's net cost above it (latent grid, the coder's quantized probabilities, integer arithmetic); "
              "initial bits: seed bits consumed by the first pops; stored fallback: the saving of "
              "files stored raw because bits-back would have been larger; container: header and checksums.", "",
              "| set | model | −ELBO | discretization | initial bits | stored fallback | container | file | "
              "files stored raw |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sets:
        for c in s.codecs:
            if isinstance(c, ModelResult):
                p = c.split()
                lines.append(f"| {s.name} | {c.codec} ({c.model_hash[:12]}) | {_f(p['nelbo'])} | "
                             f"{_f(p['discretization'])} | {_f(p['initial'])} | {_f(p['fallback'])} | "
                             f"{_f(p['container'])} | {_f(p['file'])} | {c.stored_files:,} of {c.images:,} |")
    lines += ["", "## Throughput (MB/s of raw pixels, one byte per sub-pixel): compress / decompress", "",
              "| set | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for s in sets:
        by_name = {c.codec: c for c in s.codecs}
        lines.append(f"| {s.name} | " + " | ".join(
            f"{_speed(by_name[n].compress_mbps)} / {_speed(by_name[n].decompress_mbps)}" if n in by_name else "-"
            for n in names) + " |")
    settings = {}
    for s in sets:
        for c in s.codecs:
            settings.setdefault(c.codec, c.settings)
    lines += ["", "## Codecs", ""] + [f"- {n}: {settings[n]}" for n in names]
    lines += ["", "## Runs (the commands that measured, from the repository root)", ""]
    for report in reports:
        env = report.environment
        versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v)
        lines += [f"- {env.get('date', '')}: {', '.join(s.name for s in report.sets)}; {env.get('machine', '')}; "
                  f"device {env.get('device_name', env.get('device'))}, {env.get('torch_threads')} torch thread(s), "
                  f"load average {env.get('load_average')} at the start; "
                  f"{versions}", "", "  ```sh", f"  {report.command}", "  ```", ""]
        notes = report.notes + [f"{s.name}: {n}" for s in report.sets for n in s.notes]
        lines += [f"  - note: {n}" for n in notes]
        lines += [f"  - LOSSLESS FAILURE: {f}" for f in report.failures]
        if notes or report.failures:
            lines.append("")
    if made_by:
        lines += ["This page was written from the runs' JSON by:", "", "```sh", made_by, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def plot(reports, path) -> bool:
    """A bar chart (PNG) of bits per sub-pixel per set and codec, and throughput per codec.

    Returns False (and writes nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    reports = [reports] if isinstance(reports, Report) else list(reports)
    sets = [s for r in reports for s in r.sets]
    names = _codec_names(reports)
    chain_names = sorted({ch.codec + " (chain)" for s in sets for ch in s.chains})
    bars = names + chain_names
    figure, (rate, speed) = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(sets) + 4), 9), constrained_layout=True)
    width = 0.8 / max(1, len(bars))
    colours = plt.get_cmap("tab10" if len(bars) <= 10 else "tab20")
    for i, name in enumerate(bars):
        values = []
        for s in sets:
            if name in chain_names:
                found = [ch.bits_per_subpixel for ch in s.chains if ch.codec + " (chain)" == name]
            else:
                found = [c.bits_per_subpixel for c in s.codecs if c.codec == name]
            values.append(found[0] if found else math.nan)
        rate.bar(np.arange(len(sets)) + (i - (len(bars) - 1) / 2) * width, values, width, label=name,
                 color=colours(i))
    rate.set_xticks(np.arange(len(sets)), [s.name for s in sets])
    rate.set(ylabel="bits per sub-pixel (lower is better)", title="Rate: real files, every one verified lossless")
    rate.grid(axis="y", alpha=0.3)
    top = np.nanmax([b.get_height() for b in rate.patches] + [1.0])
    rate.set_ylim(0, top * (1.2 + 0.06 * math.ceil(len(bars) / 4)))  # room for the legend above the bars
    rate.legend(fontsize="small", ncol=4, loc="upper center")
    totals = {n: [0, 0.0, 0.0] for n in names}
    for s in sets:
        for c in s.codecs:
            totals[c.codec][0] += c.subpixels
            totals[c.codec][1] += c.encode_seconds
            totals[c.codec][2] += c.decode_seconds
    x = np.arange(len(names))
    for offset, column, label in ((-0.2, 1, "compress"), (0.2, 2, "decompress")):
        speed.bar(x + offset, [totals[n][0] / 1e6 / totals[n][column] if totals[n][column] else math.nan
                               for n in names], 0.4, label=label)
    speed.set_yscale("log")
    speed.set_xticks(x, names, rotation=20, ha="right")
    device = ", ".join(sorted({r.environment.get("device_name", "") for r in reports}))
    speed.set(ylabel="MB/s of raw pixels (log scale)", title=f"Throughput, all sets together ({device})")
    speed.grid(axis="y", alpha=0.3)
    speed.legend()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
