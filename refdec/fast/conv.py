"""Accelerated integer convolutions (spec clauses 4.5 and 4.6) as float64 matrix products.

Tensors here are channels-last float64 arrays (rows, columns, channels) holding integers. A
convolution is an im2col matrix product in float64, which is exact: every product W*x and every
partial sum, in whatever order BLAS adds them, is an integer bounded by the clause 9.5 bound
sum|W|*in_max + |b| < 2^31 < 2^53, and binary64 represents all such integers exactly (clause
11.1 allows floating-point types on exactly this condition). Load-time validation
(refdec.model_file.check_accumulator_bound) proves the bound for every model that reaches this code.

Speed-ups, exact for the same reason:

- The products run on scaled weights W * 2^-s[o] with one extra row b * 2^-s[o] + 1/2
  (multiplied by a column of ones), so that the product is directly u = acc * 2^-s + 1/2.
  Scaling by a power of two is exact, and every partial sum is a multiple of 2^-max(s, 1) below
  2^(31-s) + 1/2 in magnitude: at most 34 significant bits, inside binary64's 53. Requant then
  needs no multiply or add (see requant_shifted).
- The im2col matrix is built tile by tile (TILE_POSITIONS output positions) in a reused buffer
  that stays in cache, instead of for a whole band at once.
- 3x3 layers run as Winograd F(2x2, 3x3) convolutions (conv_winograd): 2.25 times fewer
  multiplications. Its transforms hold only 0, +-1 and +-1/2, so every value stays a dyadic
  number of at most 39 significant bits, exact in binary64; the result equals im2col bit for bit.
- A layer with few outputs (the last synthesis layer) multiplies the input by all k*k taps'
  weights at once and sums the shifted per-tap planes (conv_planar); every plane value is a
  partial sum of the same terms, so it is exact too.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from ..constants import LEAKY_SHIFT
from ..arith import requant
from ..layers import depth_to_space, layer
from ..model_file import Layer
from .cache import derived
from .registry import accelerates, clause_of

TILE_POSITIONS = 512  # output positions per im2col product (a tile of rows x columns)
WINOGRAD_TILES = 512  # 2x2 output tiles per block of conv_winograd's products
PLANAR_BYTES = 8 << 20  # bytes of per-tap planes per product in conv_planar
LEAKY_SLOPE = np.ldexp(1.0, -LEAKY_SHIFT)  # the LeakyReLU slope 2^-3 of clause 4.4
LEAKY_OFFSET = (1.0 - LEAKY_SLOPE) / 2  # 7/16: see requant_shifted



def scaled_weights(layer: Layer):
    """(matrix, constant): the weights W[o][i][ky][kx] * 2^-s[o] as a (k*k*I, O) matrix, rows ordered
    (ky, kx, i), and the constants b * 2^-s[o] + 1/2.

    The matrix has one more row holding the constant, then zero rows up to a
    multiple of 8 rows (so that the im2col rows stay aligned); an im2col row
    with a 1 in the constant's column gets the bias added by the product. For a
    D2S layer the columns (and the constants) are in the order (i, j, c) of
    _d2s_order instead of 4c + 2i + j (see conv_tiles). Cached.
    """
    def build():
        scale = np.ldexp(1.0, -layer.shift.astype(np.int64))
        const = layer.bias.astype(np.float64) * scale + 0.5
        w = layer.weight.astype(np.float64) * scale[:, None, None, None]
        w = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
        rows = -(-(w.shape[0] + 1) // 8) * 8
        m = np.zeros((rows, w.shape[1]))
        m[: w.shape[0]] = w
        m[w.shape[0]] = const
        if layer.depth_to_space:
            order = _d2s_order(layer)
            m, const = np.ascontiguousarray(m[:, order]), const[order]
        return m, const

    return derived(layer, "scaled", build)


def output_bounds(layer: Layer, out_range=None):
    """the (lo, hi) of the final Clip3 of clause 4.5 (clause 7.12 for the output layer)."""
    return out_range if out_range is not None else (-layer.clip, layer.clip)


def requant_shifted(u: np.ndarray, leaky: bool, lo, hi, tmp: np.ndarray | None = None, out=None,
                    u_shape=None, floor: bool = True) -> np.ndarray:
    """Clip3(lo, hi, Requant(acc, s, leaky)) from u = acc * 2^-s + 1/2, in place.

    With t = acc * 2^-s: Round2(acc, s) = floor(t + 1/2) (for s = 0 too, t being an integer), and
    with the LeakyReLU shift of clause 4.4 (a slope of 2^-3) Round2(acc, s + 3) = floor(t/8 + 1/2)
    = floor(u/8 + 7/16) = floor(u * LEAKY_SLOPE + LEAKY_OFFSET). For leaky, the second applies
    exactly when acc < 0, i.e. u < 1/2, which is where u/8 + 7/16 > u: so Requant =
    floor(max(u, u/8 + 7/16)). Each step is exact in binary64 (powers-of-two scaling; sums of at
    most 35 significant bits), and Clip3 to integer bounds commutes with floor.

    The result goes to out (u itself by default; u viewed as u_shape), which may be
    a strided view of a larger array. With floor=False the last step is left to the
    caller: u holds Clip3(lo, hi, .) of the value before the floor, whose floor is the result.
    """
    if leaky:
        t = np.multiply(u, LEAKY_SLOPE, out=tmp if tmp is not None else None)
        t += LEAKY_OFFSET
        np.maximum(u, t, out=u)
    np.clip(u, lo, hi, out=u)
    if not floor:
        return u
    if out is None:
        return np.floor(u, out=u)
    return np.floor(u.reshape(u_shape) if u_shape is not None else u, out=out, casting="unsafe")



def _buffer(scratch: dict, name: str, size: int) -> np.ndarray:
    """a float64 scratch vector of at least `size` elements, reused between calls."""
    if name not in scratch or len(scratch[name]) < size:
        scratch[name] = np.empty(size)
    return scratch[name][:size]


def _d2s_order(layer: Layer) -> np.ndarray:
    """output columns reordered (i, j, c) from clause 4.6's 4c + 2i + j, for D2S layers."""
    c = layer.weight.shape[0] // 4
    q = np.arange(4 * c)
    return 4 * (q % c) + q // c


