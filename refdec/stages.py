"""The stage tensors of spec clause 11.3: names, decoding order and defining clauses, defined once."""

from __future__ import annotations

from .architecture import CONTEXT, GATHER, HYPER_SYNTHESIS, SYNTHESIS

# Clause 11.3 stage names, grouped by the phase of clause 7.1 that computes them.
PRE_LATENT_STAGES = ["z_hat"] + [s.name for s in HYPER_SYNTHESIS]
LATENT_STAGES = ([s.name for s in CONTEXT] + [s.name for s in GATHER]
                 + ["mixture.weights", "mixture.means", "mixture.scale_index", "window.lo", "window.hi", "y_hat"])
POST_LATENT_STAGES = ["synthesis_input"] + [s.name for s in SYNTHESIS] + ["image"]
STAGE_ORDER = PRE_LATENT_STAGES + LATENT_STAGES + POST_LATENT_STAGES

# The clause of 7 that defines each stage (clause 11.3 table): where to look when it diverges.
STAGE_CLAUSE = {"z_hat": "7.3", "mixture.weights": "7.8", "mixture.means": "7.8", "mixture.scale_index": "7.8",
                "window.lo": "7.9", "window.hi": "7.9", "y_hat": "7.10", "synthesis_input": "7.11",
                "image": "7.13"}
STAGE_CLAUSE.update({s.name: "7.4" for s in HYPER_SYNTHESIS})
STAGE_CLAUSE.update({s.name: "7.6" for s in CONTEXT})
STAGE_CLAUSE.update({s.name: "7.7" for s in GATHER})
STAGE_CLAUSE.update({s.name: "7.12" for s in SYNTHESIS})

