"""Running the benchmark: every bbcodec model (real files, chains, archives) and classical codec on every set."""
from __future__ import annotations

import datetime
import io
import math
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bbcodec import api, imageio, zoo
from bbcodec.archive import DEFAULT_CHUNK_SUBPIXELS, Archive, Member, pack
from bbcodec.benchmark.codecs import Codec, classical_codecs, measure_classical, same_pixels
from bbcodec.benchmark.results import ArchiveResult, ChainResult, CodecResult, ModelResult, Report, SetResult
from bbcodec.benchmark.sets import ImageSet
from bbcodec.coding.bitsback import coded_cost
from bbcodec.coding.calibration import choose_for_images
from bbcodec.coding.chain import decode_steps, encode_steps
from bbcodec.coding.flow_coder import decode_images, encode_images
from bbcodec.coding.image import CoderSettings, TileView, coding_model, cut_batch, tile_views
from bbcodec.errors import BBCodecError
from bbcodec.tiling import batch_sizes, plane_groups
from bbcodec.training.loop import evaluate


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


def _image(pixels: np.ndarray) -> imageio.Image:
    return imageio.Image(pixels=pixels, mode=imageio.PLAIN_MODES[pixels.shape[2]])


def image_nelbo_bits(model, pixels: np.ndarray, settings: CoderSettings = CoderSettings()) -> float:
    """The model's −ELBO, in bits, of an (H, W, C) image on exactly the tiles and planes the coder codes (one
    posterior sample, counted by running the coder on a :class:`~bbcodec.coding.bitsback.CostStack`), with
    the likelihood calibrated and among level sets as ``settings.calibration`` and ``settings.level_sets``
    say (a file's own).

    This is the trained (float) model's bound, whatever arithmetic the coder uses."""
    settings = settings.resolve(model)
    rows, sets = settings.calibration_rows(model), settings.plane_level_sets(model, pixels.shape[2])
    nats = sum(coded_cost(view, cut_batch(pixels, group, batch, model.device), settings.coder).nats
               for view, group, batch in tile_views(model, settings.layout(*pixels.shape), rows, sets))
    return nats / math.log(2.0)


def measure_model(result: ModelResult, spec: str, pixels: np.ndarray, path: Path, device: str,
                  settings: CoderSettings, calibrate: bool = True) -> str:
    """Compress one image to a real file, decode the file, check it, account for its size; '' or an error."""
    stats: dict = {}
    try:
        start = time.perf_counter()
        data = api.compress(_image(pixels), model=spec, settings=settings, strip_metadata=True, device=device,
                            stats=stats, calibrate=calibrate)
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
        exact = same_pixels(decoded.pixels, pixels)
        error = "" if exact else "decoded pixels differ"
    except BBCodecError as failure:  # the checksum or the seed check caught a wrong decode
        decode_seconds, exact, error = 0.0, False, f"{type(failure).__name__}: {failure}"
    result.add(pixels.size, size, encode_seconds, decode_seconds, exact)
    header = api.info(data)
    chosen = header.get("model") if spec == zoo.AUTO_MODEL else None   # the model auto chose for this image
    model, _ = zoo.by_hash(chosen) if chosen else zoo.load(spec)
    calibrated = replace(settings, calibration=tuple(header.get("pixel_calibration") or ()),
                         level_sets=tuple(header.get("pixel_level_sets") or ()))
    result.nelbo_bits += image_nelbo_bits(model.to(device), pixels, calibrated)
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


def chain_steps(model, images: list[np.ndarray], batch: int, device: str, calibration: list | None = None):
    """(coder view, uint8 batch (B, C, H, W)) for a chain of equal-sized images: batches of
    1, 2, 4, ... up to ``batch`` images, each plane group (RGB, alpha, grey) a step of its own; ``calibration``:
    the rows every view is calibrated by (None: none)."""
    height, width, channels = images[0].shape
    steps, start = [], 0
    for size in batch_sizes(len(images), batch):
        block = np.stack(images[start:start + size]).transpose(0, 3, 1, 2)
        start += size
        for group in plane_groups(channels):
            x = torch.from_numpy(np.ascontiguousarray(block[:, group])).to(device)
            steps.append((TileView(model, group.stop - group.start, height, width, calibration), x))
    return steps


