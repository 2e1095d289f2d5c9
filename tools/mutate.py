"""Mutation testing of refdec's normative modules, with the conformance vectors as the test suite.

    python tools/mutate.py [VECTORS] [--modules M[,M...]] [--seed N] [--sample N] [-j N]
                           [--out DIR] [--path auto|fast|literal] [--list] [--only KEY...]

Each mutant is a copy of one normative module (refdec.clauses.NORMATIVE_MODULES, or
refdec.marks.NORMATIVE_MODULES on a tree without it) with one fault, of two kinds:

* AST mutations, enumerated from the source: an operator swapped (`+ - * // >> << & |`, the
  comparisons `< <= > >= == !=`, `in`, `is`, `and`/`or`, augmented assignments), an integer
  constant +1 and -1, a `Clip3`/`clip3_array`/`np.clip`/`np.minimum`/`np.maximum` call deleted
  (replaced by its data argument), `min` and `max` exchanged, two adjacent positional call
  arguments exchanged, a `raise` replaced by `pass` (a check deleted);
* hand-written faults (HAND_FAULTS below): what implementers get wrong: rounding direction and
  ties, the causal mask, the wavefront order and slope, table entries, byte order, the escape
  side, the depth-to-space channel order, Round2 without its n = 0 case, and more.

Code that is not part of the decoding process is not mutated: functions and classes marked
`@informative`, statements on a line marked `# informative: ...` or `# unreachable: ...`,
docstrings, f-strings, assertions, and the arguments of a `raise` (the message and byte offset
of an error are informative; only its class is normative).

A mutant is run by refdec itself in a subprocess that loads the mutated module in place of the
original (`--worker`), decoding vectors one at a time with every stage tensor (clause 11.3):

* a valid vector kills it unless the samples and every stage hash equal the manifest's;
* an invalid vector kills it unless decoding raises exactly the expected clause 11.2 class: an
  accepted stream, another class, and a crash (any other exception) all kill it;
* a vector that runs longer than TIMEOUT_FACTOR times its unmutated time (plus TIMEOUT_SLACK
  seconds) kills it (a hang); the worker's address space is limited to WORKER_MEMORY bytes.

Only the vectors that execute a line of the mutated code can kill a mutant; the others are
skipped. Which vectors execute which lines is measured once per vector set and source tree by a
coverage run that decodes every vector in a fresh interpreter state (cached in a temporary
folder). The quick subset (12 vectors) runs first, then the other vectors from the cheapest up;
the first failing vector kills the mutant.

`--resume JSON` (an earlier full run's `--json`) keeps the kills that still hold (same module
source, killing vector unchanged) and runs only the other mutants: after vectors are added, the
survivors are run again without repeating the two hours.

`--path literal` decodes with `refdec.decode(stream, models, fast=False)` (the literal
normative modules alone) once that exists; `auto` picks it when `refdec.decode` has a `fast`
parameter. On the literal path vectors of more than LITERAL_MAX_SAMPLES samples are not run
(see results/mutation/README.md for the measurement behind it).

The run writes, into --out (default results/mutation/):

* `summary.json`: date, vector set, seed, sample, and per module the counts of killed,
  equivalent and surviving mutants, and the score killed / (all - equivalent);
* `survivors.json` and `survivors.md`: every mutant that survived, with the argument that it is
  equivalent (from `equivalent.json`, hand-written: mutant key -> argument) or marked open;
  with --previous FILE (an earlier `survivors.json`), every earlier survivor too, with the
  vector that kills it now;
* `vectors-score.json`: the score and date for the vector set's README
  (refdec.conformance.manifest.readme_text reads it through the manifest's statistics).

Exit status 0 when no mutant is left open (every survivor has an equivalence argument), 1
otherwise, 2 for a usage error or an unmutated decoder that fails a vector.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import importlib
import importlib.abc
import importlib.util
import inspect
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "results" / "mutation"
TIMEOUT_FACTOR = 10.0
TIMEOUT_SLACK = 20.0
WORKER_MEMORY = 6 << 30
LITERAL_MAX_SAMPLES = 256 * 256
EXCLUDE_LINE = re.compile(r"#\s*(informative|unreachable):")
ERROR_CLASSES = {"RefdecError", "TruncatedHeader", "BadMagic", "UnsupportedVersion", "ReservedFieldSet",
                 "ZeroDimension", "DimensionsTooLarge", "PayloadTooShort", "PayloadPastEnd", "TrailingData",
                 "RateIndexOutOfRange", "UnknownModel", "AccumulatorOverflowRisk", "InvalidRangeState",
                 "PayloadTruncated", "TrailingPayloadBytes", "EscapeTooLong", "LatentOutOfRange"}
# Calls whose arguments are not exchanged: commutative ones (the mutant would be equivalent) and
# ones where an exchange can only crash.
NO_SWAP = {"min", "max", "add", "multiply", "maximum", "minimum", "logical_and", "logical_or", "array_equal",
           "isinstance", "getattr", "setattr", "hasattr", "print", "super", "Struct"}
MINMAX = {"min": "max", "max": "min", "minimum": "maximum", "maximum": "minimum", "amin": "amax",
          "amax": "amin", "argmin": "argmax", "argmax": "argmin"}


# --- the modules ------------------------------------------------------------------------------

def normative_modules() -> tuple[str, ...]:
    """The normative modules of the tree: refdec.clauses.NORMATIVE_MODULES, else refdec.marks's."""
    for vocabulary in ("refdec.clauses", "refdec.marks"):
        try:
            module = importlib.import_module(vocabulary)
        except ImportError:
            continue
        names = getattr(module, "NORMATIVE_MODULES", None)
        if names and all((ROOT / "refdec" / f"{n}.py").is_file() for n in names):
            return tuple(names)
    raise SystemExit("mutate: no NORMATIVE_MODULES in refdec.clauses or refdec.marks")


def literal_path_available() -> bool:
    import refdec

    try:
        return "fast" in inspect.signature(refdec.decode).parameters
    except (TypeError, ValueError):
        return False


# --- mutants ----------------------------------------------------------------------------------

@dataclass
class Mutant:
    key: str  # stable: module:function:kind:original->replacement#n (no line numbers)
    module: str  # e.g. "arith"
    function: str  # qualified name of the enclosing function or class, "<module>" at top level
    line: int
    kind: str
    original: str
    replacement: str
    lines: list  # the lines whose execution the mutant changes (statement lines, for coverage)
    hand: bool = False
    description: str = ""
    text: str = field(default="", repr=False)  # the mutated module (hand-written faults)
    splice: tuple = field(default=(), repr=False)  # (source, node, text, expression): made on demand

    @property
    def source(self) -> str:
        """The mutated module's source."""
        if self.splice:
            src, node, text, expression = self.splice
            return src.splice(node, text, expression)
        return self.text

    def brief(self) -> dict:
        return {k: getattr(self, k) for k in ("key", "module", "function", "line", "kind", "original", "replacement",
                                               "lines", "hand", "description")}


def _line_offsets(data: bytes) -> list[int]:
    offsets, pos = [0], 0
    for line in data.splitlines(keepends=True):
        pos += len(line)
        offsets.append(pos)
    return offsets


class _Source:
    """One module's source: bytes for splicing (AST columns are UTF-8 byte offsets)."""

    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path
        self.text = path.read_text(encoding="utf-8")
        self.data = self.text.encode("utf-8")
        self.tree = ast.parse(self.text, filename=str(path))
        self.offsets = _line_offsets(self.data)
        self.excluded = {i + 1 for i, line in enumerate(self.text.splitlines()) if EXCLUDE_LINE.search(line)}
        self.dump = ast.dump(self.tree)

    def span(self, node) -> tuple[int, int]:
        return (self.offsets[node.lineno - 1] + node.col_offset, self.offsets[node.end_lineno - 1] + node.end_col_offset)

    def segment(self, node) -> str:
        a, b = self.span(node)
        return self.data[a:b].decode("utf-8")

    def splice(self, node, text: str, expression: bool) -> str:
        """The module with node's source replaced by text; line numbers after it are kept (the
        replacement is padded with line breaks, inside parentheses for an expression)."""
        a, b = self.span(node)
        pad = "\n" * (node.end_lineno - node.lineno)
        new = f"({text}{pad})" if expression else text + pad
        return (self.data[:a] + new.encode("utf-8") + self.data[b:]).decode("utf-8")


def _is_informative(node) -> bool:
    """Marked @informative, or documented as informative ("Informative: ..." docstring)."""
    doc = ast.get_docstring(node) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else None
    if doc and doc.startswith("Informative"):
        return True
    for d in getattr(node, "decorator_list", []):
        target = d.func if isinstance(d, ast.Call) else d
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if name == "informative":
            return True
    return False


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Attribute):
        return f.attr
    if isinstance(f, ast.Name):
        return f.id
    return None


_BINOP_SWAPS = {ast.Add: [ast.Sub], ast.Sub: [ast.Add], ast.Mult: [ast.FloorDiv, ast.Add], ast.FloorDiv: [ast.Mult],
                ast.Div: [ast.Mult], ast.Mod: [ast.FloorDiv], ast.RShift: [ast.LShift], ast.LShift: [ast.RShift],
                ast.BitAnd: [ast.BitOr], ast.BitOr: [ast.BitAnd], ast.BitXor: [ast.BitOr], ast.Pow: [ast.Mult]}
_CMP_SWAPS = {ast.Lt: [ast.LtE], ast.LtE: [ast.Lt], ast.Gt: [ast.GtE], ast.GtE: [ast.Gt], ast.Eq: [ast.NotEq],
              ast.NotEq: [ast.Eq], ast.In: [ast.NotIn], ast.NotIn: [ast.In], ast.Is: [ast.IsNot],
              ast.IsNot: [ast.Is]}
_OP_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Div: "/", ast.Mod: "%",
            ast.RShift: ">>", ast.LShift: "<<", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.Pow: "**",
            ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
            ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.And: "and", ast.Or: "or"}


