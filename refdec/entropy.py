"""The conditional entropy model, for a batch of latent positions (spec clauses 7.6 to 7.9).

All functions take the positions of one wavefront (clause 7.5) and compute their
parameters at once; what each position sees is only what clause 7.6 allows,
because the masked kernels read earlier wavefronts only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import constants as K
from .architecture import CONTEXT, GATHER, causal_mask
from .arith import clip3_array, floor_div, round2_array
from .layers import output_bounds, requant_shifted, scaled_weights
from .marks import informative
from .model_file import Model
from .tables import INV_SCALE, PHI, SCALE_Q

CONTEXT_REACH = max(K.CONTEXT_KERNELS) // 2  # 3: rows above / columns either side that a context reads


def context_taps():
    """Non-normative helper: the causal offsets (dy, dx) of the largest masked kernel, in raster order."""
    k = max(K.CONTEXT_KERNELS)
    mask = causal_mask(k)
    return [(ky - k // 2, kx - k // 2) for ky in range(k) for kx in range(k) if mask[ky, kx]]


def _context_scaled(model: Model):
    """Non-normative helper: the masked layers for context_model. Cached.

    Returns (taps, layers): the causal taps of the largest kernel ordered so
    that each smaller kernel's taps come first (so a kernel of size k reads a
    prefix of the patch), and per layer (number of taps, weight matrix * 2^-s
    with rows ordered (tap, i), constants b * 2^-s + 1/2, clip bounds, leaky),
    as in layers.scaled_weights.
    """
    key = ("context_scaled",)
    if key not in model.cache:
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
            per_layer.append((len(inside), np.ascontiguousarray(wmat), scaled_weights(model, layer)[1], lo, hi,
                              layer.leaky))
        model.cache[key] = (taps, per_layer)
    return model.cache[key]


def context_model(model: Model, q_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray):
    """Clause 7.6: ctx3, ctx5, ctx7 at the positions (ys, xs).

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
        u = patches[:, : n_taps * cy] @ wmat  # acc * 2^-s (exact, see layers.py) ...
        u += const  # ... + 1/2
        outputs.append(requant_shifted(u, leaky, lo, hi))
    return outputs


def gather_network(model: Model, hyper_at: np.ndarray, contexts, trace_rows=None) -> np.ndarray:
    """Clause 7.7: G0 = [hyper, ctx3, ctx5, ctx7]; G(i+1) = Layer(gather.i, G(i)); returns G7."""
    g = np.concatenate([hyper_at] + list(contexts), axis=1)
    for spec in GATHER:
        layer = model.layers[spec.name]
        wmat, const = scaled_weights(model, layer)
        u = g @ wmat[: g.shape[1]]  # acc * 2^-s (exact, see layers.py) ...
        u += const  # ... + 1/2
        lo, hi = output_bounds(layer)
        g = requant_shifted(u, layer.leaky, lo, hi)
        if trace_rows is not None:
            trace_rows[spec.name] = g
    return g


@dataclass
class MixtureParameters:
    """Clause 7.8 for E elements: int64 arrays (E, K)."""

    weights: np.ndarray
    means: np.ndarray
    scale_index: np.ndarray


def mixture_parameters(params: np.ndarray, cy: int) -> MixtureParameters:
    """Clause 7.8: split P into logits, means, scale indices; linearised softmax weights.

    params: (positions, 3*K*C_y) integer-valued. Elements are ordered position-major,
    channel-minor (the symbol order of clause 7.5).
    """
    nk = K.NUM_MIXTURES
    p = params.astype(np.int64).reshape(-1, 3, nk, cy).transpose(0, 3, 1, 2).reshape(-1, 3, nk)
    logits, means, raw_scale = p[:, 0], p[:, 1], p[:, 2]
    sidx = clip3_array(0, K.NUM_SCALES - 1, round2_array(raw_scale, 4))
    e = np.maximum(1, K.LOGIT_ONE + logits - logits.max(axis=1, keepdims=True))
    total = e.sum(axis=1, keepdims=True)
    weights = 1 + floor_div(e * ((1 << K.WEIGHT_BITS) - nk), total)
    return MixtureParameters(weights, means, sidx)


