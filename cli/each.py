"""Running a command on each of its files: a progress bar over the files, one error line per failed file.

Every file is processed even when another fails; the command then exits
with status 1 (:mod:`bbcodec_cli.codec`, :mod:`bbcodec_cli.info`). Needs no torch.
"""
from __future__ import annotations

import contextlib
import sys

from tqdm import tqdm

from bbcodec import container
from bbcodec_cli.common import debugging, error_message, interruptible, shown_name


def bars_wanted(quiet: bool) -> bool:
    """Progress bars go to stderr, and only when it is a terminal."""
    return not quiet and sys.stderr.isatty()


def run_each(files, action, verbose, quiet, label, tiles=None, no_limits: bool = False):
    """Run ``action(name)`` for each file; report errors one line each; exit 1 if any failed.

    ``tiles``, if given, is closed after each file (a progress bar over its tiles); ``no_limits`` lifts the
    decoder's work limits (:func:`bbcodec.container.limits_lifted`).

    A termination signal stops the run after cleaning up (:func:`bbcodec_cli.common.interruptible`)."""
    failed = 0
    bar = tqdm(files, desc=label, unit="file", file=sys.stderr, disable=len(files) < 2 or not bars_wanted(quiet))
    with interruptible(), (container.limits_lifted() if no_limits else contextlib.nullcontext()):
        for name in bar:
            try:
                message = action(name)
                if verbose and message:
                    tqdm.write(message, file=sys.stderr)
            except Exception as error:  # every failure is one line; the next file is still processed
                if debugging():
                    raise
                failed += 1
                text = error_message(error)
                if isinstance(error, container.WorkLimitError):
                    text += " (--no-limits decodes it if you trust the file)"
                tqdm.write(f"bbcodec: {shown_name(name)}: {text}", file=sys.stderr)
            finally:
                if tiles is not None:
                    tiles.close()
        bar.close()
    if failed:
        sys.exit(1)