class _Enumerator(ast.NodeVisitor):
    """Walks a module and yields (node, kind, new node or text, is_expression, note) per site."""

    def __init__(self, src: _Source):
        self.src = src
        self.scope: list[str] = []
        self.stmt_lines: list[int] = [0]
        self.sites: list[tuple] = []

    # scopes and exclusions
    def _excluded(self, stmt) -> bool:
        return any(line in self.src.excluded for line in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)) \
            if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef, ast.If, ast.For, ast.While, ast.With, ast.Try)) \
            else stmt.lineno in self.src.excluded

    def visit_Module(self, node):
        for i, stmt in enumerate(node.body):
            if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # the docstring
            self.visit(stmt)

    def _body(self, body):
        for i, stmt in enumerate(body):
            if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                continue
            self.visit(stmt)

    def visit_FunctionDef(self, node):
        if _is_informative(node) or self._excluded(node):
            return
        self.stmt_lines.append(node.lineno)
        for d in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(d)  # evaluated when the module is imported
        self.stmt_lines.pop()
        self.scope.append(node.name)
        self._body(node.body)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        if _is_informative(node) or self._excluded(node):
            return
        self.scope.append(node.name)
        self._body(node.body)
        self.scope.pop()

    def generic_visit(self, node):
        if isinstance(node, ast.stmt):
            if self._excluded(node):
                return
            self.stmt_lines.append(node.lineno)
            super().generic_visit(node)
            self.stmt_lines.pop()
        else:
            super().generic_visit(node)

    def visit_Assert(self, node):
        return

    def visit_JoinedStr(self, node):
        return

    def visit_AnnAssign(self, node):
        if self._excluded(node) or node.value is None:
            return
        self.stmt_lines.append(node.lineno)
        self.visit(node.value)
        self.stmt_lines.pop()

    def visit_arg(self, node):
        return

    def visit_Raise(self, node):
        if self._excluded(node):
            return
        self.add(node, "delete-raise", "pass", False, "check deleted: raise replaced by pass", node.lineno)

    # sites
    def add(self, node, kind, new, expression, note="", stmt_line=None):
        line = self.stmt_lines[-1] if stmt_line is None else stmt_line
        self.sites.append((node, kind, new, expression, note, ".".join(self.scope) or "<module>", line))

    def visit_BinOp(self, node):
        for op in _BINOP_SWAPS.get(type(node.op), []):
            self.add(node, "operator", ast.BinOp(node.left, op(), node.right), True)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        if self._excluded(node):
            return
        for op in _BINOP_SWAPS.get(type(node.op), []):
            self.add(node, "operator", ast.AugAssign(node.target, op(), node.value), False, "", node.lineno)
        self.stmt_lines.append(node.lineno)
        self.visit(node.value)
        if isinstance(node.target, ast.Subscript):
            self.visit(node.target.slice)
        self.stmt_lines.pop()

    def visit_Compare(self, node):
        for i, op in enumerate(node.ops):
            for new in _CMP_SWAPS.get(type(op), []):
                ops = list(node.ops)
                ops[i] = new()
                self.add(node, "comparison", ast.Compare(node.left, ops, node.comparators), True)
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self.add(node, "boolean", ast.BoolOp(other, node.values), True)
        self.generic_visit(node)

    def visit_Constant(self, node):
        if type(node.value) is int:
            for delta in (1, -1):
                self.add(node, "constant", ast.Constant(node.value + delta), True)

    def visit_Call(self, node):
        name = _call_name(node)
        args = node.args
        if name and (name.endswith("Error") or name in ERROR_CLASSES):
            return  # an error's construction: its message and byte offset are informative
        if name in ("clip3_array", "clip3", "Clip3") and len(args) == 3:
            self.add(node, "clip-deleted", args[2], True, f"{name}(...) deleted")
        if name == "clip" and len(args) == 3:
            self.add(node, "clip-deleted", args[0], True, f"{name}(...) deleted")
        if name in ("minimum", "maximum") and len(args) == 2:
            for i in (0, 1):
                self.add(node, "clip-deleted", args[i], True, f"{name}(...) deleted, argument {i} kept")
        if name in MINMAX:
            f = node.func
            new_f = ast.Attribute(f.value, MINMAX[name], ast.Load()) if isinstance(f, ast.Attribute) else \
                ast.Name(MINMAX[name], ast.Load())
            self.add(node, "min-max", ast.Call(new_f, args, node.keywords), True)
        if len(args) >= 2 and name not in NO_SWAP and not any(isinstance(a, ast.Starred) for a in args):
            for i in range(len(args) - 1):
                if ast.dump(args[i]) != ast.dump(args[i + 1]):
                    swapped = list(args)
                    swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
                    self.add(node, "arguments", ast.Call(node.func, swapped, node.keywords), True,
                             f"arguments {i} and {i + 1} of {name or 'a call'} exchanged")
        self.generic_visit(node)


def _describe(kind: str, original: str, replacement: str) -> str:
    one = " ".join(original.split())
    two = " ".join(replacement.split())
    if len(one) > 90:
        one = one[:87] + "..."
    if len(two) > 90:
        two = two[:87] + "..."
    return f"`{one}` -> `{two}`"


def ast_mutants(src: _Source) -> list[Mutant]:
    e = _Enumerator(src)
    e.visit(src.tree)
    out, seen = [], Counter()
    for node, kind, new, expression, note, function, stmt_line in e.sites:
        original = src.segment(node)
        if isinstance(node, ast.Raise):
            text = "pass"
        else:
            text = new if isinstance(new, str) else ast.unparse(new)
            if not isinstance(new, str) and ast.dump(new) == ast.dump(node):
                continue  # no change
            try:
                ast.parse(text, mode="eval" if expression else "exec")
            except SyntaxError:
                continue
        base = f"{src.name}:{function}:{kind}:{' '.join(original.split())}->{' '.join(text.split())}"
        seen[base] += 1
        out.append(Mutant(key=f"{base}#{seen[base]}", module=src.name, function=function, line=node.lineno,
                          kind=kind, original=original, replacement=text,
                          lines=sorted({stmt_line or node.lineno} | set(range(node.lineno, node.end_lineno + 1))),
                          description=note or _describe(kind, original, text),
                          splice=(src, node, text, expression)))
    return out


# --- hand-written faults ------------------------------------------------------------------------

@dataclass(frozen=True)
class HandFault:
    """A fault of the kind implementers make, as exact text replacements in one module (each old
    text must occur exactly once). `lines` of the mutant are those of the replaced text."""

    name: str
    module: str
    description: str
    edits: tuple  # ((old, new), ...)


