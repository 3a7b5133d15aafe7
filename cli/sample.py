"""``bbcodec sample``: a grid of images drawn from a model, written as a PNG (:mod:`bbcodec.sampling`)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from bbcodec import imageio, zoo
from bbcodec.sampling import sample_grid
from bbcodec_cli.common import CLIError, fail_cleanly, resolve_model_option
from bbcodec_cli.files import atomic_write, same_file


@click.command()
@click.argument("model")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="the PNG file to write")
@click.option("--rows", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--columns", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--size", type=click.IntRange(1, 256), default=32, show_default=True,
              help="height and width of each sample in pixels (a multiple of the model's stride)")
@click.option("--seed", type=int, default=0, show_default=True, help="the same seed draws the same grid")
@click.option("-f", "--force", is_flag=True, help="overwrite an existing output")
@fail_cleanly
def sample_command(model, output, rows, columns, size, seed, force):
    """Draw ROWS x COLUMNS samples of MODEL (a name, .safetensors file or hash) into a PNG grid."""
    if os.path.lexists(output) and not force:
        raise CLIError(f"{output} already exists (use -f to overwrite)")
    if same_file(model, output):
        raise CLIError(f"{output} is the model file")
    codec_model, digest = zoo.load(resolve_model_option(model, required=True))
    grid = sample_grid(codec_model, rows, columns, size, seed)
    atomic_write(Path(output), imageio.encode(imageio.Image(grid, "RGB"), "PNG"), overwrite=force, private=False)
    click.echo(f"{output}: {rows}x{columns} samples of model {digest[:16]}, {size}x{size} pixels each, seed {seed}")
