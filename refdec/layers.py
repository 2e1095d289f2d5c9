"""The integer convolution layer (spec clause 4.5) and depth-to-space (clause 4.6).

Tensors are NumPy int64 arrays indexed [channel][row][column], as in the spec. These are the
literal forms; refdec/fast/conv.py holds the accelerated convolutions, proven equal to these
by tests/test_fast_equivalence.py.
"""

from __future__ import annotations

import numpy as np

from .arith import clip3, requant
from .clauses import clause
from .model_file import Layer


@clause("4.5", "Integer convolution layer")
def _accumulators(params: Layer, padded: np.ndarray, rows: range, cols: range) -> np.ndarray:
    """acc[o][y][x] of clause 4.5 for y in rows, x in cols, from the zero-padded input (padded[i][y + p][x + p] = X[i][y][x])."""
    k = params.kernel
    acc = np.broadcast_to(params.bias[:, None, None], (len(params.bias), len(rows), len(cols))).copy()
    for ky in range(k):
        for kx in range(k):
            window = padded[:, rows.start + ky: rows.stop + ky, cols.start + kx: cols.stop + kx]
            acc += np.einsum("oi,iyx->oyx", params.weight[:, :, ky, kx], window)  # sum over i
    return acc


@clause("4.5", "Integer convolution layer")
def _zero_padded(X: np.ndarray, p: int) -> np.ndarray:
    """X with p zero rows and columns on every side: X[i][y][x] = 0 outside the tensor (clause 4.5)."""
    channels, height, width = X.shape
    padded = np.zeros((channels, height + 2 * p, width + 2 * p), dtype=np.int64)
    padded[:, p: p + height, p: p + width] = X
    return padded


@clause("4.5", "Integer convolution layer")
def layer(params: Layer, X: np.ndarray, bounds: tuple[int, int] | None = None) -> np.ndarray:
    """Y = Clip3(-A, A, Requant(acc, s, leaky)) over the whole tensor X (I, H, W); bounds replaces
    (-A, A) for the last synthesis layer (clause 7.12)."""
    p = (params.kernel - 1) // 2
    _, height, width = X.shape
    acc = _accumulators(params, _zero_padded(X, p), range(height), range(width))
    lo, hi = bounds if bounds is not None else (-params.clip, params.clip)
    return clip3(lo, hi, requant(acc, params.shift[:, None, None], params.leaky))


@clause("7.6", "Context model")
def layer_at(params: Layer, X: np.ndarray, y: int, x: int) -> np.ndarray:
    """The clause 4.5 layer evaluated at the single position (y, x): Y[o] for every output o."""
    k, p = params.kernel, (params.kernel - 1) // 2
    channels, height, width = X.shape
    patch = np.zeros((channels, k, k), dtype=np.int64)  # X[i][y + ky - p][x + kx - p], zero outside X
    y0, y1, x0, x1 = max(y - p, 0), min(y + p + 1, height), max(x - p, 0), min(x + p + 1, width)
    patch[:, y0 - (y - p): y1 - (y - p), x0 - (x - p): x1 - (x - p)] = X[:, y0:y1, x0:x1]
    acc = params.bias + np.einsum("oikl,ikl->o", params.weight, patch)
    return clip3(-params.clip, params.clip, requant(acc, params.shift, params.leaky))


@clause("4.6", "Depth-to-space")
def depth_to_space(X: np.ndarray) -> np.ndarray:
    """Y[c][2y + i][2x + j] = X[4c + 2i + j][y][x] for i, j in {0, 1}."""
    channels4, height, width = X.shape
    Y = np.empty((channels4 // 4, 2 * height, 2 * width), dtype=X.dtype)
    for i in (0, 1):
        for j in (0, 1):
            Y[:, i::2, j::2] = X[2 * i + j::4]
    return Y
