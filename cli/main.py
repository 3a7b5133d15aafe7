"""Entry point of the ``bbcodec`` command: one thin subcommand per library function.

A subcommand's module is imported only when that subcommand runs, so that
``bbcodec --help``, ``bbcodec info`` and ``bbcodec models`` start without
importing torch (which takes seconds); ``bbcodec --help`` lists the
subcommands from :data:`COMMANDS`.
"""
from bbcodec_cli.signals import interrupted_while_starting

with interrupted_while_starting():  # a Ctrl-C while importing is reported as later
    import importlib

    import click

    from bbcodec_cli.common import Command

COMMANDS = {
    # name: (module, attribute, the line `bbcodec --help` shows)
    "compress": ("bbcodec_cli.codec", "compress", "Compress image FILES to FILE.bbc (keeps the inputs)."),
    "decompress": ("bbcodec_cli.codec", "decompress", "Restore FILES (.bbc) to images with their name, format and pixels."),
    "info": ("bbcodec_cli.info", "info", "Show the header of .bbc FILES without decoding them."),
    "test": ("bbcodec_cli.codec", "test_command", "Decode .bbc FILES fully and verify their checksums; writes nothing."),
    "models": ("bbcodec_cli.models", "models", "List the installed models, or install one."),
    "train": ("bbcodec_cli.train", "train_command", "Train a codec model on images and export it."),
    "export": ("bbcodec_cli.train", "export_command", "Export a training checkpoint as a codec model file."),
    "pack": ("bbcodec_cli.archive", "pack_command", "Pack images, folders, .npz and MNIST files into one archive (.bba)."),
    "unpack": ("bbcodec_cli.archive", "unpack_command", "Write the images of an archive, or some of them, into a folder."),
    "list": ("bbcodec_cli.archive", "list_command", "List the images of an archive."),
    "bench": ("bbcodec_cli.bench", "bench", "Measure bbcodec beside the classical lossless codecs, with real files."),
    "sample": ("bbcodec_cli.sample", "sample_command", "Draw a grid of samples of a model to a PNG."),
}


class LazyCommands(Command):
    """The ``bbcodec`` group with its subcommands imported on first use."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        with interrupted_while_starting():
            return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx, formatter):
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, _, summary) in COMMANDS.items()])


@click.group(cls=LazyCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bbcodec")
def main():
    """Lossless image compression with binarized hierarchical VAEs and bits-back ANS."""


if __name__ == "__main__":
    main()
