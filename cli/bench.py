"""``bbcodec bench``: bbcodec's real file sizes and speed next to the classical lossless codecs.

A thin layer over :mod:`bbcodec.benchmark`. Exit status 0 when every file of
every codec decoded to exactly its pixels, 1 when any did not (each failure is
reported on stderr as ``LOSSLESS FAILURE: ...``) or on an error, 2 for usage.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from tqdm import tqdm

from bbcodec import benchmark, zoo
from bbcodec.archive import DEFAULT_CHUNK_SUBPIXELS, MAX_CHUNK_SUBPIXELS
from bbcodec.coding.bitsback import CODERS
from bbcodec.coding.image import ARITHMETIC, CoderSettings
from bbcodec_cli import parallel
from bbcodec_cli.common import DEVICES, CLIError, fail_cleanly, resolve_device_option, resolve_model_option, tile_option

CODEC_HELP = ("classical codecs, comma-separated, from: " + ", ".join(benchmark.ALL_KEYS)
              + "; or 'default' (all but avif), 'all', 'none'")


@click.command("bench")
@click.argument("paths", nargs=-1)
@click.option("-m", "--model", "models", multiple=True,
              help="bbcodec model (name, file or hash, or auto as compress has it); repeat for several [default: auto]")
@click.option("--codecs", default="default", show_default=True, help=CODEC_HELP)
@click.option("--chain", is_flag=True, help="also code each set of equal-sized images as ONE bits-back chain")
@click.option("--chain-batch", type=click.IntRange(1, 4096), default=1, show_default=True,
              help="images per chain step at most (steps grow 1, 2, 4, ...)")
@click.option("--archive", is_flag=True, help="also pack each set (any sizes) into ONE archive, as bbcodec pack does")
@click.option("--archive-chunk", type=click.IntRange(1, MAX_CHUNK_SUBPIXELS), default=DEFAULT_CHUNK_SUBPIXELS,
              show_default=True, help="sub-pixels per archive chunk at most")
@click.option("--limit", type=click.IntRange(1), help="the first N images of each set only")
@click.option("--npz-key", help="array in .npz files [default: test_x, or the only one]")
@click.option("--coder", type=click.Choice(["auto", *sorted(CODERS)]), default="auto", show_default=True,
              help="bits-back order (auto: the model's own, bitswap for a Markov chain, topdown for a top-down VAE)")
@tile_option
@click.option("--arithmetic", type=click.Choice(["auto", *ARITHMETIC]), default="auto", show_default=True,
              help="how the network computes the coder's probabilities (as for compress)")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="fit the pixel likelihood to each file's image (as for compress)")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("-T", "--threads", type=click.IntRange(0), default=0, show_default=True,
              help="torch CPU threads (0: all cores this process may use)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write the results as JSON")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="write a bar chart (PNG)")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), help="write a Markdown report")
@click.option("--from-json", "from_json", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="measure nothing: report on earlier --json results (repeatable; with --markdown, --plot)")
@click.option("--title", default="bbcodec bench results", show_default=True, help="title of the Markdown report")
@click.option("--note", "notes_given", multiple=True, help="a remark for the Markdown report (repeatable)")
@click.option("--keep", "keep_dir", type=click.Path(file_okay=False), help="keep the .bbc files in this folder")
@click.option("-q", "--quiet", is_flag=True, help="no progress bars")
@fail_cleanly
def bench(paths, models, codecs, chain, chain_batch, archive, archive_chunk, limit, npz_key, coder, tile, arithmetic,
          calibrate, device, threads, json_path, plot_path, markdown_path, from_json, title, notes_given, keep_dir, quiet):
    """Measure bbcodec against PNG, WebP, JPEG XL, JPEG 2000, ... on PATHS, with real files.

    Each PATH is a set: a folder of images, a quoted glob of image files, an
    .npz array of uint8 images, or an MNIST idx3 file; NAME=PATH names the set.
    Image files listed one by one form one set. Every file of every codec is
    decoded and compared with the pixels. Prints a table; --json, --plot and
    --markdown write the results.

    \b
    bbcodec bench 'photos=data/photos/04[1-9].png' data/waterloo --json out.json --plot out.png
    bbcodec bench mnist=t10k-images-idx3-ubyte.gz --chain --archive --limit 100
    """
    if from_json:
        if paths:
            raise click.UsageError("--from-json reports on earlier results: give no PATH")
        reports = [benchmark.read_json(p) for p in from_json]
        _write(reports, None, plot_path, markdown_path, title, notes_given)
        for report in reports:
            click.echo(benchmark.format_table(report))
        return
    if not paths:
        raise click.UsageError("give at least one PATH (or --from-json)")
    parallel.set_torch_threads(parallel.cores_for(threads))
    try:
        keys = benchmark.parse_codec_keys(codecs)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--codecs") from None
    specs = [resolve_model_option(spec, required=True) for spec in (models or (zoo.AUTO_MODEL,))]
    device = resolve_device_option(device)
    sets = benchmark.open_sets(paths, limit=limit, npz_key=npz_key)
    chosen, notes = benchmark.classical_codecs(keys)
    for note in notes:
        click.echo(f"bbcodec: note: {note}", err=True)
    bars = {}

    def progress(name, done, total):
        if quiet or not sys.stderr.isatty():
            return
        bar = bars.get(name) or bars.setdefault(name, tqdm(total=total, desc=name, unit="image", leave=False))
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    def partial(report):  # each set's results are saved as soon as they are measured
        if json_path:
            benchmark.write_json(report, json_path)
        if not quiet:
            click.echo(f"bbcodec: measured {report.sets[-1].name}", err=True)

    settings = CoderSettings(coder=coder, tile=tile, arithmetic=arithmetic)
    report = benchmark.run(sets, specs, chosen, chain=chain, chain_batch=chain_batch, archive=archive,
                           archive_chunk=archive_chunk, device=device, settings=settings, calibrate=calibrate,
                           workdir=keep_dir,
                           notes=notes, command=_command_line(), progress=progress, on_set=partial)
    _write([report], json_path, plot_path, markdown_path, title, notes_given)
    click.echo(benchmark.format_table(report))
    if report.failures:
        for failure in report.failures:
            click.echo(f"bbcodec: LOSSLESS FAILURE: {failure}", err=True)
        raise CLIError(f"{len(report.failures)} file(s) did not decode to their exact pixels")


def _write(reports, json_path, plot_path, markdown_path, title, notes):
    if json_path:
        benchmark.write_json(reports[0], json_path)
    charted = bool(plot_path) and benchmark.plot(reports, plot_path)
    if plot_path and not charted:
        click.echo("bbcodec: note: no chart: matplotlib is not installed (pip install 'bbcodec[plot]')", err=True)
    if markdown_path:
        text = "\n".join(f"- {note}" for note in notes)
        made_by = _command_line() if json_path is None else ""
        chart = os.path.relpath(plot_path, os.path.dirname(os.path.abspath(markdown_path))) if charted else ""
        Path(markdown_path).write_text(benchmark.markdown(reports, title, text, made_by, chart.replace(os.sep, "/")))


def _command_line() -> str:
    """This command as it could be typed again: its arguments, then every option not left at its default."""
    import shlex

    ctx = click.get_current_context()
    words, options = ["bbcodec", "bench"], []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            words += list(value)
        elif value not in (None, ()) and value != param.default and param.name != "help":
            flag = param.opts[-1] if param.opts[-1].startswith("--") else param.opts[0]
            if param.is_flag:   # an on/off pair turned off (--no-calibrate) names its second flag
                if value or param.secondary_opts:
                    options.append(flag if value else param.secondary_opts[-1])
            else:
                for item in value if param.multiple else [value]:
                    options += [flag, str(item)]
    return " ".join(shlex.quote(w) for w in words + options)
