"""``bbcodec models``: list installed codec models; ``models add FILE`` installs one, ``models info NAME``
describes one, ``models remove NAME`` uninstalls a user-added one.

Listing reads each model file's framing and hash only (:mod:`bbcodec.modelfile`), so it starts without
importing torch; ``add`` builds the model to check it whole.
"""
import os

import click

from bbcodec import zoo
from bbcodec_cli.common import fail_cleanly


def _origin(entry: zoo.ModelEntry) -> str:
    return "shipped" if entry.shipped else "user"


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
            click.echo(f"{entry.name:20} {entry.hash[:16]}  {_origin(entry):7}  {entry.location}")


def _check_name(ctx, param, value):
    if value is not None and (not value or value.startswith(".") or "/" in value or os.sep in value):
        raise click.BadParameter("a model name is a plain file name (no '/', not starting with '.')")
    return value


@models.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", callback=_check_name, help="name to install it under (default: the file name; never "
                                                    "a shipped model's)")
@fail_cleanly
def add(file, name):
    """Install model FILE for this user (into $BBCODEC_MODELS)."""
    entry = zoo.add(file, name)
    click.echo(f"installed {entry.name} ({entry.hash[:16]}) at {entry.location}")


@models.command("info")
@click.argument("name")
@fail_cleanly
def info(name):
    """Show the installed model NAME: its hash, origin, file and size."""
    entry = zoo.find(name)
    click.echo(f"name: {entry.name}\nhash: {entry.hash}\norigin: {_origin(entry)}\nfile: {entry.location}\n"
               f"bytes: {os.path.getsize(entry.location)}")


@models.command("remove")
@click.argument("name")
@fail_cleanly
def remove(name):
    """Uninstall the user-added model NAME (shipped models stay)."""
    entry = zoo.remove(name)
    click.echo(f"removed {entry.name} ({entry.location})")
