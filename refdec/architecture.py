"""The fixed network structure of spec clause 5.1 and the padded sizes of clause 5.4."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import CONTEXT_KERNELS, Y_STRIDE, Z_STRIDE
from .clauses import clause


@dataclass(frozen=True)
class LayerSpec:
    """One row of the clause 5.1 tables: structure only; channel counts come from the model."""

    name: str
    network: str
    kernel: int
    depth_to_space: bool
    leaky: bool


@clause("5.1", "Networks")
def _net(network, rows):
    """The rows (kernel, D2S, LeakyReLU) of one network's table as LayerSpecs."""
    return [LayerSpec(f"{network}.{i}", network, k, d2s, leaky) for i, (k, d2s, leaky) in enumerate(rows)]


HYPER_SYNTHESIS = _net("hyper_synthesis", [(3, True, True), (3, True, True), (3, False, True)])
CONTEXT = [LayerSpec(f"context.{k}", "context", k, False, True) for k in CONTEXT_KERNELS]
GATHER = _net("gather", [(1, False, True)] * 6 + [(1, False, False)])
SYNTHESIS = _net("synthesis", [
    (3, False, True), (3, True, True), (3, False, True), (3, True, True),
    (3, True, True), (3, True, True), (3, False, False),
])
LAYERS = HYPER_SYNTHESIS + CONTEXT + GATHER + SYNTHESIS
LAYER_NAMES = [layer.name for layer in LAYERS]
BY_NAME = {layer.name: layer for layer in LAYERS}
OUTPUT_LAYER = SYNTHESIS[-1].name


@clause("5.1", "Networks")
def causal_mask(kernel: int):
    """True where a masked (context) kernel may be non-zero: the rows above the centre, and the
    centre row left of the centre."""
    p = kernel // 2
    mask = np.zeros((kernel, kernel), dtype=bool)
    mask[:p, :] = True
    mask[p, :p] = True
    return mask


@clause("5.4", "Padded dimensions")
def padded_sizes(width: int, height: int):
    """(Hz, Wz, Hy, Wy): the image padded up to a multiple of 64 samples each way."""
    hz, wz = (height + Z_STRIDE - 1) // Z_STRIDE, (width + Z_STRIDE - 1) // Z_STRIDE
    per_z = Z_STRIDE // Y_STRIDE  # latent positions per hyper-latent position, each way
    return hz, wz, per_z * hz, per_z * wz
