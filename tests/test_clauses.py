"""The clause vocabulary (refdec/clauses.py) checked against spec/: every @clause mark names a clause
that exists with exactly that heading title, every function of a normative module carries a mark,
and the generated clause -> function table in refdec/README.md is current."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys

import pytest

from conftest import REFDEC_DIR, ROOT
from refdec.clauses import CLAUSE_FUNCTIONS, NORMATIVE_MODULES, clause
from test_spec_refs import spec_clauses

for _module in NORMATIVE_MODULES:
    importlib.import_module(f"refdec.{_module}")


def wrong_marks(marks, clauses) -> list[str]:
    """The marks (number, title, function) whose clause is missing from spec/ or has another title."""
    problems = []
    for number, title, function in marks:
        where = f"{function.__module__}.{function.__qualname__}"
        if number not in clauses:
            problems.append(f"{where}: clause {number} does not exist")
        elif clauses[number]["title"] != title:
            problems.append(f"{where}: clause {number} is {clauses[number]['title']!r}, not {title!r}")
    return problems


def test_every_clause_mark_matches_the_spec():
    assert len(CLAUSE_FUNCTIONS) >= 40
    assert wrong_marks(CLAUSE_FUNCTIONS, spec_clauses()) == []


def test_a_planted_wrong_reference_is_caught():
    @clause("7.9", "Context model")  # 7.9 is the coding window; the context model is 7.6
    def planted():
        pass

    try:
        problems = wrong_marks([(n, t, f) for n, t, f in CLAUSE_FUNCTIONS if f is planted], spec_clauses())
        assert problems == ["test_clauses.test_a_planted_wrong_reference_is_caught.<locals>.planted: clause 7.9 is "
                            "'Coding window and cumulative frequencies', not 'Context model'"]
        assert wrong_marks([("7.99", "Nothing", planted)], spec_clauses())[0].endswith("clause 7.99 does not exist")
    finally:
        CLAUSE_FUNCTIONS[:] = [m for m in CLAUSE_FUNCTIONS if m[2] is not planted]


def _marked(node) -> bool:
    return any(isinstance(d, ast.Call) and getattr(d.func, "id", None) in ("clause", "informative")
               for d in node.decorator_list)


@pytest.mark.parametrize("module", NORMATIVE_MODULES)
def test_every_function_of_a_normative_module_is_marked(module):
    """Top-level functions and methods carry @clause or @informative (properties and dunder methods of
    data classes are part of their class); classes name their clause in the docstring or are marked."""
    tree = ast.parse((REFDEC_DIR / f"{module}.py").read_text())
    unmarked = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not _marked(node):
            unmarked.append(node.name)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if (isinstance(item, ast.FunctionDef) and not _marked(item) and not item.name.startswith("__")
                        and not any(getattr(d, "id", None) == "property" for d in item.decorator_list)
                        and not _marked(node)):
                    unmarked.append(f"{node.name}.{item.name}")
    assert unmarked == [], f"{module}: functions without @clause or @informative"


def test_clause_table_is_current():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "clause_table.py"), "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
