"""The decoding process of spec clause 7.1, step by step.

`decode(stream, models)` runs the steps of clause 7.1 in order. With `fast=False` every step is
the literal normative function named in the comment beside it; by default (`fast=True`) the
steps that refdec/fast/ accelerates run their registered acceleration instead, which
tests/test_fast_equivalence.py proves equal to the literal function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .architecture import padded_sizes
from .bitstream import HEADER_SIZE, Header, parse_header
from .clauses import clause, informative
from .errors import RateIndexOutOfRange
from .fast import FastOptions, accelerated_step
from .hyper import decode_z, hyper_synthesis
from .latent import decode_y
from .model_file import Model, ModelStore
from .range_decoder import RangeDecoder
from .stages import NO_RECORDER, Recorder
from .synthesis import inverse_gain, output, synthesis


@dataclass
class Decoded:
    """What decode() returns: the header, the clause 7.13 image and, when traced, the clause 11.3 stages."""

    header: Header
    image: np.ndarray  # uint8 (3, H, W)
    stages: dict = field(default_factory=dict)  # clause 11.3 name -> int32 array in the clause 11.4 layout


@clause("7.1", "Overview")
def decode(stream: bytes, models: ModelStore | Model, *, fast: bool | FastOptions = True, trace: bool = False,
           record: Recorder | None = None) -> Decoded:
    """Decode a bitstream to 8-bit RGB samples (3, H, W).

    fast: True (the accelerations of refdec/fast/), False (the literal normative functions), or
    a refdec.fast.FastOptions. trace=True returns every stage tensor of clause 11.3 in
    Decoded.stages; a Recorder passed as `record` receives them as they are computed, and keeps
    what was computed when decoding fails (a partial trace, clause 11.5.4).
    """
    record = record if record is not None else Recorder() if trace else NO_RECORDER
    step = _steps(fast)
    header = parse_header(stream)                                                    # clause 6.2 checks 1-5
    model = _store(models).get(header.model_id)                                      # clause 6.2 check 6
    if header.rate_index >= model.num_rates:                                         # clause 6.2 check 7
        raise RateIndexOutOfRange(f"rate index {header.rate_index}, the model has {model.num_rates} rate points",
                                  offset=10)
    hz, wz, hy, wy = padded_sizes(header.width, header.height)                      # step 1
    # Clause 7.2: each payload has its own range decoder, on that payload's bytes.
    z_decoder = RangeDecoder(stream[HEADER_SIZE: HEADER_SIZE + header.z_length], base=header.z_offset)
    z_hat = step(decode_z)(z_decoder, model, hz, wz)                                 # step 2
    z_decoder.finish()
    record.tensor("z_hat", z_hat)
    hyper = step(hyper_synthesis)(model, z_hat, record)                              # step 3
    y_decoder = RangeDecoder(stream[header.y_offset: header.y_offset + header.y_length], base=header.y_offset)
    y_hat = step(decode_y)(y_decoder, model, hyper, hy, wy, record)                  # step 4
    y_decoder.finish()
    S0 = inverse_gain(model, y_hat, header.rate_index)                               # step 5
    record.tensor("synthesis_input", S0)
    S7 = step(synthesis)(model, S0, record)                                          # step 6
    image = output(S7, header.width, header.height)
    record.tensor("image", image)
    return Decoded(header, image, record.stages if trace else {})


@informative("chooses between the literal functions and their accelerations")
def _steps(fast):
    """The function that runs a step: the literal one, or its registered acceleration."""
    if fast is False:
        return lambda literal: literal
    return accelerated_step(fast)


@informative("library convenience: decode() also takes a single parsed model")
def _store(models: ModelStore | Model) -> ModelStore:
    if isinstance(models, Model):
        store = ModelStore()
        store.add(models)
        return store
    return models
