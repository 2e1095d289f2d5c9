"""Non-normative: stage traces as files (spec clause 11.3: one STAGE.npy per stage tensor; clause
11.5.4: a partial trace also holds partial.json).

A trace of a large image is hundreds of megabytes (661 MB for 1920x1080). The checker reads it in
bounded memory: stage_file_hash() streams a stage file through SHA-256 in chunks of CHUNK_BYTES,
converting to the canonical int32 layout of clause 11.4 chunk by chunk, and open_stage() maps a
file instead of reading it, for the few stages that need element-wise analysis.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..stages import LATENT_STAGES, STAGE_ORDER

CHUNK_BYTES = 4 << 20
PARTIAL_NAME = "partial.json"


class TraceError(ValueError):
    """A stage file or partial.json that cannot be read as clause 11.3 / 11.5.4 says."""


def _npy_header(f):
    try:
        major, minor = np.lib.format.read_magic(f)
        if (major, minor) == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except Exception as exc:
        raise TraceError(f"is not a .npy file ({exc})") from None
    return tuple(int(n) for n in shape), bool(fortran), np.dtype(dtype)


def _canonical_chunk(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        if not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise TraceError(f"has non-integer elements (dtype {a.dtype})")
    elif a.dtype.kind not in "iub":
        raise TraceError(f"has elements of dtype {a.dtype}, not integers")
    if a.size and a.dtype != np.dtype("<i4") and (a.min() < -(1 << 31) or a.max() >= (1 << 31)):
        raise TraceError("has elements outside the signed 32-bit range")
    return np.ascontiguousarray(a, dtype="<i4")


def stage_file_hash(path) -> tuple[tuple, str]:
    """(shape, clause 11.4 stage hash) of a STAGE.npy, read in chunks (bounded memory, whatever
    the file's size); TraceError for a file that is not an integer .npy array."""
    with open(path, "rb") as f:
        shape, fortran, dtype = _npy_header(f)
        if dtype.hasobject or dtype.itemsize == 0:
            raise TraceError(f"has elements of dtype {dtype}, not integers")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        h = hashlib.sha256()
        if fortran and len(shape) > 1:
            # Rare: C order needs the whole array; mapped, converted one leading index at a time.
            a = np.load(path, mmap_mode="r", allow_pickle=False)
            for i in range(shape[0]):
                h.update(memoryview(_canonical_chunk(np.asarray(a[i]))).cast("B"))
            return shape, h.hexdigest()
        per = max(1, CHUNK_BYTES // dtype.itemsize)
        left = count
        while left > 0:
            n = min(per, left)
            data = f.read(n * dtype.itemsize)
            if len(data) != n * dtype.itemsize:
                raise TraceError(f"is truncated ({count - left + len(data) // dtype.itemsize} of {count} elements)")
            h.update(memoryview(_canonical_chunk(np.frombuffer(data, dtype=dtype))).cast("B"))
            left -= n
    return shape, h.hexdigest()


def open_stage(path) -> np.ndarray:
    """A stage file as an array mapped from the file (read-only, nothing read until used)."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise TraceError(f"cannot be read ({exc.__class__.__name__}: {exc})") from None
    if a.dtype.hasobject:
        raise TraceError(f"has elements of dtype {a.dtype}, not integers")
    return a


@dataclass
class TraceFolder:
    """Non-normative: what a trace folder holds: the clause 11.3 stage files present and, for a
    partial trace (clause 11.5.4), the number of latent wavefronts whose values are valid."""

    path: Path
    files: dict = field(default_factory=dict)       # stage name -> Path
    partial: bool = False
    latent_wavefronts: int | None = None            # partial only: latent values valid where x + 4y < N
    problems: dict = field(default_factory=dict)    # stage name -> text (partial.json: key "partial.json")

    @property
    def empty(self) -> bool:
        return not self.files

    def complete_stages(self):
        """Stages whose every element is valid (all but the latent ones of a partial trace)."""
        return [n for n in STAGE_ORDER if n in self.files and not (self.partial and n in LATENT_STAGES)]

    def as_dict(self) -> dict:
        return {"dir": str(self.path), "stages": len(self.files), "partial": self.partial,
                "latent_wavefronts": self.latent_wavefronts}


def read_partial(path) -> tuple[bool, int | None]:
    """Clause 11.5.4: partial.json = {"partial": true, "latent_wavefronts": N}; TraceError otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TraceError(f"cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("partial") is not True:
        raise TraceError('is not {"partial": true, "latent_wavefronts": N}')
    n = data.get("latent_wavefronts")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise TraceError(f"latent_wavefronts {n!r} is not a non-negative integer")
    return True, n


def scan_trace(directory) -> TraceFolder:
    """The stage files of a trace folder (only clause 11.3 names count) and its partial.json."""
    directory = Path(directory)
    t = TraceFolder(directory)
    if not directory.is_dir():
        return t
    for name in STAGE_ORDER:
        p = directory / f"{name}.npy"
        if p.is_file():
            t.files[name] = p
    if (directory / PARTIAL_NAME).is_file():
        try:
            t.partial, t.latent_wavefronts = read_partial(directory / PARTIAL_NAME)
        except TraceError as exc:
            t.problems[PARTIAL_NAME] = f"{PARTIAL_NAME} {exc}"
            t.partial, t.latent_wavefronts = True, 0   # nothing of the latent stages can be trusted
    return t


def load_trace(directory) -> tuple[dict, dict]:
    """A trace folder (clause 11.3: one STAGE.npy per stage) -> ({stage: array}, {stage: problem}).

    Only clause 11.3 names are read, mapped from their files; a file that cannot be read is
    reported as a problem."""
    stages, problems = {}, {}
    for name, p in scan_trace(directory).files.items():
        try:
            stages[name] = open_stage(p)
        except TraceError as exc:
            problems[name] = str(exc)
    return stages, problems


def write_trace(stages: dict, directory) -> list[Path]:
    """Clause 11.3: one STAGE.npy per stage tensor in `directory` (created if needed), as int32."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, arr in stages.items():
        path = directory / f"{name}.npy"
        np.save(path, np.ascontiguousarray(arr, dtype=np.int32), allow_pickle=False)
        written.append(path)
    return written
