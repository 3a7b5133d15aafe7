"""Running a command on each of its files: in this process or in worker processes, one error line per
failed file, a progress bar over the files on a terminal, a periodic line with ``-v`` elsewhere.

Every file is processed even when another fails; the command then exits
with status 1 (:mod:`bbcodec_cli.codec`, :mod:`bbcodec_cli.info`). Whatever
process codes a file, its messages are printed here, in the order of the
files. A job's action returns the lines it has to say (:data:`OUT`,
:data:`ERR`, :data:`VERBOSE`). Needs no torch.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass

from tqdm import tqdm

from bbcodec import container
from bbcodec_cli.common import CLIError, debugging, error_message, interruptible, shown_name
from bbcodec_cli.files import STDIO
from bbcodec_cli import parallel

OUT, ERR, VERBOSE = "out", "err", "verbose"
"""Where a line of an action goes: stdout, stderr, stderr with ``-v`` only."""

REPORT_EVERY = 30.0
"""Seconds between the lines that say how far a run is (``-v``, stderr not a terminal)."""


@dataclass(frozen=True)
class Job:
    """What to do to each file: ``factory`` (``module:function``) builds the per-file action from
    ``params`` (sorted (name, value) pairs); ``no_limits`` lifts the decoder's work limits."""
    factory: str
    params: tuple
    no_limits: bool = False


def job(factory: str, no_limits: bool = False, **params) -> Job:
    return Job(factory, tuple(sorted(params.items())), no_limits)


def bars_wanted(quiet: bool) -> bool:
    """Progress bars go to stderr, and only when it is a terminal."""
    return not quiet and sys.stderr.isatty()


def attempt(job: Job, name: str):
    """Run the job on one file: (its lines, None), or (None, the error line's text)."""
    lifted = container.limits_lifted() if job.no_limits else contextlib.nullcontext()
    try:
        with lifted:
            return parallel.action_of(job.factory, job.params)(name) or [], None
    except Exception as error:  # every failure is one line; the next file is still processed
        if debugging():
            raise
        text = error_message(error)
        if isinstance(error, container.WorkLimitError):
            text += " (--no-limits decodes it if you trust the file)"
        return None, text


