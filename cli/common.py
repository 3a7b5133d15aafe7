"""What every command shares: one clear line per error, never a traceback.

Errors print as ``bbcodec: <message>`` on stderr and exit with status 1; usage
errors are click's (status 2). An unexpected exception (a bug) is reported the
same way, as one line naming its type; set ``BBCODEC_DEBUG=1`` to get the
traceback instead. A message is cut to :data:`MAX_MESSAGE` characters (a
damaged file can hold a megabyte-long "method" name).

:func:`interruptible` turns SIGTERM and SIGHUP into an exception, as Python
does with SIGINT, so that ``finally`` blocks remove temporary files; the
process then prints one line and dies by the same signal, as gzip does.
:class:`Command`, the ``bbcodec`` group, runs the whole command that way, from
option parsing on, and turns an error writing standard output (``--help`` on a
full disk) into one line; a reader that closes standard output early
(``bbcodec info *.bbc | head -1``) ends the command quietly, as click does.

:func:`resolve_device_option` and :func:`resolve_model_option` check the
``--device`` and ``-m`` options of the commands that code images, once,
before any file.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import sys
from pathlib import Path

import click

from bbcodec.errors import BBCodecError
from bbcodec_cli.signals import die_by


class CLIError(click.ClickException):
    """An error for the user: ``bbcodec: <message>`` on stderr, exit status 1."""

    def show(self, file=None):
        click.echo(f"bbcodec: {self.format_message()}", err=True)


def debugging() -> bool:
    return os.environ.get("BBCODEC_DEBUG", "") not in ("", "0")


MAX_MESSAGE = 300


class Interrupted(BaseException):
    """A termination signal arrived (a BaseException: no ``except Exception`` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible():
    """Run a command so that SIGINT, SIGTERM and SIGHUP unwind it (cleaning up) and then end the process
    with one line on stderr and death by that signal (status 128 + N to a shell)."""
    signals = [signal.SIGTERM, signal.SIGHUP]
    try:
        saved = {signum: signal.signal(signum, _raise_interrupted) for signum in signals}
    except ValueError:  # not the main thread (an embedding program): leave its signals alone
        yield
        return
    saved_hook, sys.unraisablehook = sys.unraisablehook, _dying_if_interrupted(sys.unraisablehook)
    try:
        yield
    except (Interrupted, KeyboardInterrupt) as stop:
        die_by(_signal_of(stop))
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        sys.unraisablehook = saved_hook


def _signal_of(stop: BaseException) -> int:
    return stop.signum if isinstance(stop, Interrupted) else signal.SIGINT


def _dying_if_interrupted(hook):
    """An unraisable-exception hook that ends the process when the exception is an interruption: a signal
    that lands while Python runs a weakref callback or a destructor is otherwise printed as "Exception
    ignored" and lost (found by bench/soak.py)."""
    def handle(unraisable):
        if isinstance(unraisable.exc_value, (Interrupted, KeyboardInterrupt)):
            die_by(_signal_of(unraisable.exc_value))
        hook(unraisable)
    return handle


class Command(click.Group):
    """The ``bbcodec`` group, run so that nothing it does ends in a traceback or in click's "Aborted!".

    The whole run, option parsing and start-up included, is :func:`interruptible`, and a Ctrl-C gets past
    click as :class:`Interrupted`: a SIGINT before the first file is reported as one after it. Click's own
    errors print as click prints them; an error writing ``--help`` or ``--version`` (a full disk, a closed
    pipe) is one ``bbcodec:`` line and status 1.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        _buffer_stdout()
        try:
            self._run(args, prog_name, complete_var, **extra)
        except (Interrupted, KeyboardInterrupt) as stop:  # in the instant the handlers were being restored
            die_by(_signal_of(stop))

    def _run(self, args, prog_name, complete_var, **extra):
        with interruptible():
            try:
                status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except click.ClickException as error:
                error.show()
                sys.exit(error.exit_code)
            except click.Abort:
                click.echo("bbcodec: aborted", err=True)
                sys.exit(1)
            except OSError as error:  # writing help or version text
                _stdout_failed(error)
            except SystemExit as stop:
                _flush_stdout()
                raise stop
            _flush_stdout()
            sys.exit(status if isinstance(status, int) else 0)

    def make_context(self, *args, **kwargs):
        with _ctrl_c_past_click():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _ctrl_c_past_click():
            return super().invoke(ctx)


@contextlib.contextmanager
def _ctrl_c_past_click():
    """KeyboardInterrupt as :class:`Interrupted`, which click does not turn into "Aborted!"."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(signal.SIGINT) from None


def _buffer_stdout() -> None:
    """Give an unbuffered standard output (``PYTHONUNBUFFERED=1``) a buffer again: text written to a raw
    stream may be written in part without an error, while a buffered writer writes all or raises."""
    if isinstance(getattr(sys.stdout, "buffer", None), io.RawIOBase):
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(sys.stdout.buffer), encoding=sys.stdout.encoding,
                                      errors=sys.stdout.errors, line_buffering=True)


