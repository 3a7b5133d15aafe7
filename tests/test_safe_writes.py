"""Safe writes: whole outputs or none, inputs never touched, --rm only after a verified output, gzip's attributes.

The interrupted runs are real processes killed with real signals. To kill one *while it writes* (the
write itself takes microseconds), a small launcher slows the first ``fsync`` down: the output's data
is then in its temporary file, not yet moved into place, when the signal arrives. Promise kept (see
cli/files.py): no file under the final name, the input untouched; SIGINT, SIGTERM and SIGHUP also
remove the temporary file; after SIGKILL, which no process can answer, a hidden ``.NAME.*.tmp`` file
may remain (gzip leaves a partial output under the final name in that case).
"""
from __future__ import annotations

import hashlib
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bbcodec import api, imageio
from bbcodec_cli import codec, files
from bbcodec_cli.main import main
from fixtures.samples import binary_pixels, encoded, noise_pixels, pil_from_pixels

ROOT = Path(__file__).resolve().parents[1]

# Runs ``bbcodec ARGS`` with the first fsync (the output's) stalled after writing a marker file.
# Ctrl-C raises KeyboardInterrupt as in a terminal, even when the tests run as a background job
# (whose children start with SIGINT ignored).
SLOW_FSYNC = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
marker = sys.argv[1]
real_fsync = os.fsync
def stalled(fd):
    if not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write("writing")
        time.sleep(120)
    real_fsync(fd)
