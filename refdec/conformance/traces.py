"""Non-normative: stage traces as files (spec clause 11.3: one STAGE.npy per stage tensor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..stages import STAGE_ORDER


def load_trace(directory) -> tuple[dict, dict]:
    """A trace folder (clause 11.3: one STAGE.npy per stage) -> ({stage: array}, {stage: problem}).

    Only clause 11.3 names are read; a file that cannot be read is reported as a problem."""
    directory = Path(directory)
    stages, problems = {}, {}
    for name in STAGE_ORDER:
        p = directory / f"{name}.npy"
        if not p.is_file():
            continue
        try:
            stages[name] = np.load(p, allow_pickle=False)
        except Exception as exc:
            problems[name] = f"cannot be read ({exc.__class__.__name__}: {exc})"
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
