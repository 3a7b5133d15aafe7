"""Entry point of the ``bbcodec`` command: one thin subcommand per library function."""
from cli.signals import interrupted_while_starting

with interrupted_while_starting():  # importing torch takes seconds: a Ctrl-C then is reported as later
    import click

    from cli.bench import bench
    from cli.codec import compress, decompress, info, test_command
    from cli.common import Command
    from cli.models import models
    from cli.train import export_command, train_command


@click.group(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bbcodec")
def main():
    """Lossless image compression with binarized hierarchical VAEs and bits-back ANS."""


for command in (compress, decompress, info, test_command, models, train_command, export_command, bench):
    main.add_command(command)

if __name__ == "__main__":
    main()
