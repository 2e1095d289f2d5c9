"""Hyper-latent decoding (spec clause 7.3) and hyper synthesis (clause 7.4)."""

from __future__ import annotations

import numpy as np

from . import constants as K
from .arith import clip3_array
from .architecture import HYPER_SYNTHESIS
from .layers import conv
from .model_file import Model
from .range_decoder import RangeDecoder
from .symbols import decode_value


def decode_z(decoder: RangeDecoder, model: Model, hz: int, wz: int) -> np.ndarray:
    """Clause 7.3: z_hat (C_z, Hz, Wz), channel-major raster order, factorised prior."""
    cz = model.hyper_channels
    z = np.zeros((cz, hz * wz), dtype=np.int64)
    for c in range(cz):
        n_w = int(model.z_count[c])
        lo = int(model.z_lo[c])
        cdf = model.z_cdf[c, : n_w + 1].tolist()
        hi = lo + n_w - 1
        row = z[c]
        for i in range(hz * wz):
            row[i] = decode_value(decoder, cdf, n_w, lo, hi, K.Z_MAX)
    return z.reshape(cz, hz, wz)


def hyper_synthesis(model: Model, z_hat: np.ndarray, trace=None) -> np.ndarray:
    """Clause 7.4: hyper features (Hy, Wy, C_h) channels-last, from z_hat (C_z, Hz, Wz)."""
    x = clip3_array(-K.CONTEXT_INPUT_MAX, K.CONTEXT_INPUT_MAX, z_hat).transpose(1, 2, 0).astype(np.float64)
    for spec in HYPER_SYNTHESIS:
        x = conv(model, model.layers[spec.name], x)
        if trace is not None:
            trace[spec.name] = x
    return x
