"""Latent decoding in wavefront order (spec clause 7.5), running clauses 7.6 to 7.10 at each position."""

from __future__ import annotations

import numpy as np

from .constants import WAVEFRONT_SLOPE, Y_MAX
from .architecture import CONTEXT, GATHER
from .clauses import clause, informative
from .entropy import coding_window, context_model, cumulative_frequencies, gather_network, mixture_parameters
from .model_file import Model
from .range_decoder import RangeDecoder
from .stages import NO_RECORDER, Recorder, latent_stage_channels
from .symbols import decode_value


@clause("7.5", "Coding order of the latent")
def wavefronts(hy: int, wy: int):
    """For t = 0 .. (Wy - 1) + 4 (Hy - 1): the positions (ys, xs) with x + 4 y = t, in increasing y."""
    slope = WAVEFRONT_SLOPE
    for t in range(wy + slope * (hy - 1)):
        ys = np.array([y for y in range(hy) if 0 <= t - slope * y < wy], dtype=np.int64)
        yield ys, t - slope * ys


@clause("7.5", "Coding order of the latent")
def decode_y(decoder: RangeDecoder, model: Model, hyper: np.ndarray, hy: int, wy: int,
             record: Recorder = NO_RECORDER) -> np.ndarray:
    """y_hat (C_y, Hy, Wy) from the y payload, Hy x Wy being the latent grid of clause 5.4 (the
    positions of `hyper`, clause 7.4): for every position in coding order, clauses 7.6 to 7.9
    give the coding CDFs of its channels and clause 7.10 decodes them."""
    cy = model.latent_channels
    y_hat = np.zeros((cy, hy, wy), dtype=np.int64)
    record.latent_start(latent_stage_channels(model), hy, wy)
    total = wy + WAVEFRONT_SLOPE * (hy - 1)  # informative: the wavefront count, for progress only
    for t, (ys, xs) in enumerate(wavefronts(hy, wy)):
        for y, x in zip(ys.tolist(), xs.tolist()):
            contexts = context_model(model, y_hat, y, x)                   # 7.6
            G = gather_network(model, hyper[:, y, x], contexts)            # 7.7
            mix = mixture_parameters(G[-1][None], cy)                      # 7.8
            lo, hi = coding_window(mix)                                    # 7.9
            C = cumulative_frequencies(mix, lo, hi)                        # 7.9
            for c in range(cy):                                            # 7.10
                n_w = int(hi[c] - lo[c] + 1)
                y_hat[c, y, x] = decode_value(decoder, C[c, : n_w + 1].tolist(), n_w, int(lo[c]), int(hi[c]),
                                              Y_MAX)
            _record_position(record, y, x, contexts, G, mix, lo, hi, C, y_hat[:, y, x])
        record.wavefronts_done(t + 1)  # informative: how far a partial trace reaches (clause 11.5.4)
        record.progress("latent", t + 1, total)  # informative: a progress report
    return y_hat


@informative("hands the clause 11.3 stages at one position to the recorder; computes nothing")
def _record_position(record: Recorder, y: int, x: int, contexts, G, mix, lo, hi, C, values) -> None:
    """Hand the latent stages of clause 11.3 at (y, x) to the recorder."""
    if not record.active:
        return
    at = ([y], [x])
    for spec, value in zip(CONTEXT, contexts):
        record.latent(spec.name, *at, value[None])
    for spec, value in zip(GATHER, G):
        record.latent(spec.name, *at, value[None])
    record.latent("mixture.weights", *at, mix.weights[None])
    record.latent("mixture.means", *at, mix.means[None])
    record.latent("mixture.scale_index", *at, mix.scale_index[None])
    record.latent("window.lo", *at, lo[None])
    record.latent("window.hi", *at, hi[None])
    j = np.arange(C.shape[1])
    record.latent("cdf.sum", *at, np.where(j <= (hi - lo + 1)[:, None], C, 0).sum(axis=1)[None])  # C(0) + .. + C(n_w)
    record.latent("y_hat", *at, values[None])
