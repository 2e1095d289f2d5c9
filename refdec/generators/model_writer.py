"""Informative: writing model files (spec clause 9), for the generators and refcodec. Not part of
the decoding process."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from ..model_file import Model

def _npy_bytes(arr: np.ndarray) -> bytes:
    """Informative: one array in the .npy format, version 1.0 (clause 9.1)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), version=(1, 0), allow_pickle=False)
    return buf.getvalue()


def serialize_model(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """Informative: the canonical bytes of a model file (sorted members, fixed timestamps),
    so that the same parameters always give the same file and the same model id."""
    members = {"header": np.frombuffer(json.dumps(header, sort_keys=True, indent=1).encode(), dtype=np.uint8)}
    members.update(arrays)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, _npy_bytes(members[name]), compresslevel=9)
    return buf.getvalue()


def model_arrays(model: Model) -> dict[str, np.ndarray]:
    """Informative: the clause 9.3 arrays of a parsed model, with their file dtypes."""
    wdtype = np.int16 if model.header["weight_bits"] == 16 else np.int8
    arrays = {}
    for name, layer in model.layers.items():
        arrays[f"{name}.weight"] = layer.weight.astype(wdtype)
        arrays[f"{name}.bias"] = layer.bias.astype(np.int32)
        arrays[f"{name}.shift"] = layer.shift.astype(np.uint8)
    arrays["inv_gain"] = model.inv_gain.astype(np.int32)
    arrays["z_lo"] = model.z_lo.astype(np.int32)
    arrays["z_count"] = model.z_count.astype(np.int32)
    arrays["z_cdf"] = model.z_cdf.astype(np.int32)
    return arrays