def coding_windows(mix: MixtureParameters):
    """Clause 7.9, window: (lo, hi) per element, hi - lo <= 128."""
    span = round2_array(6 * SCALE_Q[mix.scale_index], 2)
    lo = round2_array(mix.means - span, K.MEAN_FRAC_BITS).min(axis=1)
    hi = round2_array(mix.means + span, K.MEAN_FRAC_BITS).max(axis=1)
    wide = hi - lo > 2 * K.MAX_HALF_WINDOW
    centre = round2_array(lo + hi, 1)
    lo = np.where(wide, centre - K.MAX_HALF_WINDOW, lo)
    hi = np.where(wide, centre + K.MAX_HALF_WINDOW, hi)
    return lo, hi


@informative
def cumulative_frequencies(mix: MixtureParameters, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Clause 7.9, component and mixture CDFs: C(j) for j = 0 .. n_w per element.

    The literal form of the clause, used by the informative encoder and the tests; the decoder
    computes the same values with coding_cdfs (tested equal).

    Returns (E, J + 1) int64 with J the largest n_w of the batch; entries after
    an element's own n_w are not used.
    """
    n_w = hi - lo + 1
    j = np.arange(int(n_w.max()) + 1, dtype=np.int64)
    boundary = (lo[:, None] + j) * (1 << K.MEAN_FRAC_BITS) - (1 << (K.MEAN_FRAC_BITS - 1))
    mixture = np.zeros(boundary.shape, dtype=np.int64)
    half = (K.PHI_RANGE << K.PHI_FRAC_BITS)
    shift = K.MEAN_FRAC_BITS + K.INV_SCALE_BITS - K.PHI_FRAC_BITS
    for k in range(K.NUM_MIXTURES):
        d = clip3_array(-K.MEAN_DIFF_MAX, K.MEAN_DIFF_MAX, boundary - mix.means[:, k, None])
        u = d * INV_SCALE[mix.scale_index[:, k]][:, None]
        i = clip3_array(-half, half, round2_array(u, shift))
        mixture += mix.weights[:, k, None] * PHI[i + half]
    mixture >>= K.WEIGHT_BITS
    d_mass = mixture - mixture[:, :1]
    n = (n_w + 1)[:, None]
    return j + d_mass - ((d_mass * n + (1 << K.PROB_BITS) - 1) >> K.PROB_BITS)


# ---------------------------------------------------------------------------
# Non-normative: the clause 7.9 CDFs for the decoder, from a table of Phi.
# ---------------------------------------------------------------------------

CDF_ROW_MAX = 2 * K.MAX_HALF_WINDOW + 2  # C(0) .. C(n_w) with n_w <= 129: at most 130 entries
_HALF = K.MEAN_DIFF_MAX >> K.MEAN_FRAC_BITS  # 512: d = 64 m + r is clipped for m >= 512 or m <= -513
_M_FIRST = -_HALF - CDF_ROW_MAX  # first and last m of a table row
_M_LAST = _HALF + CDF_ROW_MAX - 1
_PHASES = 1 << K.MEAN_FRAC_BITS
_ROW_WIDTH = _M_LAST - _M_FIRST + 1
CDF_BUCKETS = (16, 32, 64, CDF_ROW_MAX)  # informative: row lengths, to limit work to the windows' sizes


class _PhiTable:
    """Non-normative: Phi of clause 7.9 as a table T[sidx][r][m - _M_FIRST], filled per scale index on first use.

    Write B - mean = 64 (lo + j) - 32 - mean = 64 m + r with r = (-32 - mean) mod 64
    and m = lo + j + floor((-32 - mean) / 64). Then d = Clip3(-2^15, 2^15, 64 m + r)
    and Phi = PHI[Clip3(-2048, 2048, Round2(d * INV_SCALE[sidx], 10)) + 2048] depend
    only on (sidx, r, m), and are constant for m >= 512 (d = 2^15) and for
    m <= -513 (d = -2^15). A table row holds m = -642 .. 641, so the CDF_ROW_MAX
    consecutive m from a start clamped to [-642, 512] are those of the unclamped
    start: values left of -513 or right of 512 are the constants.
    """

    def __init__(self):
        self.table = np.empty((K.NUM_SCALES, _PHASES, _ROW_WIDTH), dtype=np.int32)  # pages mapped when filled
        self.filled = np.zeros(K.NUM_SCALES, dtype=bool)
        self._rows = {}

    def rows(self, width: int) -> np.ndarray:
        """The table as overlapping rows of `width` entries: rows(w)[i] = flat table[i : i + w]."""
        if width not in self._rows:
            self._rows[width] = sliding_window_view(self.table.reshape(-1), width)
        return self._rows[width]

    def fill(self, sidx: np.ndarray) -> None:
        used = np.zeros(K.NUM_SCALES, dtype=bool)
        used[sidx.ravel()] = True
        new = np.flatnonzero(used & ~self.filled)
        if len(new) == 0:
            return
        m = np.arange(_M_FIRST, _M_LAST + 1, dtype=np.int64)
        r = np.arange(_PHASES, dtype=np.int64)
        d = clip3_array(-K.MEAN_DIFF_MAX, K.MEAN_DIFF_MAX, (m[None, :] << K.MEAN_FRAC_BITS) + r[:, None])
        half = K.PHI_RANGE << K.PHI_FRAC_BITS
        shift = K.MEAN_FRAC_BITS + K.INV_SCALE_BITS - K.PHI_FRAC_BITS
        for s in new:
            i = clip3_array(-half, half, round2_array(d * INV_SCALE[s], shift))
            self.table[s] = PHI[i + half]
        self.filled[new] = True

    def starts(self, sidx: np.ndarray, means: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Flat table index of the row for C(0) of each (element, component): (E, K)."""
        c = -(1 << (K.MEAN_FRAC_BITS - 1)) - means  # -32 - mean
        m0 = clip3_array(_M_FIRST, _HALF, lo[:, None] + (c >> K.MEAN_FRAC_BITS))
        return ((sidx * _PHASES + (c & (_PHASES - 1))) * _ROW_WIDTH) + (m0 - _M_FIRST)


_PHI_TABLE = None


def _phi_table() -> _PhiTable:
    """Non-normative: the process-wide _PhiTable, created on first use."""
    global _PHI_TABLE
    if _PHI_TABLE is None:
        _PHI_TABLE = _PhiTable()
    return _PHI_TABLE


def coding_cdfs(mix: MixtureParameters, lo: np.ndarray, hi: np.ndarray):
    """Non-normative: clause 7.9 C(0 .. n_w) of each element, as the decoder consumes them.

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
        for k in range(1, K.NUM_MIXTURES):
            phi = rows[starts[sel, k]]
            phi *= weights[sel, k, None]
            mixture += phi
        mixture >>= K.WEIGHT_BITS  # M(j)
        mixture -= mixture[:, :1].copy()  # D(j) = M(j) - M(0)
        block = cdf[base: base + len(sel) * (width + 1)].reshape(len(sel), width + 1)
        c = block[:, :width]
        # C(j) = j + D - ceil(D n / 2^16) = j + D + floor(-D n / 2^16)
        np.multiply(mixture, -(n_w[sel] + 1).astype(np.int32)[:, None], out=c)
        c >>= K.PROB_BITS
        c += mixture
        c += np.arange(width, dtype=np.int32)
        block[np.arange(len(sel)), n_w[sel] + 1] = 1 << K.PROB_BITS
        offsets[sel] = base + (width + 1) * np.arange(len(sel))
        base += block.size
    return cdf, offsets
