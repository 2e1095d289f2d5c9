"""Packaging: every import is declared, refdec stays NumPy + Pillow, the sdist and the wheel hold
what they should.

The import audit walks every ``import``/``from`` (function-level ones and those guarded by
``try``/``except ImportError`` included), ``pytest.importorskip("x")`` and
``importlib.import_module("x")`` with a literal name, in refdec/, refcodec/, tests/, tools/ and
bench/, and checks each third-party module against the dependencies and extras of pyproject.toml.
It would have caught refcodec.bdrate's undeclared scipy (issue 21: the README's test command
failed at collection on a fresh venv). ``tools/fresh_venv_check.sh`` runs the README's commands
in a brand-new venv; it is too slow for the test suite.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AUDITED = ("refdec", "refcodec", "tests", "tools", "bench")
FIRST_PARTY = {"refdec", "refcodec", "conftest"}
# Top-level module name -> distribution name, where they differ.
MODULE_TO_DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn",
                          "skimage": "scikit-image", "cv2": "opencv-python"}
# refdec is the executable specification: standard library, NumPy and Pillow only.
REFDEC_ALLOWED = {"numpy", "pillow"}


def normalise(name: str) -> str:
    """A distribution name in PEP 503 form: lower case, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"cannot read the requirement {requirement!r}"
    return normalise(match.group(1))


def declared(pyproject: dict) -> dict[str, set[str]]:
    """{'': core dependencies, extra: its requirements}, as normalised distribution names."""
    project = pyproject["project"]
    out = {"": {requirement_name(r) for r in project.get("dependencies", [])}}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        out[extra] = {requirement_name(r) for r in reqs}
    return out


def imported_modules(source: str, filename: str = "<source>") -> list[tuple[str, int]]:
    """(top-level module, line) of every absolute import in source, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.append((node.module.split(".")[0], node.lineno))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if name in ("importorskip", "import_module", "__import__") \
                    and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((first.value.split(".")[0], node.lineno))
    return found


def local_modules(root: Path) -> set[str]:
    """Modules that the tests, tools and benchmarks import from their own folders (sys.path)."""
    return {p.stem for folder in ("tests", "tools", "bench") for p in (root / folder).rglob("*.py")}


def third_party(root: Path) -> list[tuple[str, str, int, str]]:
    """(distribution, file relative to root, line, module) of every third-party import."""
    local = FIRST_PARTY | local_modules(root)
    out = []
    for folder in AUDITED:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for module, line in imported_modules(path.read_text(encoding="utf-8"), rel):
                if module in sys.stdlib_module_names or module in local:
                    continue
                out.append((normalise(MODULE_TO_DISTRIBUTION.get(module, module)), rel, line, module))
    return out


EDITABLE_INSTALL = re.compile(r'pip install (?:--quiet )?-e "?\.\[([^\]]*)\]')


def readme_test_extras(readme: str) -> set[str]:
    """The extras that the README's test command installs (pip install -e ".[a,b]" ... pytest)."""
    for line in readme.splitlines():
        match = EDITABLE_INSTALL.search(line)
        if match and "pytest" in line:
            return {e.strip() for e in match.group(1).split(",")}
    raise AssertionError("no test command (pip install -e \".[...]\" ... pytest) in the README")


