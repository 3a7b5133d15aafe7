"""Where outputs go and how they are written: never over an existing file unasked, never half-written."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from cli.common import CLIError

SUFFIX = ".bbc"
STDIO = "-"


def _sync_directory(folder: Path) -> None:
    """Make a rename durable before the input is removed (best effort: not every system can)."""
    with contextlib.suppress(OSError, AttributeError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def atomic_write(path: Path, data: bytes, like: Path | None = None, overwrite: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then move it into place.

    An interrupted or failed run leaves neither a partial ``path`` nor the
    temporary file. Without ``overwrite`` an existing ``path`` is refused, also
    one that appeared while the data was being computed (the file is linked into
    place, which fails if the name exists). With ``like``, the new file gets that
    file's permission bits and times, as gzip does.
    """
    path = Path(path)
    folder = path.parent
    try:
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise CLIError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if like is not None:
            stat = like.stat()
            os.chmod(tmp_name, stat.st_mode & 0o7777)
            os.utime(tmp_name, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        if overwrite:
            os.replace(tmp_name, path)
        else:
            _link_new(tmp_name, path)
        _sync_directory(folder)
    except FileExistsError:
        raise CLIError(f"{path} already exists (use -f to overwrite)") from None
    except OSError as error:
        raise CLIError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _link_new(tmp_name: str, path: Path) -> None:
    """Move ``tmp_name`` to ``path`` unless ``path`` exists (FileExistsError)."""
    try:
        os.link(tmp_name, path)  # atomic, and fails if the name exists; the temporary name is removed after
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network and FAT file systems): check, then rename
        if os.path.lexists(path):
            raise FileExistsError(path) from None
        os.replace(tmp_name, path)


def read_input(name: str) -> bytes:
    if name == STDIO:
        if sys.stdin.isatty():
            raise CLIError("refusing to read binary data from a terminal")
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def check_stdout(force: bool) -> None:
    """Refuse binary output to a terminal unless forced (checked before any work is done)."""
    if sys.stdout.isatty() and not force:
        raise CLIError("refusing to write binary data to a terminal (use -f to force)")


def same_file(a: str, b: str) -> bool:
    if STDIO in (a, b):
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_target(name: str, target: str, force: bool) -> None:
    """Early checks on one output, before any work: not the input itself, and not existing unless forced."""
    if target == STDIO:
        return
    if same_file(name, target):
        raise CLIError(f"{target} is the input file itself")
    if os.path.lexists(target) and not force:
        raise CLIError(f"{target} already exists (use -f to overwrite)")


def write_output(target: str, data: bytes, force: bool, like: Path | None = None) -> None:
    """Write to a path or to stdout ("-"); refuses an existing file without ``force``."""
    if target == STDIO:
        check_stdout(force)
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    atomic_write(Path(target), data, like, overwrite=force)
