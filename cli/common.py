"""What every command shares: one clear line per error, never a traceback."""
from __future__ import annotations

import functools

import click

from bbcodec.errors import BBCodecError


def fail_cleanly(command):
    """Turn library errors into ``bbcodec: error: ...`` and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (BBCodecError, ValueError, OSError) as error:
            raise click.ClickException(str(error)) from None

    return wrapper
