"""Inverse gain (spec clause 7.11), synthesis (clause 7.12) and output (clause 7.13)."""

from __future__ import annotations

import numpy as np

from .arith import clip3, round2
from .clauses import clause
from .layers import depth_to_space, layer
from .model_file import Model
from .stages import NO_RECORDER, Recorder

SAMPLE_RANGE = (0, 255)  # clause 7.12: the last layer's Clip3 bounds


@clause("7.11", "Inverse gain")
def inverse_gain(model: Model, y_hat: np.ndarray, rate_index: int) -> np.ndarray:
    """S0 = Clip3(-A0, A0, Round2(y_hat * inv_gain[r][c], G)), (C_y, Hy, Wy)."""
    gain = model.inv_gain[rate_index][:, None, None]
    A0 = model.header["synthesis_input_clip"]
    return clip3(-A0, A0, round2(y_hat * gain, model.header["inv_gain_shift"]))


@clause("7.12", "Synthesis")
def synthesis(model: Model, S0: np.ndarray, record: Recorder = NO_RECORDER) -> np.ndarray:
    """S7 (3, 16 Hy, 16 Wy) from S0 (C_y, Hy, Wy)."""
    L = model.layers
    S1 = layer(L["synthesis.0"], S0)
    record.tensor("synthesis.0", S1)
    S2 = depth_to_space(layer(L["synthesis.1"], S1))
    record.tensor("synthesis.1", S2)
    S3 = layer(L["synthesis.2"], S2)
    record.tensor("synthesis.2", S3)
    S4 = depth_to_space(layer(L["synthesis.3"], S3))
    record.tensor("synthesis.3", S4)
    S5 = depth_to_space(layer(L["synthesis.4"], S4))
    record.tensor("synthesis.4", S5)
    S6 = depth_to_space(layer(L["synthesis.5"], S5))
    record.tensor("synthesis.5", S6)
    S7 = layer(L["synthesis.6"], S6, bounds=SAMPLE_RANGE)
    record.tensor("synthesis.6", S7)
    return S7


@clause("7.13", "Output")
def output(S7: np.ndarray, width: int, height: int) -> np.ndarray:
    """out[c][y][x] = S7[c][y][x] for the top-left H x W positions, as 8-bit samples (3, H, W)."""
    return np.ascontiguousarray(S7[:, :height, :width], dtype=np.uint8)
