"""Writing an archive: members packed chunk by chunk, each chunk one bits-back chain (or raw pixels)."""
from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Iterable

import numpy as np

from bbcodec import container, zoo
from bbcodec.archive.entries import ArchiveError, Member, check_name, entries_bytes, entries_of
from bbcodec.archive.layout import (CHUNK_MAGIC, DEFAULT_CHUNK_SUBPIXELS, END_MAGIC, MAX_CHUNK_SUBPIXELS, START,
                                    VERSION, ArchiveHeader, batch_sizes_bytes, calibration_bytes, chain_steps,
                                    content_digest, deflated, group_limits, grouped_seed_length, grouped_steps,
                                    image_steps, stack_sizes_bytes)
from bbcodec.coding.ans import ENTROPY_CODER
from bbcodec.coding.calibration import choose_for_images, presets_worth_trying
from bbcodec.coding.chain import encode_growing, encode_steps
from bbcodec.coding.image import CoderSettings, coding_model
from bbcodec.errors import UnsupportedImageError
from bbcodec.safeio import write_all
from bbcodec.wire import crc32, varint

@dataclass
class PackReport:
    """What :func:`pack` wrote: images, chunks, bytes, the images' sub-pixels, the chunks stored raw and the
    images kept as their files."""

    images: int = 0
    chunks: int = 0
    bytes: int = 0
    subpixels: int = 0
    stored_chunks: int = 0
    kept_files: int = 0

    @property
    def bits_per_subpixel(self) -> float:
        return 8 * self.bytes / max(1, self.subpixels)


def pack(members: Iterable[Member], target, *, model: str = zoo.DEFAULT_MODEL,
         settings: CoderSettings = CoderSettings(), chunk_subpixels: int = DEFAULT_CHUNK_SUBPIXELS,
         device: str = "cpu", progress=None) -> PackReport:
    """Write an archive of ``members`` to ``target`` (a binary file object), chunk by chunk, in their order.

    A chunk is closed once it holds ``chunk_subpixels`` sub-pixels; an image never spans two chunks.
    ``progress(images)`` is called after each chunk. Raises ArchiveError for a member that an archive
    cannot hold (a bad or repeated name), UnsupportedImageError for an image the model cannot code.
    """
    if not 1 <= chunk_subpixels <= MAX_CHUNK_SUBPIXELS:
        raise ValueError(f"chunk_subpixels must be 1..{MAX_CHUNK_SUBPIXELS}")
    net, digest = zoo.load(model)
    net = net.to(device)
    settings = settings.for_encoding(net)
    if settings.arithmetic != "exact":
        raise ArchiveError("archives are coded in exact arithmetic, so that they decode on every machine")
    header = ArchiveHeader(digest, settings, net.config.grid_bits, ENTROPY_CODER, VERSION)
    report = PackReport()
    _write(target, header.to_bytes(), report)
    names: set[str] = set()
    chunk: list[Member] = []
    subpixels = passes = 0
    for member in members:
        if check_name(member.name) in names:
            raise ArchiveError(f"{member.name}: two members of one name")
        names.add(member.name)
        layout = settings.layout(*member.image.pixels.shape)
        problem = container.work_limit_problem(layout)
        if problem or member.image.pixels.size > MAX_CHUNK_SUBPIXELS:
            raise UnsupportedImageError(f"{member.name}: {problem or 'too large for an archive chunk'}")
        size, work = member.image.pixels.size, layout.work()[0]
        if chunk and (subpixels + size > chunk_subpixels or passes + work > container.MAX_TILE_BATCHES):
            _write_chunk(target, net, header, chunk, report, progress)
            chunk, subpixels, passes = [], 0, 0
        chunk.append(member)
        subpixels, passes = subpixels + size, passes + work
    if chunk:
        _write_chunk(target, net, header, chunk, report, progress)
    end = END_MAGIC + varint(report.chunks) + varint(report.images)
    _write(target, end + struct.pack("<I", crc32(end)), report)
    return report


def _write(target, data: bytes, report: PackReport) -> None:
    write_all(target, data)
    report.bytes += len(data)


