"""Accelerated hyper synthesis (spec clause 7.4): the layers as float64 matrix products (refdec/fast/conv.py)."""

from __future__ import annotations

import numpy as np

from ..constants import CONTEXT_INPUT_MAX
from ..architecture import HYPER_SYNTHESIS
from ..arith import clip3
from ..hyper import hyper_synthesis as literal_hyper_synthesis
from ..model_file import Model
from ..stages import NO_RECORDER, Recorder
from .conv import conv
from .registry import FastOptions, accelerates
from .threads import blas_threads_or_as_is


@accelerates(literal_hyper_synthesis, step=True, options=True,
             exactness="each layer by conv (im2col), exact as in refdec/fast/conv.py")
def hyper_synthesis(model: Model, z_hat: np.ndarray, record: Recorder = NO_RECORDER, *,
                    options: FastOptions = FastOptions()) -> np.ndarray:
    """hyper (C_h, Hy, Wy) from z_hat (C_z, Hz, Wz), computed channels-last."""
    x = clip3(-CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX, z_hat).transpose(1, 2, 0).astype(np.float64)
    with blas_threads_or_as_is(options.blas_threads):
        for spec in HYPER_SYNTHESIS:
            x = conv(model.layers[spec.name], x)
            record.tensor(spec.name, x.transpose(2, 0, 1))
    return x.transpose(2, 0, 1).astype(np.int64)