class _Progress:
    """A bar over the files on a terminal (files done, MB/s of the inputs); with ``-v`` elsewhere, a line
    every :data:`REPORT_EVERY` seconds."""

    def __init__(self, files, label: str, quiet: bool, verbose: bool):
        self.sizes = {name: parallel.file_size(name) for name in files}
        self.total, self.label, self.done, self.bytes = len(files), label, 0, 0
        self.start = self.last = time.monotonic()
        self.lines = verbose and not quiet and not sys.stderr.isatty() and len(files) > 1
        self.bar = tqdm(total=len(files), desc=label, unit="file", file=sys.stderr,
                        disable=len(files) < 2 or not bars_wanted(quiet))

    def rate(self) -> float:
        return self.bytes / 1e6 / max(time.monotonic() - self.start, 1e-9)

    def file_done(self, name: str) -> None:
        self.done += 1
        self.bytes += self.sizes[name]
        self.bar.update(1)
        self.bar.set_postfix_str(f"{self.rate():.2f} MB/s", refresh=False)
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        if self.lines and now - self.last >= REPORT_EVERY:
            self.last = now
            tqdm.write(f"bbcodec: {self.label}: {self.done}/{self.total} files, {self.bytes / 1e6:.1f} MB, "
                       f"{self.rate():.2f} MB/s, {now - self.start:.0f} s", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _in_this_process(job: Job, files, threads: int | None):
    if threads is not None:
        parallel.set_torch_threads(threads)
    for name in files:
        yield attempt(job, name)


KILLED = ("the worker process coding it was killed (out of memory? try -T 1, one file at a time in one "
          "process)")


def _in_workers(job: Job, files, workers: int, threads: int, progress: _Progress):
    """The results of ``files`` in order, coded by ``workers`` spawned processes (one file each at a time).

    A worker killed by a signal (the kernel's out-of-memory killer) breaks the pool and every file in
    flight with it: each of those is coded again alone in a new process, so that only the file that kills
    its worker again fails (:data:`KILLED`), and the rest of the files go on in a new pool."""
    from concurrent.futures.process import BrokenProcessPool

    call, waiting, in_flight = _Call(job), list(files), []
    pool = _pool(workers, threads)
    try:
        while waiting or in_flight:
            while waiting and len(in_flight) < workers:
                name = waiting.pop(0)
                in_flight.append((name, pool.submit(call, name)))
            try:
                yield _result(in_flight[0][1], progress)
                in_flight.pop(0)
            except BrokenProcessPool:
                lost, in_flight = [name for name, _ in in_flight], []
                _end(pool)
                for name in lost:
                    pool = _pool(1, threads)
                    try:
                        yield _result(pool.submit(call, name), progress)
                    except BrokenProcessPool:
                        yield None, KILLED
                    _end(pool)
                pool = _pool(workers, threads)
    finally:
        _end(pool)  # after a signal: each worker removes its temporary file and ends
        # Release the pool's semaphores now (a process that dies by a signal runs no exit handlers, and the
        # resource tracker would warn of them).
        import multiprocessing.util

        multiprocessing.util._run_finalizers(0)


def _pool(workers: int, threads: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=parallel.start_worker, initargs=(threads,))


def _result(future, progress: _Progress):
    """The future's result, ticking the progress lines while it is awaited."""
    from concurrent.futures import TimeoutError as Waiting

    while True:
        try:
            return future.result(timeout=min(REPORT_EVERY, 5.0))
        except Waiting:
            progress.tick()


def _end(pool) -> None:
    """End the pool now: running workers get SIGTERM (they clean up), queued files are dropped, and this
    returns once the pool's own thread has finished with its queues."""
    workers = list((pool._processes or {}).values())  # no public list before Python 3.14; shutdown drops it
    for process in workers:
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class _Call:
    job: Job

    def __call__(self, name):
        return parallel.run_in_worker(self.job, name)


def _show(name: str, lines, error: str | None, verbose: bool) -> None:
    if error is not None:
        tqdm.write(f"bbcodec: {shown_name(name)}: {error}", file=sys.stderr)
        return
    for kind, text in lines:
        if kind == OUT:
            tqdm.write(text, file=sys.stdout)
        elif kind == ERR or verbose:
            tqdm.write(text, file=sys.stderr)


def run_each(files, job: Job, verbose: bool, quiet: bool, label: str, threads: int | None = None):
    """Run ``job`` on each file; print what each says, in order; report errors one line each; exit 1 if
    any failed.

    ``threads`` is ``-T`` (:func:`bbcodec_cli.parallel.plan`); None: the job needs no torch and runs here.
    A termination signal stops the run after cleaning up (:func:`bbcodec_cli.common.interruptible`)."""
    workers, per_process = parallel.plan_for(threads, files) if threads is not None else (0, None)
    failed = 0
    progress = _Progress(files, label, quiet, verbose)
    with interruptible():
        results = (_in_workers(job, files, workers, per_process, progress) if workers
                   else _in_this_process(job, files, per_process))
        with contextlib.closing(results):  # a signal closes it: the workers are ended, each cleaning up
            for name, (lines, error) in zip(files, results):
                failed += error is not None
                _show(name, lines, error, verbose)
                progress.file_done(name)
        progress.close()
    if failed:
        sys.exit(1)


def expand(files, recursive: bool, wanted) -> list[str]:
    """The files to process: a folder stands for every file under it that ``wanted(path)`` accepts (with
    ``-r``), in name order; without ``-r`` it stays, to be refused as a folder."""
    listed = []
    for name in files:
        if recursive and name != STDIO and os.path.isdir(name):
            found = [os.path.join(top, leaf) for top, _, leaves in os.walk(name) for leaf in leaves]
            listed += sorted(path for path in found if wanted(path))
        else:
            listed.append(name)
    return listed


def refuse_folder(name: str) -> None:
    """A folder given without ``-r``: one line that says how to process the files under it."""
    if name != STDIO and os.path.isdir(name):
        raise CLIError("is a folder (use -r to process the files under it)")