def _flush_stdout() -> None:
    """Write out what standard output still holds, or say why it cannot be (exit status 1)."""
    try:
        sys.stdout.flush()
    except OSError as error:
        _stdout_failed(error)


def _stdout_failed(error: OSError):
    click.echo(f"bbcodec: cannot write to standard output: {error_message(error)}", err=True)
    _drop_stdout()
    sys.exit(1)


def _drop_stdout() -> None:
    """Point standard output at the null device, so that flushing it at exit does not fail a second time."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def shown_name(name: str) -> str:
    """A file name as it is printed in a one-line message: control characters (a newline) escaped."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name)


def error_message(error: BaseException) -> str:
    """One line for the user, whatever the exception, at most :data:`MAX_MESSAGE` characters."""
    text = _message_text(error)
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _message_text(error: BaseException) -> str:
    if isinstance(error, click.ClickException):
        text = error.format_message()
    elif isinstance(error, OSError) and error.strerror:
        text = f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    elif isinstance(error, (BBCodecError, ValueError, OSError)):
        text = str(error) or type(error).__name__
    elif isinstance(error, MemoryError):
        text = "out of memory"
    else:
        text = f"internal error ({type(error).__name__}: {error}); please report it"
    return text


def fail_cleanly(command):
    """Turn any error into ``bbcodec: <message>`` and exit status 1 (click's usage errors stay status 2)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # a reader that closed standard output early: click ends the command quietly (status 1)
        except Exception as error:
            if debugging():
                raise
            raise CLIError(error_message(error)) from None

    return wrapper


DEVICES = ["cpu", "cuda", "auto"]
"""The choices of ``--device``."""


def resolve_device_option(name: str) -> str:
    """The device a ``--device`` choice (one of :data:`DEVICES`) names: ``auto`` is ``cuda`` when a CUDA
    device is available, else ``cpu``; ``cuda`` without one is a :class:`CLIError`."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device is available")
    return name


def resolve_model_option(spec: str | None, required: bool) -> str | None:
    """Check ``-m`` once, before any file: one error line instead of one per file.

    Returns ``spec``, or without one the default model's name when ``required``, else None.

    A spec that looks like a path must name an existing ``.safetensors`` file
    (:func:`bbcodec.zoo.locate` reads every spec with a slash or that suffix as
    a path). Without ``-m``, compress uses the default model; decompress finds
    each file's model by the hash in its header.
    """
    if spec is None and not required:
        return None
    from bbcodec import zoo  # here: the commands that need no model start without torch

    spec = spec or zoo.DEFAULT_MODEL
    if ("/" in spec or os.sep in spec) and not spec.endswith(zoo.SUFFIX) and Path(spec).is_file():
        raise CLIError(f"model file {spec}: model files end in {zoo.SUFFIX}")
    try:  # a missing file is reported by the zoo
        zoo.load(spec)
    except BBCodecError as error:
        raise CLIError(error_message(error)) from None
    return spec


class TileSide(click.ParamType):
    """A tile side in pixels, 8 to 1024, or ``auto`` (the model family's own)."""

    name = "auto|8..1024"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, int) and 8 <= value <= 1024:
            return value
        try:
            side = int(value)
        except (TypeError, ValueError):
            side = None
        if side is None or not 8 <= side <= 1024:
            self.fail(f"{value!r} is not auto or a side from 8 to 1024", param, ctx)
        return side


def tile_option(command):
    """The ``--tile`` option of the commands that code images."""
    return click.option("--tile", type=TileSide(), default="auto", show_default=True,
                        help="side of the square tiles images are coded in (auto: the model's own, 128 for the "
                             "polyphase default)")(command)
