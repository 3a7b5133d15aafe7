"""``bbcodec compress``, ``decompress`` and ``test``: thin layers over :mod:`bbcodec.api` (``info``: :mod:`bbcodec_cli.info`).

Conventions are zstd's and xz's: ``compress FILE`` writes ``FILE.bbc`` and
keeps ``FILE`` (``--rm`` removes it once the output is safely on disk, and only
if decompressing gives back its exact bytes: a file kept as it was, or one
that bbcodec would write the same);
``decompress FILE.bbc`` restores ``FILE``; ``-`` is standard input (and then
output); existing files are never overwritten without ``-f``, and binary data
never goes to a terminal without it. Every file is processed even when
another fails; the exit status is 0 if all succeeded, 1 if any failed, 2 for a
usage error. Each error is one line on stderr. Several files are coded side by
side in worker processes under ``-T`` (:mod:`bbcodec_cli.parallel`); each
command's per-file action is a module-level factory (``compress_action``, ...)
so that a worker can build it.

Safety (see also :mod:`bbcodec_cli.files`): outputs appear whole or not at all and get
the input's permissions and times; ``--verify`` decodes a compressed file and
compares it with the image before writing it, and ``--rm`` always does so, and
reads the written output back, before it removes an input; a file whose header
asks for more work than :mod:`bbcodec.container`'s limits is refused unless
``--no-limits``; SIGINT, SIGTERM and SIGHUP remove temporary files before the
process ends.
"""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image
from tqdm import tqdm

from bbcodec import api, container, imageio, zoo
from bbcodec.coding.bitsback import CODERS
from bbcodec.coding.image import ARITHMETIC, CoderSettings
from bbcodec.errors import BBCodecError
from bbcodec.portability import float_platform
from bbcodec_cli.common import (DEVICES, CLIError, error_message, resolve_device_option, resolve_model_option,
                                shown_name, tile_option)
from bbcodec_cli import parallel
from bbcodec_cli.each import ERR, OUT, VERBOSE, bars_wanted, expand, job, refuse_folder, run_each
from bbcodec_cli.files import (STDIO, SUFFIX, check_stdout, check_target, input_stat, read_input, verify_written,
                       write_output)

def _check_outputs(files, output, to_stdout, force):
    """Usage checks on the whole command line, and the terminal check, before any file is touched.

    Returns (output, to_stdout) with ``-o -`` read as ``-c``."""
    if output == STDIO:
        output, to_stdout = None, True
    if output and len(files) > 1:
        raise click.UsageError("-o/--output takes a single input file")
    if output and to_stdout:
        raise click.UsageError("-o and -c cannot be used together")
    if to_stdout and len(files) > 1:
        raise click.UsageError("-c/--stdout takes a single input file (one image per stream)")
    if list(files).count(STDIO) > 1:
        raise click.UsageError("standard input ('-') can be read only once")
    if to_stdout or (STDIO in files and not output):
        check_stdout(force)
    return output, to_stdout


class _TileBar:
    """A progress bar over the tiles of one image (the library reports tiles as it codes them)."""

    def __init__(self, enabled: bool, nested: bool):
        self.enabled, self.nested, self.bar = enabled, nested, None

    def start(self, name: str, total):
        """A bar for ``name``; ``total`` (or a function giving it, called only if a bar is drawn) counts tiles."""
        self.close()
        if self.enabled and callable(total):
            total = total()
        if self.enabled and total:
            self.bar = tqdm(total=total, desc=name, unit="tile", file=sys.stderr, leave=False,
                            position=1 if self.nested else 0)
        return self.update if self.bar is not None else None

    def update(self, count: int) -> None:
        self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


recursive_option = click.option("-r", "--recursive", is_flag=True,
                                help="a folder stands for the files under it (compress: the image files, by suffix; "
                                     "decompress and test: the .bbc files)")
threads_option = click.option("-T", "--threads", type=click.IntRange(0), default=0, show_default=True,
                              help=parallel.threads_option_help)

common_output = [
    click.option("-o", "--output", help="output file (single input only)"),
    click.option("-c", "--stdout", "to_stdout", is_flag=True, help="write to standard output"),
    click.option("-f", "--force", is_flag=True, help="overwrite existing files; allow binary to a terminal"),
    click.option("--rm", "remove", is_flag=True,
                 help="remove the input after the output is safely written (compress: only a file that "
                      "decompresses to the same bytes)"),
    click.option("-k", "--keep", is_flag=True, help="keep the inputs (the default; contradicts --rm)"),
    recursive_option,
    threads_option,
    click.option("-v", "--verbose", is_flag=True,
                 help="one line per file: sizes, ratio, time, MB/s of raw pixels; and how far a long run is"),
    click.option("-q", "--quiet", is_flag=True, help="no progress bar"),
    click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True),
]


