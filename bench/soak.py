"""Soak: thousands of mixed ``bbcodec`` runs, interrupted at random, in parallel, on a nearly full disk.

Each round starts a few runs at once in one folder: ``compress`` (to ``NAME.bbc``,
sometimes ``--rm``, ``-f`` or ``-c`` into a file), ``decompress`` (``-o``, or
``--rm -f`` back to the source name) and ``test``, on images of random sizes
and modes (1, L, LA, P, RGB, RGBA). Runs often pick the same file, so that they
race for one output name. Some runs are stopped after a random delay by SIGINT,
SIGTERM or SIGKILL. Some rounds run in a small tmpfs filled to within a few
KB of full. After every round, every file that any run of the round could have
written or removed is checked:

* lost: a source image neither present nor recoverable from its ``.bbc``;
* partial: a file under a final name that does not decode, or decodes to other
  pixels than its source (``.bbc`` files through ``bbcodec.decompress``, images
  through ``bbcodec.imageio.read_image``);
* status: a run that exited 0 without its output, or with status 1 and not
  exactly one stderr line, or that printed a traceback;
* temporary files (``.NAME.*.tmp``) left behind: allowed only after a SIGKILL
  (which no process can answer), counted, then removed.

Most runs are forked from this process after ``bbcodec`` is imported (so that a
run costs its work, not Python's and torch's start-up) and call the command's
entry point (``bbcodec_cli.main.main``) with standard output and error redirected to
files; signals reach them as they reach the real command. A share of the runs
(``--fresh-share``) start a new Python process instead (``python -m
bbcodec_cli.main``), so that signals also land during start-up. The tiny test model
(``tests/golden/tiny.safetensors``) codes, to keep each run short.

    OMP_NUM_THREADS=1 nice -n 10 python bench/soak.py --runs 2000 --work /tmp/soak18

Must run as root for the tmpfs (without it the full-disk rounds are skipped and
the result says so). Writes ``bench/results/soak.json``; exits 1 on any lost or
partial file or wrong status.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import bbcodec  # noqa: E402
from bbcodec import imageio  # noqa: E402
from bbcodec.errors import BBCodecError  # noqa: E402
from bbcodec_cli.main import main as cli_main  # noqa: E402

RESULT = ROOT / "bench" / "results" / "soak.json"
MODEL = ROOT / "tests" / "golden" / "tiny.safetensors"
MODES = ["1", "L", "LA", "P", "RGB", "RGBA"]
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]


def make_image(rng: random.Random) -> imageio.Image:
    """An image of a random size and mode: gradients with more or less noise, so that sizes vary."""
    from PIL import Image as PILImage

    height, width = rng.randint(1, 80), rng.randint(1, 80)
    mode = rng.choice(MODES)
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(rng.randrange(1 << 30)).integers(0, rng.choice([2, 16, 256]), (height, width, 4))
    rgba = np.stack([x * 3 + y, y * 5, x + y * 2, 255 - x], -1) + noise
    im = PILImage.fromarray((rgba % 256).astype(np.uint8), "RGBA")
    im = im.convert("RGB").quantize(rng.choice([2, 16, 256])) if mode == "P" else im.convert(mode)
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    return imageio.read_image(buffer.getvalue())


def same_pixels(a: imageio.Image, b: imageio.Image) -> bool:
    return a.mode == b.mode and a.pixels.shape == b.pixels.shape and bool((a.pixels == b.pixels).all())


class Folder:
    """One folder of sources (``imgN.png``) whose expected images are known."""

    def __init__(self, path: Path, images: list[imageio.Image]):
        self.path, self.images = path, images
        path.mkdir(parents=True, exist_ok=True)
        for index in range(len(images)):
            self.restore(index)

    def source(self, index: int) -> Path:
        return self.path / f"img{index}.png"

    def restore(self, index: int) -> None:
        """Put a source back (after --rm removed it and the check found its output whole)."""
        if not self.source(index).exists():
            data = imageio.encode(self.images[index], "PNG")
            tmp = self.path / f".restore{index}"
            tmp.write_bytes(data)
            tmp.rename(self.source(index))


def plan_run(rng: random.Random, folder: Folder, slot: int) -> tuple[list[str], str | None, set[int]]:
    """(arguments, file that receives standard output or None, sources the run may touch)."""
    index = rng.randrange(len(folder.images))
    source, packed = folder.source(index), folder.path / f"img{index}.png.bbc"
    model = ["-q", "-m", str(MODEL)]
    kind = rng.random()
    if kind < 0.45 or not packed.exists():
        extra = [option for option, p in (("--rm", 0.25), ("-f", 0.3)) if rng.random() < p]
        if rng.random() < 0.1:
            return ["compress", *model, "-c", str(source)], str(folder.path / f"stdout{slot}.bbc"), {index}
        return ["compress", *model, *extra, str(source)], None, {index}
    if kind < 0.8:
        if rng.random() < 0.3:
            return ["decompress", *model, "--rm", "-f", str(packed)], None, {index}
        target = folder.path / f"out{slot}_img{index}.png"
        return ["decompress", *model, "-f", "-o", str(target), str(packed)], None, {index}
    return ["test", *model, str(packed)], None, {index}


def start(args: list[str], stdout: str | None, log: Path, fresh: bool) -> int:
    """Fork a run of ``bbcodec ARGS``; returns its pid. ``fresh``: a new Python process (start-up included).

    Termination signals stay blocked across the fork until the child has its handlers, and the child
    never returns into this harness's code (whatever happens, it ends in ``os._exit``)."""
    sys.stdout.flush()
    sys.stderr.flush()
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        return pid
    code = 98
    try:
        code = _child(args, stdout, log, fresh, stops)
    finally:
        os._exit(code)


