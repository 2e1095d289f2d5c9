"""Clause 4.1 / 4.2 / 4.4: Round2 without leaving 32 bits.

Clause 4.2 states that, for n >= 1, Round2(x, n) = (x + (1 << (n - 1))) >> n equals
(x >> n) + ((x >> (n - 1)) & 1), a form whose every intermediate stays in the signed 32-bit
range for a 32-bit x. refdec's round2 works on unbounded Python ints and may stay as it is;
these tests document the equivalence for every int32 x and n in 1..30 (clause 4.4 bounds n
by 30: shifts s <= 27 plus the LeakyReLU's 3), and that the naive sum does leave 32 bits.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdec.constants import LEAKY_SHIFT, MAX_INV_GAIN_SHIFT, MAX_ROUND2_BITS, MAX_SHIFT
from refdec.arith import round2

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
N_RANGE = range(1, MAX_ROUND2_BITS + 1)  # 1..30


def round2_32(x: int, n: int) -> int:
    """The 32-bit-safe form of clause 4.2 (n >= 1)."""
    return (x >> n) + ((x >> (n - 1)) & 1)


def round2_32_int32(x: np.ndarray, n: int) -> np.ndarray:
    """The same form evaluated entirely in NumPy int32: nothing wider is ever formed."""
    assert x.dtype == np.int32
    a = x >> np.int32(n)
    b = (x >> np.int32(n - 1)) & np.int32(1)
    assert a.dtype == b.dtype == np.int32
    return a + b


def test_shift_limits_keep_n_within_30():
    """Clause 4.4: s <= 27, so Round2(acc, s + 3) shifts by at most 30; clause 7.11's G <= 27 too."""
    assert MAX_SHIFT == 27 and MAX_ROUND2_BITS == 30
    assert MAX_SHIFT + LEAKY_SHIFT == MAX_ROUND2_BITS
    assert MAX_INV_GAIN_SHIFT <= MAX_ROUND2_BITS


@pytest.mark.parametrize("n", N_RANGE)
def test_equivalence_at_the_edges(n):
    """Both ends of the int32 range, the tie points and their neighbours, for every n."""
    half = 1 << (n - 1)
    xs = {INT32_MIN, INT32_MIN + 1, INT32_MAX, INT32_MAX - 1, 0, 1, -1, half, -half, half - 1, -half - 1,
          INT32_MAX - half, INT32_MAX - half + 1, INT32_MIN + half, INT32_MIN + half - 1}
    for x in sorted(v for v in xs if INT32_MIN <= v <= INT32_MAX):
        expected = math.floor(Fraction(x, 1 << n) + Fraction(1, 2))
        assert round2(x, n) == round2_32(x, n) == expected, (x, n)


@given(st.integers(INT32_MIN, INT32_MAX), st.integers(1, MAX_ROUND2_BITS))
def test_equivalence_random_scalars(x, n):
    assert round2_32(x, n) == round2(x, n)


@pytest.mark.parametrize("n", N_RANGE)
def test_equivalence_random_int32_arrays(n):
    """Random int32 x (uniform over the whole range) evaluated in int32 against the int64 form."""
    rng = np.random.default_rng(1000 + n)
    x = rng.integers(INT32_MIN, INT32_MAX, size=4096, endpoint=True, dtype=np.int64).astype(np.int32)
    x[:4] = [INT32_MIN, INT32_MAX, -1, 0]
    got = round2_32_int32(x, n)
    assert got.dtype == np.int32
    assert np.array_equal(got.astype(np.int64), round2(x.astype(np.int64), n))
    # Every intermediate of the 32-bit form lies in the int32 range (checked in unbounded ints).
    for v in x[:64].tolist():
        assert INT32_MIN <= v >> n <= INT32_MAX and 0 <= (v >> (n - 1)) & 1 <= 1
        assert INT32_MIN <= round2_32(v, n) <= INT32_MAX


def test_naive_sum_leaves_32_bits():
    """Why clause 4.2 gives the second form: x + 2^(n-1) exceeds 2^31 - 1 near the top of the range,
    and evaluated in int32 it wraps and gives a wrong result."""
    x = np.array([INT32_MAX, INT32_MAX - 1], dtype=np.int32)
    for n in (1, 2, 30):
        assert INT32_MAX + (1 << (n - 1)) > INT32_MAX
        with np.errstate(over="ignore"):
            naive = (x + np.int32(1 << (n - 1))) >> np.int32(n)
        assert not np.array_equal(naive.astype(np.int64), round2(x.astype(np.int64), n))
        assert np.array_equal(round2_32_int32(x, n).astype(np.int64), round2(x.astype(np.int64), n))


def test_n_zero_is_the_identity():
    """Round2(x, 0) = x (the 32-bit form is stated for n >= 1 only)."""
    for x in (INT32_MIN, -1, 0, 1, INT32_MAX):
        assert round2(x, 0) == x