def with_options(options):
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function
    return decorate


def _target(name: str, output: str | None, to_stdout: bool, default) -> str:
    if to_stdout or (name == STDIO and not output):
        return STDIO
    return output or default()


def _finish(name: str, remove: bool, target: str, data: bytes) -> None:
    """--rm: remove the input, only now that the output is safely written and reads back as written
    (never with -c or stdin)."""
    if remove and name != STDIO and target != STDIO:
        try:
            verify_written(Path(target), data)
        except CLIError:
            Path(target).unlink(missing_ok=True)  # it is not what was meant to be written
            raise
        try:
            Path(name).unlink()
        except OSError as error:
            raise CLIError(f"kept the new {target}, but could not remove the input: "
                           f"{error.strerror or error} (remove it yourself; rerunning needs -f)") from None


def _same_image(a: imageio.Image, b: imageio.Image) -> bool:
    return (a.mode == b.mode and a.pixels.shape == b.pixels.shape and bool((a.pixels == b.pixels).all())
            and a.palette == b.palette and a.palette_mode == b.palette_mode)


no_limits_option = click.option("--no-limits", is_flag=True,
                                help="decode files over the work limits (only files you trust)")


@click.command()
@click.argument("files", nargs=-1, required=True)
@with_options(common_output)
@click.option("-m", "--model", default=zoo.AUTO_MODEL, show_default=True,
              help=f"model name, .safetensors file or hash; auto: the shipped default, and for an image of at most "
                   f"{zoo.AUTO_PIXELS:,} pixels also the shipped models made for small images, the smallest file kept")
@click.option("--coder", type=click.Choice(["auto", *sorted(CODERS)]), default="auto", show_default=True,
              help="bits-back order (auto: the model's own, bitswap for a Markov chain, topdown for a top-down VAE)")
@tile_option
@click.option("--arithmetic", type=click.Choice(["auto", *ARITHMETIC]), default="auto", show_default=True,
              help="exact (auto): integer networks, the file decodes on any machine; float: faster, but the "
                   "file decodes only on the same kind of machine (CPU, kernels, torch version)")
@click.option("--strip-metadata", is_flag=True, help="drop ICC profile, EXIF and text chunks (transparency is kept)")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="fit the model's pixel likelihood to each image and code planes that take few of the 256 values "
                   "among them (a few header bytes, where they pay for themselves)")
@click.option("--verify/--no-verify", default=False, show_default=True,
              help="decode the result and compare it with the image before writing it (about doubles the "
                   "time; always done with --rm)")
def compress(files, output, to_stdout, force, remove, keep, recursive, threads, verbose, quiet, device, model, coder,
             tile, arithmetic, strip_metadata, calibrate, verify):
    """Compress image FILES to FILE.bbc (keeps the inputs; '-' reads standard input; -r: folders too)."""
    files = _files(files, recursive, remove, keep, lambda path: format_of_name(path) is not None)
    output, to_stdout = _check_outputs(files, output, to_stdout, force)
    if arithmetic == "float":  # a warning even with -q: these files may be unreadable elsewhere
        click.echo(f"bbcodec: warning: --arithmetic float writes files that decode only on this kind of machine "
                   f"({float_platform(resolve_device_option(device))})", err=True)
    device = resolve_device_option(device)
    model = resolve_model_option(model, required=True)
    run_each(files, job("bbcodec_cli.codec:compress_action", output=output, to_stdout=to_stdout, force=force,
                        remove=remove, device=device, model=model, coder=coder, tile=tile, arithmetic=arithmetic,
                        strip_metadata=strip_metadata, calibrate=calibrate, verify=verify,
                        bars=_tile_bars(quiet, files, threads)),
             verbose, quiet, "compress", threads)


def _files(files, recursive: bool, remove: bool, keep: bool, wanted) -> list[str]:
    """The files a coding command works on (folders expanded with -r), after the usage checks of -k."""
    if keep and remove:
        raise click.UsageError("-k/--keep and --rm contradict each other")
    files = expand(files, recursive, wanted)
    if not files:
        raise click.UsageError("no file to process under the folders given")
    return files


def _tile_bars(quiet: bool, files, threads: int) -> str | None:
    """Whether a tile bar is drawn (only when this process codes: one worker), and where: 'nested' under
    the bar over files."""
    if not bars_wanted(quiet) or parallel.plan_for(threads, files)[0]:
        return None
    return "nested" if len(files) > 1 else "alone"


def _timed(function):
    """The action, with the seconds it took passed to the message it makes (``seconds=``)."""
    def timed(name):
        start = time.perf_counter()
        return function(name, lambda: time.perf_counter() - start)
    return timed