def _write_chunk(target, net, header: ArchiveHeader, chunk: list[Member], report: PackReport, progress) -> None:
    """One chunk: its members on one chain (or raw), except those whose code is larger than the file they came
    from, which the chunk keeps as those files' bytes (then the others are coded again without them); from
    version 4 with one calibration of the pixel likelihood for its images, where it pays."""
    settings, form = header.settings, header.format
    model = coding_model(net, settings.arithmetic)
    if form.calibrates:
        encoded, steps, sizes, settings = _calibrated_chain(net, model, chunk, header, settings)
    else:
        encoded, steps, sizes = _chain(model, chunk, header, settings)
    kept = _costlier_than_their_files(encoded, steps, chunk)
    coded = [m for i, m in enumerate(chunk) if i not in kept]
    if kept:
        encoded, _, sizes = _chain(model, coded, header, settings)
    entries = entries_bytes(entries_of(chunk, kept))
    raw = sum(m.image.pixels.size for m in coded)
    if encoded is not None and encoded.stored_bits // 8 < raw:
        method = [bytes([0]), varint(encoded.untouched_seed_words), START.write(encoded.start),
                  stack_sizes_bytes(encoded.stack_words, form.deflate_bits)]
        if form.stores_batches:
            method.append(batch_sizes_bytes(sizes, form.deflate_bits))
        if form.calibrates:
            method.append(calibration_bytes(settings.calibration))
        payload = encoded.payload.astype("<u4").tobytes()
    else:
        method, payload = [bytes([1])], b"".join(np.ascontiguousarray(m.image.pixels).tobytes() for m in coded)
        report.stored_chunks += bool(coded)
    files = b"".join(varint(len(chunk[i].image.original)) + chunk[i].image.original for i in sorted(kept))
    contents = [m.image.original if i in kept else m.image.pixels for i, m in enumerate(chunk)]
    compressed = deflated(entries, form.deflate_bits)
    body = b"".join([varint(len(compressed)), compressed, *method, varint(len(payload)), payload, files,
                     content_digest(entries, contents, form.digest_bytes)])
    _write(target, CHUNK_MAGIC + varint(len(body)) + body + struct.pack("<I", crc32(body)), report)
    report.chunks += 1
    report.images += len(chunk)
    report.kept_files += len(kept)
    report.subpixels += sum(m.image.pixels.size for m in chunk)
    if progress:
        progress(len(chunk))


def _calibrated_chain(net, model, chunk: list[Member], header: ArchiveHeader, settings: CoderSettings):
    """As :func:`_chain`, with the settings it coded with: the chunk's images coded with one calibration chosen for
    them and, for a chunk small enough (:data:`~bbcodec.coding.calibration.SIDE_SHARE`), with each shipped for
    the model, the smallest chain with its calibration's bytes kept."""
    own = choose_for_images(net, [m.image.pixels for m in chunk])
    tries = [own] + presets_worth_trying([own], net.calibration_presets, sum(m.image.pixels.size for m in chunk))
    coded = [(*_chain(model, chunk, header, replace(settings, calibration=c)), replace(settings, calibration=c))
             for c in tries]
    return min(coded, key=lambda tried: (tried[0].stored_bits if tried[0] else 0) + 8 * len(tried[3].calibration))


def _chain(model, members: list[Member], header: ArchiveHeader, settings: CoderSettings):
    """The members' images on one chain coded with ``settings`` (the header's, and the chunk's calibration), its
    steps and, since version 3, how many of the images' own batches each step joins (None, [] and None for no
    members)."""
    if not members:
        return None, [], None
    images = [m.image.pixels for m in members]
    shapes = [image.shape for image in images]
    if header.format.stores_batches:
        units = image_steps(model, shapes, settings)
        encoded, sizes = encode_growing([(step.view, step.cut(images, model.device)) for step, _ in units],
                                        group_limits(units, settings.max_batch), settings.coder, settings.start,
                                        grouped_seed_length(units, settings.max_batch))
        return encoded, grouped_steps(units, sizes, settings.max_batch), sizes
    steps = chain_steps(model, shapes, settings, header.format.grows_batches)
    batches = [(step.view, step.cut(images, model.device)) for step in steps]
    return encode_steps(batches, settings.coder, start=settings.start), steps, None


def _costlier_than_their_files(encoded, steps: list, members: list[Member]) -> frozenset:
    """The indices of members that came from a file (``image.original``) whose code on the chain, the stack's
    growth over their batches (a batch's shared by its images' tiles), is larger than that file."""
    growth: dict[int, float] = {}
    previous = encoded.seed_words
    for size, step in zip(encoded.stack_words, steps):
        tiles = step.shape()[0]
        for _, batch, index in step.parts:
            growth[index] = growth.get(index, 0) + (int(size) - previous) * len(batch) / tiles
        previous = int(size)
    return frozenset(index for index, words in growth.items()
                     if members[index].image.original is not None and 4 * words > len(members[index].image.original))
