"""Accelerated entropy model (spec clauses 7.6 to 7.9) for all positions of a wavefront at once.

What each position sees is only what clause 7.6 allows, because the masked kernels read earlier
wavefronts only (clause 7.5); so the context and gather networks run as one matrix product per
layer over the wavefront's positions, exact for the reason given in refdec/fast/conv.py. The
coding CDFs come from a table of Phi filled per scale index (_PhiTable), with the elements
grouped by window size.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..constants import (CONTEXT_INPUT_MAX, CONTEXT_KERNELS, INV_SCALE_BITS, MAX_HALF_WINDOW, MEAN_DIFF_MAX,
                         MEAN_FRAC_BITS, NUM_MIXTURES, NUM_SCALES, PHI_FRAC_BITS, PHI_RANGE, PROB_BITS,
                         WEIGHT_BITS)
from ..architecture import CONTEXT, GATHER, causal_mask
from ..arith import clip3, round2
from ..entropy import MixtureParameters, context_model as literal_context_model, cumulative_frequencies
from ..entropy import gather_network as literal_gather_network
from ..model_file import Model
from ..tables import INV_SCALE, PHI
from .cache import derived
from .conv import output_bounds, requant_shifted, scaled_weights
from .registry import accelerates, clause_of

CONTEXT_REACH = max(CONTEXT_KERNELS) // 2  # 3: rows above / columns either side that a context reads


def context_taps():
    """the causal offsets (dy, dx) of the largest masked kernel, in raster order."""
    k = max(CONTEXT_KERNELS)
    mask = causal_mask(k)
    return [(ky - k // 2, kx - k // 2) for ky in range(k) for kx in range(k) if mask[ky, kx]]


def _context_scaled(model: Model):
    """the masked layers for context_model. Cached.

    Returns (taps, layers): the causal taps of the largest kernel ordered so
    that each smaller kernel's taps come first (so a kernel of size k reads a
    prefix of the patch), and per layer (number of taps, weight matrix * 2^-s
    with rows ordered (tap, i), constants b * 2^-s + 1/2, clip bounds, leaky),
    as in layers.scaled_weights.
    """
    def build():
        taps = sorted(context_taps(), key=lambda t: max(abs(t[0]), abs(t[1])))  # stable: raster order within
        per_layer = []
        for spec in CONTEXT:
            layer = model.layers[spec.name]
            p = spec.kernel // 2
            inside = [t for t in taps if max(abs(t[0]), abs(t[1])) <= p]
            assert inside == taps[: len(inside)]
            w = layer.weight.astype(np.float64) * np.ldexp(1.0, -layer.shift.astype(np.int64))[:, None, None, None]
            wmat = np.concatenate([w[:, :, dy + p, dx + p].T for dy, dx in inside], axis=0)  # (taps*C_y, O)
            lo, hi = output_bounds(layer)
            per_layer.append((len(inside), np.ascontiguousarray(wmat), scaled_weights(layer)[1], lo, hi,
                              layer.leaky))
        return taps, per_layer

    return derived(model, "context", build)


def context_model(model: Model, q_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray):
    """ctx3, ctx5, ctx7 of clause 7.6 at the positions (ys, xs), (positions, channels) each.

    q_padded is Clip3(-255, 255, y_hat) channels-last with CONTEXT_REACH zero
    rows above and zero columns either side (the clause 4.5 zero padding).
    """
    taps, per_layer = _context_scaled(model)
    r = CONTEXT_REACH
    cols, cy = q_padded.shape[1], q_padded.shape[2]
    flat = q_padded.reshape(-1, cy)
    offsets = np.array([dy * cols + dx for dy, dx in taps])
    patches = flat[((ys + r) * cols + xs + r)[:, None] + offsets].reshape(len(ys), -1)
    outputs = []
    for n_taps, wmat, const, lo, hi, leaky in per_layer:
        u = patches[:, : n_taps * cy] @ wmat  # acc * 2^-s (exact, see conv.py) ...
        u += const  # ... + 1/2
        outputs.append(requant_shifted(u, leaky, lo, hi))
    return outputs


def gather_network(model: Model, hyper_at: np.ndarray, contexts, trace_rows=None) -> np.ndarray:
    """Clause 7.7 at many positions: G0 = [hyper, ctx3, ctx5, ctx7]; G(i+1) = Layer(gather.i, G(i));
    returns G7, and G1 .. G7 in trace_rows (by layer name) when given."""
    g = np.concatenate([hyper_at] + list(contexts), axis=1)
    for spec in GATHER:
        layer = model.layers[spec.name]
        wmat, const = scaled_weights(layer)
        u = g @ wmat[: g.shape[1]]  # acc * 2^-s (exact, see conv.py) ...
        u += const  # ... + 1/2
        lo, hi = output_bounds(layer)
        g = requant_shifted(u, layer.leaky, lo, hi)
        if trace_rows is not None:
            trace_rows[spec.name] = g
    return g


# --- Clause 7.9: the coding CDFs from a table of Phi --------------------------------------------

CDF_ROW_MAX = 2 * MAX_HALF_WINDOW + 2  # C(0) .. C(n_w) with n_w <= 129: at most 130 entries
_HALF = MEAN_DIFF_MAX >> MEAN_FRAC_BITS  # 512: d = 64 m + r is clipped for m >= 512 or m <= -513
_M_FIRST = -_HALF - CDF_ROW_MAX  # first and last m of a table row
_M_LAST = _HALF + CDF_ROW_MAX - 1
_PHASES = 1 << MEAN_FRAC_BITS
_ROW_WIDTH = _M_LAST - _M_FIRST + 1
CDF_BUCKETS = (16, 32, 64, CDF_ROW_MAX)  # row lengths, to limit work to the windows' sizes


class _PhiTable:
    """Phi of clause 7.9 as a table T[sidx][r][m - _M_FIRST], filled per scale index on first use.

    Write B - mean = 64 (lo + j) - 32 - mean = 64 m + r with r = (-32 - mean) mod 64
    and m = lo + j + floor((-32 - mean) / 64). Then d = Clip3(-2^15, 2^15, 64 m + r)
    and Phi = PHI[Clip3(-2048, 2048, Round2(d * INV_SCALE[sidx], 10)) + 2048] depend
    only on (sidx, r, m), and are constant for m >= 512 (d = 2^15) and for
    m <= -513 (d = -2^15). A table row holds m = -642 .. 641, so the CDF_ROW_MAX
    consecutive m from a start clamped to [-642, 512] are those of the unclamped
    start: values left of -513 or right of 512 are the constants.
    """

    def __init__(self):
        self.table = np.empty((NUM_SCALES, _PHASES, _ROW_WIDTH), dtype=np.int32)  # pages mapped when filled
        self.filled = np.zeros(NUM_SCALES, dtype=bool)
        self._rows = {}

    def rows(self, width: int) -> np.ndarray:
        """The table as overlapping rows of `width` entries: rows(w)[i] = flat table[i : i + w]."""
        if width not in self._rows:
            self._rows[width] = sliding_window_view(self.table.reshape(-1), width)
        return self._rows[width]

    def fill(self, sidx: np.ndarray) -> None:
        used = np.zeros(NUM_SCALES, dtype=bool)
        used[sidx.ravel()] = True
        new = np.flatnonzero(used & ~self.filled)
        if len(new) == 0:
            return
        m = np.arange(_M_FIRST, _M_LAST + 1, dtype=np.int64)
        r = np.arange(_PHASES, dtype=np.int64)
        d = clip3(-MEAN_DIFF_MAX, MEAN_DIFF_MAX, (m[None, :] << MEAN_FRAC_BITS) + r[:, None])
        half = PHI_RANGE << PHI_FRAC_BITS
        shift = MEAN_FRAC_BITS + INV_SCALE_BITS - PHI_FRAC_BITS
        for s in new:
            i = clip3(-half, half, round2(d * INV_SCALE[s], shift))
            self.table[s] = PHI[i + half]
        self.filled[new] = True

    def starts(self, sidx: np.ndarray, means: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Flat table index of the row for C(0) of each (element, component): (E, K)."""
        c = -(1 << (MEAN_FRAC_BITS - 1)) - means  # -32 - mean
        m0 = clip3(_M_FIRST, _HALF, lo[:, None] + (c >> MEAN_FRAC_BITS))
        return ((sidx * _PHASES + (c & (_PHASES - 1))) * _ROW_WIDTH) + (m0 - _M_FIRST)


