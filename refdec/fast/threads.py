"""Control of the thread pool of the BLAS library that NumPy loaded (informative).

Decoded samples never depend on the number of BLAS threads (every sum of refdec's matrix products
is an exact integer, spec clause 9.5); only the time does. On a machine whose other cores are
busy, a multi-threaded OpenBLAS call waits for its helper threads to be scheduled, and refdec's
many medium-sized products (one per wavefront, per synthesis tile) then take 10 times as long or
more (bench/bench_busy.py measures it). This module lets the decoder choose the count per stage:

    from refdec.fast.threads import blas_threads, blas_thread_count

    with blas_threads(1):
        ...                      # every BLAS call of this process runs on one thread
    blas_thread_count()          # the count in force, or None when no known BLAS is loaded

How: the BLAS libraries loaded into the process are found by file name in ``/proc/self/maps``
(Linux) or, elsewhere, among the shared libraries shipped beside NumPy (``numpy.libs``,
``numpy/.dylibs``); each one is opened with ctypes (the already-loaded copy is returned, nothing
is loaded twice) and its ``openblas_set_num_threads`` / ``openblas_get_num_threads`` are looked up
with the prefixes and suffixes that OpenBLAS builds use (NumPy 2 wheels bundle
``libscipy_openblas64_`` with ``scipy_openblas_set_num_threads64_``; SciPy bundles a 32-bit-index
``libscipy_openblas``; distributions ship ``libopenblas``). The same approach as threadpoolctl's,
written here because refdec depends on NumPy and Pillow only.

Limits, by design:
- Only OpenBLAS is known. With another BLAS (MKL, BLIS, Accelerate, a reference BLAS) or none,
  ``blas_threads`` is a no-op and ``blas_thread_count`` returns None; set that library's own
  environment variable (``MKL_NUM_THREADS``...) before NumPy starts instead.
- The count belongs to the process (OpenBLAS keeps one pool): two Python threads that enter
  ``blas_threads`` with different counts at once see each other's setting. Each restores, on exit,
  the count it found on entry.
- Every OpenBLAS found is set (NumPy's and, once SciPy is imported, SciPy's); the count reported
  is that of NumPy's bundled library when there is one, else of the first found.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ["blas_threads", "blas_thread_count", "blas_libraries"]

# File names of OpenBLAS builds: libopenblas.so.0, libopenblasp-r0.3.21.so, libopenblas64_.so,
# libscipy_openblas64_-32a4b2a6.so (NumPy 2 wheels), libscipy_openblas-xxxx.so (SciPy wheels),
# libopenblas.dylib, libopenblas.dll, libscipy_openblas64_-xxxx.dll.
_OPENBLAS_FILE = re.compile(r"^(lib)?(scipy_)?openblas[^/\\]*\.(so(\.\d+)*|dylib|dll)$", re.IGNORECASE)
_PREFIXES = ("scipy_", "")
_SUFFIXES = ("64_", "", "_64")

_lock = threading.Lock()
_known: dict[str, "_OpenBLAS | None"] = {}  # path -> controller (None: opened, no known symbols)


class _OpenBLAS:
    """One loaded OpenBLAS: its get/set-num-threads functions."""

    def __init__(self, path: str, get, set_):
        self.path = path
        self._get = get
        self._set = set_

    def get(self) -> int:
        return int(self._get())

    def set(self, n: int) -> None:
        self._set(int(n))


def _open(path: str) -> "_OpenBLAS | None":
    try:  # RTLD_NOLOAD: the copy already loaded, or nothing (never a second copy)
        lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0))
    except OSError:
        return None
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                return _OpenBLAS(path, get, set_)
    return None


def _loaded_paths() -> list[str]:
    """Paths of the OpenBLAS files mapped into this process, in load order."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) == 6:
                    path = fields[5].strip()
                    if _OPENBLAS_FILE.match(os.path.basename(path)) and path not in paths:
                        paths.append(path)
        return paths
    except OSError:
        pass
    # No /proc (macOS, Windows): the libraries shipped with NumPy's wheel, which NumPy has loaded.
    import numpy

    here = Path(numpy.__file__).resolve().parent
    for folder in (here.parent / "numpy.libs", here / ".dylibs", here.parent / "numpy" / ".libs"):
        if folder.is_dir():
            paths += sorted(str(p) for p in folder.iterdir() if _OPENBLAS_FILE.match(p.name))
    return paths


