"""The conditional entropy model, for a batch of latent positions (spec clauses 7.6 to 7.9).

All functions take the positions of one wavefront (clause 7.5) and compute their
parameters at once; what each position sees is only what clause 7.6 allows,
because the masked kernels read earlier wavefronts only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import constants as K
from .architecture import CONTEXT, GATHER, causal_mask
from .arith import round2_array
from .layers import activate, weight_matrix
from .model_file import Model
from .tables import INV_SCALE, PHI, SCALE_Q

CONTEXT_REACH = max(K.CONTEXT_KERNELS) // 2  # 3: rows above / columns either side that a context reads


def context_taps():
    """Non-normative helper: the causal offsets (dy, dx) of the largest masked kernel, in raster order."""
    k = max(K.CONTEXT_KERNELS)
    mask = causal_mask(k)
    return [(ky - k // 2, kx - k // 2) for ky in range(k) for kx in range(k) if mask[ky, kx]]


def context_matrix(model: Model):
    """Non-normative helper: the three masked layers as one (taps*C_y, sum of outputs) matrix.

    Taps outside a smaller kernel get zero rows, so one product computes
    context.3, context.5 and context.7 for a batch of positions.
    """
    key = ("context",)
    if key not in model.cache:
        taps = context_taps()
        cy = model.latent_channels
        blocks = []
        for spec in CONTEXT:
            w = model.layers[spec.name].weight.astype(np.float64)  # (O, C_y, k, k)
            p = spec.kernel // 2
            m = np.zeros((len(taps), cy, w.shape[0]))
            for t, (dy, dx) in enumerate(taps):
                if abs(dy) <= p and abs(dx) <= p:
                    m[t] = w[:, :, dy + p, dx + p].T
            blocks.append(m.reshape(len(taps) * cy, -1))
        model.cache[key] = (np.ascontiguousarray(np.concatenate(blocks, axis=1)), taps)
    return model.cache[key]


def context_model(model: Model, q_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray):
    """Clause 7.6: ctx3, ctx5, ctx7 at the positions (ys, xs).

    q_padded is Clip3(-255, 255, y_hat) channels-last with CONTEXT_REACH zero
    rows above and zero columns either side (the clause 4.5 zero padding).
    """
    wmat, taps = context_matrix(model)
    r = CONTEXT_REACH
    patches = np.concatenate([q_padded[ys + r + dy, xs + r + dx] for dy, dx in taps], axis=1)
    acc = patches @ wmat
    outputs, col = [], 0
    for spec in CONTEXT:
        layer = model.layers[spec.name]
        n = layer.weight.shape[0]
        block = acc[:, col: col + n] + layer.bias
        outputs.append(activate(block, layer))
        col += n
    return outputs


def gather_network(model: Model, hyper_at: np.ndarray, contexts, trace_rows=None) -> np.ndarray:
    """Clause 7.7: G0 = [hyper, ctx3, ctx5, ctx7]; G(i+1) = Layer(gather.i, G(i)); returns G7."""
    g = np.concatenate([hyper_at] + list(contexts), axis=1)
    for spec in GATHER:
        layer = model.layers[spec.name]
        acc = g @ weight_matrix(model, layer)
        acc += layer.bias
        g = activate(acc, layer)
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
    sidx = np.clip(round2_array(raw_scale, 4), 0, K.NUM_SCALES - 1)
    e = np.maximum(1, K.LOGIT_ONE + logits - logits.max(axis=1, keepdims=True))
    total = e.sum(axis=1, keepdims=True)
    weights = 1 + (e * ((1 << K.WEIGHT_BITS) - nk)) // total
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


def cumulative_frequencies(mix: MixtureParameters, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Clause 7.9, component and mixture CDFs: C(j) for j = 0 .. n_w per element.

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
        d = np.clip(boundary - mix.means[:, k, None], -K.MEAN_DIFF_MAX, K.MEAN_DIFF_MAX)
        u = d * INV_SCALE[mix.scale_index[:, k]][:, None]
        i = np.clip(round2_array(u, shift), -half, half)
        mixture += mix.weights[:, k, None] * PHI[i + half]
    mixture >>= K.WEIGHT_BITS
    d_mass = mixture - mixture[:, :1]
    n = (n_w + 1)[:, None]
    return j + d_mass - ((d_mass * n + (1 << K.PROB_BITS) - 1) >> K.PROB_BITS)
