"""The refcodec command without its extras: one line naming the extra, exit 2, no traceback.

refdec installs without PyTorch, and the `refcodec` console script is installed all the same.
Each case runs the console script's entry (refcodec.cli:main) in a fresh interpreter in which the
missing modules are made unimportable (sys.modules[name] = None, as Python does for a module it
cannot import), so the test needs no second environment and runs where torch is installed too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_without(modules: list[str], argv: list[str], before: str = "") -> subprocess.CompletedProcess:
    """Run `refcodec ARGV` as the console script does (sys.exit(main())) with modules blocked."""
    code = ("import sys\n"
            f"for name in {modules!r}:\n    sys.modules[name] = None\n"
            f"sys.argv = ['refcodec'] + {argv!r}\n"
            "import refcodec.cli as cli\n"
            f"{before}\n"
            "sys.exit(cli.main())\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


@pytest.mark.parametrize("argv", [
    ["encode", "in.png", "-o", "out.rdc"],
    ["decode", "in.rdc", "-o", "out.png"],
    ["train", "--steps", "1"],
    ["integerise"],
    ["refine"],
    ["evaluate"],
])
def test_without_torch_one_line_naming_the_extra(argv, tmp_path):
    out = run_without(["torch"], argv)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"refcodec: error: 'refcodec {argv[0]}' needs torch, which is not installed: ")
    assert 'pip install "refdec[torch]"' in lines[0] and "torch==2.13.0" in lines[0]
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_evaluate_without_scipy_names_the_eval_extra():
    out = run_without(["scipy"], ["evaluate"])
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == ("refcodec: error: 'refcodec evaluate' needs scipy, which is not installed: "
                                  'pip install "refdec[eval]"')


def test_a_missing_module_found_only_on_import_is_the_same_line():
    """The upfront table is not the only guard: a ModuleNotFoundError for an extra's module raised
    while the command runs (here: torch, with the table emptied) is caught the same way."""
    out = run_without(["torch"], ["encode", "in.png", "-o", "out.rdc"], before="cli.NEEDS.clear()")
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("refcodec: error: 'refcodec encode' needs torch, which is not installed: ")
    assert len(out.stderr.splitlines()) == 1


def test_other_missing_modules_still_raise():
    """Only the extras' modules become the one-line error: any other ModuleNotFoundError is a bug
    and keeps its traceback."""
    before = ("def boom(args):\n    import no_such_module_xyz\n"
              "cli._decode = boom\n"
              "cli.NEEDS.clear()\n")
    out = run_without([], ["decode", "in.rdc", "-o", "out.png"], before=before)
    assert out.returncode == 1 and "ModuleNotFoundError" in out.stderr


def test_help_needs_no_torch():
    out = run_without(["torch"], ["--help"])
    assert out.returncode == 0 and "encode" in out.stdout
    out = run_without(["torch"], ["encode", "--help"])
    assert out.returncode == 0 and "--checkpoint" in out.stdout