os.fsync = stalled
from bbcodec_cli.main import main
main(sys.argv[2:])
"""


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BBCODEC_MODELS", str(tmp_path / "user-models"))
    monkeypatch.delenv("BBCODEC_DEBUG", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def environment(tmp_path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", BBCODEC_MODELS=str(tmp_path / "user-models"), PYTHONPATH=str(ROOT))
    env.pop("BBCODEC_DEBUG", None)
    return env


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_png(name: str, pixels: np.ndarray, mode: str = "RGB") -> Path:
    path = Path(name)
    path.write_bytes(encoded(pil_from_pixels(pixels, mode), "PNG"))
    return path


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}\n{result.output}") from result.exception
    return result


def listing(folder=".") -> list[str]:
    return sorted(os.listdir(folder))


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the command ended first: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the command never reached its write")
        time.sleep(0.05)


# -- interrupted runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command, signum", [("compress", signal.SIGKILL), ("compress", signal.SIGTERM),
                                             ("decompress", signal.SIGINT), ("decompress", signal.SIGHUP)],
                         ids=lambda v: signal.Signals(v).name if isinstance(v, int) else v)
def test_killed_while_writing(model_file, tmp_path, command, signum):
    """Killed after the output's bytes are in the temporary file, before it is moved into place."""
    source = write_png("photo.png", noise_pixels(40, 50, 3))
    if command == "decompress":
        assert run("compress", "--rm", "-m", model_file, source).exit_code == 0
        source, final = Path("photo.png.bbc"), "photo.png"
    else:
        final = "photo.png.bbc"
    before = digest(source)
    marker = tmp_path / "writing"
    process = subprocess.Popen([sys.executable, "-c", SLOW_FSYNC, str(marker), command, "-m", str(model_file),
                                str(source)], env=environment(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for(marker, process)
    temporary = [name for name in listing() if name.startswith(f".{final}.") and name.endswith(".tmp")]
    assert temporary, "the output should be in its temporary file now"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signum  # it dies by the signal, as gzip does
    assert not Path(final).exists()
    assert digest(source) == before
    if signum == signal.SIGKILL:
        assert listing() in ([source.name], sorted([source.name] + temporary))
    else:
        assert listing() == [source.name]  # the temporary file is gone too
        assert stderr.splitlines() == [f"bbcodec: interrupted by {signal.Signals(signum).name}"]
    # nothing left in the way of the next run
    assert run(command, "-m", model_file, source).exit_code == 0 and Path(final).exists()


def test_killed_at_random_moments_while_working(model_file, tmp_path):
    """SIGKILL at moments spread over a compression of a 256x256 image: never a partial output under the
    final name (either none, or, once it was moved into place, the whole file), never a changed input."""
    source = write_png("big.png", binary_pixels(256, 256, 3))
    before = digest(source)
    for delay in (1.5, 4.0):
        process = subprocess.Popen([sys.executable, "-m", "bbcodec_cli.main", "compress", "--tile", "8", "-m",
                                    str(model_file), str(source)], env=environment(tmp_path),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.kill()
        process.wait(timeout=60)
        if Path("big.png.bbc").exists():  # written before the kill (possibly just before the process exits): whole
            assert np.array_equal(api.decompress(Path("big.png.bbc").read_bytes(), model=str(model_file)).pixels,
                                  binary_pixels(256, 256, 3))
            os.remove("big.png.bbc")
        assert digest(source) == before
        for name in listing():
            if name.endswith(".tmp"):
                os.remove(name)  # a SIGKILL during the write itself may leave one (see the module doc)


# -- --rm and --verify -----------------------------------------------------------------------------------


def test_rm_verifies_by_decoding_before_removing(model_file, monkeypatch):
    """A decoder that disagrees with the encoder (simulated) stops --rm: input kept, nothing written."""
    source = write_png("a.png", binary_pixels(32, 32, 3))
    before = digest(source)
    real = api.decompress

    def desynchronized(*args, **kwargs):
        image = real(*args, **kwargs)
        image.pixels[0, 0, 0] ^= 1
        return image

    monkeypatch.setattr(api, "decompress", desynchronized)
    for extra in (["--rm"], ["--verify"], ["--rm", "--no-verify"]):
        result = run("compress", *extra, "-m", model_file, "--tile", "8", source)
        assert result.exit_code == 1
        assert result.stderr.splitlines() == ["bbcodec: a.png: verification failed: the decoded image differs "
                                              "(nothing written)"]
        assert listing() == ["a.png"] and digest(source) == before
    assert run("compress", "-m", model_file, "--tile", "8", source).exit_code == 0  # without: not checked


def test_rm_reads_the_output_back_before_removing(model_file, monkeypatch):
    """An output that does not read back as written (a lying disk, simulated) is removed; the input stays."""
    for command in ("compress", "decompress"):
        source = write_png("a.png", noise_pixels(9, 7, 3))
        if command == "decompress":
            assert run("compress", "--rm", "-m", model_file, source).exit_code == 0
            source = Path("a.png.bbc")
        before = digest(source)
        real = files.atomic_write

        def lying_disk(path, data, like=None, overwrite=False):
            real(path, data[:-1] + bytes([data[-1] ^ 1]), like, overwrite)

        with monkeypatch.context() as patch:
            patch.setattr(files, "atomic_write", lying_disk)
            result = run(command, "--rm", "-m", model_file, source)
        assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
        assert "does not read back as written" in result.stderr
        assert listing() == [source.name] and digest(source) == before
        os.remove(source)


def test_verify_is_off_by_default_and_forced_by_rm(model_file, monkeypatch):
    source = write_png("a.png", binary_pixels(32, 32, 3))
    calls = []
    real = api.decompress
    monkeypatch.setattr(api, "decompress", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert run("compress", "-m", model_file, source).exit_code == 0 and calls == []
    assert run("compress", "-f", "--verify", "-m", model_file, source).exit_code == 0 and calls == [1]
    assert run("compress", "-f", "--rm", "-m", model_file, source).exit_code == 0 and calls == [1, 1]
    assert listing() == ["a.png.bbc"]


# -- never overwrite, never follow -----------------------------------------------------------------------


def test_an_output_that_appears_meanwhile_is_not_overwritten(model_file, monkeypatch):
    """The name is checked before the work and taken atomically after it (a hard link fails if it exists)."""
    source = write_png("a.png", noise_pixels(9, 7, 3))
    real = api.compress

    def someone_else_writes(*args, **kwargs):
        Path("a.png.bbc").write_bytes(b"precious")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "compress", someone_else_writes)
    result = run("compress", "--rm", "-m", model_file, source)
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert Path("a.png.bbc").read_bytes() == b"precious" and listing() == ["a.png", "a.png.bbc"]


def test_force_replaces_a_symlink_without_following_it(model_file):
    source = write_png("a.png", noise_pixels(9, 7, 3))
    Path("elsewhere").write_bytes(b"precious")
    os.symlink("elsewhere", "a.png.bbc")
    assert run("compress", "-m", model_file, source).exit_code == 1  # exists: refused without -f
    assert run("compress", "-f", "-m", model_file, source).exit_code == 0
    assert not Path("a.png.bbc").is_symlink() and Path("elsewhere").read_bytes() == b"precious"


def test_unwritable_folder_is_one_line_and_keeps_the_input(model_file):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    Path("ro").mkdir()
    source = write_png("ro/a.png", noise_pixels(9, 7, 3))
    os.chmod("ro", 0o555)
    try:
        result = run("compress", "--rm", "-m", model_file, source)
        assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1 and "Permission denied" in result.stderr
        assert listing("ro") == ["a.png"]
    finally:
        os.chmod("ro", 0o755)


# -- inputs ----------------------------------------------------------------------------------------------


def test_fifo_and_device_inputs_are_refused_without_blocking(model_file):
    os.mkfifo("pipe.png")
    for name in ("pipe.png", "/dev/null"):
        result = run("compress", "-m", model_file, name)
        assert result.exit_code == 1 and "not a regular file" in result.stderr
    assert listing() == ["pipe.png"]


def test_oversized_input_is_refused_before_reading(model_file, monkeypatch):
    source = write_png("a.png", noise_pixels(9, 7, 3))
    monkeypatch.setattr(files, "MAX_INPUT_BYTES", source.stat().st_size - 1)
    result = run("compress", "-m", model_file, source)
    assert result.exit_code == 1 and "file too large" in result.stderr and listing() == ["a.png"]


# -- attributes, as gzip -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755, 0o444])
def test_permissions_and_times_are_copied_both_ways(model_file, mode):
    source = write_png("a.png", binary_pixels(16, 16, 3))
    times = (1_500_000_000_111_111_111, 1_600_000_000_222_222_222)
    os.chmod(source, mode)
    os.utime(source, ns=times)
    assert run("compress", "-m", model_file, source).exit_code == 0
    packed = os.stat("a.png.bbc")
    assert stat.S_IMODE(packed.st_mode) == mode and (packed.st_atime_ns, packed.st_mtime_ns) == times
    os.chmod(source, 0o644)
    os.remove(source)
    assert run("decompress", "-m", model_file, "a.png.bbc").exit_code == 0
    restored = os.stat("a.png")
    assert stat.S_IMODE(restored.st_mode) == mode and (restored.st_atime_ns, restored.st_mtime_ns) == times


def test_set_id_bits_are_not_copied(model_file):
    source = write_png("a.png", noise_pixels(9, 7, 3))
    os.chmod(source, 0o4755)
    if not os.stat(source).st_mode & stat.S_ISUID:
        pytest.skip("this file system keeps no set-user-id bit")
    assert run("compress", "-m", model_file, source).exit_code == 0
    assert stat.S_IMODE(os.stat("a.png.bbc").st_mode) == 0o755


def test_a_new_file_is_private_until_it_is_whole(model_file, monkeypatch):
    """The temporary file is created readable by its owner only; the input's bits come just before the move."""
    source = write_png("a.png", noise_pixels(9, 7, 3))
    os.chmod(source, 0o644)
    seen = []
    real = os.fsync

    def look(fd):
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", look)
    assert run("compress", "-m", model_file, source).exit_code == 0
    assert seen[0] == 0o600 and stat.S_IMODE(os.stat("a.png.bbc").st_mode) == 0o644


# -- outputs on standard output ----------------------------------------------------------------------------


def _limit_file_size(limit: int):
    """For a child: files may not grow past ``limit`` bytes, and a write past it fails (EFBIG) instead of
    killing the process, as a write to a nearly full disk fails after a short write."""
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return apply


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_a_short_write_to_unbuffered_stdout_is_an_error(model_file, tmp_path, command):
    """With PYTHONUNBUFFERED=1 a write() to standard output may write part of the data; the rest must not
    be dropped silently (issue 18: exit 0 with 20,480 of 43,493 bytes written)."""
    source = write_png("noise.png", noise_pixels(96, 96, 3))
    if command == "decompress":
        assert run("compress", "-m", model_file, source).exit_code == 0
        source = Path("noise.png.bbc")
    env = dict(environment(tmp_path), PYTHONUNBUFFERED="1")
    whole = subprocess.run([sys.executable, "-m", "bbcodec_cli.main", command, "-q", "-m", str(model_file), "-c",
                            str(source)], env=env, capture_output=True, timeout=300)
    assert whole.returncode == 0 and len(whole.stdout) > 8192
    with open("out", "wb") as out:
        cut = subprocess.run([sys.executable, "-m", "bbcodec_cli.main", command, "-q", "-m", str(model_file), "-c",
                              str(source)], env=env, stdout=out, stderr=subprocess.PIPE, text=True, timeout=300,
                             preexec_fn=_limit_file_size(8192))
    assert Path("out").stat().st_size == 8192
    assert cut.returncode == 1 and cut.stderr.startswith("bbcodec: ") and len(cut.stderr.splitlines()) == 1
    assert "standard output" in cut.stderr


def test_write_all_waits_on_a_non_blocking_pipe():
    from bbcodec.safeio import write_all

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    data = os.urandom(3 << 20)  # far more than a pipe holds
    received = bytearray()

    def drain():
        while chunk := os.read(read_end, 1 << 16):
            received.extend(chunk)
            time.sleep(0.001)

    import threading

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        write_all(write_end, data)
    finally:
        os.close(write_end)
        reader.join(60)
        os.close(read_end)
    assert bytes(received) == data


def test_rm_that_cannot_remove_the_input_says_the_output_was_kept(model_file, monkeypatch):
    """A read-only folder (simulated: root may remove anything) lets the output be written elsewhere but
    keeps the input: the message says both, and the output is whole."""
    source = write_png("a.png", noise_pixels(9, 7, 3))
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self.name == "a.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    result = run("compress", "--rm", "-m", model_file, source)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert "kept the new a.png.bbc" in result.stderr and "could not remove the input: Permission denied" in result.stderr
    assert listing() == ["a.png", "a.png.bbc"]
    monkeypatch.setattr(Path, "unlink", real_unlink)
    assert run("test", "-m", model_file, "a.png.bbc").exit_code == 0


def test_text_output_to_unbuffered_stdout_is_checked_too(model_file, tmp_path):
    """``bbcodec info`` lines on an unbuffered standard output whose last write is short: an error, not
    exit 0 with the end of the last line missing."""
    source = write_png("a.png", noise_pixels(9, 7, 3))
    assert run("compress", "-m", model_file, source).exit_code == 0
    command = [sys.executable, "-m", "bbcodec_cli.main", "info", *["a.png.bbc"] * 40]
    env = dict(environment(tmp_path), PYTHONUNBUFFERED="1")
    whole = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert whole.returncode == 0
    with open("out", "wb") as out:
        cut = subprocess.run(command, env=env, stdout=out, stderr=subprocess.PIPE, text=True, timeout=300,
                             preexec_fn=_limit_file_size(len(whole.stdout) - 10))
    assert Path("out").read_bytes() == whole.stdout[:-10]
    assert cut.returncode == 1 and cut.stderr.splitlines()[-1].startswith("bbcodec: ")
    assert "Traceback" not in cut.stderr and "Exception ignored" not in cut.stderr


# -- the library's files: model files, installed models, training checkpoints -------------------------------


def _model_and_checkpoint_writers(folder: Path):
    """(name, function writing a file under ``folder`` and returning its path) for every library writer."""
    import torch

    from bbcodec import zoo
    from bbcodec.models import markov_vae
    from bbcodec.models.export import save_model
    from bbcodec.models.presets import preset
    from bbcodec.training.checkpoints import save_checkpoint
    from bbcodec.training.loop import TrainConfig

    model = markov_vae.MarkovVAE(preset("tiny")).eval()
    optimizer = torch.optim.Adam(model.parameters())

    def model_file():
        save_model(model, folder / "m.safetensors")
        return folder / "m.safetensors"

    def checkpoint():
        save_checkpoint(folder / "ckpt.safetensors", model, optimizer, 3, TrainConfig())
        return folder / "ckpt.safetensors"

    def installed():
        return Path(zoo.add(model_file(), "added").location)

    return {"save_model": model_file, "save_checkpoint": checkpoint, "models add": installed}


@pytest.mark.parametrize("writer", ["save_model", "save_checkpoint", "models add"])
def test_library_files_are_written_whole_flushed_and_renamed(tmp_path, monkeypatch, writer):
    """One atomic write (bbcodec.safeio.atomic_write): every byte written to a temporary file in the target's
    folder, flushed to disk before the rename, then the folder synced; permissions as the umask gives."""
    folder = tmp_path / "out"
    folder.mkdir()
    monkeypatch.setenv("BBCODEC_MODELS", str(folder))
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", Path(a).parent)),
                                                     real_replace(a, b))[1])
    old_mask = os.umask(0o027)
    try:
        path = _model_and_checkpoint_writers(folder)[writer]()
    finally:
        os.umask(old_mask)
    assert events[-3:] == ["fsync", ("replace", path.parent), "fsync"]  # data, rename in place, folder
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_a_failed_library_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    from bbcodec import safeio

    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "m.safetensors"
    target.write_bytes(b"old")

    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched, pytest.raises(OSError, match="No space"):
        patched.setattr(os, "write", full_disk)
        safeio.atomic_write(target, b"new" * 1000)
    assert target.read_bytes() == b"old" and os.listdir(folder) == ["m.safetensors"]