def _child(args: list[str], stdout: str | None, log: Path, fresh: bool, stops: set) -> int:
    """The forked run: as the command starts, with Ctrl-C raising KeyboardInterrupt; returns its status."""
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for name, fd in ((stdout or os.devnull, 1), (str(log), 2)):
            handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(handle, fd)
            os.close(handle)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        if fresh:
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            os.execve(sys.executable, [sys.executable, "-m", "bbcodec_cli.main", *args], env)
        cli_main(args, prog_name="bbcodec")
        return 0
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except KeyboardInterrupt:  # landed before the command's own handling began: die as a process would
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BaseException:  # noqa: BLE001  (a traceback escaping the command: reported by its status)
        import traceback

        traceback.print_exc()
        return 99
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()


class Soak:
    def __init__(self, args):
        self.args, self.rng = args, random.Random(args.seed)
        self.counts, self.problems = Counter(), []
        self.work = args.work
        shutil.rmtree(self.work, ignore_errors=True)
        images = [make_image(self.rng) for _ in range(args.images)]
        self.main = Folder(self.work / "main", images)
        self.full = self._full_folder(images)
        from bbcodec import zoo

        zoo.load(str(MODEL))  # loaded once here; every forked run finds it loaded

    def _full_folder(self, images) -> Folder | None:
        mount = self.work / "full"
        mount.mkdir(parents=True, exist_ok=True)
        size = f"{self.args.full_kib}k"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                              capture_output=True)
        if done.returncode:
            self.counts["full-disk rounds skipped (no tmpfs)"] = 1
            return None
        self.mounted = mount
        return Folder(mount / "files", images[: self.args.images // 2])

    def fill(self, folder: Folder) -> None:
        """Fill the tmpfs to within a few KB of full."""
        filler = folder.path.parent / "filler"
        filler.unlink(missing_ok=True)
        stats = os.statvfs(folder.path)
        free = stats.f_bavail * stats.f_frsize
        leave = self.rng.choice([0, 4096, 8192, 16384, 32768, 65536])
        with open(filler, "wb") as out:
            try:
                out.write(bytes(max(0, free - leave)))
            except OSError:
                pass

    def round(self) -> None:
        full = self.full is not None and self.rng.random() < self.args.full_share
        folder = self.full if full else self.main
        if full:
            self.fill(folder)
        runs = []
        for slot in range(self.rng.randint(1, self.args.parallel)):
            args, stdout, touched = plan_run(self.rng, folder, slot)
            log = self.work / f"stderr{slot}"
            delay = self.rng.uniform(0, self.args.max_delay) if self.rng.random() < self.args.interrupt_share else None
            signum = self.rng.choice(SIGNALS) if delay is not None else None
            fresh = self.rng.random() < self.args.fresh_share
            if fresh and delay is not None:
                delay += self.rng.uniform(0, self.args.startup_seconds)  # some land during start-up
            runs.append({"args": args, "stdout": stdout, "touched": touched, "log": log, "delay": delay,
                         "folder": folder, "signum": signum, "fresh": fresh,
                         "pid": start(args, stdout, log, fresh), "started": time.monotonic()})
        self._signal_and_wait(runs)
        killed = any(run["signum"] == signal.SIGKILL and run["interrupted"] for run in runs)
        for run in runs:
            self._check_status(run, full)
        self._check_folder(folder, set().union(*(run["touched"] for run in runs)), killed, full)

    def _signal_and_wait(self, runs) -> None:
        pending = {run["pid"]: run for run in runs}
        for run in runs:
            run["interrupted"] = False
        while pending:
            now = time.monotonic()
            for pid, run in list(pending.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    run["status"] = os.waitstatus_to_exitcode(status)
                    del pending[pid]
                elif run["delay"] is not None and not run["interrupted"] and now - run["started"] >= run["delay"]:
                    os.kill(pid, run["signum"])
                    run["interrupted"] = True
                elif now - run["started"] > self.args.timeout:
                    os.kill(pid, signal.SIGKILL)
                    self.problem("hang", run)
                    run["interrupted"] = True
            time.sleep(0.005)

    def problem(self, kind: str, run_or_text) -> None:
        self.counts[f"problem: {kind}"] += 1
        if len(self.problems) < 50:
            text = run_or_text if isinstance(run_or_text, str) else " ".join(run_or_text["args"])
            self.problems.append(f"{kind}: {text}")

    def _check_status(self, run, full: bool) -> None:
        command, status = run["args"][0], run["status"]
        stderr = run["log"].read_text(errors="replace")
        self.counts["runs"] += 1
        self.counts[f"runs: {command}"] += 1
        if full:
            self.counts["runs on a nearly full disk"] += 1
        outcome = ("exit 0" if status == 0 else f"exit {status}" if status > 0
                   else f"killed by {signal.Signals(-status).name}")
        self.counts[f"outcome: {outcome}"] += 1
        if run["interrupted"]:
            self.counts[f"interrupted by {signal.Signals(run['signum']).name}"] += 1
        if run["fresh"] and run["interrupted"] and status != 0 and "cli/" not in stderr and stderr:
            # The signal landed while the interpreter itself started, before it ran any bbcodec code: its
            # traceback (or "can't initialize sys standard streams") is Python's, as for any program.
            self.counts["interrupted during the interpreter's own start-up"] += 1
            return
        if "Traceback" in stderr or status == 99:
            self.problem("traceback", " ".join(run["args"]) + " | " + " ".join(stderr.split()[-12:]))
        if status == 1 and len(stderr.splitlines()) != 1:
            self.problem("not one error line", " ".join(run["args"]) + " | " + " ".join(stderr.split()[-12:]))
        if run["fresh"]:
            self.counts["runs in a fresh process"] += 1
        if status == 1 and stderr:
            self.counts[f"error: {_message_family(stderr)}"] += 1
        if status < 0 and -status != run.get("signum"):
            self.problem("died of another signal", run)
        if status == 0 and run["stdout"]:
            self._check_stdout(run)

    def _check_stdout(self, run) -> None:
        index, folder = next(iter(run["touched"])), run["folder"]
        try:
            same = same_pixels(bbcodec.decompress(Path(run["stdout"]).read_bytes(), model=str(MODEL)),
                               folder.images[index])
        except BBCodecError:
            same = False
        self.counts["outputs checked"] += 1
        if not same:
            self.problem("partial standard output after exit 0", run)
        Path(run["stdout"]).unlink(missing_ok=True)

    def _check_folder(self, folder: Folder, touched: set[int], killed: bool, full: bool) -> None:
        for name in sorted(os.listdir(folder.path)):
            path = folder.path / name
            if name.startswith(".") and name.endswith(".tmp"):
                if not killed:
                    self.problem("temporary file left without SIGKILL", name)
                self.counts["temporary files left by SIGKILL (removed)"] += 1
                path.unlink()
                continue
            if name.startswith("stdout"):
                path.unlink()  # a killed -c run: standard output is the caller's, partial by nature
                continue
            index = _index_of(name)
            if index is None or index not in touched:
                continue
            self._check_output(folder, path, index)
        if full:
            (folder.path.parent / "filler").unlink(missing_ok=True)
        for index in touched:
            if not folder.source(index).exists() and not (folder.path / f"img{index}.png.bbc").exists():
                self.problem("lost", f"img{index}.png in {folder.path}")
            folder.restore(index)
        if full:
            for name in os.listdir(folder.path):  # keep the small disk for the next full round
                if name.startswith("out"):
                    (folder.path / name).unlink()

    def _check_output(self, folder: Folder, path: Path, index: int) -> None:
        expected = folder.images[index]
        try:
            if path.name.endswith(".bbc"):
                image = bbcodec.decompress(path.read_bytes(), model=str(MODEL))
            else:
                image = imageio.read_image(path.read_bytes())
            whole = same_pixels(image, expected)
        except BBCodecError:
            whole = False
        self.counts["outputs checked"] += 1
        if not whole:
            self.problem("partial or wrong file", str(path))
            path.unlink()

    def run(self) -> dict:
        started = time.time()
        try:
            while self.counts["runs"] < self.args.runs and time.time() - started < self.args.seconds:
                self.round()
                if self.counts["runs"] // 100 != (self.counts["runs"] - 1) // 100 or self.counts["runs"] < 5:
                    print(f"{self.counts['runs']} runs, {int(time.time() - started)} s, "
                          f"{sum(v for k, v in self.counts.items() if k.startswith('problem'))} problems",
                          flush=True)
        finally:
            if self.full is not None:
                subprocess.run(["umount", str(self.mounted)], check=False)
        problems = sum(v for k, v in self.counts.items() if k.startswith("problem"))
        return {"script": "bench/soak.py", "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(self.args).items()},
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads 1",
                "seconds": round(time.time() - started), "counts": dict(sorted(self.counts.items())),
                "lost": self.counts["problem: lost"],
                "partial": self.counts["problem: partial or wrong file"]
                + self.counts["problem: partial standard output after exit 0"],
                "problems": problems, "problem_list": self.problems}


def _message_family(stderr: str) -> str:
    """An error line without its file name: what kind of refusal it was."""
    message = stderr.strip().split(": ", 2)[-1]
    return " ".join(word for word in message.split()[:6] if "/" not in word)


def _index_of(name: str) -> int | None:
    """The source index in ``imgN.png``, ``imgN.png.bbc`` or ``outS_imgN.png``."""
    stem = name.split("img", 1)[-1] if "img" in name else ""
    digits = stem.split(".", 1)[0]
    return int(digits) if digits.isdigit() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (outside the checkout)")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--parallel", type=int, default=4, help="most runs at once in one folder")
    parser.add_argument("--interrupt-share", type=float, default=0.35)
    parser.add_argument("--max-delay", type=float, default=0.4, help="latest a signal is sent, seconds")
    parser.add_argument("--fresh-share", type=float, default=0.05, help="share of runs in a new Python process")
    parser.add_argument("--startup-seconds", type=float, default=3.0, help="added to a fresh run's signal delay")
    parser.add_argument("--full-share", type=float, default=0.15, help="share of rounds on the nearly full disk")
    parser.add_argument("--full-kib", type=int, default=2048, help="size of the small tmpfs")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--seconds", type=float, default=float("inf"), help="stop after the round that passes this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = Soak(args).run()
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("seconds", "lost", "partial", "problems")}))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