_PHI_TABLE = None


def _phi_table() -> _PhiTable:
    """the process-wide _PhiTable, created on first use."""
    global _PHI_TABLE
    if _PHI_TABLE is None:
        _PHI_TABLE = _PhiTable()
    return _PHI_TABLE


def coding_cdfs(mix: MixtureParameters, lo: np.ndarray, hi: np.ndarray):
    """clause 7.9 C(0 .. n_w) of each element, as the decoder consumes them.

    Returns (cdf, offsets): cdf a flat int32 array, offsets (E,) int64, such that
    cdf[offsets[e] + j] = C(j) for j = 0 .. n_w and cdf[offsets[e] + n_w + 1] = 2^16
    (the end of the escape symbol's interval). Equal to cumulative_frequencies;
    elements are grouped by window size (CDF_BUCKETS) so that the work follows
    the windows' sizes, and Phi comes from _PhiTable rows.
    """
    table = _phi_table()
    table.fill(mix.scale_index)
    n_w = hi - lo + 1
    starts = table.starts(mix.scale_index, mix.means, lo)
    weights = mix.weights.astype(np.int32)
    buckets, prev = [], 0
    for width in CDF_BUCKETS:
        sel = np.flatnonzero((n_w >= prev) & (n_w < width))  # n_w + 1 entries, at most `width`
        prev = width
        if len(sel):
            buckets.append((width, sel))
    cdf = np.empty(sum(len(sel) * (width + 1) for width, sel in buckets), dtype=np.int32)
    offsets = np.empty(len(lo), dtype=np.int64)
    base = 0
    for width, sel in buckets:
        rows = table.rows(width)
        mixture = rows[starts[sel, 0]]
        mixture *= weights[sel, 0, None]
        for k in range(1, NUM_MIXTURES):
            phi = rows[starts[sel, k]]
            phi *= weights[sel, k, None]
            mixture += phi
        mixture >>= WEIGHT_BITS  # M(j)
        mixture -= mixture[:, :1].copy()  # D(j) = M(j) - M(0)
        block = cdf[base: base + len(sel) * (width + 1)].reshape(len(sel), width + 1)
        c = block[:, :width]
        # C(j) = j + D - ceil(D n / 2^16) = j + D + floor(-D n / 2^16)
        np.multiply(mixture, -(n_w[sel] + 1).astype(np.int32)[:, None], out=c)
        c >>= PROB_BITS
        c += mixture
        c += np.arange(width, dtype=np.int32)
        block[np.arange(len(sel)), n_w[sel] + 1] = 1 << PROB_BITS
        offsets[sel] = base + (width + 1) * np.arange(len(sel))
        base += block.size
    return cdf, offsets


