"""The stage tensors of spec clause 11.3, defined once: names, decoding order, defining clauses,
canonical layout (clause 11.4), and the recorder that the decoding process hands them to.

A decoding function never carries trace code of its own: it calls `record.tensor(name, T)` for
a whole stage, or `record.latent(name, ys, xs, values)` for the positions of the latent it has
just computed (clauses 7.6 to 7.10). The default recorder, NO_RECORDER, keeps nothing.
"""

from __future__ import annotations

import numpy as np

from .constants import NUM_MIXTURES, WAVEFRONT_SLOPE
from .architecture import CONTEXT, GATHER, HYPER_SYNTHESIS, SYNTHESIS
from .clauses import clause, informative

# Clause 11.3, in decoding order (clause 7.1), grouped by the step that computes them.
PRE_LATENT_STAGES = ["z_hat"] + [s.name for s in HYPER_SYNTHESIS]
MIXTURE_STAGES = ["mixture.weights", "mixture.means", "mixture.scale_index"]  # (K, C_y, Hy, Wy)
LATENT_STAGES = ([s.name for s in CONTEXT] + [s.name for s in GATHER] + MIXTURE_STAGES
                 + ["window.lo", "window.hi", "cdf.sum", "y_hat"])
POST_LATENT_STAGES = ["synthesis_input"] + [s.name for s in SYNTHESIS] + ["image"]
STAGE_ORDER = PRE_LATENT_STAGES + LATENT_STAGES + POST_LATENT_STAGES

# The clause of 7 that defines each stage: where to look when it diverges.
STAGE_CLAUSE = {"z_hat": "7.3", "mixture.weights": "7.8", "mixture.means": "7.8", "mixture.scale_index": "7.8",
                "window.lo": "7.9", "window.hi": "7.9", "cdf.sum": "7.9", "y_hat": "7.10", "synthesis_input": "7.11",
                "image": "7.13"}
STAGE_CLAUSE.update({s.name: "7.4" for s in HYPER_SYNTHESIS})
STAGE_CLAUSE.update({s.name: "7.6" for s in CONTEXT})
STAGE_CLAUSE.update({s.name: "7.7" for s in GATHER})
STAGE_CLAUSE.update({s.name: "7.12" for s in SYNTHESIS})

# Clause 11.5.4: the file beside the stage files of a trace that a failed decode left behind.
PARTIAL_TRACE_FILE = "partial.json"

# Clause 11.4: the canonical element type of every stage tensor.
STAGE_DTYPE = np.dtype("<i4")


@clause("11.4", "Canonical layouts")
def canonical(tensor) -> np.ndarray:
    """A stage tensor as a C-order array of signed 32-bit integers (no copy when it is one)."""
    return np.ascontiguousarray(tensor, dtype=STAGE_DTYPE)


@clause("11.3", "Stage tensors")
def latent_stage_channels(model) -> dict:
    """The leading dimensions of every latent stage tensor (the shapes of the table of clause 11.3)."""
    cy = model.latent_channels
    channels = {spec.name: (model.layers[spec.name].weight.shape[0],) for spec in CONTEXT + GATHER}
    channels.update({name: (NUM_MIXTURES, cy) for name in MIXTURE_STAGES})
    channels.update({"window.lo": (cy,), "window.hi": (cy,), "cdf.sum": (cy,), "y_hat": (cy,)})
    return channels


@informative("clause 11.5.4 (informative): where a partial trace holds values")
def decoded_positions(hy: int, wy: int, latent_wavefronts: int) -> np.ndarray:
    """Clause 11.5.4: the (Hy, Wy) mask of the latent positions whose stage values a partial trace
    holds, those of the wavefronts t = x + 4y below latent_wavefronts (clause 7.5)."""
    y, x = np.mgrid[0:hy, 0:wy]
    return x + WAVEFRONT_SLOPE * y < latent_wavefronts


@informative("a trace is a diagnostic of clause 11.5.4, not part of the decoding process")
class NullRecorder:
    """Keeps nothing: what an untraced decode hands its stages to."""

    active = False  # whether stages are kept (a decoding function may skip preparing them otherwise)

    def __init__(self, on_progress=None):
        self.on_progress = on_progress  # called as on_progress(step, done, total) by progress()

    def tensor(self, name: str, value) -> None:
        pass

    def latent_start(self, channels: dict, hy: int, wy: int) -> None:
        pass

    def latent(self, name: str, ys, xs, values) -> None:
        pass

    def wavefronts_done(self, count: int) -> None:
        pass

    def progress(self, step: str, done: int, total: int) -> None:
        """done of total units of a long step ("latent": wavefronts, "synthesis": output rows)."""
        if self.on_progress is not None:
            self.on_progress(step, done, total)


NO_RECORDER = NullRecorder()


@informative("a trace is a diagnostic of clause 11.5.4, not part of the decoding process")
class Recorder(NullRecorder):
    """Collects every stage tensor of clause 11.3 in its canonical layout as decoding produces it.

    The latent stages are filled position by position; `latent_wavefronts` counts the wavefronts
    of clause 7.5 whose every position is recorded, so that a decode that fails part-way leaves a
    partial trace (clause 11.5.4) whose latent stages are valid where t(y, x) < latent_wavefronts.
    """

    active = True

    def __init__(self, on_progress=None):
        super().__init__(on_progress)
        self.stages: dict[str, np.ndarray] = {}
        self.latent_wavefronts: int | None = None

    def tensor(self, name, value):
        self.stages[name] = canonical(value)

    def latent_start(self, channels, hy, wy):
        """channels: stage name -> leading dimensions, e.g. (C,) or (K, C)."""
        for name, lead in channels.items():
            self.stages[name] = np.zeros(tuple(lead) + (hy, wy), dtype=STAGE_DTYPE)
        self.latent_wavefronts = 0

    def latent(self, name, ys, xs, values):
        """values (positions, C) or (positions, C, K) for the positions (ys, xs)."""
        values = np.asarray(values)
        self.stages[name][..., ys, xs] = values.transpose(tuple(range(values.ndim - 1, 0, -1)) + (0,))

    def wavefronts_done(self, count):
        self.latent_wavefronts = count

    @property
    def complete(self) -> bool:
        return "image" in self.stages

    def partial_info(self) -> dict:
        """Clause 11.5.4: what PARTIAL_TRACE_FILE records for a decode that failed part-way."""
        return {"partial": True, "latent_wavefronts": self.latent_wavefronts}
