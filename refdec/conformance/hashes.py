"""Non-normative: the canonical bytes and hashes of spec clause 11.4 (stage tensors, decoded samples)."""

from __future__ import annotations

import hashlib

import numpy as np


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_stage(tensor) -> np.ndarray:
    """Clause 11.4: a stage tensor as a C-order array of signed 32-bit little-endian integers."""
    a = np.asarray(tensor)
    if a.dtype.kind not in "iub":
        if a.dtype.kind != "f" or not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"stage tensor of dtype {a.dtype} has non-integer elements")
    if a.size and (a.min() < -(1 << 31) or a.max() >= (1 << 31)):
        raise ValueError("stage tensor has elements outside the signed 32-bit range")
    # No copy when the tensor is already int32 in C order (a traced decode's stages are).
    return np.ascontiguousarray(a, dtype="<i4")


def stage_hash(tensor) -> str:
    """Clause 11.4: the SHA-256 of a stage tensor's canonical bytes (hashed in place, without a copy)."""
    return hashlib.sha256(memoryview(_canonical_stage(tensor)).cast("B")).hexdigest()


def sample_bytes(image) -> bytes:
    """Clause 11.4: decoded samples (3, H, W) as uint8, planar R, G, B, row by row."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"decoded image has shape {a.shape}, expected (3, H, W)")
    return np.ascontiguousarray(a, dtype=np.uint8).tobytes()


def sample_hash(image) -> str:
    """Clause 11.4: the image hash."""
    return sha256_hex(sample_bytes(image))

