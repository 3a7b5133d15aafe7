"""``bbcodec compress``, ``decompress``, ``info`` and ``test``: thin layers over :mod:`bbcodec.api`."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import click
from PIL import Image
from tqdm import tqdm

from bbcodec import api, imageio, zoo
from bbcodec.coding.bitsback import CODERS
from bbcodec.coding.image import CoderSettings
from bbcodec.errors import BBCodecError
from cli.files import SUFFIX, read_input, write_output

DEVICES = ["cpu", "cuda", "auto"]


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: no CUDA device is available")
    return name


def _check_outputs(files, output, to_stdout):
    if output and len(files) > 1:
        raise click.UsageError("-o/--output takes a single input file")
    if output and to_stdout:
        raise click.UsageError("-o and -c cannot be used together")


def _run_each(files, action, verbose, quiet, label):
    """Run ``action(name)`` for each file; report errors one line each; exit 1 if any failed."""
    failed = 0
    bar = tqdm(files, desc=label, unit="file", file=sys.stderr,
               disable=quiet or len(files) < 2 or not sys.stderr.isatty())
    for name in bar:
        try:
            message = action(name)
            if verbose and message:
                tqdm.write(message, file=sys.stderr)
        except (BBCodecError, click.ClickException, OSError) as error:
            failed += 1
            text = error.format_message() if isinstance(error, click.ClickException) else str(error)
            if isinstance(error, OSError) and error.strerror:
                text = f"{error.strerror}: {error.filename or name}"
            click.echo(f"bbcodec: {name}: {text}", err=True)
    if failed:
        sys.exit(1)


common_output = [
    click.option("-o", "--output", help="output file (single input only)"),
    click.option("-c", "--stdout", "to_stdout", is_flag=True, help="write to standard output"),
    click.option("-f", "--force", is_flag=True, help="overwrite existing files; allow binary to a terminal"),
    click.option("--rm", "remove", is_flag=True, help="remove the input after the output is safely written"),
    click.option("-v", "--verbose", is_flag=True),
    click.option("-q", "--quiet", is_flag=True),
    click.option("-m", "--model", default=None, help="model name, file or hash (default: the shipped model)"),
    click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True),
]


def with_options(options):
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function
    return decorate


def _finish(name: str, remove: bool, target: str) -> None:
    if remove and name != "-" and target != "-":
        Path(name).unlink()


@click.command()
@click.argument("files", nargs=-1, required=True)
@with_options(common_output)
@click.option("--coder", type=click.Choice(sorted(CODERS)), default="bitswap", show_default=True)
@click.option("--tile", type=click.IntRange(8, 1024), default=CoderSettings.tile, show_default=True)
@click.option("--strip-metadata", is_flag=True, help="drop ICC profile, EXIF and text chunks")
@click.option("--verify", is_flag=True, help="decode the result and compare before reporting success")
def compress(files, output, to_stdout, force, remove, verbose, quiet, model, device, coder, tile,
             strip_metadata, verify):
    """Compress image FILES to FILE.bbc (keeps the inputs; '-' reads standard input)."""
    _check_outputs(files, output, to_stdout)
    settings = CoderSettings(coder=coder, tile=tile)
    device = _device(device)

    def one(name):
        target = "-" if to_stdout or (name == "-" and not output) else output or name + SUFFIX
        if target != "-" and Path(target).exists() and not force:
            raise click.ClickException(f"{target} already exists (use -f to overwrite)")
        raw = read_input(name)
        image = imageio.read_image(raw)
        data = api.compress(image, model=model or zoo.DEFAULT_MODEL, settings=settings,
                            strip_metadata=strip_metadata, device=device)
        if verify:
            again = api.decompress(data, model=model, device=device)
            if not (again.pixels.shape == image.pixels.shape and (again.pixels == image.pixels).all()):
                raise BBCodecError("verification failed: the decoded pixels differ (file not written)")
        write_output(target, data, force, None if name == "-" else Path(name))
        _finish(name, remove, target)
        subpixels = image.pixels.size
        return f"{name}: {len(raw)} -> {len(data)} bytes, {8 * len(data) / subpixels:.3f} bits/sub-pixel"

    _run_each(files, one, verbose, quiet, "compress")


def _decompressed_name(name: str, image) -> str:
    base = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name + ".out"
    wanted = imageio.output_format(image)
    if Path(base).suffix and Image.registered_extensions().get(Path(base).suffix.lower()) != wanted:
        base = str(Path(base).with_suffix("." + wanted.lower()))
    return base


@click.command()
@click.argument("files", nargs=-1, required=True)
@with_options(common_output)
def decompress(files, output, to_stdout, force, remove, verbose, quiet, model, device):
    """Restore FILES (.bbc) to images with the original name, format and pixels."""
    _check_outputs(files, output, to_stdout)
    device = _device(device)

    def one(name):
        image = api.decompress(read_input(name), model=model, device=device)
        target = "-" if to_stdout or (name == "-" and not output) else output or _decompressed_name(name, image)
        buffer = io.BytesIO()
        imageio.write_image(image, buffer)
        write_output(target, buffer.getvalue(), force, None if name == "-" else Path(name))
        _finish(name, remove, target)
        return f"{name} -> {target}"

    _run_each(files, one, verbose, quiet, "decompress")


@click.command()
@click.argument("files", nargs=-1, required=True)
def info(files):
    """Show the header of .bbc FILES without decoding them."""

    def one(name):
        data = read_input(name)
        header = api.info(data)
        subpixels = header["width"] * header["height"] * header["channels"]
        click.echo(f"{name}: {header['width']}x{header['height']} {header['mode']}, "
                   f"{len(data)} bytes, {8 * len(data) / subpixels:.3f} bits/sub-pixel, "
                   f"method {header.get('method')}, coder {header.get('coder', {}).get('coder', '-')}, "
                   f"model {header['model'][:16]}")

    _run_each(files, one, False, True, "info")


@click.command("test")
@click.argument("files", nargs=-1, required=True)
@click.option("-m", "--model", default=None)
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def test_command(files, model, device, quiet):
    """Decode .bbc FILES fully and verify their checksums; writes nothing."""
    device = _device(device)

    def one(name):
        api.decompress(read_input(name), model=model, device=device)
        if not quiet:
            click.echo(f"{name}: OK")

    _run_each(files, one, False, quiet, "test")