HAND_FAULTS = (
    # Clause 4.2 Round2.
    HandFault("round2-ties-down", "arith", "Round2 rounds ties towards minus infinity (adds 2^(n-1) - 1)",
              (("return (x + ((1 << n) >> 1)) >> n", "return (x + ((1 << n) >> 1) - (n > 0)) >> n"),)),
    HandFault("round2-ties-away", "arith", "Round2 rounds ties away from zero (symmetric rounding of |x|)",
              (("return (x + ((1 << n) >> 1)) >> n",
                "return np.where(x < 0, -((-x + ((1 << n) >> 1)) >> n), (x + ((1 << n) >> 1)) >> n)"),)),
    HandFault("round2-truncates", "arith", "Round2 as C division: (x + 2^(n-1)) / 2^n truncated towards zero",
              (("return (x + ((1 << n) >> 1)) >> n",
                "return np.sign(x + ((1 << n) >> 1)) * (np.abs(x + ((1 << n) >> 1)) >> n)"),)),
    HandFault("round2-n0-case", "arith", "Round2 without the n = 0 case: 1 << (n - 1) taken as 1 for n = 0",
              (("return (x + ((1 << n) >> 1)) >> n", "return (x + (1 << np.maximum(n - 1, 0))) >> n"),)),
    HandFault("round2-32-bit-sum", "arith", "Round2's sum x + 2^(n-1) in 32 bits (wraps near 2^31, clause 4.2)",
              (("return (x + ((1 << n) >> 1)) >> n",
                "return (((x + ((1 << n) >> 1) + 2**31) % 2**32) - 2**31) >> n"),)),
    HandFault("floordiv-truncates", "arith", "FloorDiv as C division (truncation), wrong for negative a",
              (("return a // b", "return np.sign(a) * (np.abs(a) // b)"),)),
    # Clause 4.4 requantisation.
    HandFault("requant-double-rounding", "arith",
              "LeakyReLU as a second rounding: Round2(Round2(acc, s), 3) instead of Round2(acc, s + 3)",
              (("return np.where(acc < 0, round2(acc, s + LEAKY_SHIFT), round2(acc, s))",
                "return np.where(acc < 0, round2(round2(acc, s), LEAKY_SHIFT), round2(acc, s))"),)),
    HandFault("requant-leaky-on-rounded", "arith", "LeakyReLU chosen by the sign of Round2(acc, s), not of acc",
              (("return np.where(acc < 0, round2(acc, s + LEAKY_SHIFT), round2(acc, s))",
                "return np.where(round2(acc, s) < 0, round2(acc, s + LEAKY_SHIFT), round2(acc, s))"),)),
    HandFault("requant-leaky-slope-quarter", "arith", "LeakyReLU slope 2^-2 instead of 2^-3",
              (("round2(acc, s + LEAKY_SHIFT)", "round2(acc, s + LEAKY_SHIFT - 1)"),)),
    # Clause 4.5 layer.
    HandFault("layer-clip-before-requant", "layers", "Clip3(-A, A) applied to the accumulator, before Requant",
              (("    return clip3(lo, hi, requant(acc, params.shift[:, None, None], params.leaky))",
                "    return requant(clip3(lo, hi, acc), params.shift[:, None, None], params.leaky)"),)),
    HandFault("padding-replicate", "layers", "edge replication instead of zero padding",
              (("    padded = np.zeros((channels, height + 2 * p, width + 2 * p), dtype=np.int64)\n"
                "    padded[:, p: p + height, p: p + width] = X\n"
                "    return padded",
                "    return np.pad(X, ((0, 0), (p, p), (p, p)), mode='edge')"),)),
    HandFault("kernel-flipped", "layers", "the kernel applied flipped (a true convolution, not a correlation)",
              (("acc += np.einsum(\"oi,iyx->oyx\", params.weight[:, :, ky, kx], window)",
                "acc += np.einsum(\"oi,iyx->oyx\", params.weight[:, :, k - 1 - ky, k - 1 - kx], window)"),)),
    HandFault("layer-at-border-replicate", "layers", "the layer at one position pads with the nearest edge sample",
              (("    patch = np.zeros((channels, k, k), dtype=np.int64)",
                "    patch = X[:, np.clip(np.arange(y - p, y + p + 1), 0, height - 1)][:, :, np.clip(np.arange("
                "x - p, x + p + 1), 0, width - 1)].astype(np.int64)"),)),
    # Clause 4.6 depth-to-space.
    HandFault("d2s-channel-order", "layers", "DepthToSpace with the channel order (2i + j) C + c (TensorFlow's)",
              (("Y[:, i::2, j::2] = X[2 * i + j::4]", "Y[:, i::2, j::2] = X[(2 * i + j) * (channels4 // 4):][: channels4 // 4]"),)),
    HandFault("d2s-transposed", "layers", "DepthToSpace with i and j exchanged: Y[c][2y + j][2x + i]",
              (("Y[:, i::2, j::2] = X[2 * i + j::4]", "Y[:, j::2, i::2] = X[2 * i + j::4]"),)),
    # Clause 5.1 causal mask.
    HandFault("mask-includes-centre", "architecture", "the causal mask includes the current position",
              (("mask[p, :p] = True", "mask[p, : p + 1] = True"),)),
    HandFault("mask-misses-upper-right", "architecture", "the causal mask leaves out the rows above, right of centre",
              (("mask[:p, :] = True", "mask[:p, : p + 1] = True"),)),
    HandFault("mask-whole-centre-row", "architecture", "the causal mask includes the whole centre row",
              (("mask[p, :p] = True", "mask[p, :] = True"),)),
    # Clause 5.4 padded sizes.
    HandFault("padded-size-ceil-16", "architecture", "latent size ceil(W / 16) instead of 4 ceil(W / 64)",
              (("return hz, wz, per_z * hz, per_z * wz",
                "return hz, wz, (height + Y_STRIDE - 1) // Y_STRIDE, (width + Y_STRIDE - 1) // Y_STRIDE"),)),
    HandFault("padded-size-floor", "architecture", "Hz = floor(H / 64) + 1 (one too many at multiples of 64)",
              (("hz, wz = (height + Z_STRIDE - 1) // Z_STRIDE, (width + Z_STRIDE - 1) // Z_STRIDE",
                "hz, wz = height // Z_STRIDE + 1, width // Z_STRIDE + 1"),)),
    # Clause 6.1 header.
    HandFault("header-little-endian", "bitstream", "header fields read little-endian",
              (('HEADER_LAYOUT = struct.Struct(">4sBBHHB8sII")', 'HEADER_LAYOUT = struct.Struct("<4sBBHHB8sII")'),)),
    HandFault("header-width-height-swapped", "bitstream", "width and height read in the wrong order",
              (("magic, version, flags, width, height, rate, model_id, z_len, y_len = HEADER_LAYOUT.unpack_from(stream)",
                "magic, version, flags, height, width, rate, model_id, z_len, y_len = HEADER_LAYOUT.unpack_from(stream)"),)),
    HandFault("header-lengths-swapped", "bitstream", "z_length and y_length read in the wrong order",
              (("magic, version, flags, width, height, rate, model_id, z_len, y_len = HEADER_LAYOUT.unpack_from(stream)",
                "magic, version, flags, width, height, rate, model_id, y_len, z_len = HEADER_LAYOUT.unpack_from(stream)"),)),
    HandFault("header-samples-check-missing", "bitstream", "W * H <= 2^25 not checked",
              (("width > MAX_WIDTH or height > MAX_HEIGHT or width * height > MAX_PIXELS",
                "width > MAX_WIDTH or height > MAX_HEIGHT"),)),
    HandFault("header-lengths-32-bit", "bitstream", "27 + z_length + y_length computed in 32 bits (wraps)",
              (("    end = HEADER_SIZE + z_len + y_len\n", "    end = (HEADER_SIZE + z_len + y_len) % (1 << 32)\n"),)),
    HandFault("header-trailing-accepted", "bitstream", "bytes after the y payload accepted",
              (("    if end < len(stream):\n", "    if False:\n"),)),
    HandFault("header-checks-reordered", "bitstream", "payload lengths checked before the dimensions",
              (("    if width > MAX_WIDTH or height > MAX_HEIGHT or width * height > MAX_PIXELS:\n",
                "    if z_len >= RC_INIT_BYTES and y_len >= RC_INIT_BYTES and HEADER_SIZE + z_len + y_len != len(stream):\n"
                "        raise PayloadPastEnd('lengths first', offset=0)\n"
                "    if width > MAX_WIDTH or height > MAX_HEIGHT or width * height > MAX_PIXELS:\n"),)),
    # Clause 8 range decoder.
    HandFault("range-init-little-endian", "range_decoder", "V initialised from the first 4 bytes little-endian",
              (('self.value = int.from_bytes(payload[:RC_INIT_BYTES], "big")',
                'self.value = int.from_bytes(payload[:RC_INIT_BYTES], "little")'),)),
    HandFault("range-full-32-bit", "range_decoder", "R initialised to 2^32 instead of 2^32 - 1",
              (("self.range = 0xFFFFFFFF", "self.range = 1 << 32"),)),
    HandFault("range-renorm-le", "range_decoder", "renormalises while R <= 2^24",
              (("while self.range < RANGE_BOTTOM:", "while self.range <= RANGE_BOTTOM:"),)),
    HandFault("range-r-rounded", "range_decoder", "r = (R + 2^15) >> 16 (rounded) instead of R >> 16",
              (("r = self.range >> 16", "r = (self.range + (1 << 15)) >> 16"),)),
    HandFault("range-v-check-missing", "range_decoder", "v >= 2^16 not checked",
              (("        if v >= PROB_ONE:\n            raise self.invalid_state(v)\n", ""),)),
    HandFault("range-escape-interval-short", "range_decoder", "C(n) taken as 2^16 - 1: the last symbol's interval one short",
              (("end = C[j + 1] if j + 1 < n else PROB_ONE", "end = C[j + 1] if j + 1 < n else PROB_ONE - 1"),)),
    HandFault("range-end-check-missing", "range_decoder", "bytes left after the last symbol accepted",
              (("        if self.pos != self.length:\n", "        if False:\n"),)),
    HandFault("range-end-check-one-spare", "range_decoder", "one spare byte after the last symbol accepted",
              (("        if self.pos != self.length:\n", "        if self.pos < self.length - 1:\n"),)),
    HandFault("range-bit-cdf", "range_decoder", "ReadBit with C(1) = 2^15 - 1",
              (("BIT_CDF = (0, PROB_ONE >> 1)", "BIT_CDF = (0, (PROB_ONE >> 1) - 1)"),)),
    # Clause 7.10 escape path.
    HandFault("escape-side-swapped", "symbols", "escape side bit read the other way round",
              (("value = lo - 1 - m if side == 0 else hi + 1 + m", "value = hi + 1 + m if side == 0 else lo - 1 - m"),)),
    HandFault("escape-suffix-lsb-first", "symbols", "escape suffix bits read least significant first",
              (("    for _ in range(k):\n        v = 2 * v + decoder.read_bit()\n",
                "    for i in range(k):\n        v += decoder.read_bit() << i\n    v += (1 << k) - 1\n"),)),
    HandFault("escape-no-offset", "symbols", "escaped value lo - m / hi + m (without the 1 past the window)",
              (("value = lo - 1 - m if side == 0 else hi + 1 + m", "value = lo - m if side == 0 else hi + m"),)),
    HandFault("escape-prefix-limit-15", "symbols", "an escape prefix of 15 accepted",
              (("        if k > MAX_ESCAPE_PREFIX:", "        if k > MAX_ESCAPE_PREFIX + 1:"),)),
    HandFault("escape-limit-check-missing", "symbols", "escaped values beyond Y_MAX / Z_MAX accepted",
              (("    if abs(value) > limit:\n", "    if False:\n"),)),
    HandFault("escape-limit-one-sided", "symbols", "only escaped values above +LIMIT rejected",
              (("    if abs(value) > limit:\n", "    if value > limit:\n"),)),
    # Clause 7.3 hyper-latent order.
    HandFault("z-order-position-major", "hyper", "z_hat decoded position-major instead of channel-major",
              (("    for c in range(model.hyper_channels):\n"
                "        n_w, lo = int(model.z_count[c]), int(model.z_lo[c])\n"
                "        cdf = model.z_cdf[c, : n_w + 1].tolist()\n"
                "        for y in range(hz):\n"
                "            for x in range(wz):\n",
                "    for y in range(hz):\n"
                "        for x in range(wz):\n"
                "          for c in range(model.hyper_channels):\n"
                "            n_w, lo = int(model.z_count[c]), int(model.z_lo[c])\n"
                "            cdf = model.z_cdf[c, : n_w + 1].tolist()\n"
                "            if True:\n"),)),
    HandFault("z-order-column-major", "hyper", "z_hat positions decoded column by column",
              (("        for y in range(hz):\n            for x in range(wz):\n",
                "        for x in range(wz):\n            for y in range(hz):\n"),)),
    HandFault("hyper-input-unclipped", "hyper", "the hyper synthesis reads z_hat without Clip3(-255, 255)",
              (("T0 = clip3(-CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX, z_hat)", "T0 = z_hat"),)),
    # Clause 7.5 wavefronts.
    HandFault("wavefront-slope-2", "latent", "wavefront t = x + 2 y (slope 2): contexts read undecoded latents",
              (("    slope = WAVEFRONT_SLOPE\n", "    slope = 2\n"),)),
    HandFault("wavefront-y-decreasing", "latent", "positions of a wavefront taken in decreasing y",
              (("        yield ys, t - slope * ys", "        ys = ys[::-1]\n        yield ys, t - slope * ys"),)),
    HandFault("latent-raster-order", "latent", "latent positions in raster order instead of wavefronts",
              (("    for t, (ys, xs) in enumerate(wavefronts(hy, wy)):\n",
                "    for t, (ys, xs) in enumerate((np.array([y]), np.array([x])) for y in range(hy) for x in range(wy)):\n"),)),
    HandFault("latent-channel-major", "latent", "the symbols of a wavefront channel by channel, not position by position",
              (("        for y, x in zip(ys.tolist(), xs.tolist()):\n",
                "        for y, x in (sorted(zip(ys.tolist(), xs.tolist())) if len(ys) < 2 else [(None, None)]):\n"
                "            if y is None:\n"
                "                prepared = []\n"
                "                for yy, xx in zip(ys.tolist(), xs.tolist()):\n"
                "                    ctx = context_model(model, y_hat, yy, xx)\n"
                "                    G = gather_network(model, hyper[:, yy, xx], ctx)\n"
                "                    mix = mixture_parameters(G[-1][None], cy)\n"
                "                    lo, hi = coding_window(mix)\n"
                "                    prepared.append((yy, xx, lo, hi, cumulative_frequencies(mix, lo, hi)))\n"
                "                for c in range(cy):\n"
                "                    for yy, xx, lo, hi, C in prepared:\n"
                "                        n_w = int(hi[c] - lo[c] + 1)\n"
                "                        y_hat[c, yy, xx] = decode_value(decoder, C[c, : n_w + 1].tolist(), n_w, "
                "int(lo[c]), int(hi[c]), Y_MAX)\n"
                "                continue\n"),)),
    # Clause 7.6 context input.
    HandFault("context-input-unclipped", "entropy", "the context model reads y_hat without Clip3(-255, 255)",
              (("    Q = clip3(-CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX, y_hat)\n", "    Q = y_hat\n"),)),
    # Clause 7.7 gather input order.
    HandFault("gather-input-order", "entropy", "gather input concatenated as ctx3, ctx5, ctx7, hyper",
              (("G = [np.concatenate([hyper_at] + contexts)]", "G = [np.concatenate(contexts + [hyper_at])]"),)),
    # Clause 7.8 mixture parameters.
    HandFault("mixture-layout-channel-major", "entropy", "P read as [q][c][k] instead of [q][k][c]",
              (("p = np.asarray(P, dtype=np.int64).reshape(-1, 3, nk, cy).transpose(0, 3, 1, 2).reshape(-1, 3, nk)",
                "p = np.asarray(P, dtype=np.int64).reshape(-1, 3, cy, nk).transpose(0, 2, 1, 3).reshape(-1, 3, nk)"),)),
    HandFault("mixture-scale-floor", "entropy", "scale index P >> 4 instead of Round2(P, 4)",
              (("sidx = clip3(0, NUM_SCALES - 1, round2(raw_scale, SCALE_INDEX_FRAC_BITS))",
                "sidx = clip3(0, NUM_SCALES - 1, raw_scale >> SCALE_INDEX_FRAC_BITS)"),)),
    HandFault("mixture-weight-rounded", "entropy", "mixture weights rounded instead of floored",
              (("w = 1 + floor_div(e * ((1 << WEIGHT_BITS) - nk), E)",
                "w = 1 + floor_div(e * ((1 << WEIGHT_BITS) - nk) + E // 2, E)"),)),
    HandFault("mixture-weight-2^14", "entropy", "mixture weights scaled by 2^14 instead of 2^14 - K",
              (("w = 1 + floor_div(e * ((1 << WEIGHT_BITS) - nk), E)", "w = 1 + floor_div(e * (1 << WEIGHT_BITS), E)"),)),
    HandFault("mixture-softmax-no-floor", "entropy", "linearised softmax without Max(1, .): e[k] can be 0 or less",
              (("e = np.maximum(1, LOGIT_ONE + logit - m)", "e = LOGIT_ONE + logit - m"),)),
    # Clause 7.9 windows and CDFs.
    HandFault("window-centre-floor", "entropy", "clamped window centre (lo + hi) >> 1 instead of Round2(lo + hi, 1)",
              (("centre = round2(lo + hi, 1)", "centre = (lo + hi) >> 1"),)),
    HandFault("window-span-floor", "entropy", "window span 6 SCALE_Q >> 2 instead of Round2(6 SCALE_Q, 2)",
              (("span = round2(WINDOW_TAIL * SCALE_Q[mix.scale_index], SCALE_Q_BITS - MEAN_FRAC_BITS)",
                "span = (WINDOW_TAIL * SCALE_Q[mix.scale_index]) >> (SCALE_Q_BITS - MEAN_FRAC_BITS)"),)),
    HandFault("window-clamp-asymmetric", "entropy", "clamped window centre - 64 .. centre + 63",
              (("hi = np.where(wide, centre + MAX_HALF_WINDOW, hi)", "hi = np.where(wide, centre + MAX_HALF_WINDOW - 1, hi)"),)),
    HandFault("window-clamp-128", "entropy", "windows clamped when hi - lo >= 128",
              (("wide = hi - lo > 2 * MAX_HALF_WINDOW", "wide = hi - lo >= 2 * MAX_HALF_WINDOW"),)),
    HandFault("cdf-floor-not-ceil", "entropy", "C(j) = j + D - floor(D n / 2^16) (floor instead of ceiling)",
              (("return j + D - ((D * n[:, None] + (1 << PROB_BITS) - 1) >> PROB_BITS)",
                "return j + D - ((D * n[:, None]) >> PROB_BITS)"),)),
    HandFault("cdf-n-without-escape", "entropy", "C(j) with n = n_w instead of n_w + 1",
              (("    n = n_w + 1\n", "    n = n_w\n"),)),
    HandFault("cdf-boundary-plus-half", "entropy", "window boundary B = 64 (lo + j) + 32 instead of - 32",
              (("B = (lo[:, None] + j) * (1 << MEAN_FRAC_BITS) - (1 << (MEAN_FRAC_BITS - 1))",
                "B = (lo[:, None] + j) * (1 << MEAN_FRAC_BITS) + (1 << (MEAN_FRAC_BITS - 1))"),)),
    HandFault("cdf-d-unclipped", "entropy", "d = B - mean without Clip3(-2^15, 2^15)",
              (("d = clip3(-MEAN_DIFF_MAX, MEAN_DIFF_MAX, B - mix.means[:, k, None])", "d = B - mix.means[:, k, None]"),)),
    HandFault("cdf-d-clip-2^15-1", "entropy", "d clipped to +-(2^15 - 1) instead of +-2^15",
              (("d = clip3(-MEAN_DIFF_MAX, MEAN_DIFF_MAX, B - mix.means[:, k, None])",
                "d = clip3(1 - MEAN_DIFF_MAX, MEAN_DIFF_MAX - 1, B - mix.means[:, k, None])"),)),
    HandFault("cdf-phi-index-symmetric", "entropy", "Phi index rounded symmetrically (ties away from zero)",
              (("i = clip3(-half, half, round2(u, MEAN_FRAC_BITS + INV_SCALE_BITS - PHI_FRAC_BITS))",
                "i = clip3(-half, half, np.sign(u) * round2(np.abs(u), MEAN_FRAC_BITS + INV_SCALE_BITS - "
                "PHI_FRAC_BITS))"),)),
    HandFault("cdf-phi-index-unclipped", "entropy", "Phi index not clipped to -2048 .. 2048 (wraps the table)",
              (("i = clip3(-half, half, round2(u, MEAN_FRAC_BITS + INV_SCALE_BITS - PHI_FRAC_BITS))",
                "i = (round2(u, MEAN_FRAC_BITS + INV_SCALE_BITS - PHI_FRAC_BITS) + half) % (2 * half + 1) - half"),)),
    HandFault("cdf-no-m0", "entropy", "C(j) from M(j) instead of D(j) = M(j) - M(0)",
              (("    D = M - M[:, :1]\n", "    D = M\n"),)),
    HandFault("cdf-mixture-rounded", "entropy", "M(j) rounded (+ 2^13) before >> 14",
              (("    M = M >> WEIGHT_BITS\n", "    M = (M + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS\n"),)),
    # Clause 10 tables.
    HandFault("table-phi-top", "tables", "PHI[4096] off by one (65535)",
              (('PHI = _load("gaussian_cdf.txt")', 'PHI = _load("gaussian_cdf.txt")\nPHI[4096] -= 1'),)),
    HandFault("table-phi-bottom", "tables", "PHI[0] off by one (1)",
              (('PHI = _load("gaussian_cdf.txt")', 'PHI = _load("gaussian_cdf.txt")\nPHI[0] += 1'),)),
    HandFault("table-phi-centre", "tables", "PHI[2048] off by one (32769)",
              (('PHI = _load("gaussian_cdf.txt")', 'PHI = _load("gaussian_cdf.txt")\nPHI[2048] += 1'),)),
    HandFault("table-phi-shifted", "tables", "PHI indexed without the offset 2048 (read one entry to the left)",
              (('PHI = _load("gaussian_cdf.txt")', 'PHI = _load("gaussian_cdf.txt")\nPHI = np.concatenate([PHI[:1], PHI[:-1]])'),)),
    HandFault("table-scale-first", "tables", "SCALE_Q[0] off by one (29)",
              (('SCALE_Q = _load("scale_q.txt")', 'SCALE_Q = _load("scale_q.txt")\nSCALE_Q[0] += 1'),)),
    HandFault("table-scale-last", "tables", "SCALE_Q[159] off by one (27612)",
              (('SCALE_Q = _load("scale_q.txt")', 'SCALE_Q = _load("scale_q.txt")\nSCALE_Q[159] -= 1'),)),
    HandFault("table-inv-scale-first", "tables", "INV_SCALE[0] off by one (37237)",
              (('INV_SCALE = _load("inv_scale.txt")', 'INV_SCALE = _load("inv_scale.txt")\nINV_SCALE[0] += 1'),)),
    HandFault("table-inv-scale-last", "tables", "INV_SCALE[159] off by one (37)",
              (('INV_SCALE = _load("inv_scale.txt")', 'INV_SCALE = _load("inv_scale.txt")\nINV_SCALE[159] -= 1'),)),
    # Clause 7.11 inverse gain.
    HandFault("inverse-gain-floor", "synthesis", "inverse gain y * g >> G instead of Round2(y * g, G)",
              (('return clip3(-A0, A0, round2(y_hat * gain, model.header["inv_gain_shift"]))',
                'return clip3(-A0, A0, (y_hat * gain) >> model.header["inv_gain_shift"])'),)),
    HandFault("inverse-gain-rate-minus-one", "synthesis", "inverse gain vector r - 1 (1-based rate index)",
              (("gain = model.inv_gain[rate_index][:, None, None]", "gain = model.inv_gain[rate_index - 1][:, None, None]"),)),
    HandFault("inverse-gain-unclipped", "synthesis", "S0 without Clip3(-A0, A0)",
              (('return clip3(-A0, A0, round2(y_hat * gain, model.header["inv_gain_shift"]))',
                'return round2(y_hat * gain, model.header["inv_gain_shift"])'),)),
    # Clause 7.12 and 7.13 synthesis output.
    HandFault("output-clip-a", "synthesis", "the last synthesis layer clipped to +-255 instead of 0 .. 255",
              (('S7 = layer(L["synthesis.6"], S6, bounds=SAMPLE_RANGE)', 'S7 = layer(L["synthesis.6"], S6)'),)),
    HandFault("output-wraps", "synthesis", "samples converted to 8 bits by wrapping instead of the clip of clause 7.12",
              (('S7 = layer(L["synthesis.6"], S6, bounds=SAMPLE_RANGE)', 'S7 = layer(L["synthesis.6"], S6, bounds=(-32767, 32767))'),)),
    HandFault("crop-centred", "synthesis", "the output cropped from the centre instead of the top-left corner",
              (("return np.ascontiguousarray(S7[:, :height, :width], dtype=np.uint8)",
                "return np.ascontiguousarray(S7[:, (S7.shape[1] - height) // 2:][:, :height, (S7.shape[2] - width) // 2:]"
                "[:, :, :width], dtype=np.uint8)"),)),
    # Clause 9 model file.
    HandFault("model-mask-not-checked", "model_file", "context weights outside the causal mask accepted",
              (('        if np.any(arrays[f"{spec.name}.weight"][:, :, outside]):\n', "        if False:\n"),)),
    HandFault("model-mask-centre-allowed", "model_file", "context weights at the centre tap accepted",
              (("        outside = ~causal_mask(spec.kernel)\n",
                "        outside = ~causal_mask(spec.kernel)\n        outside[spec.kernel // 2, spec.kernel // 2] = False\n"),)),
    HandFault("model-accumulator-le", "model_file", "accumulator bound checked as <= 2^31 instead of < 2^31",
              (("bad = np.flatnonzero(worst >= ACCUMULATOR_LIMIT)", "bad = np.flatnonzero(worst > ACCUMULATOR_LIMIT)"),)),
    HandFault("model-accumulator-no-bias", "model_file", "accumulator bound without |b|",
              (("worst = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(axis=1) * in_max + np.abs(layer.bias)",
                "worst = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(axis=1) * in_max"),)),
    HandFault("model-accumulator-max-weight", "model_file", "accumulator bound as max|W| * taps * in_max (a weaker form)",
              (("worst = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(axis=1) * in_max + np.abs(layer.bias)",
                "worst = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).max(axis=1, initial=0) * in_max + "
                "np.abs(layer.bias)"),)),
    HandFault("model-in-max-gather-first-context", "model_file", "gather.0's in_max from context.3 alone",
              (("bounds[GATHER[0].name] = max(clip[s.name] for s in [HYPER_SYNTHESIS[-1], *CONTEXT])",
                "bounds[GATHER[0].name] = clip[CONTEXT[0].name]"),)),
    HandFault("model-in-max-synthesis-input-255", "model_file", "synthesis.0's in_max taken as 255",
              (('bounds[SYNTHESIS[0].name] = model_header["synthesis_input_clip"]', "bounds[SYNTHESIS[0].name] = 255"),)),
    HandFault("model-weight-range-asymmetric", "model_file", "weights allowed down to -2^(b-1) (two's complement range)",
              (('if np.abs(arrays[f"{name}.weight"]).max(initial=0) > wmax:',
                'if np.abs(arrays[f"{name}.weight"]).max(initial=0) > wmax + 1:'),)),
    HandFault("model-z-window-one-sided", "model_file", "only the low end of the z window checked against Z_MAX",
              (("if abs(lo) > Z_MAX or abs(lo + n_w - 1) > Z_MAX:", "if abs(lo) > Z_MAX:"),)),
    HandFault("model-z-cdf-total-65536", "model_file", "z_cdf[c][n_w] = 65536 accepted (escape frequency 0)",
              (("row[n_w] > 65535", "row[n_w] > 65536"),)),
    HandFault("model-z-cdf-frequency-0", "model_file", "z_cdf frequencies of 0 accepted (non-decreasing)",
              (("np.any(np.diff(row[: n_w + 1]) < 1)", "np.any(np.diff(row[: n_w + 1]) < 0)"),)),
    HandFault("model-rates-limit-63", "model_file", "num_rates limited to 63 (rate index in 6 bits)",
              (('_check_range("header field \'num_rates\'", header["num_rates"], 1, MAX_RATES, where)',
                '_check_range("header field \'num_rates\'", header["num_rates"], 1, MAX_RATES - 1, where)'),)),
    HandFault("model-channels-limit-2047", "model_file", "layer outputs limited to 2047",
              (("        if not 1 <= out <= MAX_CHANNELS:\n", "        if not 1 <= out < MAX_CHANNELS:\n"),)),
    HandFault("model-latent-limit-227-not-derived", "model_file", "gather.6's outputs not compared with 3 K C_y",
              (("    if gather_out != 3 * NUM_MIXTURES * cy:\n", "    if False:\n"),)),
    HandFault("model-z-count-limit-1023", "model_file", "z_count limited to 1023",
              (("if z_count.min() < 1 or z_count.max() > MAX_Z_COUNT:", "if z_count.min() < 1 or z_count.max() >= MAX_Z_COUNT:"),)),
    HandFault("model-shift-limit-26", "model_file", "layer shifts limited to 26",
              (("if shift.min(initial=0) < 0 or shift.max(initial=0) > MAX_SHIFT:",
                "if shift.min(initial=0) < 0 or shift.max(initial=0) >= MAX_SHIFT:"),)),
    HandFault("model-inv-gain-limit-65535", "model_file", "inv_gain limited to 65535",
              (("if inv_gain.min(initial=0) < 0 or inv_gain.max(initial=0) > MAX_INV_GAIN:",
                "if inv_gain.min(initial=0) < 0 or inv_gain.max(initial=0) >= MAX_INV_GAIN:"),)),
    HandFault("model-gain-shift-from-1", "model_file", "inv_gain_shift must be at least 1",
              (('_check_range("header field \'inv_gain_shift\'", header["inv_gain_shift"], 0, MAX_INV_GAIN_SHIFT, where)',
                '_check_range("header field \'inv_gain_shift\'", header["inv_gain_shift"], 1, MAX_INV_GAIN_SHIFT, where)'),)),
    # Clause 6.2 check order.
    HandFault("rate-check-before-model", "decoder", "rate index checked against a default R = 6 before the model",
              (("    model = _store(models).get(header.model_id)", "    if header.rate_index >= 6:\n"
                "        raise RateIndexOutOfRange('rate index', offset=10)\n"
                "    model = _store(models).get(header.model_id)"),)),
    HandFault("rate-check-gt", "decoder", "rate index R accepted (rate_index > R rejected only)",
              (("    if header.rate_index >= model.num_rates:", "    if header.rate_index > model.num_rates:"),)),
)


