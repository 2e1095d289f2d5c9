"""The fixed network structure of spec clause 5.1 and the padded sizes of clause 5.4."""

from __future__ import annotations

from dataclasses import dataclass

from . import constants as K


@dataclass(frozen=True)
class LayerSpec:
    """One row of the clause 5.1 tables: structure only; channel counts come from the model."""

    name: str
    network: str
    kernel: int
    depth_to_space: bool
    leaky: bool


def _net(network, rows):
    """Clause 5.1: the rows (kernel, D2S, LeakyReLU) of one network's table as LayerSpecs."""
    return [LayerSpec(f"{network}.{i}", network, k, d2s, leaky) for i, (k, d2s, leaky) in enumerate(rows)]


HYPER_SYNTHESIS = _net("hyper_synthesis", [(3, True, True), (3, True, True), (3, False, True)])
CONTEXT = [LayerSpec(f"context.{k}", "context", k, False, True) for k in K.CONTEXT_KERNELS]
GATHER = _net("gather", [(1, False, True)] * 6 + [(1, False, False)])
SYNTHESIS = _net("synthesis", [
    (3, False, True), (3, True, True), (3, False, True), (3, True, True),
    (3, True, True), (3, True, True), (3, False, False),
])
LAYERS = HYPER_SYNTHESIS + CONTEXT + GATHER + SYNTHESIS
LAYER_NAMES = [layer.name for layer in LAYERS]
BY_NAME = {layer.name: layer for layer in LAYERS}
OUTPUT_LAYER = SYNTHESIS[-1].name


def causal_mask(kernel: int):
    """Clause 5.1: True where a masked (context) kernel may be non-zero."""
    import numpy as np

    p = kernel // 2
    mask = np.zeros((kernel, kernel), dtype=bool)
    mask[:p, :] = True
    mask[p, :p] = True
    return mask


def padded_sizes(width: int, height: int):
    """Clause 5.4: (Hz, Wz, Hy, Wy)."""
    hz, wz = (height + 63) >> 6, (width + 63) >> 6
    return hz, wz, 4 * hz, 4 * wz
