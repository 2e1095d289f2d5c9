#!/usr/bin/env bash
# Runs the README's commands on a brand-new venv from a clean clone of the current branch: the
# check that every import of every extra is declared (issue 21), as a new user would meet it.
# Not run by the tests: it downloads and installs the extras (minutes) and, in full, runs the
# whole test suite (10+ minutes on 2 cores). tests/test_packaging.py is the fast check.
#
#   tools/fresh_venv_check.sh [WORK_DIR]        # default: a new folder under $TMPDIR
#   FRESH_PYTEST_ARGS="--collect-only -q" tools/fresh_venv_check.sh   # collection only
#   FRESH_CHECK_ARGS="--subset quick" tools/fresh_venv_check.sh       # a subset of the main job
#
# The clone is WORK_DIR/refdec, the venv WORK_DIR/venv; ../shared (the Kodak and training images,
# which CI lays beside its clone) is linked from beside this repository when there is one.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d "${TMPDIR:-/tmp}/refdec-fresh.XXXXXX")}"
python="${PYTHON:-python3}"
mkdir -p "$work"
rm -rf "$work/venv" "$work/refdec"
"$python" -m venv "$work/venv"
git clone --quiet "$repo" "$work/refdec"
if [ -d "$repo/../shared" ] && [ ! -e "$work/shared" ]; then ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"; fi
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
cd "$work/refdec"
echo "== $(git log -1 --format='%h %s') in $work/refdec, $(python --version), venv $VIRTUAL_ENV"
echo "== main job: pip install -e . && refdec check vectors/ ${FRESH_CHECK_ARGS:-}"
# shellcheck disable=SC2086
pip install -e . && refdec check vectors/ ${FRESH_CHECK_ARGS:-}
echo "== tests: pip install torch==2.13.0 && pip install -e \".[torch,eval,test]\" && python -m pytest ${FRESH_PYTEST_ARGS:--q}"
# shellcheck disable=SC2086
pip install torch==2.13.0 && pip install -e ".[torch,eval,test]" && python -m pytest ${FRESH_PYTEST_ARGS:--q}
echo "== passed: $work"
