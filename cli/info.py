"""``bbcodec info``: the header of .bbc files, without decoding them and without importing torch."""
from __future__ import annotations

import json

import click

from bbcodec import container
from bbcodec.portability import decodes_anywhere, where_it_decodes
from bbcodec_cli.common import shown_name
from bbcodec_cli.each import OUT, job, run_each
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
             else "-" if header.method in ("original", "stored") else "?")  # kept files and raw pixels need none
    line = (f"{name}: {size} {text(header.mode or '?')}, {len(data)} bytes, {rate}, "
            f"method {text(header.method or '?')}, coder {text(header.coder_name or '-')}, model {model}, "
            f"format {container.format_version(data)}, decodes on {text(where_it_decodes(header.to_json()), 240)}")
    return " ".join(line.split())  # one line, whatever strings a damaged header holds


def as_json(name: str, data: bytes, names: dict[str, str]) -> str:
    """One JSON object about a .bbc file (``info --json``): the readable header fields, the file's size,
    the original file's size and the ratio where known, the model's hash (or its first bytes, in format
    versions 2 and 3) and installed name, where it decodes, the format version."""
    raw = container.read_header(data)[0]
    header = container.Header.readable(raw)
    original = next((item[1] for item in _sections(raw) if item[0] == container.ORIGINAL), None)
    fields = {**header.to_json(), "file": name, "bytes": len(data), "original_bytes": original,
              "ratio": original / len(data) if original else None,
              "model_name": next((name for digest, name in names.items() if header.names_model(digest)), None),
              "format_version": container.format_version(data),
              "decodes_anywhere": decodes_anywhere(header.to_json()),
              "decodes_on": where_it_decodes(header.to_json())}
    return json.dumps(fields, sort_keys=True)


def _sections(raw: dict) -> list:
    """The (name, length, ...) entries of a raw header's section list that have that shape."""
    listed = raw.get("sections")
    return [item for item in listed if isinstance(item, list) and len(item) >= 2 and isinstance(item[1], int)
            ] if isinstance(listed, list) else []


def _installed_names() -> dict[str, str]:
    """Model hash -> the name it is installed under (shipped names first)."""
    from bbcodec import zoo

    names: dict[str, str] = {}
    for entry in zoo.installed():
        names.setdefault(entry.hash, entry.name)
    return names


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_object", is_flag=True, help="one JSON object per file (a line each)")
def info(files, as_object):
    """Show the header of .bbc FILES without decoding them: size, mode, rate, method, model, where it decodes."""
    if list(files).count(STDIO) > 1:
        raise click.UsageError("standard input ('-') can be read only once")
    run_each(files, job("bbcodec_cli.info:info_action", as_object=as_object), False, True, "info")


def info_action(as_object: bool):
    """The per-file action of info (see :mod:`bbcodec_cli.each`)."""
    names = _installed_names() if as_object else {}

    def one(name):
        data = read_input(name)
        text = as_json(shown_name(name), data, names) if as_object else describe(shown_name(name), data)
        return [(OUT, text)]

    return one
