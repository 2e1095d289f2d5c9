"""refdec.fast.threads: the BLAS thread-pool control (a count that really changes and is restored,
nesting, the no-op path without a known BLAS)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refdec.fast import threads
from refdec.fast.threads import blas_libraries, blas_thread_count, blas_threads

ROOT = Path(__file__).resolve().parents[1]
needs_openblas = pytest.mark.skipif(not blas_libraries(), reason="NumPy's BLAS is not an OpenBLAS")


def _direct_count(path: str) -> int:
    """The library's own count, read through ctypes apart from the module under test."""
    lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
    for name in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                 "openblas_get_num_threads64_", "openblas_get_num_threads"):
        if hasattr(lib, name):
            return getattr(lib, name)()
    raise AssertionError(f"no get-num-threads function in {path}")


@needs_openblas
def test_finds_numpys_openblas_first():
    paths = blas_libraries()
    assert "openblas" in Path(paths[0]).name.lower()
    # NumPy's wheel library comes first, whatever /proc/self/maps' address order.
    from_numpy = [threads._numpy_first(p) == 0 for p in paths]
    if any(from_numpy):
        assert from_numpy[0]
    assert blas_thread_count() == _direct_count(paths[0]) >= 1


@needs_openblas
def test_count_changes_and_is_restored():
    before = blas_thread_count()
    with blas_threads(1) as inside:
        assert inside == 1
        assert blas_thread_count() == 1
        assert _direct_count(blas_libraries()[0]) == 1
        a = np.arange(64 * 64, dtype=np.float64).reshape(64, 64)
        assert (a @ a)[0, 0] == float(sum(i * i * 64 for i in range(64)))  # BLAS still works
    assert blas_thread_count() == before
    assert _direct_count(blas_libraries()[0]) == before


@needs_openblas
def test_nested_use_restores_each_level():
    before = blas_thread_count()
    with blas_threads(1):
        with blas_threads(before):
            assert blas_thread_count() == before
            with blas_threads(1):
                assert blas_thread_count() == 1
            assert blas_thread_count() == before
        assert blas_thread_count() == 1
    assert blas_thread_count() == before


@needs_openblas
def test_restored_when_the_body_raises():
    before = blas_thread_count()
    with pytest.raises(RuntimeError, match="inside"):
        with blas_threads(1):
            raise RuntimeError("inside")
    assert blas_thread_count() == before


@needs_openblas
def test_reads_the_count_set_by_the_environment():
    """In a fresh process started with OPENBLAS_NUM_THREADS=1 the library's count is 1: the module
    reads the real pool, not a value of its own; raising it inside the block works there too."""
    code = ("from refdec.fast.threads import blas_threads, blas_thread_count as c\n"
            "a = c()\n"
            "with blas_threads(2):\n    b = c()\n"
            "print(a, b, c())\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    a, b, c = map(int, out.stdout.split())
    assert a == 1 and c == 1
    assert b == 2 if (os.cpu_count() or 1) >= 2 else b >= 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None, True])
def test_rejects_counts_that_are_not_positive_integers(bad):
    with pytest.raises(ValueError, match="integer >= 1"):
        with blas_threads(bad):
            pass


def test_no_known_blas_is_a_no_op(monkeypatch):
    monkeypatch.setattr(threads, "_loaded_paths", lambda: [])
    monkeypatch.setattr(threads, "_scan", (-1, []))  # forget the cached scan
    assert blas_libraries() == []
    assert blas_thread_count() is None
    with blas_threads(1) as inside:
        assert inside is None
        a = np.eye(3)
        assert (a @ a == a).all()
    assert blas_thread_count() is None


def test_a_library_without_the_functions_is_ignored(monkeypatch, tmp_path):
    """A file that matches the name but is not loaded, or is loaded without OpenBLAS' functions
    (here the C library), is skipped: no controller, no error."""
    libc = next((line.split()[-1] for line in open("/proc/self/maps") if "libc.so" in line), None) \
        if Path("/proc/self/maps").exists() else None
    candidates = [str(tmp_path / "libopenblas.so")] + ([libc] if libc else [])
    for path in candidates:
        threads._known.pop(path, None)
        assert threads._open(path) is None
    monkeypatch.setattr(threads, "_loaded_paths", lambda: candidates)
    monkeypatch.setattr(threads, "_scan", (-1, []))
    assert blas_thread_count() is None
    with blas_threads(1) as inside:
        assert inside is None


