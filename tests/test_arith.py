"""Clause 4: the integer operators (Round2, Clip3, Requant, the layer, DepthToSpace), the literal forms of
refdec against scalar transcriptions of the clauses. Their accelerations are proven equal to these
by tests/test_fast_equivalence.py."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdec.arith import clip3, floor_div, requant, round2
from refdec.layers import depth_to_space, layer, layer_at

LIM = 1 << 40  # |x| < 2^40 for the array forms


def round2_def(x: int, n: int) -> int:
    """Clause 4.2 as a mathematical statement: nearest integer, ties towards +infinity."""
    return math.floor(Fraction(x, 1 << n) + Fraction(1, 2))


def requant_def(acc: int, s: int, leaky: bool) -> int:
    """Clause 4.4 written out with the scalar Round2."""
    return round2(acc, s + 3) if leaky and acc < 0 else round2(acc, s)


# --- Round2, clause 4.2 ---------------------------------------------------------------

@pytest.mark.parametrize("x, n, expected", [
    (-3, 1, -1), (3, 1, 2),                      # the examples of clause 4.2
    (1, 1, 1), (-1, 1, 0), (2, 1, 1), (-2, 1, -1),  # ties go up for either sign
    (5, 2, 1), (6, 2, 2), (7, 2, 2), (-5, 2, -1), (-6, 2, -1), (-7, 2, -2), (-10, 2, -2),
    (0, 5, 0), (15, 5, 0), (16, 5, 1), (-16, 5, 0), (-17, 5, -1),
    (1 << 39, 40, 1), (-(1 << 39), 40, 0), (-(1 << 39) - 1, 40, -1), ((1 << 40) - 1, 40, 1),
    (2 ** 31 - 1, 31, 1), (-(2 ** 31), 31, -1), (-(2 ** 31), 34, 0),
])
def test_round2_hand_values(x, n, expected):
    assert round2(x, n) == expected
    assert round2_def(x, n) == expected


@pytest.mark.parametrize("x", [0, 1, -1, 7, -7, 2 ** 31 - 1, -(2 ** 31), (1 << 40) - 1, -(1 << 40) + 1])
def test_round2_zero_shift_is_identity(x):
    assert round2(x, 0) == x
    assert int(round2(np.array([x], dtype=np.int64), 0)[0]) == x


@settings(max_examples=300, deadline=None)
@given(st.integers(-(LIM - 1), LIM - 1), st.integers(0, 40))
def test_round2_matches_definition(x, n):
    r = round2(x, n)
    assert r == round2_def(x, n)
    # Nearest integer, a tie (err == -1/2) always rounded up: -1/2 <= x / 2^n - r < 1/2.
    err = Fraction(x, 1 << n) - r
    assert -Fraction(1, 2) <= err < Fraction(1, 2)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(LIM - 1), LIM - 1), st.integers(1, 30))
def test_round2_is_not_symmetric_on_ties(x, n):
    """Ties go to +infinity for negative x too: Round2(-x) == -Round2(x) except on ties."""
    tie = (x % (1 << n)) == (1 << (n - 1))
    if tie:
        assert round2(-x, n) == -round2(x, n) + 1
    else:
        assert round2(-x, n) == -round2(x, n)


# --- Clip3, clause 4.3 ------------------------------------------------------------------

@pytest.mark.parametrize("lo, hi, x, expected", [
    (0, 255, -1, 0), (0, 255, 0, 0), (0, 255, 255, 255), (0, 255, 256, 255), (0, 255, 17, 17),
    (-255, 255, -100000, -255), (-255, 255, 100000, 255), (-255, 255, -255, -255),
    (3, 3, -9, 3), (3, 3, 9, 3), (-(2 ** 31), 2 ** 31 - 1, 2 ** 40, 2 ** 31 - 1),
])
def test_clip3_hand_values(lo, hi, x, expected):
    assert clip3(lo, hi, x) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(-(LIM - 1), LIM - 1), st.integers(-(LIM - 1), LIM - 1), st.integers(-(LIM - 1), LIM - 1))
def test_clip3_is_min_max(a, b, x):
    lo, hi = min(a, b), max(a, b)
    assert clip3(lo, hi, x) == min(hi, max(lo, x))


# --- array forms -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(20240401)


def _ints(rng, size, bound=LIM):
    """Random int64 values with |x| < bound, mixing magnitudes and exact ties."""
    mags = rng.integers(0, 41, size=size)
    x = rng.integers(0, 1 << 62, size=size, dtype=np.int64) % (np.int64(1) << mags.astype(np.int64))
    x = np.where(rng.random(size) < 0.5, -x, x)
    return np.clip(x, -(bound - 1), bound - 1)


def test_round2_on_arrays_equals_scalar_scalar_shift(rng):
    x = _ints(rng, 4000)
    for n in range(0, 41):
        got = round2(x, n)
        assert got.dtype == np.int64
        assert got.tolist() == [round2_def(v, n) for v in x.tolist()], n


def test_round2_on_arrays_equals_scalar_array_shift(rng):
    x = _ints(rng, 20000)
    n = rng.integers(0, 41, size=x.size)
    # Include the exact ties x = (2k + 1) 2^(n-1) explicitly.
    ties = (2 * rng.integers(-1000, 1000, size=x.size) + 1) << np.maximum(n - 1, 0)
    x = np.where((rng.random(x.size) < 0.25) & (n > 0) & (n < 30), ties, x)
    got = round2(x, n)
    assert got.tolist() == [round2_def(v, k) for v, k in zip(x.tolist(), n.tolist())]


@pytest.mark.parametrize("leaky", [False, True])
def test_requant_equals_definition(rng, leaky):
    """Requant with per-output-channel shifts broadcast over the last axis (clause 4.4)."""
    acc = _ints(rng, (500, 12), bound=1 << 36)
    shift = rng.integers(0, 32, size=12)
    got = requant(acc, shift, leaky)
    want = [[requant_def(a, int(s), leaky) for a, s in zip(row, shift)] for row in acc.tolist()]
    assert got.tolist() == want


def test_requant_leaky_branch_is_round2_s_plus_3():
    acc = np.array([-1, -4, -5, -8, -12, -13, -(2 ** 31), -(2 ** 31) + 1, 0, 1, 4, 5, 2 ** 31 - 1], dtype=np.int64)
    for s in (0, 1, 5, 28, 31):
        leaky = requant(acc, s, True)
        plain = requant(acc, s, False)
        for a, lv, pv in zip(acc.tolist(), leaky.tolist(), plain.tolist()):
            assert pv == round2_def(a, s)
            assert lv == (round2_def(a, s + 3) if a < 0 else round2_def(a, s))
    # Single rounding: slope 1/8 then Round2, not Round2 then slope.
    assert requant(-4, 0, True) == 0    # -0.5 -> 0 (tie up)
    assert requant(-5, 0, True) == -1   # -0.625 -> -1
    assert requant(-12, 0, True) == -1  # -1.5 -> -1
    assert requant(-20, 1, True) == -1  # -20/16 = -1.25 -> -1
    assert requant(-24, 1, True) == -1  # -1.5 -> -1 (tie up)


def test_floor_div():
    a = np.array([0, 1, 7, 8, 9, 2 ** 22 - 1], dtype=np.int64)
    b = np.array([1, 3, 8, 8, 8, 3], dtype=np.int64)
    assert floor_div(a, b).tolist() == [0, 0, 0, 1, 1, (2 ** 22 - 1) // 3]


# --- DepthToSpace (clause 4.6) and the layer (clause 4.5) --------------------------------

def test_depth_to_space_channel_order():
    c, h, w = 3, 2, 5
    x = np.arange(4 * c * h * w, dtype=np.int64).reshape(4 * c, h, w)  # (4C, H, W)
    y = depth_to_space(x)
    assert y.shape == (c, 2 * h, 2 * w)
    for cc in range(c):
        for yy in range(h):
            for xx in range(w):
                for i in (0, 1):
                    for j in (0, 1):
                        assert y[cc, 2 * yy + i, 2 * xx + j] == x[4 * cc + 2 * i + j, yy, xx]


def naive_layer(params, x, out_range=None):
    """Clause 4.5 evaluated with Python ints, one sum at a time; x is (I, H, W); returns (O, H, W)."""
    w = params.weight.tolist()
    o_n, i_n, k, _ = params.weight.shape
    p = (k - 1) // 2
    _, h, wd = x.shape
    xs = x.tolist()
    lo, hi = out_range if out_range is not None else (-params.clip, params.clip)
    out = np.zeros((o_n, h, wd), dtype=np.int64)
    for o in range(o_n):
        s = int(params.shift[o])
        for yy in range(h):
            for xx in range(wd):
                acc = int(params.bias[o])
                for i in range(i_n):
                    for ky in range(k):
                        for kx in range(k):
                            sy, sx = yy + ky - p, xx + kx - p
                            if 0 <= sy < h and 0 <= sx < wd:
                                acc += w[o][i][ky][kx] * xs[i][sy][sx]
                assert abs(acc) < 2 ** 31  # clause 4.5 requirement, guaranteed by clause 9.5
                out[o, yy, xx] = min(hi, max(lo, requant_def(acc, s, params.leaky)))
    return out


@pytest.mark.parametrize("name, h, w", [("synthesis.1", 3, 4), ("synthesis.0", 4, 3), ("context.7", 3, 5),
                                        ("synthesis.6", 4, 5), ("gather.2", 2, 3)])
def test_layer_equals_scalar_clause_4_5(small_model, name, h, w):
    """The literal whole-array layer and its single-position form (clause 7.6) against the sums
    written out one at a time."""
    params = small_model.layers[name]
    rng = np.random.default_rng(h * 10 + w)
    cin = params.weight.shape[1]
    bound = small_model.header["clip"]["synthesis.0"]
    x = rng.integers(-bound, bound + 1, size=(cin, h, w))
    out_range = (0, 255) if name == "synthesis.6" else None
    want = naive_layer(params, x, out_range)
    assert layer(params, x, out_range).tolist() == want.tolist()
    if out_range is None:
        for y in range(h):
            for xx in range(w):
                assert layer_at(params, x, y, xx).tolist() == want[:, y, xx].tolist()
