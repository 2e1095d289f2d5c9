"""Inverse gain (spec clause 7.11), synthesis (clause 7.12) and output cropping (clause 7.13).

The synthesis runs in horizontal bands (clause 7.12 allows it): for each band of
output rows, the rows each layer needs are worked out backwards through the
network, then computed forwards; the zero padding applies only at the true
top and bottom of each layer's input, so the result equals the whole-image
computation bit for bit while memory stays proportional to the band.
"""

from __future__ import annotations

import numpy as np

from .architecture import SYNTHESIS
from .arith import round2_array
from .layers import conv_rows, depth_to_space
from .model_file import Model

PIXEL_RANGE = (0, 255)
DEFAULT_BAND_ROWS = 128  # informative: output rows per band


def inverse_gain(model: Model, y_hat: np.ndarray, rate_index: int) -> np.ndarray:
    """Clause 7.11: S0 = Clip3(-A0, A0, Round2(y_hat * inv_gain[r][c], G)), (C_y, Hy, Wy)."""
    gain = model.inv_gain[rate_index][:, None, None]
    a0 = model.header["synthesis_input_clip"]
    return np.clip(round2_array(y_hat * gain, model.header["inv_gain_shift"]), -a0, a0)


def _row_plan(layers, out_rows: int, r0: int, r1: int):
    """Non-normative helper: per layer, (input rows needed, conv output rows to compute)."""
    heights = []  # input rows of each layer
    h = out_rows
    for layer in reversed(layers):
        h = h // 2 if layer.depth_to_space else h
        heights.append(h)
    heights.reverse()
    plan = []
    a, b = r0, r1
    for layer, h_in in zip(reversed(layers), reversed(heights)):
        if layer.depth_to_space:
            a, b = a // 2, (b + 1) // 2
        p = layer.kernel // 2
        plan.append(((max(0, a - p), min(h_in, b + p)), (a, b), h_in))
        a, b = max(0, a - p), min(h_in, b + p)
    plan.reverse()
    return plan


def synthesize(model: Model, s0: np.ndarray, band_rows: int = DEFAULT_BAND_ROWS, trace=None) -> np.ndarray:
    """Clause 7.12: S7 (3, 16 Hy, 16 Wy) uint8 from S0 (C_y, Hy, Wy).

    With trace, the whole image is one band and every layer's output is recorded.
    """
    layers = [model.layers[spec.name] for spec in SYNTHESIS]
    x_full = s0.transpose(1, 2, 0).astype(np.float64)
    out_rows, out_cols = 16 * s0.shape[1], 16 * s0.shape[2]
    if trace is not None:
        band_rows = out_rows
    image = np.empty((3, out_rows, out_cols), dtype=np.uint8)
    for r0 in range(0, out_rows, band_rows):
        r1 = min(out_rows, r0 + band_rows)
        plan = _row_plan(layers, out_rows, r0, r1)
        (in_a, in_b), _, _ = plan[0]
        x, x_row0 = x_full[in_a:in_b], in_a
        for layer, ((_, _), (a, b), h_in), nxt in zip(layers, plan, plan[1:] + [None]):
            out_range = PIXEL_RANGE if layer is layers[-1] else None
            y = conv_rows(model, layer, x, x_row0, h_in, a, b, out_range)
            if layer.depth_to_space:
                y, a, b = depth_to_space(y), 2 * a, 2 * b
            if nxt is not None:
                (need_a, need_b), _, _ = nxt
                y, a = y[need_a - a: need_b - a], need_a
            x, x_row0 = y, a
            if trace is not None:
                trace[layer.name] = y
        image[:, r0:r1] = x.transpose(2, 0, 1).astype(np.uint8)
    return image


def crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clause 7.13: the top-left H x W samples."""
    return np.ascontiguousarray(image[:, :height, :width])
