"""The decoding process of spec clause 7.1, with model lookup (clause 6.2 checks 6 and 7)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .architecture import padded_sizes
from .bitstream import HEADER_SIZE, Header, parse_header
from .errors import RateIndexOutOfRange
from .hyper import decode_z, hyper_synthesis
from .latent import Trace, decode_y
from .marks import informative
from .model_file import Model, ModelStore
from .range_decoder import RangeDecoder
from .synthesis import DEFAULT_BAND_ROWS, crop, inverse_gain, synthesize

@informative
def _as_store(models: ModelStore | Model) -> ModelStore:
    """Informative: decode() also takes a single parsed model (library use)."""
    if isinstance(models, Model):
        store = ModelStore()
        store.add(models)
        return store
    return models


@dataclass
class Decoded:
    """Non-normative: what decode() returns: the header, the clause 7.13 image and the clause 11.3 stages."""

    header: Header
    image: np.ndarray  # uint8 (3, H, W)
    stages: dict = field(default_factory=dict)  # clause 11.3 name -> int array (C, H, W) order


def decode(stream: bytes, models: ModelStore | Model, *, trace: bool = False,
           band_rows: int = DEFAULT_BAND_ROWS) -> Decoded:
    """Clause 7.1: decode a bitstream to 8-bit RGB samples (3, H, W).

    With trace=True, every stage tensor of clause 11.3 is returned as well, as int32 arrays
    in the shapes of clause 11.3 (the element type of the canonical layout of clause 11.4).
    """
    header = parse_header(stream)
    model = _as_store(models).get(header.model_id)
    if header.rate_index >= model.num_rates:
        raise RateIndexOutOfRange(f"rate index {header.rate_index}, the model has {model.num_rates} rate points",
                                  offset=10)
    hz, wz, hy, wy = padded_sizes(header.width, header.height)
    stages: dict = {}

    # Clause 7.2: each payload has its own range decoder, initialised on that payload's bytes.
    z_payload = stream[HEADER_SIZE: HEADER_SIZE + header.z_length]
    z_decoder = RangeDecoder(z_payload, base=header.z_offset)
    z_hat = decode_z(z_decoder, model, hz, wz)
    z_decoder.finish()

    hyper_trace = {} if trace else None
    hyper = hyper_synthesis(model, z_hat, hyper_trace)

    y_payload = stream[header.y_offset: header.y_offset + header.y_length]
    y_decoder = RangeDecoder(y_payload, base=header.y_offset)
    latent_trace = Trace(model, hy, wy) if trace else None
    y_hat = decode_y(y_decoder, model, hyper, latent_trace)
    y_decoder.finish()

    s0 = inverse_gain(model, y_hat, header.rate_index)
    synthesis_trace = {} if trace else None
    full = synthesize(model, s0, band_rows, synthesis_trace)
    image = crop(full, header.width, header.height)

    if trace:
        # Canonical layout (C, H, W) as int32, converted one tensor at a time and released from
        # the trace as it goes, so that at most one layer exists twice (large images).
        def canonical(t):
            return np.ascontiguousarray(t, dtype=np.int32)

        stages["z_hat"] = canonical(z_hat)
        for name in list(hyper_trace):
            stages[name] = canonical(hyper_trace.pop(name).transpose(2, 0, 1))
        stages.update({k: canonical(v) for k, v in latent_trace.stages().items()})
        stages["y_hat"] = canonical(y_hat)
        stages["synthesis_input"] = canonical(s0)
        for name in list(synthesis_trace):
            stages[name] = canonical(synthesis_trace.pop(name).transpose(2, 0, 1))
        stages["image"] = canonical(image)
    return Decoded(header, image, stages)