def test_scan_repeated_only_after_an_import(monkeypatch):
    """/proc/self/maps is read again only when sys.modules grew (a BLAS comes with an import), so
    a with-block costs microseconds on the decoder's paths."""
    calls = []
    real = threads._loaded_paths
    monkeypatch.setattr(threads, "_loaded_paths", lambda: calls.append(1) or real())
    monkeypatch.setattr(threads, "_scan", (-1, []))
    for _ in range(5):
        with blas_threads(1):
            blas_thread_count()
    assert len(calls) == 1
    monkeypatch.setitem(sys.modules, "refdec_test_threads_dummy_module", object())
    blas_thread_count()
    assert len(calls) == 2


@pytest.mark.parametrize("name, match", [
    ("libscipy_openblas64_-32a4b2a6.so", True),
    ("libscipy_openblas-6cdc3b4a.so", True),
    ("libopenblas.so.0", True),
    ("libopenblasp-r0.3.21.so", True),
    ("libopenblas64_.so.0", True),
    ("libopenblas.dylib", True),
    ("libscipy_openblas64_-abc.dll", True),
    ("libgfortran-040039e1-0352e75f.so.5.0.0", False),
    ("libmkl_rt.so.2", False),
    ("openblas_notes.txt", False),
])
def test_file_names_recognised(name, match):
    assert bool(threads._OPENBLAS_FILE.match(name)) is match


# --- the decoder's choice (refdec.FastOptions, threads.OtherLoad) ------------------------------

def test_other_load_takes_a_second_thread_only_when_a_core_is_free(monkeypatch):
    from refdec.fast import threads

    clock = {"t": 0.0, "busy": 0.0, "own": 0.0}
    monkeypatch.setattr(threads.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setattr(threads, "_cpu_seconds", lambda: (clock["busy"], clock["own"]))
    load = threads.OtherLoad()
    load.cpus = 2
    assert load.threads(2) == 1  # no window has passed yet
    clock.update(t=0.2, busy=0.2, own=0.2)  # only this process ran: the other core was free
    assert load.threads(2) == 2
    clock.update(t=0.25, busy=0.3, own=0.25)  # a window of 0.05 s is too short to change the choice
    assert load.threads(2) == 2
    clock.update(t=0.45, busy=0.65, own=0.45)  # another process used a whole CPU beside ours
    assert load.threads(2) == 1
    assert load.threads(1) == 1


def test_other_load_without_proc_stat_is_one_thread(monkeypatch):
    from refdec.fast import threads

    monkeypatch.setattr(threads, "_cpu_seconds", lambda: None)
    load = threads.OtherLoad()
    load.start = (load.start[0] - 10, None)
    assert load.threads(4) == 1


def test_decode_sets_and_restores_the_blas_threads(small_model, monkeypatch):
    """The fast steps run under the counts of FastOptions and leave the pool as they found it; the
    decoded samples are those of the literal path whatever the counts."""
    import refdec
    from refdec.fast import threads
    from refdec.generators.encoder import encode_latents
    from refdec.generators.random_model import random_latents

    seen = []
    real = threads.blas_threads

    def spy(n):
        seen.append(n)
        return real(n)

    monkeypatch.setattr(threads, "blas_threads", spy)
    z, y = random_latents(small_model, 70, 40, seed=3)
    stream = encode_latents(small_model, z, y, 1, 70, 40)
    before = threads.blas_thread_count()
    literal = refdec.decode(stream, small_model, fast=False).image
    for options in (refdec.FastOptions(), refdec.FastOptions(blas_threads=None, synthesis_blas_threads=None),
                    refdec.FastOptions(blas_threads=2, synthesis_blas_threads=1)):
        seen.clear()
        assert (refdec.decode(stream, small_model, fast=options).image == literal).all()
        if options.blas_threads is None:
            assert seen == []
        else:
            assert seen[:2] == [options.blas_threads] * 2  # the hyper synthesis, then the latent
            assert set(seen[2:]) <= {1, options.synthesis_blas_threads} and seen[2:]  # the bands
        assert threads.blas_thread_count() == before
