"""The `informative` mark for code in normative modules that is not part of the decoding process.

VC-2 style: the normative modules implement the spec clause by clause; a function
there that the decoding process does not run (a literal scalar form of an
operator that tests check the array forms against, a helper of the informative
encoder, a library convenience) carries this decorator. The conformance
coverage gate (spec clause 11.5.5) requires the vectors to execute every line
and branch of the normative modules except the functions so marked.
"""

from __future__ import annotations


def informative(function):
    """Informative: marks `function` as not part of the decoding process (see the module docstring)."""
    function.__informative__ = True
    return function


# The modules that implement the decoding process (spec clauses 4 to 10), in decoding order.
# Every function in them names its clause or is marked informative (tests/test_spec_refs.py),
# and the vectors must execute all of their other lines and branches (clause 11.5.5).
NORMATIVE_MODULES = ("constants", "arith", "tables", "architecture", "model_file", "bitstream", "range_decoder",
                     "symbols", "hyper", "layers", "entropy", "latent", "synthesis", "decoder")

# Coverage exclusions that the gate honours: a function marked @informative, or one line that
# ends in "# informative: <why>" (code no stream can reach, such as an installation check).
COVERAGE_EXCLUDE = (r"^\s*@informative\b", r"#\s*informative:")