def _changed_lines(old_text: str, new_text: str) -> list[int]:
    """Lines of old_text that a text replacement touches (1-based)."""
    import difflib

    a, b = old_text.splitlines(), new_text.splitlines()
    lines = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag != "equal":
            lines.update(range(i1 + 1, max(i2, i1 + 1) + 1))
    return sorted(lines)


def hand_mutants(sources: dict) -> tuple[list[Mutant], list[str]]:
    """The applicable hand-written faults, and the names of those whose text is not in the tree."""
    out, missing = [], []
    for fault in HAND_FAULTS:
        src = sources.get(fault.module)
        if src is None:
            missing.append(fault.name)
            continue
        text = src.text
        ok = True
        for old, new in fault.edits:
            if text.count(old) != 1:
                ok = False
                break
            text = text.replace(old, new)
        if not ok:
            missing.append(fault.name)
            continue
        lines = _changed_lines(src.text, text)
        # A change at module level (tables, constants) takes effect at import: every vector.
        out.append(Mutant(key=f"{fault.module}:hand:{fault.name}", module=fault.module, function="hand",
                          line=lines[0] if lines else 0, kind="hand", original=fault.edits[0][0],
                          replacement=fault.edits[0][1], lines=lines, hand=True, description=fault.description,
                          text=text))
    return out, missing