def audit(root: Path) -> list[str]:
    """Every problem found: undeclared imports, refdec importing beyond NumPy and Pillow, imports
    of the tests (and what they import) that the README's test command does not install."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    extras = declared(pyproject)
    anywhere = set().union(*extras.values())
    readme = root / "README.md"
    by_test_command = None
    if readme.exists():
        by_test_command = extras[""].union(*(extras.get(e, set()) for e in readme_test_extras(readme.read_text())))
    problems = []
    for dist, rel, line, module in third_party(root):
        where = f"{rel}:{line}: import {module}"
        if dist not in anywhere:
            problems.append(f"{where}: {dist} is in no dependency or extra of pyproject.toml")
        elif by_test_command is not None and dist not in by_test_command:
            problems.append(f"{where}: {dist} is not installed by the README's test command")
        if rel.startswith("refdec/") and dist not in REFDEC_ALLOWED:
            problems.append(f"{where}: refdec may import only the standard library, numpy and PIL")
    return problems


# --- the audit on the repository ------------------------------------------------------------------

def test_every_import_is_declared():
    assert audit(ROOT) == []


def test_audit_sees_the_known_third_party_imports():
    """A sanity check of the walk itself: imports known to exist are found, including
    function-level and importorskip ones."""
    found = {(dist, rel) for dist, rel, _, _ in third_party(ROOT)}
    assert ("scipy", "refcodec/bdrate.py") in found
    assert any(d == "pillow" and r.startswith("refdec/") for d, r in found)  # from PIL import ...
    assert ("torch", "tests/test_evaluate.py") in found          # pytest.importorskip("torch")
    assert ("jsonschema", "tests/test_check.py") in found        # inside a function, under try
    assert all(d in REFDEC_ALLOWED for d, r in found if r.startswith("refdec/"))


def test_readme_and_ci_install_the_same_extras():
    ci = [m.group(1) for m in EDITABLE_INSTALL.finditer((ROOT / ".ci" / "run").read_text())]
    assert len(ci) == 1
    assert readme_test_extras((ROOT / "README.md").read_text()) == {e.strip() for e in ci[0].split(",")}


# --- the audit on planted imports -----------------------------------------------------------------

PLANTED = '''
import os, json
import numpy as np
from PIL import Image
from . import sibling
from .sub import thing
import refdec.arith

def late():
    import scipy.interpolate
    from yaml import safe_load

try:
    import jsonschema
except ImportError:
    jsonschema = None

class K:
    def m(self):
        import pytest
        pytest.importorskip("matplotlib.pyplot")
        importlib.import_module("notreal_pkg.sub")
        importlib.import_module(f"refcodec.{name}")
'''


def test_imported_modules_of_a_planted_source():
    modules = [m for m, _ in imported_modules(PLANTED)]
    assert modules == sorted(modules, key=modules.index)  # deterministic
    assert set(modules) == {"os", "json", "numpy", "PIL", "refdec", "scipy", "yaml", "jsonschema",
                            "pytest", "matplotlib", "notreal_pkg"}


def _tree(tmp_path: Path, files: dict[str, str], pyproject: str, readme: str | None = None) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    for folder in AUDITED:
        (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / "pyproject.toml").write_text(pyproject)
    if readme is not None:
        (tmp_path / "README.md").write_text(readme)
    return tmp_path


PYPROJECT = '''
[project]
name = "x"
dependencies = ["numpy>=1.24", "Pillow>=9"]
[project.optional-dependencies]
eval = ["matplotlib>=3.7"]
test = ["pytest>=7", "PyYAML"]
'''


def test_audit_fails_on_a_planted_undeclared_import(tmp_path):
    root = _tree(tmp_path, {"refcodec/bdrate.py": "import numpy\ndef f():\n    from scipy.interpolate import P\n",
                            "tests/test_x.py": "import yaml\nimport pytest\nimport helper\n",
                            "tests/helper.py": "import os\n"}, PYPROJECT)
    problems = audit(root)
    assert len(problems) == 1 and problems[0].startswith("refcodec/bdrate.py:3: import scipy: scipy is in no")


def test_audit_fails_when_refdec_imports_beyond_numpy_and_pil(tmp_path):
    root = _tree(tmp_path, {"refdec/plot.py": "import numpy\nfrom PIL import Image\nimport matplotlib.pyplot\n"},
                 PYPROJECT)
    assert audit(root) == ["refdec/plot.py:3: import matplotlib: refdec may import only the standard library, "
                           "numpy and PIL"]


def test_audit_fails_when_the_readme_test_command_misses_an_extra(tmp_path):
    readme = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest -q\n'
    root = _tree(tmp_path, {"tests/test_e.py": "import pytest\nmatplotlib = pytest.importorskip('matplotlib')\n"},
                 PYPROJECT, readme)
    assert audit(root) == ["tests/test_e.py:2: import matplotlib: matplotlib is not installed by the README's "
                           "test command"]
    (root / "README.md").write_text(readme.replace("[test]", "[eval,test]"))
    assert audit(root) == []


# --- sdist and wheel ------------------------------------------------------------------------------

def _source_files() -> list[str]:
    """The files a clean clone of the current work would have: tracked and untracked-not-ignored."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist member names, wheel member names), built with setuptools' PEP 517 backend from a copy
    of the source files (offline, no build isolation: the test extra pins setuptools>=77)."""
    setuptools = pytest.importorskip("setuptools")
    if tuple(int(p) for p in setuptools.__version__.split(".")[:2]) < (77, 0):
        pytest.fail(f"setuptools {setuptools.__version__}: pyproject.toml's SPDX licence needs >= 77 "
                    "(the test extra declares it)")
    src = tmp_path_factory.mktemp("src")
    for rel in _source_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    names = []
    for hook in ("build_sdist", "build_wheel"):  # one process each: setuptools keeps state between them
        code = f"import sys, setuptools.build_meta as b\nprint('BUILT', b.{hook}(sys.argv[1]))\n"
        run = subprocess.run([sys.executable, "-c", code, str(dist)], cwd=src, capture_output=True, text=True,
                             timeout=300, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        assert run.returncode == 0, run.stderr[-3000:]
        names.append([ln for ln in run.stdout.splitlines() if ln.startswith("BUILT ")][-1].split()[1])
    sdist_name, wheel_name = names
    with tarfile.open(dist / sdist_name) as tar:
        sdist = sorted(m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile())
    with zipfile.ZipFile(dist / wheel_name) as whl:
        wheel = sorted(whl.namelist())
    return src, sdist, wheel


def _package_files(src: Path) -> set[str]:
    out = set()
    for package in ("refdec", "refcodec"):
        for p in (src / package).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".txt", ".npz"):
                out.add(p.relative_to(src).as_posix())
    return out


def test_sdist_ships_the_packages_and_terms_and_no_tests(built):
    src, sdist, _ = built
    assert {"pyproject.toml", "README.md", "LICENSE", "NOTICE.md", "PKG-INFO"} <= set(sdist)
    assert _package_files(src) <= set(sdist), "a package file is missing from the sdist"
    assert "refdec/fast/threads.py" in sdist
    # No tests: they would need conftest.py, spec/, vectors/, models/ and shared data (MANIFEST.in).
    for prefix in ("tests/", "bench/", "tools/", "spec/", "vectors/", "models/", "examples/", "results/", ".ci/"):
        assert not [f for f in sdist if f.startswith(prefix)], f"the sdist ships {prefix}"
    assert not [f for f in sdist if f.endswith((".pyc", ".pyo")) or "__pycache__" in f]


def test_wheel_holds_every_module_and_the_data(built):
    src, _, wheel = built
    expected = _package_files(src)
    assert expected <= set(wheel), f"missing from the wheel: {sorted(expected - set(wheel))}"
    assert {"refdec/tables/gaussian_cdf.txt", "refdec/models/refdec-test-w16a16.npz",
            "refdec/fast/threads.py"} <= set(wheel)
    assert not [f for f in wheel if f.startswith(("tests/", "bench/", "tools/"))]
    meta = [f for f in wheel if f.endswith(".dist-info/METADATA")]
    assert len(meta) == 1
    licences = [f for f in wheel if "/licenses/" in f]
    assert {Path(f).name for f in licences} == {"LICENSE", "NOTICE.md"}


def test_licence_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-3-Clause"
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()
    notice = (ROOT / "NOTICE.md").read_text()
    for fact in ("Kodak", "BSDS500", "ImageNet", "non-commercial", "redistribute"):
        assert fact in notice
