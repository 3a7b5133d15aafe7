"""Entry point of the ``bbcodec`` command."""
import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bbcodec")
def main():
    """Lossless image compression with binarized hierarchical VAEs and bits-back ANS."""


if __name__ == "__main__":
    main()