def conv_tiles(layer: Layer, src: np.ndarray, rows: int, dest: np.ndarray, out_range=None) -> None:
    """Clause 4.5 (and 4.6 where the layer has D2S) from a zero-padded input, tile by tile.

    src is (rows + 2p, cols + 2p, I) with src[y + ky][x + kx] = X[y + ky - p][x + kx - p]
    for output row y (0 <= y < rows), column x and tap (ky, kx): the input with
    its zero padding (clause 4.5). dest receives the layer's output Y, (rows,
    cols, O), or for a D2S layer DepthToSpace(Y), (2 rows, 2 cols, O / 4); it
    may be a view of a larger array.

    For a D2S layer the product's columns are ordered (i, j, c) so that each
    output position's four c-vectors are contiguous, and requant's last step
    (floor) writes them straight to their places in dest.
    """
    k, p = layer.kernel, layer.kernel // 2
    cols, cin = src.shape[1] - 2 * p, src.shape[2]
    assert src.shape[0] == rows + 2 * p
    assert rows > 0 and cols > 0, "callers never ask for an empty block"
    wmat, _ = scaled_weights(layer)  # for a D2S layer, columns ordered (i, j, c)
    d2s = layer.depth_to_space
    if d2s:
        c_out = wmat.shape[1] // 4
        assert dest.shape == (2 * rows, 2 * cols, c_out)
        s0, s1, s2 = dest.strides
        # dest_q[y][x][i][j][c] is dest[2y + i][2x + j][c]
        dest_q = as_strided(dest, shape=(rows, cols, 2, 2, c_out), strides=(2 * s0, 2 * s1, s0, s1, s2))
    else:
        assert dest.shape == (rows, cols, wmat.shape[1])
    kk = k * k * cin
    tile_cols = min(cols, TILE_POSITIONS)
    tile_rows = max(1, min(rows, TILE_POSITIONS // tile_cols))
    n_max = tile_rows * tile_cols
    patches = np.zeros((n_max, wmat.shape[0]))
    patches[:, kk] = 1.0  # the constant's column; the columns after it stay zero
    acc = np.empty((n_max, wmat.shape[1]))
    tmp = np.empty((n_max, wmat.shape[1])) if layer.leaky else None
    lo, hi = output_bounds(layer, out_range)
    for r0 in range(0, rows, tile_rows):
        r1 = min(rows, r0 + tile_rows)
        for c0 in range(0, cols, tile_cols):
            c1 = min(cols, c0 + tile_cols)
            n = (r1 - r0) * (c1 - c0)
            view = patches[:n, :kk].reshape(r1 - r0, c1 - c0, k, k, cin)
            windows = sliding_window_view(src[r0: r1 + 2 * p, c0: c1 + 2 * p], (k, k), axis=(0, 1))
            view[...] = windows.transpose(0, 1, 3, 4, 2)  # (rows, cols, ky, kx, i)
            u = np.matmul(patches[:n], wmat, out=acc[:n])
            if d2s:
                out = dest_q[r0:r1, c0:c1]
                requant_shifted(u, layer.leaky, lo, hi, tmp[:n] if tmp is not None else None,
                                out=out, u_shape=out.shape)
            else:
                out = dest[r0:r1, c0:c1]
                requant_shifted(u, layer.leaky, lo, hi, tmp[:n] if tmp is not None else None,
                                out=out, u_shape=out.shape)


# Winograd F(2x2, 3x3) (Lavin and Gray 2016): Y = A^T [(G g G^T) * (B^T d B)] A per 2x2 output tile.
_WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_WINOGRAD_AT = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]])
# Row 2r + c: the coefficients of M[4a + b] in output (r, c) of a tile, A^T[r][a] * A^T[c][b].
_WINOGRAD_OUTPUT = np.einsum("ra,cb->rcab", _WINOGRAD_AT, _WINOGRAD_AT).reshape(4, 16)
_WINOGRAD_CONSTANT = 5  # M[1][1], which A^T M A adds to every output of the tile