def measure_chain(spec: str, images: list[np.ndarray], batch: int, device: str,
                  settings: CoderSettings = CoderSettings(), progress=None, calibrate: bool = True) -> ChainResult:
    """Code all ``images`` (equal sizes) on one chain, decode it and check every image.

    The chain is coded with the files' coder and arithmetic (``settings``) and, with ``calibrate``, one
    calibration of the pixel likelihood for all its images (:func:`~bbcodec.coding.calibration.choose_for_images`,
    as an archive's chunk carries one), whose bytes count in its size; its −ELBO is the model's own (float)
    bound on the same batches, so calibrated.
    """
    model, digest = zoo.load(spec)
    model = model.to(device)
    settings = settings.resolve(model)
    if calibrate and not settings.calibration:
        settings = replace(settings, calibration=choose_for_images(model, images))
    rows = settings.calibration_rows(model)
    coder = coding_model(model, settings.arithmetic)
    steps = chain_steps(coder, images, batch, device, rows)
    result = ChainResult(f"bbcodec {model_label(spec)}", digest, f"{settings.coder}, {settings.arithmetic}", batch,
                         len(images), int(sum(im.size for im in images)))
    start = time.perf_counter()
    encoded = encode_steps(steps, settings.coder, progress=progress, start=settings.start)
    result.encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    try:
        decoded = decode_steps([(view, tuple(x.shape)) for view, x in steps], encoded, settings.coder,
                               progress=progress)
        result.exact = all(torch.equal(d.cpu(), x.cpu()) for d, (_, x) in zip(decoded, steps))
    except BBCodecError:
        result.exact = False
    result.decode_seconds = time.perf_counter() - start
    result.calibration_bytes = len(settings.calibration)
    result.stored_bits = encoded.stored_bits + 8 * result.calibration_bytes
    result.net_bits, result.initial_bits = encoded.net_bits, encoded.initial_bits
    result.nelbo_bits = sum(coded_cost(TileView(model, view.channels, view.height, view.width, rows), x,
                                       settings.coder).nats for view, x in steps) / math.log(2.0)
    return result


def measure_flow_chain(spec: str, images: list[np.ndarray], batch: int, device: str) -> ChainResult:
    """Code all ``images`` (equal sizes) on one flow chain (:mod:`bbcodec.coding.flow_coder`: local bits-back,
    float arithmetic), decode it and check every image; its bound is the flow's own on the same images (one
    dequantization sample each)."""
    model, digest = zoo.load(spec)
    model = model.to(device)
    pixels = np.stack(images)
    result = ChainResult(f"bbcodec {model_label(spec)}", digest, "local bits-back, float", batch, len(images),
                         int(pixels.size))
    start = time.perf_counter()
    chain = encode_images(model, pixels, batch)
    result.encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    try:
        result.exact = bool(np.array_equal(decode_images(model, chain), pixels))
    except BBCodecError:
        result.exact = False
    result.decode_seconds = time.perf_counter() - start
    result.stored_bits, result.initial_bits = chain.stored_bits, chain.initial_bits
    result.net_bits = result.stored_bits - result.initial_bits
    with torch.no_grad():
        batch = torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()).to(device)
        result.nelbo_bits = evaluate(model, batch, batch_size=50) * pixels.size
    return result


def measure_archive(spec: str, images: list[np.ndarray], chunk_subpixels: int, device: str,
                    settings: CoderSettings = CoderSettings()) -> tuple[ArchiveResult, str]:
    """Pack all ``images`` (any sizes) into one archive in memory, read it back, decode and check every image.

    Returns the result and '' or what went wrong (an image the archive refused, a damaged archive, an image
    that came back different). The size is the whole archive's, header, entries and checksums included.
    """
    settings = replace(settings, arithmetic="exact")  # archives are always exact
    net, digest = zoo.load(spec)
    resolved = settings.resolve(net)
    result = ArchiveResult(f"bbcodec {model_label(spec)}", digest,
                           f"{resolved.coder}, tile {resolved.tile}, {resolved.arithmetic}", chunk_subpixels)
    members = [Member(f"{number:05d}", _image(pixels)) for number, pixels in enumerate(images)]
    buffer = io.BytesIO()
    try:
        start = time.perf_counter()
        packed = pack(members, buffer, model=spec, settings=settings, chunk_subpixels=chunk_subpixels, device=device)
        result.encode_seconds = time.perf_counter() - start
    except BBCodecError as failure:
        return result, f"pack: {type(failure).__name__}: {failure}"
    data = buffer.getvalue()
    result.images, result.chunks, result.subpixels = packed.images, packed.chunks, packed.subpixels
    result.bytes, result.stored_chunks = len(data), packed.stored_chunks
    try:
        start = time.perf_counter()
        archive = Archive(data, model=spec, device=device)
        decoded = list(archive)
        result.decode_seconds = time.perf_counter() - start
    except BBCodecError as failure:  # a damaged header, or a chunk that does not match its digest
        return result, f"{type(failure).__name__}: {failure}"
    if not archive.complete:
        return result, "damaged archive: " + "; ".join(archive.problems)
    result.exact = len(decoded) == len(members) and all(
        name == member.name and same_pixels(image.pixels, member.image.pixels)
        for (name, image), member in zip(decoded, members))
    return result, "" if result.exact else "decoded images differ"


