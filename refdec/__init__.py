"""refdec: the normative integer-only decoder of the refdec learned image codec.

Modules follow the decoding process (spec clause 7):
arith (clause 4) -> bitstream (6) -> model_file (9) -> range_decoder (8) ->
hyper (7.3, 7.4) -> entropy, latent, symbols (7.5-7.10) -> synthesis (7.11-7.13),
tied together by decoder (7.1).
"""

from .decoder import Decoded, decode

from .model_file import ModelStore
from .errors import RefdecError
from .model_file import Model, load_model, parse_model

__all__ = ["decode", "Decoded", "ModelStore", "Model", "load_model", "parse_model", "RefdecError"]
__version__ = "0.1.0"