def all_mutants(modules) -> tuple[list[Mutant], list[str], dict]:
    sources = {m: _Source(m, ROOT / "refdec" / f"{m}.py") for m in modules}
    mutants = []
    for m in modules:
        mutants += ast_mutants(sources[m])
    hand, missing = hand_mutants(sources)
    mutants += hand
    keys = Counter(mu.key for mu in mutants)
    assert not [k for k, n in keys.items() if n > 1], "mutant keys must be unique"
    return mutants, missing, sources


# --- the worker (a subprocess per mutant) ----------------------------------------------------------

class _MutatedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads refdec.MODULE from the given source instead of its file."""

    def __init__(self, fullname: str, source: str, path: str):
        self.fullname, self.source, self.path = fullname, source, path

    def find_spec(self, fullname, path, target=None):
        if fullname != self.fullname:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=self.path)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__file__ = self.path
        exec(compile(self.source, self.path, "exec"), module.__dict__)


def _stage_sha(t) -> str | None:
    import numpy as np

    a = np.asarray(t)
    b = np.ascontiguousarray(a, dtype="<i4")
    if a.dtype != b.dtype and not np.array_equal(a, b):
        return None  # not representable as int32: cannot equal the golden tensor
    return hashlib.sha256(b.tobytes()).hexdigest()


def _check_vector(decode, store, vector: dict, vectors_dir: Path, stages: bool):
    """(True, '') if refdec (as loaded) passes the vector, else (False, why). vector["fast"] says
    which path decodes it (None: refdec.decode's default, in a tree without the literal path)."""
    import numpy as np
    from refdec import RefdecError

    stream = (vectors_dir / vector["bitstream"]["file"]).read_bytes()
    kwargs = {} if vector.get("fast") is None else {"fast": vector["fast"]}
    trace = stages and vector["kind"] == "valid"
    try:
        decoded = decode(stream, store, trace=trace, **kwargs)
    except RefdecError as exc:
        name = type(exc).__name__
        if vector["kind"] == "invalid":
            return (True, "") if name == vector["expected_error"] else (False, f"wrong class {name}")
        return False, f"valid stream rejected with {name}"
    except MemoryError:
        return False, "crash MemoryError"
    except RecursionError:
        return False, "crash RecursionError"
    except Exception as exc:  # noqa: BLE001 - a crash kills the mutant
        return False, f"crash {type(exc).__name__}"
    if vector["kind"] == "invalid":
        return False, "invalid stream accepted"
    image = np.asarray(decoded.image)
    g = vector["golden"]
    if image.shape != (3, g["height"], g["width"]) or image.min(initial=0) < 0 or image.max(initial=0) > 255:
        return False, "wrong output shape or range"
    if hashlib.sha256(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest() != g["samples_sha256"]:
        return False, "wrong samples"
    if trace:
        got = decoded.stages
        if set(got) != set(vector["stages"]):
            return False, "wrong stage names"
        for name, want in vector["stages"].items():
            t = got[name]
            if list(np.shape(t)) != want["shape"] or _stage_sha(t) != want["sha256"]:
                return False, f"stage {name} differs"
    return True, ""


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    except (ImportError, ValueError, OSError):
        pass


def _install(job: dict) -> None:
    sys.path.insert(0, job["root"])
    if job.get("source") is not None:
        sys.meta_path.insert(0, _MutatedFinder(f"refdec.{job['module']}", job["source"],
                                               str(Path(job["root"]) / "refdec" / f"{job['module']}.py")))


def worker(job: dict) -> int:
    """Decode job['vectors'] in order with the mutated module; one line per vector on stdout:
    'B ID' before, 'E ID ok' or 'E ID kill WHY' after; stops at the first kill; 'D' when every
    vector passed (a worker that ends without it died, and --resume runs its mutant again)."""
    _limit_memory()
    _install(job)
    out = sys.stdout
    try:
        import refdec

        store = refdec.ModelStore([Path(job["vectors_dir"]) / "models"])
        decode = refdec.decode
    except BaseException as exc:  # noqa: BLE001 - a module that does not import kills the mutant
        out.write(f"I import-failed {type(exc).__name__}\n")
        out.flush()
        return 0
    vectors_dir = Path(job["vectors_dir"])
    for vector in job["vectors"]:
        out.write(f"B {vector['id']}\n")
        out.flush()
        t0 = time.perf_counter()
        ok, why = _check_vector(decode, store, vector, vectors_dir, job["stages"])
        out.write(f"E {vector['id']} {'ok' if ok else 'kill'} {time.perf_counter() - t0:.3f} {why}\n")
        out.flush()
        if not ok and job.get("stop", True):
            return 0
    out.write("D\n")  # every vector decoded: only now is the mutant a survivor
    out.flush()
    return 0


def _model_digest(model) -> str:
    """Everything of a parsed model that decoding reads: header, every layer's arrays and
    structure, the inverse gains and the z tables, the model id."""
    import numpy as np

    h = hashlib.sha256(json.dumps(model.header, sort_keys=True, default=str).encode())
    for name in sorted(model.layers):
        L = model.layers[name]
        h.update(repr((name, L.clip, L.kernel, L.depth_to_space, L.leaky)).encode())
        for a in (L.weight, L.bias, L.shift):
            h.update(repr(np.shape(a)).encode() + np.ascontiguousarray(a, dtype=np.int64).tobytes())
    for a in (model.inv_gain, model.z_lo, model.z_count, model.z_cdf):
        h.update(repr(np.shape(a)).encode() + np.ascontiguousarray(a, dtype=np.int64).tobytes())
    h.update(bytes(model.model_id))
    return h.hexdigest()


def models_worker(job: dict) -> int:
    """Parse every model file of the set with the (mutated) refdec: JSON {file name: 'model DIGEST'
    | 'error CLASS' | 'crash TYPE'} on stdout."""
    _limit_memory()
    _install(job)
    result = {}
    try:
        import refdec

        for path in sorted((Path(job["vectors_dir"]) / "models").glob("*.npz")):
            try:
                result[path.name] = "model " + _model_digest(refdec.parse_model(path.read_bytes(), where=path.name))
            except refdec.RefdecError as exc:
                result[path.name] = "error " + type(exc).__name__
            except BaseException as exc:  # noqa: BLE001
                result[path.name] = "crash " + type(exc).__name__
    except BaseException as exc:  # noqa: BLE001
        result = {"(import)": "crash " + type(exc).__name__}
    print(json.dumps(result))
    return 0


def coverage_worker(job: dict) -> int:
    """Which lines of the normative modules run where, each in a fresh interpreter state (refdec
    imported anew): JSON {"import": {module: lines}, "parse": {model file: {module: lines}},
    "decode": {vector id: {module: lines}}} on stdout. "decode" is measured with every model
    already parsed (an invalid one raises its error without running the parser again), so that a
    mutant whose lines run only while a model file is parsed can be judged by the models it
    parses (see run_parse_only)."""
    import coverage

    sys.path.insert(0, job["root"])
    paths = {str(Path(job["root"]) / "refdec" / f"{m}.py"): m for m in job["modules"]}
    cov = coverage.Coverage(data_file=None, include=list(paths), config_file=False)
    vectors_dir = Path(job["vectors_dir"])
    model_files = sorted((vectors_dir / "models").glob("*.npz"))

    def fresh(context):
        for name in [n for n in sys.modules if n == "refdec" or n.startswith("refdec.")]:
            del sys.modules[name]
        cov.switch_context(context)
        import refdec
        return refdec

    cov.start()
    for path in model_files:
        fresh("import")
        refdec = sys.modules["refdec"]
        cov.switch_context("parse:" + path.name)
        try:
            refdec.parse_model(path.read_bytes(), where=path.name)
        except refdec.RefdecError:
            pass
    for vector in job["vectors"]:
        refdec = fresh("import")
        cov.stop()
        parsed = {}
        for path in model_files:
            data = path.read_bytes()
            try:
                parsed[refdec.model_file.model_id_of(data)] = refdec.parse_model(data, where=path.name)
            except refdec.RefdecError as exc:
                parsed[refdec.model_file.model_id_of(data)] = exc
        cov.start()

        class Parsed:
            def get(self, model_id):
                if model_id not in parsed:
                    return refdec.ModelStore().get(model_id)  # UnknownModel
                if isinstance(parsed[model_id], Exception):
                    raise parsed[model_id]
                return parsed[model_id]

        cov.switch_context("decode:" + vector["id"])
        ok, why = _check_vector(refdec.decode, Parsed(), vector, vectors_dir, job["stages"])
        if not ok:
            cov.stop()
            print(json.dumps({"error": f"{vector['id']}: {why}"}))
            return 1
    cov.stop()
    data = cov.get_data()
    result: dict = {"import": defaultdict(set), "parse": defaultdict(lambda: defaultdict(set)),
                    "decode": defaultdict(lambda: defaultdict(set))}
    for path, module in paths.items():
        for line, contexts in (data.contexts_by_lineno(path) or {}).items():
            for ctx in contexts:
                if ctx == "import":
                    result["import"][module].add(line)
                elif ctx.startswith("parse:"):
                    result["parse"][ctx[6:]][module].add(line)
                elif ctx.startswith("decode:"):
                    result["decode"][ctx[7:]][module].add(line)
    print(json.dumps(result, default=sorted))
    return 0


# --- the driver ------------------------------------------------------------------------------------

def vector_set_digest(manifest: dict) -> str:
    """The identity of a vector set that a score belongs to: refcodec.make_vectors.vector_set_digest
    (the manifest without its statistics.mutation block)."""
    from refcodec.make_vectors import vector_set_digest as digest

    return digest(manifest)


def _load_vectors(vectors_dir: Path, subsets=None) -> tuple[list[dict], str]:
    manifest = json.loads((vectors_dir / "manifest.json").read_bytes())
    vectors = manifest["vectors"]
    if subsets:
        vectors = [v for v in vectors if set(subsets) & (set(v["subsets"]) | {v["kind"], "all"})]
    return vectors, vector_set_digest(manifest)


def _env() -> dict:
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return env


_RUNNING: set = set()  # workers alive, ended if the harness is ended (SIGTERM, SIGINT)


def _end_workers(signum=None, frame=None):
    for proc in list(_RUNNING):
        _kill(proc)
    if signum is not None:
        raise SystemExit(128 + signum)


def _spawn(mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(), cwd=ROOT,
                            start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@dataclass
class Outcome:
    status: str  # killed | survived
    vector: str = ""  # the vector that killed it
    why: str = ""
    ran: int = 0  # vectors decoded
    quick: bool = False  # killed by a vector of the quick subset
    seconds: float = 0.0


def run_job(job: dict, budgets: dict, quick_ids: set) -> Outcome:
    """Run one worker; kill it when a vector runs past its budget (a hang kills the mutant)."""
    t0 = time.perf_counter()
    proc = _spawn("--worker")
    _RUNNING.add(proc)
    lines: queue.Queue = queue.Queue()

    def reader():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    current, ran = None, 0
    deadline = time.monotonic() + 120.0  # import and model loading
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                _kill(proc)
                vid = current or "(import)"
                return Outcome("killed", vid, "timeout", ran, vid in quick_ids, time.perf_counter() - t0)
            if line is None:  # the worker ended without its D line: it died (or never started)
                proc.wait()
                vid = current or "(start)"
                return Outcome("killed", vid, f"worker died (exit {proc.returncode})", ran, vid in quick_ids,
                               time.perf_counter() - t0)
            if line == "D":
                proc.wait()
                return Outcome("survived", ran=ran, seconds=time.perf_counter() - t0)
            parts = line.split(" ", 4)
            if parts[0] == "I":
                proc.wait()
                return Outcome("killed", "(import)", " ".join(parts[1:]), 0, True, time.perf_counter() - t0)
            if parts[0] == "B":
                current = parts[1]
                deadline = time.monotonic() + budgets.get(current, TIMEOUT_SLACK)
            elif parts[0] == "E":
                ran += 1
                current = None
                deadline = time.monotonic() + 60.0
                if parts[2] == "kill":
                    proc.wait()
                    return Outcome("killed", parts[1], parts[4] if len(parts) > 4 else "", ran, parts[1] in quick_ids,
                                   time.perf_counter() - t0)
    finally:
        if proc.poll() is None:
            _kill(proc)
        _RUNNING.discard(proc)


def _coverage_map(vectors: list[dict], vectors_dir: Path, modules, stages: bool, cache_dir: Path,
                  fingerprint: str, log) -> dict:
    cache = cache_dir / f"coverage-{fingerprint}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    log(f"measuring which lines each of {len(vectors)} vectors executes (once per tree and vector set)")
    proc = _spawn("--coverage-worker")
    job = {"root": str(ROOT), "modules": list(modules), "vectors": vectors, "vectors_dir": str(vectors_dir),
           "stages": stages}
    out, _ = proc.communicate(json.dumps(job))
    result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": "no output"}
    if "error" in result or proc.returncode:
        raise SystemExit(f"mutate: coverage run failed: {result.get('error', proc.returncode)}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    return result


def literal_size(vector: dict) -> bool:
    """Whether the literal path decodes this vector in the harness: an invalid one, or a valid one
    whose padded size (clause 5.4) has at most LITERAL_MAX_SAMPLES samples. The literal latent
    decoding reads the whole latent at every position, so its time grows with the square of the
    padded size, not with W x H (a 8192 x 1 strip pads to 8192 x 64)."""
    if vector["kind"] != "valid":
        return True
    w, h = vector["golden"]["width"], vector["golden"]["height"]
    return 64 * ((w + 63) // 64) * 64 * ((h + 63) // 64) <= LITERAL_MAX_SAMPLES


def _models_digests(module, source, vectors_dir: Path, cache_dir: Path | None = None, fingerprint: str = "") -> dict:
    """{model file: digest or error} of every model file of the set, parsed by refdec with the
    mutated module (None: unmutated; cached)."""
    cache = cache_dir / f"models-{fingerprint}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    proc = _spawn("--models-worker")
    _RUNNING.add(proc)
    try:
        out, _ = proc.communicate(json.dumps({"root": str(ROOT), "module": module, "source": source,
                                              "vectors_dir": str(vectors_dir)}), timeout=600)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return {"(timeout)": "crash"}
    finally:
        _RUNNING.discard(proc)
    lines = out.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {"(no output)": "crash"}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(result))
    return result


def _order(vectors: list[dict], times: dict, quick_ids: set) -> list[dict]:
    return sorted(vectors, key=lambda v: (v["id"] not in quick_ids, times.get(v["id"], 1e9), v["id"]))


class Coverage:
    """The coverage worker's map: which lines run at import, while each model file is parsed, and
    while each vector is decoded (with its model parsed)."""

    def __init__(self, data: dict, vectors: list[dict]):
        self.imports = {m: set(lines) for m, lines in data["import"].items()}
        self.parse = {f: {m: set(lines) for m, lines in per.items()} for f, per in data["parse"].items()}
        self.decode = {v: {m: set(lines) for m, lines in per.items()} for v, per in data["decode"].items()}
        self.model_file = {v["id"]: Path(v["model"]["file"]).name for v in vectors}
        self.decode_any: dict = defaultdict(set)
        for per in self.decode.values():
            for m, lines in per.items():
                self.decode_any[m] |= lines

    def vectors_for(self, mutant: Mutant, vectors: list[dict]) -> list[dict]:
        """The vectors that execute a line the mutant changes: at import (every vector), while its
        model file is parsed, or while it is decoded."""
        lines = set(mutant.lines)
        if lines & self.imports.get(mutant.module, set()):
            return list(vectors)
        return [v for v in vectors
                if lines & (self.decode.get(v["id"], {}).get(mutant.module, set())
                            | self.parse.get(self.model_file[v["id"]], {}).get(mutant.module, set()))]

    def parse_only(self, mutant: Mutant) -> bool:
        """Whether the mutant's lines run only while model files are parsed (never at import, never
        while decoding with the model parsed): its effect on any vector is through the models."""
        lines = set(mutant.lines)
        return not (lines & (self.imports.get(mutant.module, set()) | self.decode_any.get(mutant.module, set())))


UNTESTABLE = "Untestable:"  # an argument that begins so: not equivalent, but no vector within the set's budget can
# tell it (a vector far beyond the set's size or time); counted against the score, listed apart from the
# equivalent ones


def _status(key: str, arguments: dict) -> str:
    """equivalent, untestable (by the argument's first word) or open, for a mutant no vector killed."""
    if key not in arguments:
        return "open"
    return "untestable" if arguments[key].startswith(UNTESTABLE) else "equivalent"


def _score(counts: dict) -> float | None:
    judged = counts["killed"] + counts["open"] + counts.get("untestable", 0)
    return round(100.0 * counts["killed"] / judged, 2) if judged else None


def _tree_fingerprint(modules, vectors_sha: str, literal: bool, stages: bool, vector_ids) -> str:
    h = hashlib.sha256(vectors_sha.encode())
    h.update(",".join(sorted(vector_ids)).encode())
    for m in modules:
        h.update((ROOT / "refdec" / f"{m}.py").read_bytes())
    h.update(f"{literal}{stages}".encode())
    return h.hexdigest()[:16]


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] in ("--worker", "--coverage-worker", "--models-worker"):
        job = json.loads(sys.stdin.read())
        return {"--worker": worker, "--coverage-worker": coverage_worker, "--models-worker": models_worker}[
            sys.argv[1]](job)
    ap = argparse.ArgumentParser(prog="python tools/mutate.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("vectors", nargs="?", type=Path, default=ROOT / "vectors")
    ap.add_argument("--modules", help="comma-separated normative modules to mutate (default: all)")
    ap.add_argument("--subset", action="append", default=[], metavar="NAME",
                    help="only the vectors of this manifest subset (repeatable; for tests: the score is then "
                         "that of the subset)")
    ap.add_argument("--seed", type=int, default=20, help="seed of the sample and of the run order (default 20)")
    ap.add_argument("--sample", type=int, default=0, help="run a seeded sample of this many mutants (0: all)")
    ap.add_argument("--only", nargs="+", default=[], metavar="KEY", help="run only these mutant keys (or fnmatch patterns)")
    ap.add_argument("--kinds", help="comma-separated mutant kinds to run (hand, operator, comparison, ...)")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the results (default results/mutation/)")
    ap.add_argument("--no-write", action="store_true", help="report only; write nothing")
    ap.add_argument("--path", choices=("auto", "fast", "literal"), default="auto")
    ap.add_argument("--no-stages", action="store_true", help="compare samples only, not the clause 11.3 stages")
    ap.add_argument("--equivalent", type=Path, default=None,
                    help="equivalence arguments, JSON {key: argument} (default OUT/equivalent.json)")
    ap.add_argument("--previous", type=Path, default=None, help="an earlier survivors.json: report what kills them now")
    ap.add_argument("--rescore", type=Path, default=None, metavar="JSON",
                    help="run nothing: rebuild the report of an earlier run (its --json) with the current "
                         "equivalence arguments; mutants no longer in the tree (a line since marked "
                         "informative) are left out")
    ap.add_argument("--resume", type=Path, default=None, metavar="JSON",
                    help="an earlier full run's --json: keep its kills that still hold (the mutated module and "
                         "the killing vector unchanged since its commit) and run every other mutant on today's "
                         "vectors")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--json", type=Path, default=None, help="also write every mutant's outcome to this file")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "refdec-mutate")
    ap.add_argument("--update-vectors", action="store_true",
                    help="after a full run, write the score into VECTORS/manifest.json and README.md (as "
                         "refcodec.make_vectors would on regeneration)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    def log(msg):
        if not args.quiet:
            print(f"mutate: {msg}", file=sys.stderr, flush=True)

    sys.path.insert(0, str(ROOT))
    signal.signal(signal.SIGTERM, _end_workers)
    modules = normative_modules()
    if args.modules:
        wanted = args.modules.split(",")
        unknown = set(wanted) - set(modules)
        if unknown:
            print(f"mutate: not normative modules: {sorted(unknown)} (they are {', '.join(modules)})", file=sys.stderr)
            return 2
    mutants, missing, sources = all_mutants(modules)
    if args.modules:
        mutants = [m for m in mutants if m.module in wanted]
    if args.kinds:
        mutants = [m for m in mutants if m.kind in args.kinds.split(",")]
    if args.only:
        from fnmatch import fnmatchcase

        mutants = [m for m in mutants if any(m.key == p or fnmatchcase(m.key, p) for p in args.only)]
    if missing:
        log(f"hand-written faults whose text is not in this tree (not run): {', '.join(missing)}")
    if args.rescore:
        return rescore(args, mutants, missing, log)
    rng = random.Random(args.seed)
    if args.sample and args.sample < len(mutants):
        mutants = sorted(rng.sample(mutants, args.sample), key=lambda m: m.key)
    if args.list:
        for m in mutants:
            print(f"{m.key}\tline {m.line}\t{m.description}")
        print(f"{len(mutants)} mutants", file=sys.stderr)
        return 0
    if not mutants:
        print("mutate: no mutant selected", file=sys.stderr)
        return 2

    literal = args.path == "literal" or (args.path == "auto" and literal_path_available())
    if args.path == "literal" and not literal_path_available():
        print("mutate: --path literal: refdec.decode has no fast parameter in this tree", file=sys.stderr)
        return 2
    stages = not args.no_stages
    vectors, vectors_sha = _load_vectors(args.vectors, args.subset)
    if not vectors:
        print(f"mutate: no vector in subsets {args.subset}", file=sys.stderr)
        return 2
    skipped_large = []
    for v in vectors:
        v["fast"] = None if not literal else not literal_size(v)
    if literal:
        skipped_large = [v["id"] for v in vectors if v["fast"]]
    quick_ids = {v["id"] for v in vectors if "quick" in v["subsets"]}
    fingerprint = _tree_fingerprint(modules, vectors_sha, literal, stages, [v["id"] for v in vectors])

    # The unmutated decoder must pass every vector; its times set the budgets.
    times_file = args.cache / f"times-{fingerprint}.json"
    if times_file.is_file():
        times = json.loads(times_file.read_text())
    else:
        log(f"baseline: the unmutated decoder over {len(vectors)} vectors")
        job = {"root": str(ROOT), "module": None, "source": None, "vectors": vectors, "vectors_dir": str(args.vectors),
               "stages": stages, "stop": False}
        times, bad = {}, []
        proc = _spawn("--worker")
        out, _ = proc.communicate(json.dumps(job))
        for line in out.splitlines():
            parts = line.split(" ", 4)
            if parts[0] == "E":
                times[parts[1]] = float(parts[3])
                if parts[2] != "ok":
                    bad.append(f"{parts[1]}: {parts[4] if len(parts) > 4 else ''}")
        if bad or len(times) != len(vectors):
            print(f"mutate: the unmutated decoder fails: {bad[:5] or 'worker output incomplete'}", file=sys.stderr)
            return 2
        args.cache.mkdir(parents=True, exist_ok=True)
        times_file.write_text(json.dumps(times))
    budgets = {vid: TIMEOUT_FACTOR * t + TIMEOUT_SLACK for vid, t in times.items()}
    cover = Coverage(_coverage_map(vectors, args.vectors, modules, stages, args.cache, fingerprint, log), vectors)
    reference_models = _models_digests(None, None, args.vectors, args.cache, fingerprint)
    ordered = _order(vectors, times, quick_ids)

    log(f"{len(mutants)} mutants of {len(set(m.module for m in mutants))} modules, {len(vectors)} vectors, "
        f"{'literal' if literal else 'fast'} path, -j {args.jobs}")
    results: dict[str, Outcome] = {}
    unreached = []
    work = []
    for m in mutants:
        chosen = cover.vectors_for(m, ordered)
        if not chosen:
            unreached.append(m.key)
            results[m.key] = Outcome("survived", why="no vector executes the mutated code")
            continue
        work.append((m, chosen))
    resumed = None
    if args.resume:
        argued = set(load_arguments(args.equivalent or (args.out / "equivalent.json"), [m.key for m, _ in work]))
        reused, resumed = resumable_kills(args.resume, [m for m, _ in work], vectors, literal, stages, log,
                                          argued=argued)
        results.update(reused)
        work = [(m, chosen) for m, chosen in work if m.key not in reused]
    rng.shuffle(work)  # seeded: long and short jobs mixed
    t_start = time.perf_counter()
    done = 0
    lock = threading.Lock()

    def run_one(item):
        nonlocal done
        m, chosen = item
        outcome = None
        if cover.parse_only(m):
            # Decoding reads a model only through what parse_model returns: when the mutant parses
            # every model file of the set to the same model (or error class), no vector can tell.
            t0 = time.perf_counter()
            got = _models_digests(m.module, m.source, args.vectors)
            differ = {name for name, d in reference_models.items() if got.get(name) != d}
            if not differ:
                outcome = Outcome("survived", why="parses every model file of the set to the same model or error",
                                  seconds=time.perf_counter() - t0)
            else:
                chosen = [v for v in chosen if cover.model_file[v["id"]] in differ] or chosen
        if outcome is None:
            job = {"root": str(ROOT), "module": m.module, "source": m.source, "vectors": chosen,
                   "vectors_dir": str(args.vectors), "stages": stages}
            outcome = run_job(job, budgets, quick_ids)
        with lock:
            results[m.key] = outcome
            done += 1
            if outcome.status == "survived" or done % 50 == 0:
                log(f"[{done}/{len(work)}, {time.perf_counter() - t_start:.0f} s] {outcome.status}: {m.key}")

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(run_one, work))
    elapsed = time.perf_counter() - t_start
    if resumed:
        elapsed += resumed["seconds"]

    return finish(args, log, mutants, results, literal=literal, stages=stages, seed=args.seed, sample=args.sample,
                  vectors_sha=vectors_sha, elapsed=elapsed, missing=missing, skipped_large=skipped_large,
                  n_vectors=len(vectors), subsets=args.subset, resumed=resumed,
                  selection={k: v for k, v in (("modules", args.modules), ("kinds", args.kinds),
                                               ("only", args.only)) if v})


def _git_show(commit: str, path: str) -> bytes | None:
    try:
        return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


# Kills that depend on the machine's load rather than on the decoded result; --resume runs them again.
LOAD_SENSITIVE = ("timeout", "worker died")


def resumable_kills(source, mutants, vectors: list[dict], literal: bool, stages: bool, log, show=_git_show,
                    argued=frozenset()):
    """--resume: the kills of an earlier full run (its --json: a path or the loaded document) that
    hold on today's tree and vectors.

    A kill is kept when the earlier run used the same path and stage comparison, the mutated
    module's source at the earlier run's commit equals today's (so the mutant is the same code),
    and the vector that killed it is in today's set with the same manifest entry as in the vector
    set of that commit (the same stream, model, golden and expected outcome), unless the kill was a
    timeout or a worker that died (LOAD_SENSITIVE), which a busy machine can cause. Adding vectors
    cannot revive a killed mutant, so the kept kills and the mutants run again on today's vectors
    make up a full run of today's set. A survivor that now has an argument (equivalent or
    untestable) in an unchanged module is kept too: more vectors could only kill it, which would
    raise the score. Returns ({key: Outcome}, what the summary records)."""
    doc = json.loads(source.read_text()) if isinstance(source, Path) else source
    path = source if isinstance(source, Path) else Path("(document)")
    old, outcomes = doc["summary"], doc["outcomes"]
    if old.get("sample") or old.get("subsets") or old.get("selection"):
        raise SystemExit(f"mutate: --resume {path}: not a full run (a sample, subset or selection)")
    if (old["path"] == "literal") != literal or old["stages_compared"] != stages:
        raise SystemExit(f"mutate: --resume {path}: run on the {old['path']} path, stages "
                         f"{'compared' if old['stages_compared'] else 'not compared'}; this run differs")
    commit = old.get("commit") or ""
    then_manifest = show(commit, "vectors/manifest.json") if commit else None
    if then_manifest is None or vector_set_digest(json.loads(then_manifest)) != old["vectors_manifest_sha256"]:
        raise SystemExit(f"mutate: --resume {path}: the vector set of commit {commit or '?'} is not the one the "
                         "run measured (run it on a clean tree)")
    then_vectors = {v["id"]: v for v in json.loads(then_manifest)["vectors"]}
    now_vectors = {v["id"]: v for v in vectors}
    same_vector = {vid for vid, v in now_vectors.items()
                   if vid in then_vectors and {k: x for k, x in then_vectors[vid].items() if k != "fast"}
                   == {k: x for k, x in v.items() if k != "fast"}}
    same_module = {}
    kept = {}
    survived_kept = 0
    for m in mutants:
        o = outcomes.get(m.key)
        if not o:
            continue
        if m.module not in same_module:
            then = show(commit, f"refdec/{m.module}.py")
            same_module[m.module] = then is not None and then == (ROOT / "refdec" / f"{m.module}.py").read_bytes()
        if not same_module[m.module]:
            continue
        if o["status"] == "killed" and o["vector"] in same_vector and not o["why"].startswith(LOAD_SENSITIVE):
            kept[m.key] = Outcome("killed", o["vector"], o["why"], o["ran"], o["quick"], o["seconds"])
        elif o["status"] != "killed" and m.key in argued:
            # Argued equivalent or untestable: running it on more vectors could only turn it into a kill.
            kept[m.key] = Outcome("survived", "", o["why"], o["ran"], False, o["seconds"])
            survived_kept += 1
    changed = sorted(mod for mod, same in same_module.items() if not same)
    log(f"--resume: {len(kept) - survived_kept} kills and {survived_kept} argued survivors of {path} (commit "
        f"{commit}) kept; {len(mutants) - len(kept)} mutants run"
        + (f"; modules changed since: {', '.join(changed)}" if changed else ""))
    return kept, {"from": str(path.name), "commit": commit, "vectors_manifest_sha256": old["vectors_manifest_sha256"],
                  "kills_kept": len(kept) - survived_kept, "argued_survivors_kept": survived_kept,
                  "seconds": old["seconds"]}


def rescore(args, mutants, missing, log) -> int:
    """--rescore: the outcomes of an earlier --json, reported again with today's arguments."""
    doc = json.loads(args.rescore.read_text())
    old, outcomes = doc["summary"], doc["outcomes"]
    mutants = [m for m in mutants if m.key in outcomes]
    gone = sorted(set(outcomes) - {m.key for m in mutants})
    if gone:
        log(f"--rescore: {len(gone)} mutants of {args.rescore} are not in this tree: {', '.join(gone)}")
    results = {m.key: Outcome("killed" if outcomes[m.key]["status"] == "killed" else "survived",
                              outcomes[m.key]["vector"], outcomes[m.key]["why"], outcomes[m.key]["ran"],
                              outcomes[m.key]["quick"], outcomes[m.key]["seconds"]) for m in mutants}
    return finish(args, log, mutants, results, literal=old["path"] == "literal", stages=old["stages_compared"],
                  seed=old["seed"], sample=old["sample"], vectors_sha=old["vectors_manifest_sha256"],
                  elapsed=old["seconds"], missing=missing, skipped_large=old["vectors_not_run_on_literal_path"],
                  n_vectors=old["vectors"], subsets=old["subsets"], selection=old["selection"],
                  commit=old["commit"], date=old["date"], resumed=old.get("resumed_from"))


def finish(args, log, mutants, results, **meta) -> int:
    """Report, write and (with --update-vectors) publish a run's outcomes."""
    equivalent_file = args.equivalent or (args.out / "equivalent.json")
    arguments = load_arguments(equivalent_file, [m.key for m in mutants])
    previous = json.loads(args.previous.read_text()) if args.previous and args.previous.is_file() else None
    report = build_report(mutants, results, arguments, previous, **meta)
    print(report["text"])
    if args.json:
        args.json.write_text(json.dumps({"summary": report["summary"], "outcomes": report["outcomes"]}, indent=1,
                                        sort_keys=True) + "\n")
    if not args.no_write:
        write_report(args.out, report)
        if args.update_vectors:
            from refcodec.make_vectors import MUTATION_SUMMARY, embed_mutation_score

            if (args.out / "summary.json").resolve() != MUTATION_SUMMARY.resolve():
                log("--update-vectors: the score is read from results/mutation/; not updated")
            elif embed_mutation_score(args.vectors):
                log(f"score written into {args.vectors}/manifest.json and README.md")
            else:
                log("--update-vectors: a sample or subset run, or another vector set: not written")
    return 0 if report["summary"]["total"]["open"] == 0 else 1


def load_arguments(path: Path, keys) -> dict:
    """Equivalence arguments: JSON {KEY or fnmatch PATTERN: argument}; an exact key wins over a
    pattern, and of several patterns the first in the file. Returns {key: argument} for `keys`."""
    from fnmatch import fnmatchcase

    if not path.is_file():
        return {}
    table = json.loads(path.read_text())
    table.pop("_comment", None)
    out = {}
    for key in keys:
        if key in table:
            out[key] = table[key]
            continue
        for pattern, argument in table.items():
            if any(ch in pattern for ch in "*?[") and fnmatchcase(key, pattern):
                out[key] = argument
                break
    return out


def _git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def build_report(mutants, results, arguments, previous, **meta) -> dict:
    per_module: dict = defaultdict(lambda: Counter(killed=0, equivalent=0, untestable=0, open=0))
    survivors, killers, killed_quick = [], Counter(), 0
    by_key = {m.key: m for m in mutants}
    for m in mutants:
        o = results[m.key]
        c = per_module[m.module]
        if o.status == "killed":
            c["killed"] += 1
            killers[o.vector] += 1
            killed_quick += o.quick
        elif m.key in arguments:
            status = _status(m.key, arguments)
            c[status] += 1
            survivors.append({**m.brief(), "status": status, "argument": arguments[m.key], "ran": o.ran,
                              "note": o.why})
        else:
            c["open"] += 1
            survivors.append({**m.brief(), "status": "open", "argument": "", "ran": o.ran, "note": o.why})
    total = Counter(killed=0, equivalent=0, untestable=0, open=0)
    for c in per_module.values():
        total.update(c)
    history = []
    if previous:
        for old in previous.get("survivors", []):
            key = old["key"]
            if key in results and results[key].status == "killed":
                o = results[key]
                history.append({"key": key, "description": old.get("description", ""), "now": "killed",
                                "vector": o.vector, "why": o.why})
            elif key in by_key:
                history.append({"key": key, "description": old.get("description", ""),
                                "now": _status(key, arguments)})
            else:
                history.append({"key": key, "description": old.get("description", ""), "now": "not in this run"})
    date = meta.get("date") or datetime.date.today().isoformat()
    summary = {
        "date": date, "commit": meta.get("commit") or _git_head(), "vectors_manifest_sha256": meta["vectors_sha"],
        "vectors": meta["n_vectors"], "path": "literal" if meta["literal"] else "fast", "stages_compared": meta["stages"],
        "seed": meta["seed"], "sample": meta["sample"] or None, "subsets": meta["subsets"] or None,
        "selection": meta["selection"] or None,
        "mutants": len(mutants),
        "hand_faults": sum(m.hand for m in mutants), "hand_faults_not_in_tree": meta["missing"],
        "vectors_not_run_on_literal_path": meta["skipped_large"], "seconds": round(meta["elapsed"], 1),
        "killed_by_quick_subset": killed_quick, "resumed_from": meta.get("resumed"),
        "modules": {m: {**dict(c), "score": _score(c)} for m, c in sorted(per_module.items())},
        "total": {**dict(total), "score": _score(total)},
        "top_killers": dict(killers.most_common(15)),
    }
    lines = [f"{'module':<16} {'mutants':>8} {'killed':>7} {'equiv.':>7} {'untest.':>8} {'open':>5} {'score':>7}"]
    for m, c in [*sorted(per_module.items()), ("total", total)]:
        n = sum(c.values())
        s = _score(c)
        lines.append(f"{m:<16} {n:>8} {c['killed']:>7} {c['equivalent']:>7} {c['untestable']:>8} {c['open']:>5} "
                     f"{'-' if s is None else f'{s:.2f}%':>7}")
    for sv in survivors:
        if sv["status"] == "open":
            lines.append(f"open: {sv['key']} (line {sv['line']}): {sv['description']}")
    outcomes = {m.key: {"status": "killed" if results[m.key].status == "killed" else _status(m.key, arguments),
                        "vector": results[m.key].vector, "why": results[m.key].why, "line": m.line,
                        "quick": results[m.key].quick, "ran": results[m.key].ran,
                        "seconds": round(results[m.key].seconds, 1)} for m in mutants}
    return {"summary": summary, "survivors": survivors, "history": history, "outcomes": outcomes,
            "text": "\n".join(lines)}


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def survivors_markdown(report: dict) -> str:
    s = report["summary"]
    t = s["total"]
    lines = [
        "# Mutation testing: survivors",
        "",
        f"Generated by `python tools/mutate.py` on {s['date']} (commit {s['commit'] or 'unknown'}, "
        f"{s['path']} path, {s['vectors']} vectors, manifest sha256 `{s['vectors_manifest_sha256'][:16]}`); do not edit: "
        "equivalence arguments live in `equivalent.json`.",
        "",
        f"Score: **{t['score']}%** of the non-equivalent mutants killed ({t['killed']} killed, {t['equivalent']} "
        f"equivalent, {t.get('untestable', 0)} untestable within the set's budget, {t['open']} open, "
        f"{s['mutants']} mutants of which {s['hand_faults']} hand-written; "
        f"{s['killed_by_quick_subset']} killed by the quick subset).",
        "",
        "| module | killed | equivalent | untestable | open | score |",
        "|---|---|---|---|---|---|",
    ]
    for m, c in s["modules"].items():
        lines.append(f"| {m} | {c['killed']} | {c['equivalent']} | {c.get('untestable', 0)} | {c['open']} | "
                     f"{'-' if c['score'] is None else str(c['score']) + '%'} |")
    lines += ["", f"## Survivors ({len(report['survivors'])})", "",
              "| mutant | line | change | status | argument |", "|---|---|---|---|---|"]
    for sv in sorted(report["survivors"], key=lambda x: (x["status"] != "open", x["module"], x["line"], x["key"])):
        lines.append(f"| `{_md_escape(sv['key'])}` | {sv['module']}.py:{sv['line']} | {_md_escape(sv['description'])} | "
                     f"{sv['status']} | {_md_escape(sv['argument'] or sv.get('note', ''))} |")
    if report["history"]:
        lines += ["", f"## Earlier survivors ({len(report['history'])})", "",
                  "Mutants that survived the earlier run (`--previous`), and what becomes of them now.", "",
                  "| mutant | change | now | killed by |", "|---|---|---|---|"]
        for h in report["history"]:
            lines.append(f"| `{_md_escape(h['key'])}` | {_md_escape(h['description'])} | {h['now']} | "
                         f"{'`' + h['vector'] + '` (' + _md_escape(h.get('why', '')) + ')' if h.get('vector') else ''} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(report["summary"], indent=1, sort_keys=True) + "\n")
    (out / "survivors.json").write_text(json.dumps({"summary": report["summary"], "survivors": report["survivors"],
                                                    "history": report["history"]}, indent=1, sort_keys=True) + "\n")
    (out / "survivors.md").write_text(survivors_markdown(report))
    # The --json document (summary and outcomes): the input of --rescore and --resume.
    (out / "outcomes.json").write_text(json.dumps({"summary": report["summary"], "outcomes": report["outcomes"]},
                                                  indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
