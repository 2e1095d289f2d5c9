"""refdec: the normative integer-only decoder of the refdec learned image codec.

The modules of this package are the executable specification, in the order of the decoding
process (spec clause 7.1): constants and arith (clauses 3, 4), layers (4.5, 4.6), architecture
(5), bitstream (6), model_file (9), tables (10), range_decoder (8), symbols (7.10), hyper (7.3,
7.4), entropy (7.6 to 7.9), latent (7.5), synthesis (7.11 to 7.13), stages and errors (11.2 to
11.4), tied together by decoder (7.1). Every function names its clause (refdec.clauses).

refdec/fast/ holds the accelerations, each registered against the literal function it replaces
and proven equal to it; refdec.decode uses them unless fast=False. refdec/conformance/ is the
checker (`refdec check`), refdec/generators/ the informative encoder and test-case generators.
"""

from .decoder import Decoded, decode
from .errors import RefdecError
from .fast import FastOptions
from .model_file import Model, ModelStore, load_model, parse_model
from .stages import Recorder

__all__ = ["decode", "Decoded", "FastOptions", "ModelStore", "Model", "Recorder", "load_model", "parse_model",
           "RefdecError"]
__version__ = "0.1.0"
