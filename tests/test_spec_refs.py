"""Traceability between spec/ and refdec/: every clause reference resolves, every normative
leaf clause is implemented somewhere, every normative function names its clause."""

from __future__ import annotations

import ast
import re

import pytest

from conftest import REFDEC_DIR, SPEC_DIR

HEADING = re.compile(r"^(#{1,6})\s+((?:\d+|[A-Z])(?:\.\d+)*)\s+(.*?)\s*$")
NUM = r"(?:\d+|[A-Z])(?:\.\d+)*"
# "clause 7.9", "Clause 4.2", "clauses 7.6 to 7.9", "clause 6.1 and 6.2", "annex A.2", "clauses 7.5-7.10".
REF = re.compile(r"\b(?:[Cc]lauses?|[Aa]nnex)\s+(" + NUM + r")((?:(?:\s*,\s*|\s+and\s+|\s+or\s+|\s+to\s+|\s*-\s*)"
                 r"\d+\.\d+)*)")
MARK = re.compile(r'@clause\("(' + NUM + r')"')
CONT = re.compile(r"(\s*,\s*|\s+and\s+|\s+or\s+|\s+to\s+|\s*-\s*)(\d+\.\d+)")

from refdec.clauses import NORMATIVE_MODULES
EXCLUDED_TOP = {"1", "2", "3"}


def spec_clauses() -> dict[str, dict]:
    """clause number -> {title, level, informative, file}."""
    clauses = {}
    for path in sorted(SPEC_DIR.glob("*.md")):
        in_code = False
        for line in path.read_text().splitlines():
            if line.startswith("```"):
                in_code = not in_code
            if in_code:
                continue
            m = HEADING.match(line)
            if m:
                num = m.group(2)
                assert num not in clauses, f"clause {num} defined twice ({path.name})"
                clauses[num] = {"title": m.group(3), "level": len(m.group(1)),
                                "informative": "(informative)" in m.group(3).lower(), "file": path.name}
    return clauses


def _parent(num: str) -> str | None:
    return num.rsplit(".", 1)[0] if "." in num else None


def _expand(first: str, sep: str, last: str) -> list[str]:
    """'7.6 to 7.9' -> 7.6, 7.7, 7.8, 7.9 (same parent only); other separators list both."""
    if sep.strip() in ("to", "-") and _parent(first) == _parent(last) and _parent(first) is not None:
        a, b = int(first.rsplit(".", 1)[1]), int(last.rsplit(".", 1)[1])
        if a <= b:
            return [f"{_parent(first)}.{i}" for i in range(a, b + 1)]
    return [first, last]


def code_references() -> dict[str, set[str]]:
    """clause number -> the files (relative names, with line numbers) that reference it."""
    refs: dict[str, set[str]] = {}
    for path in sorted(REFDEC_DIR.rglob("*.py")):
        # Import lines are blanked: "from .clauses import clause" followed by a capital would read as a clause.
        text = re.sub(r"^(from|import) .*$", "", path.read_text(), flags=re.M)
        for m in REF.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            where = f"{path.relative_to(REFDEC_DIR.parent)}:{line}"
            nums = [m.group(1)]
            prev = m.group(1)
            for c in CONT.finditer(m.group(2)):
                nums.extend(_expand(prev, c.group(1), c.group(2)))
                prev = c.group(2)
            for num in nums:
                refs.setdefault(num, set()).add(where)
        for m in MARK.finditer(text):  # @clause("7.9", ...) marks (refdec/clauses.py)
            line = text.count("\n", 0, m.start()) + 1
            refs.setdefault(m.group(1), set()).add(f"{path.relative_to(REFDEC_DIR.parent)}:{line}")
    return refs


@pytest.fixture(scope="module")
def clauses():
    return spec_clauses()


@pytest.fixture(scope="module")
def refs():
    return code_references()


