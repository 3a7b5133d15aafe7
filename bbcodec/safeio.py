"""Low-level reads and writes that cannot lose data silently.

:func:`write_all` writes every byte to a file descriptor or raises: an
unbuffered or non-blocking stream (``PYTHONUNBUFFERED=1``, a non-blocking
pipe) may accept only part of a ``write()``, and a full disk shows itself
first as such a short write. :func:`atomic_write` is how bbcodec writes a
file (model files, installed models, training checkpoints; the command's
outputs through :func:`create_beside`): a hidden temporary file in the same
folder, written to the last byte and flushed to disk, then renamed into
place, so that the name holds the old file or the whole new one, never a part.
:func:`read_regular` reads only a regular file, at most a given number of
bytes, without ever blocking on a FIFO or reading a device such as
``/dev/zero`` without end.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import select
import stat
from pathlib import Path

from bbcodec.errors import BBCodecError

CHUNK = 1 << 20  # bytes per write() call: a bounded copy of the data at a time


def write_all(target, data) -> None:
    """Write all of ``data`` to ``target``, a file descriptor or a binary file object, resuming after short
    writes and waiting while a non-blocking descriptor is full; an error (a full disk, a closed pipe)
    raises OSError."""
    view = memoryview(data).cast("B")
    while view:
        try:
            written = os.write(target, view[:CHUNK]) if isinstance(target, int) else target.write(view[:CHUNK])
        except BlockingIOError:
            written = None
        if written is None:  # a full non-blocking descriptor: wait until it takes more
            select.select([], [target], [])
            continue
        if written <= 0:  # no progress and no error: not expected of a file or pipe, but never loop on it
            raise OSError(f"write() wrote nothing ({len(view)} bytes left)")
        view = view[written:]
    if not isinstance(target, int):
        target.flush()


def create_beside(path: Path, mode: int) -> tuple[int, str]:
    """A new file ``.NAME.XXXXXXXX.tmp`` beside ``path``, created with ``mode`` (less the umask): its descriptor
    and name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(name, flags, mode), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def write_temporary(path, data, private: bool = True) -> str:
    """A hidden temporary file beside ``path`` (``.NAME.XXXXXXXX.tmp``) holding all of ``data``, flushed to
    disk; its name. ``private``: readable by its owner only, else with the permissions a new file gets
    (the umask's). Nothing is left behind if this fails (OSError)."""
    handle, tmp_name = create_beside(Path(path), 0o600 if private else 0o666)
    try:
        try:
            write_all(handle, data)
            os.fsync(handle)
        finally:
            os.close(handle)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return tmp_name


def sync_directory(folder) -> None:
    """Make a rename in ``folder`` durable (best effort: not every system can)."""
    with contextlib.suppress(OSError, AttributeError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def atomic_write(path, data) -> None:
    """Replace ``path`` with ``data`` whole (see the module doc); an error (a full disk) raises OSError and
    leaves ``path`` as it was and no temporary file."""
    tmp_name = write_temporary(path, data, private=False)
    try:
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    sync_directory(Path(path).parent)


def read_regular(path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path`` (links followed), refusing anything else or more than
    ``limit`` bytes (checked while reading, as a file may grow); BBCodecError with one line."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO would block until a writer came
    except OSError as error:
        raise BBCodecError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        _check_regular(os.fstat(handle), path, limit, what)
    except BaseException:
        os.close(handle)
        raise
    with open(handle, "rb") as file:
        try:
            data = file.read(limit + 1)
        except OSError as error:
            raise BBCodecError(f"cannot read {what} {path}: {error.strerror or error}") from None
    if len(data) > limit:
        raise BBCodecError(f"{what} {path} too large (more than {limit} bytes)")
    return data


def _check_regular(info: os.stat_result, path, limit: int, what: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise BBCodecError(f"cannot read {what} {path}: it is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise BBCodecError(f"cannot read {what} {path}: not a regular file (a device, pipe or socket)")
    if info.st_size > limit:
        raise BBCodecError(f"{what} {path} too large ({info.st_size} bytes, the limit is {limit})")
