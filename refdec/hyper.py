"""Hyper-latent decoding (spec clause 7.3) and hyper synthesis (clause 7.4)."""

from __future__ import annotations

import numpy as np

from .constants import CONTEXT_INPUT_MAX, Z_MAX
from .arith import clip3
from .clauses import clause
from .layers import depth_to_space, layer
from .model_file import Model
from .range_decoder import RangeDecoder
from .stages import NO_RECORDER, Recorder
from .symbols import decode_value


@clause("7.3", "Hyper-latent decoding")
def decode_z(decoder: RangeDecoder, model: Model, hz: int, wz: int) -> np.ndarray:
    """z_hat (C_z, Hz, Wz) in channel-major raster order, with each channel's factorised prior."""
    z_hat = np.zeros((model.hyper_channels, hz, wz), dtype=np.int64)
    for c in range(model.hyper_channels):
        n_w, lo = int(model.z_count[c]), int(model.z_lo[c])
        cdf = model.z_cdf[c, : n_w + 1].tolist()
        for y in range(hz):
            for x in range(wz):
                z_hat[c, y, x] = decode_value(decoder, cdf, n_w, lo, lo + n_w - 1, Z_MAX)
    return z_hat


@clause("7.4", "Hyper synthesis")
def hyper_synthesis(model: Model, z_hat: np.ndarray, record: Recorder = NO_RECORDER) -> np.ndarray:
    """hyper (C_h, Hy, Wy) from z_hat (C_z, Hz, Wz)."""
    L = model.layers
    T0 = clip3(-CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX, z_hat)
    T1 = depth_to_space(layer(L["hyper_synthesis.0"], T0))
    record.tensor("hyper_synthesis.0", T1)
    T2 = depth_to_space(layer(L["hyper_synthesis.1"], T1))
    record.tensor("hyper_synthesis.1", T2)
    hyper = layer(L["hyper_synthesis.2"], T2)
    record.tensor("hyper_synthesis.2", hyper)
    return hyper
