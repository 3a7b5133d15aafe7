"""Where a .bbc file decodes: exact-arithmetic files anywhere, float-arithmetic files where they were made.

An entropy decoder must recompute the encoder's probabilities bit for bit.
With ``arithmetic: "exact"`` (:mod:`bbcodec.exact`) they are functions of
integers, the same on every machine. With ``arithmetic: "float"`` they come
from float32 kernels whose last bits depend on the device, the CPU's
instruction set (torch picks AVX-512, AVX2 or plain kernels at run time, and
so do oneDNN and MKL), the number of threads, and the software versions, so
such a file may not decode on another machine (``bench/portability.py``:
every one of four kernel settings and each thread count gave another file). The header of a float file records
:func:`float_platform`, and a failed decode says where the file was made.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache

# Environment settings that change which float kernels run (and so their last bits) on the same CPU.
KERNEL_SETTINGS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")

STAND_INS = ("none", "ATEN_CPU_CAPABILITY=default", "ONEDNN_MAX_CPU_ISA=SSE41", "MKL_ENABLE_INSTRUCTIONS=SSE4_2")
"""Settings that make torch, oneDNN or MKL run other float kernels on this machine: stand-ins for other CPUs
(each changes the bytes of a float-arithmetic file; ``tests/test_portability.py``, ``bench/portability.py``)."""

PORTABLE = "exact"


def environment_with(stand_in: str) -> dict[str, str]:
    """This process's environment without any kernel setting, plus ``stand_in`` (one of :data:`STAND_INS`),
    for a child process."""
    env = {name: value for name, value in os.environ.items() if name not in KERNEL_SETTINGS}
    if stand_in != "none":
        name, value = stand_in.split("=", 1)
        env[name] = value
    return env


@lru_cache(maxsize=None)
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def float_platform(device) -> str:
    """The kind of machine float arithmetic runs on here: device, CPU, its kernels and threads, torch version.

    Two machines that give the same string run the same float kernels (as far
    as this process can tell); a file made on one decodes on the other.
    """
    import torch  # here, so that reading a header (bbcodec info) needs no torch

    device = torch.device(device)
    if device.type == "cuda":
        where = f"cuda {torch.cuda.get_device_name(device)}"
    else:
        where = (f"{device.type} {_cpu_name()}, {torch.backends.cpu.get_cpu_capability()} kernels, "
                 f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}")
    overrides = "".join(f", {name}={os.environ[name]}" for name in KERNEL_SETTINGS if os.environ.get(name))
    return f"{where}{overrides}, torch {torch.__version__}"


def arithmetic_of(header: dict) -> str:
    """The arithmetic a bits-back file was coded with (files from before the field are float)."""
    coder = header.get("coder")
    arithmetic = coder.get("arithmetic", "float") if isinstance(coder, dict) else None
    return arithmetic if isinstance(arithmetic, str) else "float"


def decodes_anywhere(header: dict) -> bool:
    """Whether any machine decodes this file (stored files and exact arithmetic), from its header."""
    return header.get("method") != "bits-back" or arithmetic_of(header) == PORTABLE


def where_it_decodes(header: dict) -> str:
    """A short phrase for ``bbcodec info``: 'any machine', or the machine a float file was made on."""
    if decodes_anywhere(header):
        return "any machine"
    made_on = header.get("float_platform")
    return f"only where it was made ({made_on})" if isinstance(made_on, str) else "only where it was made (not recorded)"


def decode_hint(header: dict, device) -> str:
    """Why a float-arithmetic file may have failed to decode here: an addition to the error message."""
    if decodes_anywhere(header):
        return ""
    made_on = header.get("float_platform")
    if not isinstance(made_on, str):
        return (" (it was coded with float arithmetic, which decodes only on the kind of machine and software "
                "that made it: decode it there)")
    if made_on != float_platform(device):
        return f" (it was coded with float arithmetic on {made_on}: decode it there)"
    return ""