def _summary(name: str, size_in: int, size_out: int, pixels: int, seconds: float, what: str) -> str:
    """The -v line of a file: sizes, ratio, time and speed over the image's raw pixels."""
    ratio = size_in / size_out if size_out else float("inf")
    return (f"{shown_name(name)}: {size_in} -> {size_out} bytes ({ratio:.3f}x), {seconds:.2f} s, "
            f"{pixels / 1e6 / max(seconds, 1e-9):.2f} MB/s, {what}")


def compress_action(output, to_stdout, force, remove, device, model, coder, tile, arithmetic, strip_metadata,
                    calibrate, verify, bars):
    """The per-file action of compress (see :mod:`bbcodec_cli.each`)."""
    settings = CoderSettings(coder=coder, tile=tile, arithmetic=arithmetic)
    tiles = _TileBar(bars is not None, nested=bars == "nested")

    @_timed
    def one(name, elapsed):
        refuse_folder(name)
        lines = []
        target = _target(name, output, to_stdout, lambda: name + SUFFIX)
        check_target(name, target, force)
        like = input_stat(name)
        raw = read_input(name)
        image = imageio.read_image(raw)
        layout = api.coding_layout(image, model=model, settings=settings)
        problem = container.work_limit_problem(layout)
        if problem:  # never write a file that decoders refuse by default
            raise BBCodecError(problem)
        stats: dict = {}
        try:
            data = api.compress(image, original=raw, model=model, settings=settings, strip_metadata=strip_metadata,
                                device=device, progress=tiles.start(name, layout.tile_count), stats=stats,
                                calibrate=calibrate)
        finally:
            tiles.close()
        removing = remove and name != STDIO and target != STDIO
        if verify or removing:
            try:
                again = api.decompress(data, model=model, device=device)
            except BBCodecError as error:
                raise BBCodecError(f"verification failed: {error_message(error)} (nothing written)") from None
            if not _same_image(again, image):
                raise BBCodecError("verification failed: the decoded image differs (nothing written)")
        write_output(target, data, force, like)
        if removing and imageio.encode(again, imageio.output_format(again)) != raw:
            removing = False
            lines.append((ERR, f"bbcodec: {shown_name(name)}: kept: decompressing gives back its image, not its "
                               "exact bytes (--rm removes only a file that comes back byte for byte)"))
        _finish(name, removing, target, data)
        what = (f"{8 * len(data) / image.pixels.size:.3f} bits/sub-pixel ({stats['method']})"
                + ("" if target == STDIO else f" -> {shown_name(target)}"))
        lines.append((VERBOSE, _summary(name, len(raw), len(data), image.pixels.size, elapsed(), what)))
        return lines

    return one


def _tile_count(data: bytes):
    """A function giving the tiles a bits-back file decodes as, from its header (None: no bar; the decoder
    reports any damage). Only headers within the decoder's limits are counted."""
    def count() -> int | None:
        try:
            layout = container.Header.readable(container.read_header(data)[0]).layout()
            if layout is None or container.work_limit_problem(layout):
                return None
            return layout.tile_count
        except Exception:
            return None
    return count


def format_of_name(name: str) -> str | None:
    return Image.registered_extensions().get(Path(name).suffix.lower())


def _decompressed_name(name: str, image: imageio.Image) -> str:
    """``x.png.bbc`` -> ``x.png`` (see :func:`image_file_name`)."""
    return image_file_name(name[: -len(SUFFIX)], image)


def image_file_name(base: str, image: imageio.Image) -> str:
    """The name to write ``image`` under, from ``base``: itself if the image is written in its source
    format; else (a JPEG is written as PNG, an array has no format) a known image suffix is replaced
    (``x.jpg`` -> ``x.png``), another appended (``digits/07`` -> ``digits/07.png``)."""
    written = imageio.output_format(image)
    if written == image.format:
        return base
    if format_of_name(base):
        return str(Path(base).with_suffix("." + written.lower()))
    return f"{base}.{written.lower()}"


def _output_format(target: str | None, image: imageio.Image) -> str:
    """The format to write: the one the ``-o`` target's suffix names (it must store this image exactly),
    else the image's own (:func:`bbcodec.imageio.output_format`)."""
    named = format_of_name(target) if target else None
    if named is None or named == imageio.output_format(image):
        return imageio.output_format(image)
    if named in imageio.LOSSLESS_FORMATS and imageio.output_format(image, named) == named:
        return named
    raise CLIError(f"{named} cannot store this {image.mode} image exactly; name the output "
                   f".{imageio.output_format(image).lower()}")


