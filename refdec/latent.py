"""Latent decoding in wavefront order (spec clause 7.5), with clauses 7.6 to 7.10 per wavefront."""

from __future__ import annotations

import numpy as np

from . import constants as K
from .arith import clip3_array
from .architecture import CONTEXT, GATHER
from .entropy import CONTEXT_REACH, coding_cdfs, coding_windows, context_model, gather_network, mixture_parameters
from .model_file import Model
from .range_decoder import RangeDecoder
from .symbols import decode_values


def wavefronts(hy: int, wy: int):
    """Clause 7.5: for t = 0 .. (Wy-1) + 4(Hy-1), the positions (ys, xs) with x + 4y = t, y increasing."""
    slope = K.WAVEFRONT_SLOPE
    for t in range(wy + slope * (hy - 1)):
        y_first = max(0, -((wy - 1 - t) // slope))  # ceil((t - (Wy-1)) / 4), at least 0
        ys = np.arange(y_first, min(hy - 1, t // slope) + 1)
        yield ys, t - slope * ys


class Trace:
    """Non-normative: collects the per-position stage values of clauses 7.6 to 7.9 (clause 11.3)."""

    def __init__(self, model: Model, hy: int, wy: int):
        self.maps = {}
        self.hy, self.wy = hy, wy
        cy, nk = model.latent_channels, K.NUM_MIXTURES
        for spec in CONTEXT + GATHER:
            out = model.layers[spec.name].weight.shape[0]
            self.maps[spec.name] = np.zeros((hy, wy, out), dtype=np.int64)
        for name in ("mixture.weights", "mixture.means", "mixture.scale_index"):
            self.maps[name] = np.zeros((hy, wy, cy, nk), dtype=np.int64)
        for name in ("window.lo", "window.hi"):
            self.maps[name] = np.zeros((hy, wy, cy), dtype=np.int64)

    def record(self, ys, xs, name, values):
        self.maps[name][ys, xs] = values.reshape((len(ys),) + self.maps[name].shape[2:])

    def stages(self) -> dict:
        out = {}
        for name, m in self.maps.items():
            if m.ndim == 4:  # (Hy, Wy, C, K) -> (K, C, Hy, Wy)
                out[name] = m.transpose(3, 2, 0, 1)
            else:
                out[name] = m.transpose(2, 0, 1)
        return out


def decode_y(decoder: RangeDecoder, model: Model, hyper: np.ndarray, trace: Trace | None = None) -> np.ndarray:
    """Clause 7.5: y_hat (C_y, Hy, Wy) from the y payload, wavefront by wavefront."""
    hy, wy, _ = hyper.shape
    cy = model.latent_channels
    r = CONTEXT_REACH
    # Clip3(-255, 255, y_hat) channels-last, zero-padded above and either side (clause 7.6).
    q_padded = np.zeros((hy + r, wy + 2 * r, cy), dtype=np.float64)
    y_hat = np.zeros((hy, wy, cy), dtype=np.int64)
    for ys, xs in wavefronts(hy, wy):
        contexts = context_model(model, q_padded, ys, xs)
        gather_rows = {} if trace is not None else None
        params = gather_network(model, hyper[ys, xs], contexts, gather_rows)
        mix = mixture_parameters(params, cy)
        lo, hi = coding_windows(mix)
        cdf, offsets = coding_cdfs(mix, lo, hi)  # clause 7.9, C(j) of every element
        values = _decode_elements(decoder, cdf, offsets, lo, hi)
        block = np.array(values, dtype=np.int64).reshape(len(ys), cy)
        y_hat[ys, xs] = block
        q_padded[ys + r, xs + r] = clip3_array(-K.CONTEXT_INPUT_MAX, K.CONTEXT_INPUT_MAX, block)
        if trace is not None:
            for spec, ctx in zip(CONTEXT, contexts):
                trace.record(ys, xs, spec.name, ctx)
            for name, g in gather_rows.items():
                trace.record(ys, xs, name, g)
            trace.record(ys, xs, "mixture.weights", mix.weights)
            trace.record(ys, xs, "mixture.means", mix.means)
            trace.record(ys, xs, "mixture.scale_index", mix.scale_index)
            trace.record(ys, xs, "window.lo", lo)
            trace.record(ys, xs, "window.hi", hi)
    return y_hat.transpose(2, 0, 1)


def _decode_elements(decoder: RangeDecoder, cdf: np.ndarray, offsets: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Clause 7.10 for the elements of one wavefront, in symbol order (C(j) of element e at cdf[offsets[e] + j])."""
    return decode_values(decoder, memoryview(cdf), offsets, lo, hi - lo + 1, K.Y_MAX)
