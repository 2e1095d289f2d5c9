"""Accelerated latent decoding (spec clause 7.5): clauses 7.6 to 7.9 for every position of a
wavefront at once, then clause 7.10 for its elements in symbol order.

Clause 7.5 allows it: the masked kernels read earlier wavefronts only, so the entropy parameters
of a wavefront's positions do not depend on one another's symbols.
"""

from __future__ import annotations

import numpy as np

from ..constants import CONTEXT_INPUT_MAX, WAVEFRONT_SLOPE, Y_MAX
from ..arith import clip3
from ..architecture import CONTEXT, GATHER
from ..entropy import coding_window, mixture_parameters
from ..latent import decode_y as literal_decode_y
from ..latent import wavefronts
from ..model_file import Model
from ..range_decoder import RangeDecoder
from ..stages import NO_RECORDER, Recorder, latent_stage_channels
from .entropy import CONTEXT_REACH, coding_cdfs, context_model, gather_network
from .registry import FastOptions, accelerates
from .threads import blas_threads_or_as_is
from .symbols import decode_values


@accelerates(literal_decode_y, step=True, options=True,
             exactness="clauses 7.6 to 7.9 batched over a wavefront (refdec/fast/entropy.py), whose positions "
                       "read only earlier wavefronts (clause 7.5); symbols decoded in the same order")
def decode_y(decoder: RangeDecoder, model: Model, hyper: np.ndarray, hy: int, wy: int,
             record: Recorder = NO_RECORDER, *, options: FastOptions = FastOptions()) -> np.ndarray:
    """y_hat (C_y, Hy, Wy) from the y payload, wavefront by wavefront."""
    with blas_threads_or_as_is(options.blas_threads):
        return _decode_y(decoder, model, hyper, hy, wy, record)


def _decode_y(decoder: RangeDecoder, model: Model, hyper: np.ndarray, hy: int, wy: int,
              record: Recorder) -> np.ndarray:
    """decode_y's wavefront loop."""
    cy = model.latent_channels
    hyper_rows = np.ascontiguousarray(hyper.transpose(1, 2, 0), dtype=np.float64)
    r = CONTEXT_REACH
    # Clip3(-255, 255, y_hat) channels-last, zero-padded above and either side (clause 7.6).
    q_padded = np.zeros((hy + r, wy + 2 * r, cy), dtype=np.float64)
    y_hat = np.zeros((hy, wy, cy), dtype=np.int64)
    record.latent_start(latent_stage_channels(model), hy, wy)
    gather_rows = {} if record.active else None
    total = wy + WAVEFRONT_SLOPE * (hy - 1)
    for t, (ys, xs) in enumerate(wavefronts(hy, wy)):
        contexts = context_model(model, q_padded, ys, xs)                       # 7.6
        params = gather_network(model, hyper_rows[ys, xs], contexts, gather_rows)  # 7.7
        mix = mixture_parameters(params, cy)                                    # 7.8
        lo, hi = coding_window(mix)                                             # 7.9
        cdf, offsets = coding_cdfs(mix, lo, hi)                                 # 7.9
        values = decode_values(decoder, memoryview(cdf), offsets, lo, hi - lo + 1, Y_MAX)   # 7.10
        block = np.array(values, dtype=np.int64).reshape(len(ys), cy)
        y_hat[ys, xs] = block
        q_padded[ys + r, xs + r] = clip3(-CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX, block)
        if record.active:
            _record_wavefront(record, ys, xs, cy, contexts, gather_rows, mix, lo, hi, cdf, offsets, block)
        record.wavefronts_done(t + 1)
        record.progress("latent", t + 1, total)
    return y_hat.transpose(2, 0, 1)


def _record_wavefront(record: Recorder, ys, xs, cy, contexts, gather_rows, mix, lo, hi, cdf, offsets, block) -> None:
    """Hand the latent stages of clause 11.3 at the wavefront's positions to the recorder."""
    n = len(ys)
    for spec, value in zip(CONTEXT, contexts):
        record.latent(spec.name, ys, xs, value)
    for spec in GATHER:
        record.latent(spec.name, ys, xs, gather_rows[spec.name])
    record.latent("mixture.weights", ys, xs, mix.weights.reshape(n, cy, -1))
    record.latent("mixture.means", ys, xs, mix.means.reshape(n, cy, -1))
    record.latent("mixture.scale_index", ys, xs, mix.scale_index.reshape(n, cy, -1))
    record.latent("window.lo", ys, xs, lo.reshape(n, cy))
    record.latent("window.hi", ys, xs, hi.reshape(n, cy))
    ends = np.concatenate([[0], np.cumsum(cdf, dtype=np.int64)])  # C(0) + .. + C(n_w) of every element
    record.latent("cdf.sum", ys, xs, (ends[offsets + (hi - lo + 2)] - ends[offsets]).reshape(n, cy))
    record.latent("y_hat", ys, xs, block)