def winograd_weights(layer: Layer):
    """U, (16, K, O), for conv_winograd. U[4a + b][i] = (G g G^T)[a][b] of the scaled
    weights g = W[o][i] * 2^-s[o] for i < I, columns in conv_tiles' order; row I of U[5] holds
    the constant b * 2^-s + 1/2 (see conv_winograd), and the rows up to K, a multiple of 8, are zero.
    Cached.

    Every entry is a multiple of 2^-(s+2) (G holds halves) of magnitude at most
    sum|W[o][i]| * 2^-s: a dyadic number of at most 37 significant bits, exact in binary64.
    """
    def build():
        assert layer.kernel == 3
        scale = np.ldexp(1.0, -layer.shift.astype(np.int64))
        g = layer.weight.astype(np.float64) * scale[:, None, None, None]      # (O, I, 3, 3)
        nout, cin = g.shape[:2]
        u = np.zeros((16, -(-(cin + 1) // 8) * 8, nout))
        u[:, :cin] = np.einsum("ak,oikl,bl->abio", _WINOGRAD_G, g, _WINOGRAD_G).reshape(16, cin, nout)  # exact
        u[_WINOGRAD_CONSTANT, cin] = layer.bias.astype(np.float64) * scale + 0.5
        if layer.depth_to_space:
            u = np.ascontiguousarray(u[:, :, _d2s_order(layer)])
        return u

    return derived(layer, "winograd", build)


def _winograd_input(src: np.ndarray, t_rows: int, t_cols: int, v: np.ndarray) -> None:
    """V[4a + b] = (B^T d B)[a][b] for every 4x4 input tile d (stride 2) of src,
    written to v (16, t_rows, t_cols, I). Sums of at most four input values: exact."""
    def rows(k):
        return src[k: k + 2 * t_rows: 2]

    def cols(x, k):
        return x[:, k: k + 2 * t_cols: 2]

    for a, r in enumerate((rows(0) - rows(2), rows(1) + rows(2), rows(2) - rows(1), rows(1) - rows(3))):
        np.subtract(cols(r, 0), cols(r, 2), out=v[4 * a])
        np.add(cols(r, 1), cols(r, 2), out=v[4 * a + 1])
        np.subtract(cols(r, 2), cols(r, 1), out=v[4 * a + 2])
        np.subtract(cols(r, 1), cols(r, 3), out=v[4 * a + 3])


def conv_winograd(layer: Layer, src: np.ndarray, rows: int, dest: np.ndarray, out_range=None,
                  scratch: dict | None = None) -> None:
    """conv_tiles for a 3x3 layer by Winograd's F(2x2, 3x3), with the same arguments
    and the same result bit for bit.

    Per 2x2 output tile, u = A^T [sum_i U_i * V_i] A + constant, with V = B^T d B the
    transformed 4x4 input tile and U = G g G^T the transformed scaled weights (winograd_weights):
    16 products of (tiles x I) by (I x O) instead of one of (positions x 9I) by (9I x O), 2.25
    times fewer multiplications. The constant rides in the products: V[5] has an extra column
    of ones and U[5] the constant in that row, and A^T M A adds M[5] to all four outputs
    (A's column 1 is all ones). The output transform is one more product, (4 x 16) by
    (16 x tiles * O), by the matrix of A^T M A's coefficients (0 and +-1). Exact: B and A hold
    only 0 and +-1, G halves, so every value is a multiple of 2^-(s+2); each element-wise product
    and every partial sum over the input channels is bounded by 16 (sum|W| * in_max) * 2^-s <
    2^(35-s), at most 37 + 2 significant bits, and the output transform sums nine such values
    (and the constant) to acc * 2^-s + 1/2 exactly, in any order.
    """
    cols, cin = src.shape[1] - 2, src.shape[2]
    assert layer.kernel == 3 and src.shape[0] == rows + 2
    assert rows > 0 and cols > 0, "callers never ask for an empty block"
    u_w = winograd_weights(layer)
    k_rows, nout = u_w.shape[1:]
    t_rows_all, t_cols = -(-rows // 2), -(-cols // 2)
    if rows % 2 or cols % 2:  # one more zero row / column of input for the last, half-used tile
        padded = np.zeros((2 * t_rows_all + 2, 2 * t_cols + 2, cin))
        padded[: rows + 2, : cols + 2] = src
        src = padded
    if layer.depth_to_space:
        c_out = nout // 4
        assert dest.shape == (2 * rows, 2 * cols, c_out)
        s0, s1, s2 = dest.strides
        out_view = as_strided(dest, shape=(rows, cols, 2, 2, c_out), strides=(2 * s0, 2 * s1, s0, s1, s2))
    else:
        assert dest.shape == (rows, cols, nout)
        out_view = dest
    lo, hi = output_bounds(layer, out_range)
    scratch = {} if scratch is None else scratch
    block = max(1, min(t_rows_all, WINOGRAD_TILES // t_cols))   # tile rows per block
    n_max = block * t_cols
    v_key = ("winograd_v", n_max, cin, k_rows)
    if v_key not in scratch:  # the constant's column of ones in V[5]; the other extra columns stay zero
        scratch[v_key] = np.zeros((16, n_max, k_rows))
        scratch[v_key][_WINOGRAD_CONSTANT, :, cin] = 1.0
    v = scratch[v_key]
    m = _buffer(scratch, "wm", 16 * n_max * nout).reshape(16, -1)   # row j: M[j] of n tiles, (n, O) flat
    y = _buffer(scratch, "wy", 4 * n_max * nout).reshape(4, -1)     # row 2r + c: output (r, c) of each tile
    tmp = _buffer(scratch, "wt", 4 * n_max * nout).reshape(4, -1) if layer.leaky else None
    for t0 in range(0, t_rows_all, block):
        t1 = min(t_rows_all, t0 + block)
        n = (t1 - t0) * t_cols
        _winograd_input(src[2 * t0: 2 * t1 + 2], t1 - t0, t_cols, v[:, :n, :cin].reshape(16, t1 - t0, t_cols, cin))
        np.matmul(v[:, :n], u_w, out=m[:, : n * nout].reshape(16, n, nout))
        yy = y[:, : n * nout]
        np.matmul(_WINOGRAD_OUTPUT, m[:, : n * nout], out=yy)
        requant_shifted(yy, layer.leaky, lo, hi, None if tmp is None else tmp[:, : n * nout], floor=False)
        for r in range(2):
            rows_rc = min(t1, (rows - r + 1) // 2) - t0       # tiles whose output row 2t + r exists
            if rows_rc <= 0:
                continue
            for c in range(2):
                cols_rc = (cols - c + 1) // 2
                grid = yy[2 * r + c].reshape(t1 - t0, t_cols, nout)[:rows_rc, :cols_rc]
                target = out_view[2 * t0 + r: 2 * (t0 + rows_rc): 2, c: 2 * cols_rc: 2]
                np.floor(grid.reshape(target.shape), out=target, casting="unsafe")


def planar_weights(layer: Layer):
    """(k*k*O, I) matrix of W[o][i][ky][kx] * 2^-s[o], rows ordered (ky, kx, o). Cached."""
    def build():
        w = layer.weight.astype(np.float64) * np.ldexp(1.0, -layer.shift.astype(np.int64))[:, None, None, None]
        return np.ascontiguousarray(w.transpose(2, 3, 0, 1).reshape(-1, w.shape[1]))

    return derived(layer, "planar", build)


def conv_planar(layer: Layer, src: np.ndarray, rows: int, dest: np.ndarray, out_range=None) -> None:
    """Clause 4.5 for a layer with few outputs, by per-tap planes.

    src as for conv_tiles; dest receives Y planar, (O, rows, cols) (any dtype
    that holds the output range). For a band of output rows, Q = Wp @ X^T
    gives, for every tap (ky, kx) and output o, the plane
    sum over i of W[o][i][ky][kx] * 2^-s[o] * X[i] at every input position; Y[o]
    is the sum of the k*k planes shifted by their tap, plus b * 2^-s + 1/2, then
    requantised.
    """
    k, p = layer.kernel, layer.kernel // 2
    cols, cin = src.shape[1] - 2 * p, src.shape[2]
    assert rows > 0 and cols > 0, "callers never ask for an empty block"
    wp = planar_weights(layer)
    _, const = scaled_weights(layer)
    nout = len(const)
    assert dest.shape == (nout, rows, cols)
    lo, hi = output_bounds(layer, out_range)
    band = max(1, min(rows, PLANAR_BYTES // (8 * wp.shape[0] * src.shape[1]) - 2 * p))
    y = np.empty((nout, band, cols))
    for r0 in range(0, rows, band):
        r1 = min(rows, r0 + band)
        x = src[r0: r1 + 2 * p]
        planes = (wp @ x.reshape(-1, cin).T).reshape(k, k, nout, r1 - r0 + 2 * p, cols + 2 * p)
        u = y[:, : r1 - r0]
        np.add(planes[0, 0, :, : r1 - r0, :cols], const[:, None, None], out=u)
        for ky in range(k):
            for kx in range(k):
                if ky or kx:
                    u += planes[ky, kx, :, ky: ky + r1 - r0, kx: kx + cols]
        requant_shifted(u, layer.leaky, lo, hi, out=dest[:, r0:r1])


def pad_rows(x: np.ndarray, x_row0: int, total_rows: int, r0: int, r1: int, p: int) -> np.ndarray:
    """the zero-padded input (r1 - r0 + 2p, cols + 2p, I) for output rows [r0, r1).

    x holds input rows [x_row0, x_row0 + len(x)); rows outside [0, total_rows)
    and columns outside the input are zero (the zero padding of clause 4.5).
    """
    rows, cols, cin = r1 - r0, x.shape[1], x.shape[2]
    padded = np.zeros((rows + 2 * p, cols + 2 * p, cin), dtype=np.float64)
    lo, hi = max(r0 - p, 0), min(r1 + p, total_rows)
    assert x_row0 <= lo and hi <= x_row0 + len(x), "band does not cover the layer's input rows"
    padded[lo - (r0 - p): hi - (r0 - p), p: p + cols] = x[lo - x_row0: hi - x_row0]
    return padded



def conv(layer: Layer, x: np.ndarray, out_range=None) -> np.ndarray:
    """Clause 4.5 over a whole tensor, followed by clause 4.6 where the layer has D2S."""
    p = layer.kernel // 2
    rows, cols = x.shape[:2]
    src = pad_rows(x, 0, rows, 0, rows, p)
    nout = layer.weight.shape[0]
    if layer.depth_to_space:
        out = np.empty((2 * rows, 2 * cols, nout // 4), dtype=np.float64)
    else:
        out = np.empty((rows, cols, nout), dtype=np.float64)
    conv_tiles(layer, src, rows, out, out_range)
    return out


# --- Registrations against the literal layer --------------------------------------------------

@clause_of("4.5")
def layer_output(params: Layer, X: np.ndarray, bounds=None) -> np.ndarray:
    """The literal reference of the convolutions below: Layer(name, X) of clause 4.5, followed by
    DepthToSpace (clause 4.6) where the clause 5.1 table has D2S; X and the result (C, H, W) int64."""
    Y = layer(params, X, bounds)
    return depth_to_space(Y) if params.depth_to_space else Y


def _run(kernel, params: Layer, X: np.ndarray, bounds) -> np.ndarray:
    """kernel(layer, src, rows, dest, bounds) on the channels-last form of X; the result as layer_output's."""
    p = params.kernel // 2
    rows, cols = X.shape[1:]
    src = pad_rows(np.asarray(X, dtype=np.float64).transpose(1, 2, 0), 0, rows, 0, rows, p)
    f = 2 if params.depth_to_space else 1
    out = np.empty((f * rows, f * cols, params.weight.shape[0] // (f * f)))
    kernel(params, src, rows, out, bounds)
    return out.transpose(2, 0, 1).astype(np.int64)


_MATMUL_EXACT = ("every partial sum of the float64 product is a multiple of 2^-max(s, 1) below 2^(31-s) + 1/2 "
                 "(clause 9.5 bound): at most 34 significant bits, exact in binary64, in any order of summation")


@accelerates(layer_output, exactness=_MATMUL_EXACT + "; the im2col rows are the clause 4.5 windows with zero padding")
def layer_output_im2col(params: Layer, X: np.ndarray, bounds=None) -> np.ndarray:
    """layer_output by conv_tiles (im2col, tile by tile)."""
    return _run(conv_tiles, params, X, bounds)


@accelerates(layer_output, exactness="Winograd F(2x2, 3x3): B and A hold 0 and +-1, G halves, so every value is a "
                                     "multiple of 2^-(s+2) below 2^(35-s): at most 39 significant bits, exact")
def layer_output_winograd(params: Layer, X: np.ndarray, bounds=None) -> np.ndarray:
    """layer_output by conv_winograd (3x3 layers only)."""
    return _run(conv_winograd, params, X, bounds)


@accelerates(layer_output, exactness=_MATMUL_EXACT + "; each per-tap plane value is a partial sum of the same terms")
def layer_output_planar(params: Layer, X: np.ndarray, bounds=None) -> np.ndarray:
    """layer_output by conv_planar (layers without D2S)."""
    assert not params.depth_to_space
    rows, cols = X.shape[1:]
    p = params.kernel // 2
    src = pad_rows(np.asarray(X, dtype=np.float64).transpose(1, 2, 0), 0, rows, 0, rows, p)
    out = np.empty((params.weight.shape[0], rows, cols))
    conv_planar(params, src, rows, out, bounds)
    return out.astype(np.int64)


@accelerates(requant, exactness="u = acc * 2^-s + 1/2 is exact for |acc| < 2^31 (a power-of-two scaling of an "
                                "integer, plus 1/2); see requant_shifted for the rest")
def requant_float64(acc, s, leaky: bool):
    """arith.requant by requant_shifted on float64 (without a clip: the bounds are infinite)."""
    u = np.asarray(acc, dtype=np.float64) * np.ldexp(1.0, -np.asarray(s, dtype=np.int64)) + 0.5
    return requant_shifted(u, leaky, -np.inf, np.inf).astype(np.int64)