# --- Registrations ---------------------------------------------------------------------------

def padded_context_input(y_hat: np.ndarray) -> np.ndarray:
    """Clip3(-255, 255, y_hat) channels-last (Hy + r, Wy + 2r, C_y), with CONTEXT_REACH zero rows above
    and zero columns either side: the clause 4.5 zero padding of the masked kernels."""
    cy, hy, wy = y_hat.shape
    r = CONTEXT_REACH
    q = np.zeros((hy + r, wy + 2 * r, cy))
    q[r:, r: r + wy] = clip3(-CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX, y_hat).transpose(1, 2, 0)
    return q


@accelerates(literal_context_model, exactness="one float64 product per layer over the causal taps of all "
                                              "positions, exact as in refdec/fast/conv.py")
def context_model_at(model: Model, y_hat: np.ndarray, y: int, x: int) -> list[np.ndarray]:
    """entropy.context_model by the batched context_model, for one position."""
    outputs = context_model(model, padded_context_input(y_hat), np.array([y]), np.array([x]))
    return [o[0].astype(np.int64) for o in outputs]


@accelerates(literal_gather_network, exactness="one float64 product per layer, exact as in refdec/fast/conv.py")
def gather_network_at(model: Model, hyper_at: np.ndarray, contexts: list[np.ndarray]) -> list[np.ndarray]:
    """entropy.gather_network by the batched gather_network, for one position."""
    rows: dict = {}
    gather_network(model, np.asarray(hyper_at, dtype=np.float64)[None], [np.asarray(c)[None] for c in contexts], rows)
    return [rows[spec.name][0].astype(np.int64) for spec in GATHER]


@clause_of("7.9")
def cdf_rows(mix: MixtureParameters, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """The literal reference of coding_cdf_rows: C(0 .. n_w) of each element, by cumulative_frequencies."""
    C = cumulative_frequencies(mix, lo, hi)
    return [C[e, : n + 1] for e, n in enumerate((hi - lo + 1).tolist())]


@accelerates(cdf_rows, exactness="the same integer operations; Phi read from a table of the values "
                                 "PHI[Clip3(-2048, 2048, Round2(d * INV_SCALE, 10)) + 2048] for every (sidx, d mod 64, m)")
def coding_cdf_rows(mix: MixtureParameters, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """cdf_rows by coding_cdfs."""
    cdf, offsets = coding_cdfs(mix, lo, hi)
    return [cdf[o: o + n + 1].astype(np.int64) for o, n in zip(offsets.tolist(), (hi - lo + 1).tolist())]
