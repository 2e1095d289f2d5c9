"""Accelerated synthesis (spec clause 7.12), in horizontal bands.

The synthesis runs in horizontal bands (clause 7.12 allows it), streaming: each layer keeps a
window of its input rows (a line buffer, zero-padded at the true top and bottom and at both
sides, as clause 4.5 pads the whole input). For each band of output rows, the rows each layer
must have computed are worked out backwards through the network; then each layer computes only
its rows not computed yet, from its window, and writes them (with clause 4.6 where the layer has
D2S) straight into the next layer's window. Each output value is computed once, so the result
equals the whole-image computation bit for bit while memory stays proportional to the band.
"""

from __future__ import annotations

import numpy as np

from ..architecture import SYNTHESIS
from ..model_file import Model
from ..stages import NO_RECORDER, Recorder
from ..synthesis import SAMPLE_RANGE
from ..synthesis import synthesis as literal_synthesis
from .conv import conv_planar, conv_winograd
from .registry import FastOptions, accelerates
from .threads import OtherLoad, blas_threads_or_as_is


class _RowWindow:
    """Rows [start, end) of a layer's input, zero-padded as in clause 4.5.

    data[i] is input row start + i with p zero columns either side; rows
    outside [0, height) are zero. Rows before `keep` are no longer needed and
    are dropped when the window needs room.
    """

    def __init__(self, height: int, width: int, channels: int, p: int, capacity: int):
        self.height, self.width, self.p = height, width, p
        self.data = np.zeros((max(capacity, 2 * p + 1), width + 2 * p, channels))
        self.start, self.end, self.keep = -p, 0, -p  # the p zero rows above the input

    def rows(self, a: int, b: int) -> np.ndarray:
        """Input rows [a, b) with their padding, (b - a, width + 2p, channels)."""
        assert self.start <= a and b <= self.end, "window does not hold the rows"
        return self.data[a - self.start: b - self.start]

    def reserve(self, end: int) -> np.ndarray:
        """Room for rows [self.end, end): returns their interior columns to write."""
        if end - self.start > len(self.data):
            kept = self.data[self.keep - self.start: self.end - self.start]
            if end - self.keep > len(self.data):
                grown = np.zeros((max(end - self.keep, 3 * len(self.data) // 2),) + self.data.shape[1:])
                grown[: len(kept)] = kept
                self.data = grown
            else:
                self.data[: len(kept)] = kept
            self.start = self.keep
        return self.data[self.end - self.start: end - self.start, self.p: self.p + self.width]

    def advance(self, end: int) -> None:
        """Rows up to end are written; at the bottom, append the p zero rows below the input."""
        self.end = end
        if end == self.height:
            self.reserve(end + self.p)
            self.data[end - self.start: end + self.p - self.start] = 0
            self.end = end + self.p

    def interior(self, a: int, b: int) -> np.ndarray:
        """Input rows [a, b) without the column padding."""
        return self.rows(a, b)[:, self.p: self.p + self.width]


def _rows_needed(layers, heights, target: int):
    """Per layer, the conv output rows (before D2S) needed for final rows [0, target)."""
    need = [0] * len(layers)
    rows = target
    for i in range(len(layers) - 1, -1, -1):
        need[i] = rows
        if i:
            rows = min(heights[i], rows + layers[i].kernel // 2)  # input rows of layer i that it reads
            if layers[i - 1].depth_to_space:
                rows = (rows + 1) // 2
    return need


@accelerates(literal_synthesis, step=True, options=True,
             exactness="each output value computed once, by conv_winograd and conv_planar (exact, refdec/fast/conv.py), "
                       "from line buffers zero-padded as clause 4.5 pads the whole input")
def synthesis(model: Model, S0: np.ndarray, record: Recorder = NO_RECORDER, *, options: FastOptions = FastOptions()) -> np.ndarray:
    """S7 (3, 16 Hy, 16 Wy) uint8 from S0 (C_y, Hy, Wy), in bands of options.band_rows output rows.

    Recorded layer outputs are copied out band by band, so a traced decode runs exactly the code of
    an untraced one."""
    s0 = S0
    band_rows = options.band_rows
    layers = [model.layers[spec.name] for spec in SYNTHESIS]
    hy, wy = s0.shape[1:]
    heights, widths = [], []  # input size of each layer
    h, w = hy, wy
    for layer in layers:
        heights.append(h)
        widths.append(w)
        if layer.depth_to_space:
            h, w = 2 * h, 2 * w
    out_rows, out_cols = h, w
    band_rows = max(1, band_rows)
    image = np.empty((3, out_rows, out_cols), dtype=np.uint8)

    # Input windows; the first holds all of S0 (it is small).
    p0 = layers[0].kernel // 2
    windows = [_RowWindow(hy, wy, s0.shape[0], p0, hy + 2 * p0)]
    windows[0].reserve(hy)[...] = s0.transpose(1, 2, 0)
    windows[0].advance(hy)
    for i in range(1, len(layers)):
        p = layers[i].kernel // 2
        scale = out_rows // heights[i]
        windows.append(_RowWindow(heights[i], widths[i], layers[i].weight.shape[1], p,
                                  -(-band_rows // scale) + 2 * p + 2))
    done = [0] * len(layers)
    scratch: dict = {}  # conv_winograd's buffers, reused
    trace: dict = {}  # recorded layer outputs, channels-last int32, filled band by band
    load = OtherLoad()

    for target in range(min(band_rows, out_rows), out_rows + band_rows, band_rows):
        target = min(target, out_rows)
        limit = options.synthesis_blas_threads  # more than one thread only while a core is free
        with blas_threads_or_as_is(None if limit is None else load.threads(limit)):
            need = _rows_needed(layers, heights, target)
            for i, layer in enumerate(layers):
                a, b = done[i], need[i]
                if b <= a:
                    continue
                p = layer.kernel // 2
                src = windows[i].rows(a - p, b + p)
                if i == len(layers) - 1:
                    conv_planar(layer, src, b - a, image[:, a:b], SAMPLE_RANGE)
                else:
                    nxt = windows[i + 1]
                    f = 2 if layer.depth_to_space else 1
                    # Rows [f * a, f * b) of the next layer's input, written in place.
                    conv_winograd(layer, src, b - a, nxt.reserve(f * b), scratch=scratch)
                    nxt.advance(f * b)
                    if record.active:
                        if layer.name not in trace:
                            # int32 holds every activation exactly (clause 4.5) at half the memory of float64.
                            trace[layer.name] = np.empty((heights[i + 1], widths[i + 1], nxt.data.shape[2]), np.int32)
                        trace[layer.name][f * a: f * b] = nxt.interior(f * a, f * b)
                done[i] = b
                windows[i].keep = b - p  # rows still needed by the next band
        record.progress("synthesis", target, out_rows)
    for name in list(trace):
        record.tensor(name, trace.pop(name).transpose(2, 0, 1))
    record.tensor(layers[-1].name, image)
    return image
