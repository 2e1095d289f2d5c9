"""Normative tables of spec clause 10, loaded from refdec/tables/ and checked by digest."""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np

from .clauses import clause

TABLE_DIGESTS = {
    "gaussian_cdf.txt": "ac6c6a6fe5aec87a3b01ce160bdff62ac8716ee716f2c4bcadc145afc25a45a4",
    "scale_q.txt": "47f1341cd6220970a6faddfd548649b05ac0b972edd085161955ae22f048817c",
    "inv_scale.txt": "5d6afa432147313fb771330a412089e23ef09f59c7badae029fa855db15b07fd",
}


@clause("10", "Normative tables")
def _load(name: str) -> np.ndarray:
    """Read one table file and check it against its normative SHA-256 digest."""
    data = resources.files("refdec").joinpath("tables", name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != TABLE_DIGESTS[name]:
        raise RuntimeError(f"refdec installation is corrupt: table {name} has digest {digest}")  # unreachable: no stream reaches it
    return np.array([int(v) for v in data.split()], dtype=np.int64)


PHI = _load("gaussian_cdf.txt")
"""Clause 10.1: PHI[i + 2048], Gaussian CDF at i/256 in units of 2^-16."""

SCALE_Q = _load("scale_q.txt")
"""Clause 10.2: sigma_k in units of 2^-8."""

INV_SCALE = _load("inv_scale.txt")
"""Clause 10.2: 1/sigma_k in units of 2^-12."""
