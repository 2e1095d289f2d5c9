"""The conditional entropy model of one latent position (spec clauses 7.6 to 7.9).

Each function computes what its clause computes for one position (y, x) of the latent, with
whole-array NumPy over the position's channels; refdec/fast/entropy.py computes the same for
every position of a wavefront at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import (CONTEXT_INPUT_MAX, CONTEXT_KERNELS, INV_SCALE_BITS, LOGIT_ONE, MAX_HALF_WINDOW,
                        MEAN_DIFF_MAX, MEAN_FRAC_BITS, NUM_GATHER_LAYERS, NUM_MIXTURES, NUM_SCALES,
                        PHI_FRAC_BITS, PHI_RANGE, PROB_BITS, SCALE_INDEX_FRAC_BITS, SCALE_Q_BITS,
                        WEIGHT_BITS, WINDOW_TAIL)
from .arith import clip3, floor_div, round2
from .clauses import clause
from .layers import layer_at
from .model_file import Model
from .tables import INV_SCALE, PHI, SCALE_Q


@clause("7.6", "Context model")
def context_model(model: Model, y_hat: np.ndarray, y: int, x: int) -> list[np.ndarray]:
    """ctx3, ctx5, ctx7 at (y, x), from y_hat as it stands (C_y, Hy, Wy)."""
    Q = clip3(-CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX, y_hat)
    return [layer_at(model.layers[f"context.{k}"], Q, y, x) for k in CONTEXT_KERNELS]


@clause("7.7", "Gather network")
def gather_network(model: Model, hyper_at: np.ndarray, contexts: list[np.ndarray]) -> list[np.ndarray]:
    """[G1, ..., G7] with G0 = [hyper at (y, x), ctx3, ctx5, ctx7] and G(i+1) = Layer(gather.i, G(i));
    P = G7 has 3 K C_y channels."""
    G = [np.concatenate([hyper_at] + contexts)]
    for i in range(NUM_GATHER_LAYERS):
        G.append(layer_at(model.layers[f"gather.{i}"], G[i][:, None, None], 0, 0))
    return G[1:]


@dataclass
class MixtureParameters:
    """Clause 7.8 for E elements: int64 arrays (E, K)."""

    weights: np.ndarray
    means: np.ndarray
    scale_index: np.ndarray


@clause("7.8", "Mixture parameters")
def mixture_parameters(P: np.ndarray, cy: int) -> MixtureParameters:
    """logit, mean and sidx of every element and component, and the linearised softmax weights.

    P: (positions, 3 K C_y); the elements are ordered position-major, channel-minor (the symbol
    order of clause 7.5), so that row e of each result is element e."""
    nk = NUM_MIXTURES
    # P[q * K * C_y + k * C_y + c] -> [element][q][k]
    p = np.asarray(P, dtype=np.int64).reshape(-1, 3, nk, cy).transpose(0, 3, 1, 2).reshape(-1, 3, nk)
    logit, mean, raw_scale = p[:, 0], p[:, 1], p[:, 2]
    sidx = clip3(0, NUM_SCALES - 1, round2(raw_scale, SCALE_INDEX_FRAC_BITS))
    m = logit.max(axis=1, keepdims=True)
    e = np.maximum(1, LOGIT_ONE + logit - m)
    E = e.sum(axis=1, keepdims=True)
    w = 1 + floor_div(e * ((1 << WEIGHT_BITS) - nk), E)
    return MixtureParameters(w, mean, sidx)


@clause("7.9", "Coding window and cumulative frequencies")
def coding_window(mix: MixtureParameters) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of every element: the +-6 sigma window of the components, at most 129 values wide."""
    span = round2(WINDOW_TAIL * SCALE_Q[mix.scale_index], SCALE_Q_BITS - MEAN_FRAC_BITS)
    lo = round2(mix.means - span, MEAN_FRAC_BITS).min(axis=1)
    hi = round2(mix.means + span, MEAN_FRAC_BITS).max(axis=1)
    wide = hi - lo > 2 * MAX_HALF_WINDOW
    centre = round2(lo + hi, 1)
    lo = np.where(wide, centre - MAX_HALF_WINDOW, lo)
    hi = np.where(wide, centre + MAX_HALF_WINDOW, hi)
    return lo, hi


@clause("7.9", "Coding window and cumulative frequencies")
def cumulative_frequencies(mix: MixtureParameters, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """C(j) for j = 0 .. n_w of every element: (E, J + 1) int64 with J the largest n_w (entries past
    an element's own n_w are not used)."""
    n_w = hi - lo + 1
    n = n_w + 1
    j = np.arange(int(n_w.max()) + 1, dtype=np.int64)
    B = (lo[:, None] + j) * (1 << MEAN_FRAC_BITS) - (1 << (MEAN_FRAC_BITS - 1))
    half = PHI_RANGE << PHI_FRAC_BITS
    M = 0
    for k in range(NUM_MIXTURES):
        d = clip3(-MEAN_DIFF_MAX, MEAN_DIFF_MAX, B - mix.means[:, k, None])
        u = d * INV_SCALE[mix.scale_index[:, k]][:, None]
        i = clip3(-half, half, round2(u, MEAN_FRAC_BITS + INV_SCALE_BITS - PHI_FRAC_BITS))
        M = M + mix.weights[:, k, None] * PHI[i + half]
    M = M >> WEIGHT_BITS
    D = M - M[:, :1]
    return j + D - ((D * n[:, None] + (1 << PROB_BITS) - 1) >> PROB_BITS)
