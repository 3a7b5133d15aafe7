"""``bbcodec models``: list installed codec models; ``bbcodec models add FILE`` installs one."""
import click

from bbcodec import zoo
from cli.common import fail_cleanly


@click.group(invoke_without_command=True)
@click.pass_context
def models(ctx):
    """List the installed models (shipped and user-added)."""
    if ctx.invoked_subcommand is None:
        entries = zoo.installed()
        if not entries:
            click.echo("no models installed")
        for entry in entries:
            origin = "shipped" if entry.shipped else "user"
            click.echo(f"{entry.name:20} {entry.hash[:16]}  {origin:7}  {entry.location}")


@models.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", help="name to install it under (default: the file name)")
@fail_cleanly
def add(file, name):
    """Install model FILE for this user."""
    entry = zoo.add(file, name)
    click.echo(f"installed {entry.name} ({entry.hash[:16]}) at {entry.location}")