def _numpy_first(path: str) -> int:
    """Sort key: NumPy's own bundled library (numpy.libs/, numpy/.dylibs/) before the others.
    /proc/self/maps lists libraries by address, not by load order."""
    return 0 if any(part.startswith("numpy") for part in Path(path).parent.parts[-2:]) else 1


_scan: tuple[int, list] = (-1, [])  # (len(sys.modules) at the last scan, controllers found)


def _controllers() -> list[_OpenBLAS]:
    """The OpenBLAS controllers, NumPy's first. The scan of /proc/self/maps (about 0.1 to 1 ms) is
    repeated only when a module was imported since the last one: a BLAS library is loaded by an
    import (NumPy's, SciPy's), so a with-block costs a few microseconds on the decoder's paths."""
    global _scan
    import numpy  # noqa: F401  (NumPy loads its BLAS on import: find that one)

    with _lock:
        modules = len(sys.modules)
        if _scan[0] == modules:
            return _scan[1]
        found = []
        for path in sorted(_loaded_paths(), key=_numpy_first):
            if path not in _known:
                _known[path] = _open(path)
            if _known[path] is not None:
                found.append(_known[path])
        _scan = (modules, found)
        return found


def blas_libraries() -> list[str]:
    """Paths of the BLAS libraries whose thread count this module controls ([] when none)."""
    return [c.path for c in _controllers()]


def blas_thread_count() -> int | None:
    """The number of threads the BLAS uses now, or None when no known BLAS is loaded."""
    found = _controllers()
    return found[0].get() if found else None


@contextmanager
def blas_threads(n: int):
    """Run the body with the BLAS thread pool set to n threads (n >= 1), then restore the counts
    found on entry, also when the body raises. Nests. A no-op when no known BLAS is loaded.

    Yields the count in force inside (None for the no-op)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"blas_threads: the thread count must be an integer >= 1, got {n!r}")
    found = _controllers()
    previous = [c.get() for c in found]
    for c in found:
        c.set(n)
    try:
        yield found[0].get() if found else None
    finally:
        for c, count in zip(found, previous):
            c.set(count)


@contextmanager
def blas_threads_or_as_is(n: int | None):
    """blas_threads(n), or nothing at all for n = None."""
    if n is None:
        yield blas_thread_count()
    else:
        with blas_threads(n) as count:
            yield count


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) now, or None where
    /proc/stat is not there (not Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle and iowait
    own = os.times()
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK"), own.user + own.system


class OtherLoad:
    """How much CPU other processes used since the last look, from /proc/stat less this process's
    own CPU time: what lets the synthesis take a second BLAS thread only when a core is free.

    `threads(max_threads)` returns max_threads when, over the last window of at least WINDOW_S
    seconds, the other processes left a core free (they used at most FREE_BELOW CPUs fewer than
    the machine has minus one), else 1; until a window has passed, and where /proc/stat is not
    there, it returns 1."""

    WINDOW_S = 0.1
    FREE_BELOW = 0.3  # other processes' CPUs in use below which a second core counts as free

    def __init__(self):
        self.start = (time.perf_counter(), _cpu_seconds())
        self.count = 1
        self.cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def threads(self, max_threads: int) -> int:
        t0, c0 = self.start
        now = time.perf_counter()
        if c0 is None or now - t0 < self.WINDOW_S:
            return self.count
        c1 = _cpu_seconds()
        others = ((c1[0] - c0[0]) - (c1[1] - c0[1])) / (now - t0)  # CPUs used by other processes
        self.start = (now, c1)
        free = self.cpus - 1 - others
        self.count = max_threads if max_threads > 1 and free >= 1 - self.FREE_BELOW else 1
        return self.count
