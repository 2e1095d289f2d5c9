"""The clause vocabulary of the executable specification (VC-2 style).

Every function of a normative module carries one of two marks:

- `@clause("7.9", "Coding window and cumulative frequencies")`: the function implements that
  clause of `spec/`; the number and the heading title are checked against the text
  (tests/test_clauses.py), so a reference to the wrong clause fails;
- `@informative("why")`: the function is in a normative module but is not part of the decoding
  process (a convenience of the library, a helper of the tools); the coverage gate of clause
  11.5.6 does not ask the vectors to reach it.

Two marks are for single lines:

- `# unreachable: WHY` ends a line of the decoding process that no stream can reach (an
  installation check, a file-system error); the coverage gate excludes it and nothing else;
- `# informative: WHY` ends a line that computes only what is not normative (the byte offset or
  message of an error, a formula that generated a table): the vectors must reach it, but the
  mutation harness (tools/mutate.py) does not mutate it, since no decoder output depends on it.
"""

from __future__ import annotations

# The modules that implement the decoding process (spec clauses 4 to 11.4), in decoding order.
# `ls refdec/` shows them; accelerations live in refdec/fast/, tooling in refdec/conformance/
# and refdec/generators/.
NORMATIVE_MODULES = ("constants", "arith", "layers", "architecture", "bitstream", "model_file", "tables",
                     "range_decoder", "symbols", "hyper", "entropy", "latent", "synthesis", "stages", "errors",
                     "decoder")

# Coverage exclusions that the gate honours: a function marked @informative, or one line that
# ends in "# unreachable: <why>".
COVERAGE_EXCLUDE = (r"^\s*@informative\b", r"#\s*unreachable:")

# Every function marked @clause, in the order of import: (number, title, function).
CLAUSE_FUNCTIONS: list[tuple[str, str, object]] = []


def clause(number: str, title: str):
    """Mark a function as the implementation of spec clause `number`, whose heading is `title`."""

    def mark(function):
        function.__clause__ = (number, title)
        CLAUSE_FUNCTIONS.append((number, title, function))
        return function

    return mark


def informative(reason: str):
    """Mark a function of a normative module as not part of the decoding process, saying why."""

    def mark(function):
        function.__informative__ = reason
        return function

    return mark
