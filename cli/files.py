"""Where outputs go and how they are written: never over an existing file unasked, never half-written."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

SUFFIX = ".bbc"


def atomic_write(path: Path, data: bytes, like: Path | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it into place.

    An interrupted run leaves no partial ``path``. With ``like``, the new file
    gets that file's permission bits and times, as gzip does.
    """
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if like is not None:
            stat = like.stat()
            os.chmod(tmp_name, stat.st_mode & 0o7777)
            os.utime(tmp_name, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def write_output(target: str, data: bytes, force: bool, like: Path | None = None) -> None:
    """Write to a path or to stdout ("-"); refuses an existing file without ``force``."""
    if target == "-":
        if sys.stdout.isatty() and not force:
            raise click.ClickException("refusing to write binary data to a terminal (use -f to force)")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    if path.exists() and not force:
        raise click.ClickException(f"{target} already exists (use -f to overwrite)")
    atomic_write(path, data, like)
