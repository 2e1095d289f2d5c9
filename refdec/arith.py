"""Exact integer operators of spec clause 4, defined once and used everywhere.

Scalar forms take Python ints. Array forms take NumPy int64 arrays, or float64
arrays that hold integers of magnitude below 2^53 (the accumulators of
clause 4.5, which clause 9.5 bounds by 2^31), for which every operation here
is exact: additions of such integers, multiplication and division by powers
of two and floor are all exact in binary64. Both types are wider than the
32 bits that clause 4.1 bounds every decoder variable by, which it allows.
"""

from __future__ import annotations

import numpy as np

from .marks import informative


@informative
def round2(x: int, n: int) -> int:
    """Round2(x, n) of clause 4.2: nearest integer, ties towards +infinity.

    The literal scalar form, which the tests check the array forms against."""
    return (x + ((1 << n) >> 1)) >> n


@informative
def clip3(lo: int, hi: int, x: int) -> int:
    """Clip3(lo, hi, x) of clause 4.3 (the literal scalar form, for the tests)."""
    return lo if x < lo else hi if x > hi else x


def round2_array(x: np.ndarray, n) -> np.ndarray:
    """Clause 4.2 on an int64 array; n is an int or an array broadcastable to x."""
    n = np.asarray(n, dtype=np.int64)
    return (x + ((np.int64(1) << n) >> 1)) >> n


@informative
def round2_float(acc: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Clause 4.2 on float64 arrays of exact integers (|acc| < 2^52), n >= 0 integers.

    A reference form: the decoder folds this into refdec.layers.requant_shifted.

    floor((acc + 2^(n-1)) * 2^-n) is exact: the sum is an integer below 2^53 and
    scaling by a power of two only moves the binary point.
    """
    half = np.where(n > 0, np.ldexp(1.0, n - 1), 0.0)
    return np.floor(np.ldexp(acc + half, -n))


@informative
def requant_float(acc: np.ndarray, shift: np.ndarray, leaky: bool) -> np.ndarray:
    """Requant of clause 4.4 on float64 accumulators; shift broadcasts over the last axis.

    A reference form, which the tests check refdec.layers.requant_shifted against."""
    shift = np.asarray(shift, dtype=np.int64)
    if not leaky:
        return round2_float(acc, shift)
    return np.where(acc < 0, round2_float(acc, shift + 3), round2_float(acc, shift))


def clip3_array(lo, hi, x: np.ndarray) -> np.ndarray:
    """Clip3(lo, hi, x) of clause 4.3, element-wise; lo and hi broadcast against x."""
    return np.clip(x, lo, hi)


def floor_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """FloorDiv of clause 3 on int64 arrays (b > 0): the quotient rounded towards -infinity."""
    return a // b
