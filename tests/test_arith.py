"""Clause 4: the integer operators (Round2, Clip3, Requant, the layer, DepthToSpace)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdec.arith import clip3, floor_div, requant_float, round2, round2_array, round2_float
from refdec.layers import conv, conv_rows, conv_tiles, conv_winograd, depth_to_space

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
    assert int(round2_array(np.array([x], dtype=np.int64), 0)[0]) == x
    assert round2_float(np.array([float(x)]), np.array([0]))[0] == x


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


def test_round2_array_equals_scalar_scalar_shift(rng):
    x = _ints(rng, 4000)
    for n in range(0, 41):
        got = round2_array(x, n)
        assert got.dtype == np.int64
        assert got.tolist() == [round2(v, n) for v in x.tolist()], n


def test_round2_array_equals_scalar_array_shift(rng):
    x = _ints(rng, 20000)
    n = rng.integers(0, 41, size=x.size)
    # Include the exact ties x = (2k + 1) 2^(n-1) explicitly.
    ties = (2 * rng.integers(-1000, 1000, size=x.size) + 1) << np.maximum(n - 1, 0)
    x = np.where((rng.random(x.size) < 0.25) & (n > 0) & (n < 30), ties, x)
    got = round2_array(x, n)
    assert got.tolist() == [round2(v, k) for v, k in zip(x.tolist(), n.tolist())]


def test_round2_float_equals_scalar(rng):
    x = _ints(rng, 20000)
    n = rng.integers(0, 41, size=x.size)
    ties = (2 * rng.integers(-1000, 1000, size=x.size) + 1) << np.maximum(n - 1, 0)
    x = np.where((rng.random(x.size) < 0.25) & (n > 0) & (n < 30), ties, x)
    got = round2_float(x.astype(np.float64), n)
    assert got.dtype == np.float64
    assert np.all(got == np.floor(got))
    assert [int(v) for v in got.tolist()] == [round2(v, k) for v, k in zip(x.tolist(), n.tolist())]


@pytest.mark.parametrize("leaky", [False, True])
def test_requant_float_equals_definition(rng, leaky):
    """Requant with per-output-channel shifts broadcast over the last axis (clause 4.4)."""
    acc = _ints(rng, (500, 12), bound=1 << 36)
    shift = rng.integers(0, 32, size=12)
    got = requant_float(acc.astype(np.float64), shift, leaky)
    want = [[requant_def(a, int(s), leaky) for a, s in zip(row, shift)] for row in acc.tolist()]
    assert got.astype(np.int64).tolist() == want


def test_requant_leaky_branch_is_round2_s_plus_3():
    acc = np.array([-1, -4, -5, -8, -12, -13, -(2 ** 31), -(2 ** 31) + 1, 0, 1, 4, 5, 2 ** 31 - 1], dtype=np.int64)
    for s in (0, 1, 5, 28, 31):
        leaky = requant_float(acc.astype(np.float64), np.array([s]), True).astype(np.int64)
        plain = requant_float(acc.astype(np.float64), np.array([s]), False).astype(np.int64)
        for a, lv, pv in zip(acc.tolist(), leaky.tolist(), plain.tolist()):
            assert pv == round2(a, s)
            assert lv == (round2(a, s + 3) if a < 0 else round2(a, s))
    # Single rounding: slope 1/8 then Round2, not Round2 then slope.
    assert requant_float(np.array([-4.0]), np.array([0]), True)[0] == 0    # -0.5 -> 0 (tie up)
    assert requant_float(np.array([-5.0]), np.array([0]), True)[0] == -1   # -0.625 -> -1
    assert requant_float(np.array([-12.0]), np.array([0]), True)[0] == -1  # -1.5 -> -1
    assert requant_float(np.array([-20.0]), np.array([1]), True)[0] == -1  # -20/16 = -1.25 -> -1
    assert requant_float(np.array([-24.0]), np.array([1]), True)[0] == -1  # -1.5 -> -1 (tie up)


def test_floor_div():
    a = np.array([0, 1, 7, 8, 9, 2 ** 22 - 1], dtype=np.int64)
    b = np.array([1, 3, 8, 8, 8, 3], dtype=np.int64)
    assert floor_div(a, b).tolist() == [0, 0, 0, 1, 1, (2 ** 22 - 1) // 3]


# --- DepthToSpace (clause 4.6) and the layer (clause 4.5) --------------------------------

def test_depth_to_space_channel_order():
    c, h, w = 3, 2, 5
    x = np.arange(4 * c * h * w, dtype=np.float64).reshape(4 * c, h, w)  # (4C, H, W)
    y = depth_to_space(x.transpose(1, 2, 0))  # channels-last in, channels-last out
    assert y.shape == (2 * h, 2 * w, c)
    for cc in range(c):
        for yy in range(h):
            for xx in range(w):
                for i in (0, 1):
                    for j in (0, 1):
                        assert y[2 * yy + i, 2 * xx + j, cc] == x[4 * cc + 2 * i + j, yy, xx]


def naive_layer(layer, x, out_range=None):
    """Clause 4.5 evaluated literally with Python ints; x is (I, H, W); returns (O, H, W) before D2S."""
    w = layer.weight.tolist()
    o_n, i_n, k, _ = layer.weight.shape
    p = (k - 1) // 2
    _, h, wd = x.shape
    xs = x.tolist()
    lo, hi = out_range if out_range is not None else (-layer.clip, layer.clip)
    out = np.zeros((o_n, h, wd), dtype=np.int64)
    for o in range(o_n):
        s = int(layer.shift[o])
        for yy in range(h):
            for xx in range(wd):
                acc = int(layer.bias[o])
                for i in range(i_n):
                    for ky in range(k):
                        for kx in range(k):
                            sy, sx = yy + ky - p, xx + kx - p
                            if 0 <= sy < h and 0 <= sx < wd:
                                acc += w[o][i][ky][kx] * xs[i][sy][sx]
                assert abs(acc) < 2 ** 31  # clause 4.5 requirement, guaranteed by clause 9.5
                out[o, yy, xx] = clip3(lo, hi, requant_def(acc, s, layer.leaky))
    return out


@pytest.mark.parametrize("name, h, w", [("synthesis.1", 3, 4), ("synthesis.0", 4, 3),
                                        ("synthesis.6", 4, 5), ("gather.2", 2, 3)])
def test_conv_equals_literal_clause_4_5(small_model, name, h, w):
    layer = small_model.layers[name]
    rng = np.random.default_rng(hash(name) & 0xFFFF)
    cin = layer.weight.shape[1]
    bound = small_model.header["clip"]["synthesis.0"]
    x = rng.integers(-bound, bound + 1, size=(cin, h, w))
    out_range = (0, 255) if name == "synthesis.6" else None
    want = naive_layer(layer, x, out_range)
    got = conv(small_model, layer, x.transpose(1, 2, 0).astype(np.float64), out_range)
    if layer.depth_to_space:
        want = depth_to_space(want.transpose(1, 2, 0)).transpose(2, 0, 1)
    assert got.transpose(2, 0, 1).astype(np.int64).tolist() == want.tolist()
    if out_range is None:
        assert np.abs(got).max() <= layer.clip
    # Row bands of the same layer (the zero padding applies only at the true edges).
    if not layer.depth_to_space:
        xt = x.transpose(1, 2, 0).astype(np.float64)
        for r0 in range(h):
            for r1 in range(r0 + 1, h + 1):
                a, b = max(0, r0 - layer.kernel // 2), min(h, r1 + layer.kernel // 2)
                band = conv_rows(small_model, layer, xt[a:b], a, h, r0, r1, out_range)
                assert np.array_equal(band, got[r0:r1])


@pytest.mark.parametrize("name", ["synthesis.0", "synthesis.1", "synthesis.2", "synthesis.5", "synthesis.6"])
@pytest.mark.parametrize("rows, cols", [(1, 1), (1, 6), (5, 1), (3, 4), (6, 7)])
def test_winograd_equals_literal_clause_4_5(small_model, name, rows, cols):
    """conv_winograd (F(2x2, 3x3) in float64) gives the clause 4.5 result exactly, D2S layers,
    odd sizes and half-used tiles included."""
    layer = small_model.layers[name]
    rng = np.random.default_rng(rows * 100 + cols)
    cin = layer.weight.shape[1]
    bound = small_model.header["clip"]["synthesis.0"]
    x = rng.integers(-bound, bound + 1, size=(cin, rows, cols))
    out_range = (0, 255) if name == "synthesis.6" else None
    want = naive_layer(layer, x, out_range)
    if layer.depth_to_space:
        want = depth_to_space(want.transpose(1, 2, 0)).transpose(2, 0, 1)
    src = np.zeros((rows + 2, cols + 2, cin))
    src[1:-1, 1:-1] = x.transpose(1, 2, 0)
    got = np.zeros(want.transpose(1, 2, 0).shape)
    conv_winograd(small_model, layer, src, rows, got, out_range)
    assert got.transpose(2, 0, 1).astype(np.int64).tolist() == want.tolist()


def test_winograd_is_exact_at_the_accumulator_bound():
    """Inputs that drive every output channel of a reference-size layer to +-its clause 9.5 bound
    (the largest partial sums Winograd's transforms can produce): still equal to im2col."""
    from refdec.generators.random_model import REFERENCE_CHANNELS, random_model
    _, model = random_model(3, channels=REFERENCE_CHANNELS)
    for name in ("synthesis.3", "synthesis.4"):
        layer = model.layers[name]
        a0 = model.header["clip"][f"synthesis.{int(name[-1]) - 1}"]
        cin = layer.weight.shape[1]
        w = layer.weight.astype(np.int64)
        src = np.zeros((8, 8, cin))
        for o, (ty, tx) in enumerate([(1, 1), (1, 4), (4, 1), (4, 4)]):   # output positions, windows inside
            sign = (-1) ** o
            src[ty: ty + 3, tx: tx + 3] = sign * a0 * np.sign(w[o]).transpose(1, 2, 0)
        f = 2 if layer.depth_to_space else 1
        want = np.zeros((6 * f, 6 * f, layer.weight.shape[0] // f // f))
        got = np.zeros_like(want)
        conv_tiles(model, layer, src, 6, want)
        conv_winograd(model, layer, src, 6, got)
        assert np.array_equal(got, want), name


@pytest.mark.parametrize("name", ["synthesis.1", "synthesis.2"])
def test_winograd_blocks_with_a_partial_last_block(small_model, name, monkeypatch):
    """Several blocks of tile rows, the last one shorter (its buffers are views of the first's)."""
    import refdec.layers as layers

    monkeypatch.setattr(layers, "WINOGRAD_TILES", 6)  # 3 tile columns: blocks of 2, 2 and 1 tile rows
    layer = small_model.layers[name]
    rows, cols, cin = 9, 5, layer.weight.shape[1]
    bound = small_model.header["clip"]["synthesis.0"]
    x = np.random.default_rng(9).integers(-bound, bound + 1, size=(cin, rows, cols))
    src = np.zeros((rows + 2, cols + 2, cin))
    src[1:-1, 1:-1] = x.transpose(1, 2, 0)
    f = 2 if layer.depth_to_space else 1
    want = np.zeros((f * rows, f * cols, layer.weight.shape[0] // f // f))
    got = np.full_like(want, np.nan)
    conv_tiles(small_model, layer, src, rows, want)
    layers.conv_winograd(small_model, layer, src, rows, got, scratch={})
    assert np.array_equal(got, want)
