"""Lookup tables for the nonlinear functions of the exact inference path.

Transcendental functions (exp, tanh, softplus) differ in their last bits
between libraries, CPUs and GPUs, so the exact path never calls them on
activations. Each one becomes a table of integers indexed by an integer
activation: ``table[i] = round(f(i / 2**INPUT_BITS) * 2**output_bits)``.

The tables are built at run time with NumPy's float64 functions (fast). A
float64 function is accurate to a few units in the last place, which can
only change a rounded entry if the exact value lies within that distance of
a half-integer. :func:`reference_table` builds the same tables with Python's
``decimal`` module, whose ``exp`` and ``ln`` are correctly rounded, and
:func:`tie_margin` measures how far every entry's exact value is from a
half-integer; the tests check that both builds agree and that the margin is
far larger than any float64 error, so every machine builds the same tables.
"""
from __future__ import annotations

import decimal
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

INPUT_BITS = 10  # table inputs are integers in units of 2**-10


@dataclass(frozen=True)
class TableSpec:
    """``f`` tabulated on the integers lo..hi (units 2**-INPUT_BITS), outputs in units 2**-output_bits."""

    name: str
    lo: int
    hi: int
    output_bits: int


# exp(x) - 1 for x <= 0 (the negative half of ELU); below -8 it is -1 in these units.
ELU_NEGATIVE = TableSpec("elu_negative", -8 << INPUT_BITS, 0, INPUT_BITS)
# softplus(x) = log(1 + exp(x)); beyond +-12 it equals max(x, 0) in these units.
SOFTPLUS = TableSpec("softplus", -12 << INPUT_BITS, 12 << INPUT_BITS, 16)
# exp(x) for a pixel log-scale, clamped to [-7, 2].
EXP = TableSpec("exp", -7 << INPUT_BITS, 2 << INPUT_BITS, 20)
# tanh(x); beyond +-8 it is +-1 in these units.
TANH = TableSpec("tanh", -8 << INPUT_BITS, 8 << INPUT_BITS, 16)
# sigmoid(x), the logistic CDF of the logistic pixel likelihood; beyond +-20 it is within 2**-28 of 0 or 1.
SIGMOID = TableSpec("sigmoid", -20 << INPUT_BITS, 20 << INPUT_BITS, 30)

SPECS = {spec.name: spec for spec in (ELU_NEGATIVE, SOFTPLUS, EXP, TANH, SIGMOID)}

_FLOAT_FUNCTIONS = {
    "elu_negative": np.expm1,
    "softplus": lambda x: np.logaddexp(0.0, x),
    "exp": np.exp,
    "tanh": np.tanh,
    "sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)),
}


def _decimal_function(name: str, x: decimal.Decimal) -> decimal.Decimal:
    if name == "elu_negative":
        return x.exp() - 1
    if name == "softplus":
        return (1 + x.exp()).ln()
    if name == "exp":
        return x.exp()
    if name == "tanh":
        e = (2 * x).exp()
        return (e - 1) / (e + 1)
    if name == "sigmoid":
        return 1 / (1 + (-x).exp())
    raise KeyError(name)


def _inputs(spec: TableSpec) -> np.ndarray:
    return np.arange(spec.lo, spec.hi + 1, dtype=np.int64)


@lru_cache(maxsize=None)
def table(name: str) -> np.ndarray:
    """The table of ``name`` as int64, entry i for the input ``SPECS[name].lo + i``."""
    spec = SPECS[name]
    x = _inputs(spec).astype(np.float64) * 2.0 ** -INPUT_BITS
    scaled = _FLOAT_FUNCTIONS[name](x) * 2.0 ** spec.output_bits
    values = np.floor(scaled + 0.5).astype(np.int64)
    values.setflags(write=False)
    return values


def _exact_values(name: str):
    """Yield each entry's exact scaled value f(i/2**INPUT_BITS) * 2**output_bits as a Decimal."""
    spec = SPECS[name]
    with decimal.localcontext() as context:
        context.prec = 40
        step = decimal.Decimal(2) ** -INPUT_BITS
        out = decimal.Decimal(2) ** spec.output_bits
        for i in range(spec.lo, spec.hi + 1):
            yield _decimal_function(name, i * step) * out


def reference_table(name: str) -> np.ndarray:
    """The same table from correctly rounded decimal arithmetic (slow: for the tests)."""
    rounded = [int(v.to_integral_value(rounding=decimal.ROUND_HALF_UP)) for v in _exact_values(name)]
    return np.array(rounded, dtype=np.int64)


def tie_margin(name: str) -> float:
    """The smallest distance of any exact scaled entry from a rounding tie (a half-integer)."""
    return float(min(abs(v - v.to_integral_value(rounding=decimal.ROUND_FLOOR) - decimal.Decimal("0.5"))
                     for v in _exact_values(name)))


@lru_cache(maxsize=None)
def _table_tensor(name: str, device: str):
    import torch

    return torch.from_numpy(table(name).astype(np.float64)).to(device)


def lookup(name: str, index):
    """``table(name)`` at the integer inputs ``index`` (a torch tensor of whole numbers), clamped to its range.

    Returns float64 whole numbers on the index's device. Inputs beyond the
    range take the end values, except where the caller continues the
    function itself (see :mod:`bbcodec.exact.backend`).
    """
    spec = SPECS[name]
    return take_clamped(_table_tensor(name, str(index.device)), index, spec.lo, spec.hi)


def take_clamped(values, index, lo: int, hi: int):
    """``values[i - lo]`` for each whole number i of ``index`` clamped to lo..hi (``values``: a table of the
    inputs lo..hi); the index is converted to int64 once and clamped and shifted in place."""
    import torch

    position = index.to(dtype=torch.int64, copy=True)   # whole numbers: exact; a copy, changed in place below
    return values.take(position.clamp_(lo, hi).sub_(lo))
