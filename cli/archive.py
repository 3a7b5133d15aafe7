"""``bbcodec pack``, ``unpack`` and ``list``: archives of many images on bits-back chains (:mod:`bbcodec.archive`).

``pack`` reads image files, folders (every image file under them), ``.npz``
arrays and MNIST idx files, and writes one archive under a temporary name,
renamed into place when it is whole. ``unpack`` writes each member under its
name inside a folder (never outside it), as the image file
:func:`bbcodec.imageio.write_image` writes; a damaged chunk is reported, and
the images of the other chunks are written. Every damage is one line on
stderr and exit status 1.
"""
from __future__ import annotations

import io
import mmap
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

import click
from tqdm import tqdm

from bbcodec import archive, imageio
from bbcodec.coding.image import CoderSettings
from bbcodec.errors import BBCodecError
from bbcodec.training.data import IMAGE_SUFFIXES, load_mnist_images, read_npz
from bbcodec_cli.codec import DEVICES, image_file_name, threads_option
from bbcodec_cli.common import (CLIError, error_message, fail_cleanly, resolve_device_option, resolve_model_option,
                                tile_option)
from bbcodec_cli.each import bars_wanted
from bbcodec_cli.files import atomic_write, new_file, same_file
from bbcodec_cli.parallel import cores_for, set_torch_threads


# -- pack ----------------------------------------------------------------------------------------------------
def members_of(inputs, npz_key: str | None = None):
    """The archive members of the command's inputs, read one at a time, in order: an image file under its
    own name, a folder's image files under ``folder/...`` (sorted), an ``.npz`` array's or MNIST idx file's
    images as the series ``file/0000``, ``file/0001``, ..."""
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            for file in files:
                yield _file_member("/".join((path.name or "images",) + file.relative_to(path).parts), file)
        elif path.suffix == ".npz" or "idx3" in path.name:
            yield from _array_members(path, npz_key)
        elif path.is_file():
            yield _file_member(path.name, path)
        else:
            raise CLIError(f"{name}: no such file or folder")


def _file_member(name: str, path: Path) -> archive.Member:
    """The image of a file, carrying the file's bytes: the archive keeps those instead when its code is larger."""
    data = path.read_bytes()
    lossy = imageio.lossy_coding(data)
    if lossy:
        raise CLIError(f"{path}: a lossy {lossy} file; archives hold exact pixels of lossless images "
                       "(bbcodec compress keeps such a file byte for byte)")
    try:
        return archive.Member(name, replace(imageio.read_image(data), original=data))
    except BBCodecError as error:
        raise CLIError(f"{path}: {error_message(error)}") from None


def _array_members(path: Path, npz_key: str | None):
    if path.suffix == ".npz":
        images = read_npz(path, npz_key, preferred="test_x")
    else:
        images = load_mnist_images(path).numpy().transpose(0, 2, 3, 1)
    digits = len(str(max(len(images) - 1, 0)))
    for index, pixels in enumerate(images):
        image = imageio.Image(pixels, imageio.PLAIN_MODES[pixels.shape[2]])
        yield archive.Member(f"{path.name}/{index:0{digits}d}", image)


@click.command("pack")
@click.argument("target", metavar="ARCHIVE")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-m", "--model", default=None, help="model name, .safetensors file or hash (default: the shipped model)")
@click.option("--chunk", type=click.IntRange(1, archive.MAX_CHUNK_SUBPIXELS), default=archive.DEFAULT_CHUNK_SUBPIXELS,
              show_default=True, help="sub-pixels per chunk: larger costs fewer initial bits, smaller makes "
                                      "extracting one image faster")