def test_parser_sanity(clauses, refs):
    """The parsers find what is certainly there (guards against a regex that matches nothing)."""
    assert clauses["4.2"]["title"] == "Round2"
    assert clauses["A.2"]["informative"] and not clauses["8.3"]["informative"]
    assert {"7.6", "7.7", "7.8", "7.9"} <= set(refs)  # "clauses 7.6 to 7.9" in entropy.py
    assert _expand("7.6", " to ", "7.9") == ["7.6", "7.7", "7.8", "7.9"]
    assert _expand("6.1", " and ", "6.2") == ["6.1", "6.2"]
    found = [m.group(0) for m in REF.finditer("see clauses 7.6 to 7.9, Clause 4.2 and annex A.2; clause 9.5: x")]
    assert found == ["clauses 7.6 to 7.9", "Clause 4.2", "annex A.2", "clause 9.5"]


def test_clause_numbering_is_consistent(clauses):
    """Every sub-clause has its parent, and sub-clauses are numbered 1, 2, ... without gaps."""
    for num in clauses:
        parent = _parent(num)
        if parent is not None:
            assert parent in clauses, f"clause {num} has no parent {parent}"
    children: dict[str, list[int]] = {}
    for num in clauses:
        if _parent(num):
            children.setdefault(_parent(num), []).append(int(num.rsplit(".", 1)[1]))
    for parent, nums in children.items():
        assert nums == list(range(1, len(nums) + 1)), f"sub-clauses of {parent}: {nums}"


def test_every_code_reference_exists(clauses, refs):
    missing = {num: sorted(where) for num, where in refs.items() if num not in clauses}
    assert not missing, f"clause references in refdec/ that spec/ does not define: {missing}"


def test_every_spec_cross_reference_exists(clauses):
    """Cross references inside the spec text resolve too."""
    bad = []
    for path in sorted(SPEC_DIR.glob("*.md")):
        text = path.read_text()
        for m in REF.finditer(text):
            nums = [m.group(1)] + [c.group(2) for c in CONT.finditer(m.group(2))]
            bad += [f"{path.name}: {num}" for num in nums if num not in clauses]
    assert not bad, bad


def normative_leaves(clauses) -> list[str]:
    parents = {_parent(n) for n in clauses}
    out = []
    for num, info in clauses.items():
        top = num.split(".")[0]
        if "." not in num or top in EXCLUDED_TOP or num in parents:
            continue
        informative = info["informative"] or any(
            clauses[p]["informative"] for p in _ancestors(num) if p in clauses)
        if not informative:
            out.append(num)
    return out


def _ancestors(num):
    while _parent(num):
        num = _parent(num)
        yield num


def test_every_normative_leaf_clause_is_referenced(clauses, refs):
    leaves = normative_leaves(clauses)
    assert len(leaves) >= 40  # 4.1 .. 11.4
    assert "A.2" not in leaves and "4.2" in leaves and "11.4" in leaves
    unreferenced = [n for n in leaves if n not in refs]
    assert not unreferenced, f"normative clauses that no refdec/ file references: {unreferenced}"


def _top_level_defs(module: str):
    tree = ast.parse((REFDEC_DIR / f"{module}.py").read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node


DOC_OK = re.compile(r"\b[Cc]lauses?\s+\d|\bnon-normative\b|\binformative\b", re.IGNORECASE)


@pytest.mark.parametrize("module", NORMATIVE_MODULES)
def test_normative_classes_name_their_clause(module, clauses):
    """Every top-level class has a docstring that names a clause or is marked @informative (functions
    carry @clause marks, checked against the headings by tests/test_clauses.py); named clauses exist."""
    problems = []
    for node in _top_level_defs(module):
        if module == "errors":  # each error class carries its clause as an attribute (tests/test_errors.py)
            continue
        doc = ast.get_docstring(node) or ""
        if isinstance(node, ast.ClassDef) and not DOC_OK.search(doc) and not node.decorator_list[:1]:
            problems.append(f"{module}.{node.name}: {doc!r}")
        for m in REF.finditer(doc):
            if m.group(1) not in clauses:
                problems.append(f"{module}.{node.name}: names clause {m.group(1)}, which does not exist")
    assert not problems, problems


@pytest.mark.parametrize("module", NORMATIVE_MODULES)
def test_module_docstring_names_a_clause(module):
    doc = ast.get_docstring(ast.parse((REFDEC_DIR / f"{module}.py").read_text()))
    assert doc and DOC_OK.search(doc), module
