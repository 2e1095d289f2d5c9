"""The integer convolution layer (spec clause 4.5) and depth-to-space (clause 4.6).

Tensors are channels-last float64 arrays (rows, columns, channels) holding
integers. A convolution is an im2col matrix product in float64, which is exact:
every product W*x and every partial sum, in whatever order BLAS adds them, is
an integer bounded by the clause 9.5 bound sum|W|*in_max + |b| < 2^31 < 2^53,
and binary64 represents all such integers exactly (clause 11.1 allows
floating-point types on exactly this condition). load-time validation
(model_file.check_accumulator_bound) proves the bound for every model that
reaches this code.
"""

from __future__ import annotations

import numpy as np

from .arith import requant_float
from .model_file import Layer, Model

IM2COL_BYTES = 48 << 20  # informative: memory per im2col chunk


def weight_matrix(model: Model, layer: Layer) -> np.ndarray:
    """Clause 4.5 weights W[o][i][ky][kx] as a (k*k*I, O) float64 matrix, rows ordered (ky, kx, i). Cached."""
    key = ("matrix", layer.name)
    if key not in model.cache:
        w = layer.weight.astype(np.float64)
        model.cache[key] = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))
    return model.cache[key]


def activate(acc: np.ndarray, layer: Layer, out_range=None) -> np.ndarray:
    """Clause 4.5 second line: Clip3(-A, A, Requant(acc, s, leaky)); clause 7.12 for the output layer."""
    v = requant_float(acc, layer.shift, layer.leaky)
    lo, hi = out_range if out_range is not None else (-layer.clip, layer.clip)
    return np.clip(v, lo, hi, out=v)


def conv_rows(model: Model, layer: Layer, x: np.ndarray, x_row0: int, total_rows: int,
              r0: int, r1: int, out_range=None) -> np.ndarray:
    """Clause 4.5 for output rows [r0, r1) of a layer whose whole input has total_rows rows.

    x holds input rows [x_row0, x_row0 + len(x)), which must include every row in
    [r0 - p, r1 + p) that lies inside [0, total_rows); rows outside the input are
    zero (the zero padding of clause 4.5), as are columns outside it.
    """
    k, p = layer.kernel, layer.kernel // 2
    rows, cols, cin = r1 - r0, x.shape[1], x.shape[2]
    padded = np.zeros((rows + 2 * p, cols + 2 * p, cin), dtype=np.float64)
    lo, hi = max(r0 - p, 0), min(r1 + p, total_rows)
    assert x_row0 <= lo and hi <= x_row0 + len(x), "band does not cover the layer's input rows"
    padded[lo - (r0 - p): hi - (r0 - p), p: p + cols] = x[lo - x_row0: hi - x_row0]
    wmat = weight_matrix(model, layer)
    bias = layer.bias.astype(np.float64)
    out = np.empty((rows, cols, wmat.shape[1]), dtype=np.float64)
    chunk = max(1, IM2COL_BYTES // max(1, cols * wmat.shape[0] * 8))
    for a in range(0, rows, chunk):
        b = min(rows, a + chunk)
        if k == 1:
            patches = padded[a:b].reshape(-1, cin)
        else:
            patches = np.concatenate(
                [padded[a + ky: b + ky, kx: kx + cols] for ky in range(k) for kx in range(k)], axis=2
            ).reshape(-1, wmat.shape[0])
        acc = patches @ wmat
        acc += bias
        out[a:b] = activate(acc, layer, out_range).reshape(b - a, cols, -1)
    return out


def conv(model: Model, layer: Layer, x: np.ndarray, out_range=None) -> np.ndarray:
    """Clause 4.5 over a whole tensor, followed by clause 4.6 where the layer has D2S."""
    out = conv_rows(model, layer, x, 0, len(x), 0, len(x), out_range)
    return depth_to_space(out) if layer.depth_to_space else out


def depth_to_space(x: np.ndarray) -> np.ndarray:
    """Clause 4.6: Y[c][2y+i][2x+j] = X[4c+2i+j][y][x], channels-last."""
    h, w, c4 = x.shape
    c = c4 // 4
    return x.reshape(h, w, c, 2, 2).transpose(0, 3, 1, 4, 2).reshape(2 * h, 2 * w, c)
