"""What every command shares: one clear line per error, never a traceback.

Errors print as ``bbcodec: <message>`` on stderr and exit with status 1; usage
errors are click's (status 2). An unexpected exception (a bug) is reported the
same way, as one line naming its type; set ``BBCODEC_DEBUG=1`` to get the
traceback instead.
"""
from __future__ import annotations

import functools
import os

import click

from bbcodec.errors import BBCodecError


class CLIError(click.ClickException):
    """An error for the user: ``bbcodec: <message>`` on stderr, exit status 1."""

    def show(self, file=None):
        click.echo(f"bbcodec: {self.format_message()}", err=True)


def debugging() -> bool:
    return os.environ.get("BBCODEC_DEBUG", "") not in ("", "0")


def error_message(error: BaseException) -> str:
    """One line for the user, whatever the exception."""
    if isinstance(error, click.ClickException):
        text = error.format_message()
    elif isinstance(error, OSError) and error.strerror:
        text = f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    elif isinstance(error, (BBCodecError, ValueError, OSError)):
        text = str(error) or type(error).__name__
    else:
        text = f"internal error ({type(error).__name__}: {error}); please report it"
    return " ".join(text.split())


def fail_cleanly(command):
    """Turn any error into ``bbcodec: <message>`` and exit status 1 (click's usage errors stay status 2)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if debugging():
                raise
            raise CLIError(error_message(error)) from None

    return wrapper