def _model_result(spec: str, model, digest: str, settings: CoderSettings) -> ModelResult:
    """An empty result for ``spec``, labelled with the settings as its files will be coded."""
    resolved = settings.resolve(model)
    chosen = f"model {digest[:12]}"
    if spec == zoo.AUTO_MODEL:
        chosen = (f"model {digest[:12]} ({zoo.DEFAULT_MODEL}; up to {zoo.AUTO_PIXELS:,} pixels the smallest of "
                  f"{', '.join(zoo.AUTO_CHOICES)})")
    return ModelResult(f"bbcodec {model_label(spec)}", f"bbcodec:{model_label(spec)}",
                       f"{chosen}, {resolved.coder}, tile {resolved.tile}, {resolved.arithmetic} arithmetic",
                       model_hash=digest)


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
        chain: bool = False, chain_batch: int = 1, archive: bool = False,
        archive_chunk: int = DEFAULT_CHUNK_SUBPIXELS, device: str = "cpu",
        settings: CoderSettings = CoderSettings(), calibrate: bool = True, workdir=None, notes=(), command: str = "",
        seed: int = 0, progress: Callable[[str, int, int], None] | None = None,
        on_set: Callable[[Report], None] | None = None) -> Report:
    """Measure every model and codec on every set (see :mod:`bbcodec.benchmark`); returns the :class:`Report`.

    ``chain``: also code each set of equal-sized small images on one chain (at most ``chain_batch``
    images a step); a model that codes no files (a flow) is measured on chains only, and only with ``chain``; ``archive``: also pack each set into one archive (chunks of at most ``archive_chunk`` sub-pixels).
    ``calibrate``: files fit the pixel likelihood to each image (:func:`bbcodec.api.compress`).
    ``workdir`` keeps the ``.bbc`` files (default: a temporary folder, removed).
    ``progress(set name, images done, images)`` is called as images are done;
    ``on_set(report)`` after each set (to save partial results).
    """
    device = resolve_device(device)
    codecs = classical_codecs()[0] if codecs is None else list(codecs)
    torch.manual_seed(seed)
    report = Report(environment=environment(device), command=command, notes=list(notes))
    report.environment["coder_settings"] = {**settings.to_dict(), "calibrate": calibrate}
    loaded = {spec: zoo.load(spec) for spec in models}
    flows = [spec for spec in models if not loaded[spec][0].coders]  # they code chains, not files
    models = [spec for spec in models if spec not in flows]
    if flows and not chain:
        raise BBCodecError(f"{model_label(flows[0])}: a {loaded[flows[0]][0].family} model "
                           f"{loaded[flows[0]][0].without_coders}: measure it with --chain")
    _warm_up(models, codecs, device, settings)
    with tempfile.TemporaryDirectory(prefix="bbcodec-bench-") as temporary:
        folder = Path(workdir) if workdir else Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        for index, image_set in enumerate(sets):
            out = SetResult(image_set.name, image_set.source, image_set.kind, len(image_set.images),
                            image_set.subpixels, _shapes(image_set.images), notes=list(image_set.notes))
            model_results = [_model_result(spec, *loaded[spec], settings) for spec in models]
            codec_results = [CodecResult(c.name, c.key, c.settings) for c in codecs]
            for number, (pixels, label) in enumerate(zip(image_set.images, image_set.labels)):
                for spec, result in zip(models, model_results):
                    path = folder / f"set{index}-{Path(spec).stem}-{number:05d}.bbc"
                    error = measure_model(result, spec, pixels, path, device, settings, calibrate)
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
                    for spec in models + flows:
                        try:
                            result = (measure_flow_chain(spec, image_set.images, chain_batch, device)
                                      if spec in flows else
                                      measure_chain(spec, image_set.images, chain_batch, device, settings,
                                                    calibrate=calibrate))
                        except BBCodecError as refused:  # a flow refuses images it cannot code
                            out.notes.append(f"chain not measured with bbcodec {model_label(spec)}: {refused}")
                            continue
                        if not result.exact:
                            report.failures.append(f"{image_set.name}: chain of {result.images} images: "
                                                   f"bbcodec {model_label(spec)}: decoded images differ")
                        out.chains.append(result)
            if archive:
                for spec in models:
                    result, error = measure_archive(spec, image_set.images, archive_chunk, device, settings)
                    if error:
                        report.failures.append(f"{image_set.name}: archive of {len(image_set.images)} images: "
                                               f"bbcodec {model_label(spec)}: {error}")
                    out.archives.append(result)
            report.sets.append(out)
            if on_set:
                on_set(report)
    return report
