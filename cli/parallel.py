"""How many torch threads and worker processes a command uses, and the worker side of a run over many files.

``-T/--threads N`` is the number of cores a command may keep busy (0, the
default: every core this process may use, :func:`available_cores`); it is
never more than those cores. One file is coded in this process with N torch
threads; several files go to ``min(files, N)`` worker processes (started with
``spawn``: torch's threads do not survive a fork) with ``N // workers``
threads each, so that the threads of all processes together never exceed N.
Workers are started only when the inputs add up to :data:`WORKER_MIN_BYTES`:
below that, a worker's start-up costs more than it saves.

A job is a module-level factory and its keyword arguments (plain values, so
that they can be sent to a worker): each process builds the per-file action
once (:func:`action_of`). Standard library only until torch is set up.
"""
from __future__ import annotations

import functools
import importlib
import os
import signal

from bbcodec_cli.files import STDIO

threads_option_help = ("cores to use: torch threads, and worker processes for several files "
                       "(0: all this process may use)")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this system
        return max(1, os.cpu_count() or 1)


def cores_for(requested: int) -> int:
    """``-T N`` as a number of cores: 0 means all of them, and never more than the process may use."""
    cores = available_cores()
    return cores if requested <= 0 else min(requested, cores)


WORKER_MIN_BYTES = 4_000_000
"""Inputs smaller than this in all are coded in this process: starting a worker (spawn, importing torch,
loading the model) takes 3-5 s, and two workers lost to one process on 20 images of 48x48 and on 8 of
192x192 on an idle 2-core machine (bench/README.md, "Threads and many files")."""


def file_size(name: str) -> int:
    """The size of an input file (0 for standard input or a file that cannot be read: it fails later)."""
    try:
        return 0 if name == STDIO else os.stat(name).st_size
    except OSError:
        return 0


def plan_for(requested: int, files: list[str]) -> tuple[int, int]:
    """:func:`plan` for these files: a list that reads standard input (this process's) or whose inputs are
    under :data:`WORKER_MIN_BYTES` in all is coded in this process."""
    small = sum(file_size(name) for name in files) < WORKER_MIN_BYTES
    return plan(requested, 1 if STDIO in files or small else len(files))


def plan(requested: int, files: int) -> tuple[int, int]:
    """(worker processes, torch threads per process) for ``files`` files under ``-T requested``;
    0 workers: code in this process."""
    cores = cores_for(requested)
    workers = min(files, cores)
    if workers < 2:
        return 0, cores
    return workers, max(1, cores // workers)


def set_torch_threads(count: int) -> None:
    """Set this process's torch threads (once, before any coding)."""
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


@functools.lru_cache(maxsize=4)
def action_of(factory: str, frozen_params: tuple):
    """The per-file action a job's factory (``module:function``) builds from its parameters, once per process."""
    module, name = factory.split(":")
    return getattr(importlib.import_module(module), name)(**dict(frozen_params))


class _Stop(BaseException):
    pass


_coding = False
"""Whether this worker is coding a file (a SIGTERM then unwinds it; else the worker just ends)."""


def _stop(signum, frame):
    if _coding:
        raise _Stop()
    os._exit(128 + signum)


def start_worker(threads: int) -> None:
    """A worker process: Ctrl-C is for the parent, which ends the workers with SIGTERM; SIGTERM unwinds
    the file being coded (its temporary file is removed) before the worker exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    set_torch_threads(threads)


def run_in_worker(job, name: str):
    """Run a job on one file in a worker: (lines, None) or (None, error line); never raises."""
    global _coding
    from bbcodec_cli.each import attempt

    _coding = True
    try:
        return attempt(job, name)
    except _Stop:
        os._exit(128 + signal.SIGTERM)  # the cleanup has run; the parent reports the interruption
    finally:
        _coding = False
