"""Where outputs go and how they are written: never over an existing file unasked, never half-written.

An output file is written under a hidden temporary name beside its target
(``.NAME.XXXXXXXX.tmp``, readable by its owner only), flushed to disk, given
the input's permission bits and times (as gzip does), and only then linked or
renamed to its final name, so that the final name holds either nothing or the
whole file. If the process is stopped (an error, Ctrl-C, SIGTERM or SIGHUP),
the temporary file is removed; only SIGKILL or a power cut, which no process
can answer, can leave a hidden temporary file behind (gzip leaves a partial
output under the final name then). Inputs are read whole, only from regular
files (or standard input), and at most :data:`MAX_INPUT_BYTES` of them.
"""
from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

from bbcodec.safeio import create_beside, sync_directory, write_all
from bbcodec_cli.common import CLIError

SUFFIX = ".bbc"
STDIO = "-"
MAX_INPUT_BYTES = 1 << 30
"""Largest input read (1 GiB): an uncompressed 2^26-pixel RGBA image is 256 MiB."""


@contextlib.contextmanager
def new_file(path: Path, like: os.stat_result | None = None, overwrite: bool = False, private: bool = True):
    """A binary file object that writes ``path`` whole: a temporary file beside it, flushed to disk and moved
    into place when the block ends without an error.

    An interrupted or failed run leaves neither a partial ``path`` nor the
    temporary file. Without ``overwrite`` an existing ``path`` is refused, also
    one that appeared while the data was being computed (the file is linked into
    place, which fails if the name exists). With ``like`` (the input's :func:`input_stat`, taken
    before reading it, since reading changes its access time), the new file gets that file's
    permission bits and times, as gzip does; without it, the file is its owner's only (``private``) or gets
    the permissions a new file gets (the umask's: what tar gives the files it unpacks). Errors of the
    block itself pass through as they are; errors writing the file are one CLIError line.
    """
    path = Path(path)
    try:
        handle, tmp_name = create_beside(path, 0o600 if private else 0o666)
    except OSError as error:
        raise CLIError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with open(handle, "wb") as file:
            yield file
            _written(path, lambda: (file.flush(), os.fsync(file.fileno())))
        if like is not None:
            _written(path, lambda: copy_attributes(like, tmp_name))
        _written(path, lambda: os.replace(tmp_name, path) if overwrite else link_new(tmp_name, path))
        sync_directory(path.parent)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _written(path: Path, step) -> None:
    """``step()``, a step of writing ``path``, its OSError as one CLIError line."""
    try:
        step()
    except FileExistsError:
        raise CLIError(f"{path} already exists (use -f to overwrite)") from None
    except OSError as error:
        raise CLIError(f"cannot write {path}: {error.strerror or error}") from None


def atomic_write(path: Path, data: bytes, like: os.stat_result | None = None, overwrite: bool = False,
                 private: bool = True) -> None:
    """Write ``data`` to ``path`` whole (:func:`new_file`), every byte checked."""
    with new_file(path, like, overwrite, private) as file:
        _written(path, lambda: write_all(file, data))


def input_stat(name: str) -> os.stat_result | None:
    """The input's attributes before it is read (None for standard input)."""
    return None if name == STDIO else os.stat(name)


def copy_attributes(info: os.stat_result, target: str) -> None:
    """The source's permission bits (not set-id bits), access and modification times, and, where allowed,
    its group and owner: what gzip gives its output."""
    with contextlib.suppress(OSError):  # only root may give a file away; a group change may be refused too
        os.chown(target, info.st_uid if os.geteuid() == 0 else -1, info.st_gid)
    os.chmod(target, stat.S_IMODE(info.st_mode) & 0o777)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def verify_written(path: Path, data: bytes) -> None:
    """Read ``path`` back and compare it with ``data`` (before an input is removed)."""
    try:
        same = Path(path).read_bytes() == data
    except OSError as error:
        raise CLIError(f"cannot read back {path}: {error.strerror or error}") from None
    if not same:
        raise CLIError(f"{path} does not read back as written: removed it and kept the input")


def link_new(tmp_name: str, path: Path) -> None:
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
    """The whole input: standard input ("-", never a terminal) or a regular file of at most MAX_INPUT_BYTES."""
    if name == STDIO:
        if sys.stdin.isatty():
            raise CLIError("refusing to read binary data from a terminal")
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    else:
        # Open without blocking (a FIFO would wait for a writer), then check what was opened.
        handle = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
        try:
            info = os.fstat(handle)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(21, "Is a directory", name)
            if not stat.S_ISREG(info.st_mode):
                raise CLIError("not a regular file (a device, pipe or socket); use '-' to read standard input")
            if info.st_size > MAX_INPUT_BYTES:
                raise CLIError(f"file too large ({info.st_size} bytes, the limit is {MAX_INPUT_BYTES})")
        except BaseException:
            os.close(handle)
            raise
        with open(handle, "rb") as file:
            data = file.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise CLIError(f"input too large (more than {MAX_INPUT_BYTES} bytes)")
    return data


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


def _stdout():
    """Standard output's descriptor, or its binary stream where it has none (a test harness)."""
    try:
        return sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stdout.buffer


def write_output(target: str, data: bytes, force: bool, like: os.stat_result | None = None) -> None:
    """Write to a path or to stdout ("-"), every byte checked (:func:`bbcodec.safeio.write_all`); refuses
    an existing file without ``force``."""
    if target == STDIO:
        check_stdout(force)
        sys.stdout.flush()
        try:
            write_all(_stdout(), data)
        except OSError as error:
            raise CLIError(f"cannot write to standard output: {error.strerror or error}") from None
        return
    atomic_write(Path(target), data, like, overwrite=force)
