"""How ``bbcodec`` ends on a termination signal: one line on stderr, then death by that signal (as gzip).

Standard library only, so that it also serves while the command is still importing its modules
(:func:`interrupted_while_starting`), where a Ctrl-C would otherwise print a traceback.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys


def die_by(signum: int):
    """Print ``bbcodec: interrupted by SIG...`` and end the process by ``signum`` (status 128 + N to a shell)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"bbcodec: interrupted by {signal.Signals(signum).name}\n")
        sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)  # if the signal is blocked or ignored


@contextlib.contextmanager
def interrupted_while_starting():
    """A Ctrl-C while the command imports its modules ends it as one later does."""
    try:
        yield
    except KeyboardInterrupt:
        die_by(signal.SIGINT)
