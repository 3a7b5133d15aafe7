"""``bbcodec models``: list installed codec models; ``bbcodec models add FILE`` installs one.

Listing reads each model file's framing and hash only (:mod:`bbcodec.modelfile`), so it starts without
importing torch; ``add`` builds the model to check it whole.
"""
import os

import click

from bbcodec import zoo
from bbcodec_cli.common import fail_cleanly


@click.group(invoke_without_command=True)
@click.pass_context
@fail_cleanly
def models(ctx):
    """List the installed models (shipped, then user-added in $BBCODEC_MODELS)."""
    if ctx.invoked_subcommand is None:
        entries = zoo.installed()
        if not entries:
            click.echo(f"no models installed (add one with `bbcodec models add FILE`; user models live in "
                       f"{zoo.user_model_dir()})")
        for entry in entries:
            origin = "shipped" if entry.shipped else "user"
            click.echo(f"{entry.name:20} {entry.hash[:16]}  {origin:7}  {entry.location}")


def _check_name(ctx, param, value):
    if value is not None and (not value or value.startswith(".") or "/" in value or os.sep in value):
        raise click.BadParameter("a model name is a plain file name (no '/', not starting with '.')")
    return value


@models.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", callback=_check_name, help="name to install it under (default: the file name)")
@fail_cleanly
def add(file, name):
    """Install model FILE for this user (into $BBCODEC_MODELS)."""
    entry = zoo.add(file, name)
    click.echo(f"installed {entry.name} ({entry.hash[:16]}) at {entry.location}")