def _decompressed_name_from_header(name: str, data: bytes) -> str | None:
    """The name decompress writes, when the file tells it before decoding: a file kept byte for byte comes
    back in its own format; otherwise the format :func:`bbcodec.imageio.output_format` picks from the mode,
    palette, metadata and size, which the header and sections give (an RGBA WebP alone also depends on
    its alpha values). None when it cannot tell; the decoder reports any damage."""
    try:
        box = container.from_bytes(data)
        header = container.Header.from_json(box.header)
        if header.method == "original":
            return name[: -len(SUFFIX)]
        if (header.source_format, header.mode) == ("WEBP", "RGBA"):
            return None
        metadata = container.metadata_of(box.sections)
        planes = np.zeros((header.height, header.width, header.channels), dtype=np.uint8)
        skeleton = imageio.Image(planes, header.mode, box.sections.get("palette"), header.palette_mode,
                                 header.source_format, metadata)
        return _decompressed_name(name, skeleton)
    except Exception:
        return None


@click.command()
@click.argument("files", nargs=-1, required=True)
@with_options(common_output)
@click.option("-m", "--model", default=None, help="model name, .safetensors file or hash (default: the one the file names)")
@no_limits_option
def decompress(files, output, to_stdout, force, remove, keep, recursive, threads, verbose, quiet, device, model,
               no_limits):
    """Restore FILES (.bbc) to images with the original name, format and pixels (-r: the .bbc files in folders).

    A source format that is not lossless (JPEG) is written as PNG, and the name's suffix follows.
    """
    files = _files(files, recursive, remove, keep, lambda path: path.endswith(SUFFIX))
    output, to_stdout = _check_outputs(files, output, to_stdout, force)
    device = resolve_device_option(device)
    model = resolve_model_option(model, required=False)
    run_each(files, job("bbcodec_cli.codec:decompress_action", no_limits, output=output, to_stdout=to_stdout,
                        force=force, remove=remove, device=device, model=model,
                        bars=_tile_bars(quiet, files, threads)),
             verbose, quiet, "decompress", threads)


def decompress_action(output, to_stdout, force, remove, device, model, bars):
    """The per-file action of decompress (see :mod:`bbcodec_cli.each`)."""
    tiles = _TileBar(bars is not None, nested=bars == "nested")

    @_timed
    def one(name, elapsed):
        refuse_folder(name)
        if not (to_stdout or output or name == STDIO or name.endswith(SUFFIX)):
            raise CLIError(f"unknown suffix (expected {SUFFIX}; use -o or -c to name the output)")
        if output or to_stdout or name == STDIO:  # else the name depends on the image's format
            check_target(name, _target(name, output, to_stdout, None), force)
        like = input_stat(name)
        data = read_input(name)
        known = None if (output or to_stdout or name == STDIO) else _decompressed_name_from_header(name, data)
        if known is not None:
            check_target(name, known, force)
        image = _decoded(data, model, device, tiles, name)
        target = _target(name, output, to_stdout, lambda: _decompressed_name(name, image))
        check_target(name, target, force)
        fmt = _output_format(output, image)
        buffer = io.BytesIO()
        imageio.write_image(image, buffer, format=fmt)  # read back and compared with the decoded image
        write_output(target, buffer.getvalue(), force, like)
        _finish(name, remove, target, buffer.getvalue())
        shown = "stdout" if target == STDIO else shown_name(target)
        what = f"{image.width}x{image.height} {image.mode} -> {shown} ({fmt})"
        return [(VERBOSE, _summary(name, len(data), len(buffer.getvalue()), image.pixels.size, elapsed(), what))]

    return one


def _decoded(data: bytes, model, device, tiles, name: str) -> imageio.Image:
    try:
        return api.decompress(data, model=model, device=device, progress=tiles.start(name, _tile_count(data)))
    finally:
        tiles.close()


@click.command("test")
@click.argument("files", nargs=-1, required=True)
@click.option("-m", "--model", default=None, help="model name, .safetensors file or hash (default: the one the file names)")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="print only errors")
@recursive_option
@threads_option
@no_limits_option
def test_command(files, model, device, quiet, recursive, threads, no_limits):
    """Decode .bbc FILES fully, verify their checksums and that decompress can write them; writes nothing."""
    files = _files(files, recursive, False, False, lambda path: path.endswith(SUFFIX))
    if list(files).count(STDIO) > 1:
        raise click.UsageError("standard input ('-') can be read only once")
    device = resolve_device_option(device)
    model = resolve_model_option(model, required=False)
    run_each(files, job("bbcodec_cli.codec:test_action", no_limits, model=model, device=device, quiet=quiet,
                        bars=_tile_bars(quiet, files, threads)),
             False, quiet, "test", threads)


def test_action(model, device, quiet, bars):
    """The per-file action of test (see :mod:`bbcodec_cli.each`)."""
    tiles = _TileBar(bars is not None, nested=bars == "nested")

    def one(name):
        refuse_folder(name)
        image = _decoded(read_input(name), model, device, tiles, name)
        imageio.write_image(image, io.BytesIO())  # what decompress would write, checked and dropped
        return [] if quiet else [(OUT, f"{shown_name(name)}: OK")]

    return one
