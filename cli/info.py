"""``bbcodec info``: the header of .bbc files, without decoding them and without importing torch."""
from __future__ import annotations

import click

from bbcodec import container
from bbcodec.portability import where_it_decodes
from bbcodec_cli.common import shown_name
from bbcodec_cli.each import run_each
from bbcodec_cli.files import STDIO, read_input


def describe(name: str, data: bytes) -> str:
    """One line about a .bbc file from what is readable of its header (:meth:`bbcodec.container.Header.readable`),
    shortened: its fields are checked only by the decoder."""
    header = container.Header.readable(container.read_header(data)[0])

    def text(value, limit: int = 24) -> str:
        value = " ".join(str(value).split())
        return value if len(value) <= limit else value[: limit - 1] + "…"

    shown = header.width is not None and header.height is not None and 0 < header.width * header.height < 1 << 40
    size = f"{header.width}x{header.height}" if shown else "?x?"
    rate = (f"{8 * len(data) / header.subpixels:.3f} bits/sub-pixel" if header.subpixels
            else "? bits/sub-pixel")
    model = (text(header.model[:16], 16) if header.model is not None
             else "-" if header.method == "original" else "?")  # a kept file needs no model
    line = (f"{name}: {size} {text(header.mode or '?')}, {len(data)} bytes, {rate}, "
            f"method {text(header.method or '?')}, coder {text(header.coder_name or '-')}, model {model}, "
            f"decodes on {text(where_it_decodes(header.to_json()), 240)}")
    return " ".join(line.split())  # one line, whatever strings a damaged header holds


@click.command()
@click.argument("files", nargs=-1, required=True)
def info(files):
    """Show the header of .bbc FILES without decoding them: size, mode, rate, method, model, where it decodes."""
    if list(files).count(STDIO) > 1:
        raise click.UsageError("standard input ('-') can be read only once")

    def one(name):
        data = read_input(name)
        click.echo(describe(shown_name(name), data))

    run_each(files, one, False, True, "info")
