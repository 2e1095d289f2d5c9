"""The exact integer operators of spec clause 4, defined once and used everywhere.

Each operator takes Python ints or NumPy int64 arrays (element-wise, with NumPy broadcasting).
int64 is wider than the 32 bits that clause 4.1 bounds the decoding process by, which the clause
allows; no operation here can overflow it.
"""

from __future__ import annotations

import numpy as np

from .constants import LEAKY_SHIFT
from .clauses import clause


@clause("4.2", "Round2")
def round2(x, n):
    """Round2(x, n): nearest integer to x / 2^n, ties towards +infinity.

    (1 << n) >> 1 is 2^(n-1) for n >= 1 and 0 for n = 0, so one expression is both lines of
    the clause."""
    return (x + ((1 << n) >> 1)) >> n


@clause("4.3", "Clip3")
def clip3(lo, hi, x):
    """Clip3(lo, hi, x) = Min(hi, Max(lo, x))."""
    return np.minimum(hi, np.maximum(lo, x))


@clause("4.4", "LeakyReLU and requantisation")
def requant(acc, s, leaky: bool):
    """Requant(acc, s, leaky): Round2(acc, s + 3) where leaky and acc < 0, else Round2(acc, s)."""
    if not leaky:
        return round2(acc, s)
    return np.where(acc < 0, round2(acc, s + LEAKY_SHIFT), round2(acc, s))


@clause("3", "Notation")
def floor_div(a, b):
    """FloorDiv(a, b) for b > 0: floor(a / b)."""
    return a // b