@tile_option
@click.option("--npz-key", default=None, help="the array of an .npz input (default: test_x, or its only array)")
@click.option("-f", "--force", is_flag=True, help="overwrite an existing archive")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar and no summary line")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@threads_option
@fail_cleanly
def pack_command(target, inputs, model, chunk, tile, npz_key, force, quiet, device, threads):
    """Pack INPUTS (image files, folders, .npz arrays, MNIST idx files) into the archive ARCHIVE (.bba), in
    exact arithmetic (it decodes on every machine)."""
    if os.path.lexists(target) and not force:
        raise CLIError(f"{target} already exists (use -f to overwrite)")
    if any(same_file(name, target) for name in inputs):
        raise CLIError(f"{target} is one of the inputs")
    model = resolve_model_option(model, required=True)
    device = resolve_device_option(device)
    settings = CoderSettings(tile=tile)
    set_torch_threads(cores_for(threads))
    bar = tqdm(desc=target, unit="image", file=sys.stderr, leave=False) if bars_wanted(quiet) else None
    try:
        with new_file(Path(target), overwrite=force, private=False) as file:
            report = archive.pack(members_of(inputs, npz_key), file, model=model, settings=settings,
                                  chunk_subpixels=chunk, device=device, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    if not quiet:
        kept = f" ({report.kept_files} kept byte for byte: the model's code was larger)" if report.kept_files else ""
        click.echo(f"{target}: {report.images} images{kept} in {report.chunks} chunks, {report.bytes:,} bytes, "
                   f"{report.bits_per_subpixel:.3f} bits per sub-pixel", err=True)


# -- reading ---------------------------------------------------------------------------------------------------
def open_archive(name: str, model: str | None = None, device: str = "cpu") -> archive.Archive:
    """The archive in the regular file ``name``, mapped into memory (only the chunks used are read)."""
    try:
        handle = os.open(name, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO would block until a writer came
        try:
            info = os.fstat(handle)
            if not stat.S_ISREG(info.st_mode):
                raise CLIError(f"{name}: not a regular file")
            data = mmap.mmap(handle, 0, access=mmap.ACCESS_READ) if info.st_size else b""
        finally:
            os.close(handle)
    except OSError as error:
        raise CLIError(f"{name}: {error.strerror or error}") from None
    return archive.Archive(data, model=model, device=device)


def _report(name: str, problems) -> int:
    for problem in problems:
        click.echo(f"bbcodec: {name}: {problem}", err=True)
    return 1 if problems else 0


@click.command("list")
@click.argument("name", metavar="ARCHIVE")
@click.option("-l", "--long", "long_format", is_flag=True, help="with each image's size, mode and chunk")
@fail_cleanly
def list_command(name, long_format):
    """List the images of ARCHIVE, one name a line (damaged chunks are reported on stderr)."""
    box = open_archive(name)
    for chunk in box.chunks:
        for member, description in chunk.members:
            if long_format:
                click.echo(f"{description.width:>6}x{description.height:<6} {description.mode:<5} "
                           f"chunk {chunk.index + 1:<4} {member}")
            else:
                click.echo(member)
    raise SystemExit(_report(name, box.problems))


def _inside(folder: Path, target: Path) -> Path:
    """``target`` (under ``folder``) with its parent folders made, or CLIError if a link leads it outside."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(folder.resolve()):
        raise CLIError(f"{target}: a link leads outside {folder}; not written")
    return target


@click.command("unpack")
@click.argument("name", metavar="ARCHIVE")
@click.argument("members", nargs=-1)
@click.option("-C", "--directory", default=".", show_default=True, help="the folder to write the images into")
@click.option("-m", "--model", default=None,
              help="model name, .safetensors file or hash (default: the one the archive names)")
@click.option("-f", "--force", is_flag=True, help="overwrite existing files")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@threads_option
@fail_cleanly
def unpack_command(name, members, directory, model, force, device, threads):
    """Write the images of ARCHIVE (or only the MEMBERS named) into a folder, under their names."""
    box = open_archive(name, resolve_model_option(model, required=False), resolve_device_option(device))
    folder = Path(directory)
    wanted = set(members)
    missing = sorted(wanted - set(box.names()))
    problems = list(box.problems) + [f"{member}: not in the archive" for member in missing]
    set_torch_threads(cores_for(threads))
    for chunk in box.chunks:
        if wanted and not wanted & {member for member, _ in chunk.members}:
            continue
        try:
            images = box.decode_chunk(chunk)
        except BBCodecError as error:
            problems.append(error_message(error))
            continue
        for member, image in images:
            if not wanted or member in wanted:
                target = _inside(folder, folder / image_file_name(member, image))
                atomic_write(target, _encoded(image), overwrite=force, private=False)
    raise SystemExit(_report(name, problems))


def _encoded(image: imageio.Image) -> bytes:
    buffer = io.BytesIO()
    imageio.write_image(image, buffer)
    return buffer.getvalue()
