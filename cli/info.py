"""``bbcodec info``: the header of .bbc files, without decoding them and without importing torch."""
from __future__ import annotations

import click

from bbcodec import container
from bbcodec.portability import where_it_decodes
from cli.common import shown_name
from cli.each import run_each
from cli.files import STDIO, read_input


def describe(name: str, data: bytes, header: dict) -> str:
    """One line from a header whose fields are checked only by the decoder: print what is there, shortened."""
    def number(key):
        value = header.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 40 else None

    def text(value, limit: int = 24) -> str:
        value = " ".join(str(value).split())
        return value if len(value) <= limit else value[: limit - 1] + "…"

    width, height, channels = number("width"), number("height"), number("channels")
    size = f"{width}x{height}" if width and height else "?x?"
    rate = (f"{8 * len(data) / (width * height * channels):.3f} bits/sub-pixel"
            if width and height and channels else "? bits/sub-pixel")
    coder = header.get("coder")
    coder = coder.get("coder") if isinstance(coder, dict) else None
    model = header.get("model")
    line = (f"{name}: {size} {text(header.get('mode', '?'))}, {len(data)} bytes, {rate}, "
            f"method {text(header.get('method', '?'))}, coder {text(coder or '-')}, "
            f"model {text(model[:16], 16) if isinstance(model, str) else '?'}, "
            f"decodes on {text(where_it_decodes(header), 240)}")
    return " ".join(line.split())  # one line, whatever strings a damaged header holds


@click.command()
@click.argument("files", nargs=-1, required=True)
def info(files):
    """Show the header of .bbc FILES without decoding them: size, mode, rate, method, model, where it decodes."""
    if list(files).count(STDIO) > 1:
        raise click.UsageError("standard input ('-') can be read only once")

    def one(name):
        data = read_input(name)
        click.echo(describe(shown_name(name), data, container.read_header(data)[0]))

    run_each(files, one, False, True, "info")
