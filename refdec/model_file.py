"""The model-parameter file of spec clause 9: loading, validation, and (informative) writing."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import constants as K
from .architecture import BY_NAME, CONTEXT, GATHER, HYPER_SYNTHESIS, LAYER_NAMES, OUTPUT_LAYER, SYNTHESIS, causal_mask
from .errors import AccumulatorOverflowRisk, ModelFormatError, ModelShapeError, ModelValueError

MAX_MEMBERS = 256
MAX_MEMBER_BYTES = 1 << 28
MAX_CHANNELS = 4096
MAX_RATES = 64
MAX_Z_COUNT = 1024
HEADER_KEYS = {
    "format", "format_version", "profile", "weight_bits", "latent_channels", "hyper_channels",
    "num_rates", "inv_gain_shift", "synthesis_input_clip", "clip", "description", "provenance",
    "act_exponents",
}
PROFILES = {"W16A16": 16, "W8A16": 8}


@dataclass
class Layer:
    name: str
    weight: np.ndarray  # int64 (out, in, k, k)
    bias: np.ndarray  # int64 (out,)
    shift: np.ndarray  # int64 (out,)
    clip: int
    kernel: int
    depth_to_space: bool
    leaky: bool


@dataclass
class Model:
    header: dict
    layers: dict[str, Layer]
    inv_gain: np.ndarray  # int64 (R, C_y)
    z_lo: np.ndarray
    z_count: np.ndarray
    z_cdf: np.ndarray
    model_id: bytes
    path: str = ""
    cache: dict = field(default_factory=dict, repr=False)  # derived matrices (not normative)

    @property
    def latent_channels(self) -> int:
        return self.header["latent_channels"]

    @property
    def hyper_channels(self) -> int:
        return self.header["hyper_channels"]

    @property
    def num_rates(self) -> int:
        return self.header["num_rates"]


def model_id_of(data: bytes) -> bytes:
    """Clause 9.1: the first 8 bytes of the SHA-256 digest of the file."""
    return hashlib.sha256(data).digest()[:8]


def _read_members(data: bytes, where: str) -> dict[str, np.ndarray]:
    """Clause 9.1: the container, with member count and sizes checked before reading."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelFormatError(f"not a ZIP/.npz archive ({exc})", where=where) from None
    if len(infos) > MAX_MEMBERS:
        raise ModelFormatError(f"{len(infos)} members, at most {MAX_MEMBERS} allowed", where=where)
    members = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise ModelFormatError(f"member {info.filename!r} is not a .npy file", where=where)
        if info.file_size > MAX_MEMBER_BYTES:
            raise ModelFormatError(f"member {info.filename!r} is {info.file_size} bytes, "
                                   f"at most {MAX_MEMBER_BYTES} allowed", where=where)
        name = info.filename[:-4]
        try:
            with zf.open(info) as fh:
                raw = fh.read(MAX_MEMBER_BYTES + 1)
            members[name] = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
        except Exception as exc:  # any malformed member is a format error, never a traceback
            raise ModelFormatError(f"member {info.filename!r} is not a valid .npy array ({exc})",
                                   where=where) from None
    return members


def _int(header, key, lo, hi, where):
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ModelFormatError(f"header field {key!r} must be an integer, found {value!r}", where=where)
    if not lo <= value <= hi:
        raise ModelValueError(f"header field {key!r} = {value} outside {lo}..{hi}", where=where)
    return value


def _parse_header(members, where) -> dict:
    """Clause 9.2."""
    if "header" not in members:
        raise ModelFormatError("member header.npy is missing", where=where)
    raw = members.pop("header")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFormatError("header.npy must be a 1-D uint8 array", where=where)
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"header is not UTF-8 JSON ({exc})", where=where) from None
    if not isinstance(header, dict):
        raise ModelFormatError("header JSON must be an object", where=where)
    unknown = set(header) - HEADER_KEYS
    missing = HEADER_KEYS - {"description", "provenance", "act_exponents"} - set(header)
    if unknown:
        raise ModelFormatError(f"unknown header keys {sorted(unknown)}", where=where)
    if missing:
        raise ModelFormatError(f"missing header keys {sorted(missing)}", where=where)
    if header["format"] != "refdec-model":
        raise ModelFormatError(f"format is {header['format']!r}, expected 'refdec-model'", where=where)
    if header["format_version"] != 1:
        raise ModelFormatError(f"format_version {header['format_version']!r} is not supported", where=where)
    if header["profile"] not in PROFILES:
        raise ModelFormatError(f"unknown profile {header['profile']!r}", where=where)
    if header["weight_bits"] != PROFILES[header["profile"]]:
        raise ModelValueError(f"weight_bits {header['weight_bits']!r} does not match profile "
                              f"{header['profile']}", where=where)
    _int(header, "latent_channels", 1, MAX_CHANNELS, where)
    _int(header, "hyper_channels", 1, MAX_CHANNELS, where)
    _int(header, "num_rates", 1, MAX_RATES, where)
    _int(header, "inv_gain_shift", 0, 31, where)
    _int(header, "synthesis_input_clip", 1, K.ACT16_MAX, where)
    clips = header["clip"]
    if not isinstance(clips, dict) or set(clips) != set(LAYER_NAMES):
        raise ModelFormatError("header 'clip' must map exactly the 20 layer names of clause 5.1", where=where)
    for name in LAYER_NAMES:
        _int(clips, name, 1, K.ACT16_MAX, f"{where}: clip")
    if clips[OUTPUT_LAYER] != 255:
        raise ModelValueError(f"clip of {OUTPUT_LAYER} must be 255, found {clips[OUTPUT_LAYER]}", where=where)
    return header


def _array(members, name, dtype, ndim, where):
    if name not in members:
        raise ModelFormatError(f"member {name}.npy is missing", where=where)
    arr = members.pop(name)
    if arr.dtype != np.dtype(dtype) or arr.ndim != ndim:
        raise ModelFormatError(f"{name} must be {ndim}-D {np.dtype(dtype).name}, found "
                               f"{arr.ndim}-D {arr.dtype.name}", where=where)
    return arr.astype(np.int64)


def _expect_shape(name, arr, shape, where):
    if arr.shape != tuple(shape):
        raise ModelShapeError(f"{name} has shape {arr.shape}, expected {tuple(shape)}", where=where)


def _check_layers(layers, header, where):
    """Clause 9.4 items 3 and 4 for the layers."""
    cy, cz = header["latent_channels"], header["hyper_channels"]

    def check(spec_list, in_channels):
        for spec in spec_list:
            layer = layers[spec.name]
            out, cin, kh, kw = layer.weight.shape
            _expect_shape(f"{spec.name}.weight", layer.weight, (out, in_channels, spec.kernel, spec.kernel), where)
            if not 1 <= out <= MAX_CHANNELS * 4:
                raise ModelShapeError(f"{spec.name} has {out} outputs", where=where)
            _expect_shape(f"{spec.name}.bias", layer.bias, (out,), where)
            _expect_shape(f"{spec.name}.shift", layer.shift, (out,), where)
            if spec.depth_to_space:
                if out % 4:
                    raise ModelShapeError(f"{spec.name} has {out} outputs, not a multiple of 4 (depth-to-space)",
                                          where=where)
                out //= 4
            if out > MAX_CHANNELS:
                raise ModelShapeError(f"{spec.name} delivers {out} channels, at most {MAX_CHANNELS}", where=where)
            in_channels = out
        return in_channels

    hyper_out = check(HYPER_SYNTHESIS, cz)
    ctx_out = sum(check([spec], cy) for spec in CONTEXT)
    gather_out = check(GATHER, hyper_out + ctx_out)
    if gather_out != 3 * K.NUM_MIXTURES * cy:
        raise ModelShapeError(f"gather.6 has {gather_out} outputs, expected 3*K*C_y = {3 * K.NUM_MIXTURES * cy}",
                              where=where)
    if check(SYNTHESIS, cy) != 3:
        raise ModelShapeError(f"{OUTPUT_LAYER} must have 3 outputs", where=where)

    wmax = (1 << (header["weight_bits"] - 1)) - 1
    for name, layer in layers.items():
        if np.abs(layer.weight).max(initial=0) > wmax:
            raise ModelValueError(f"{name}.weight has a value beyond +-{wmax} ({header['profile']})", where=where)
        if layer.shift.min(initial=0) < 0 or layer.shift.max(initial=0) > 31:
            raise ModelValueError(f"{name}.shift outside 0..31", where=where)
    for spec in CONTEXT:
        outside = ~causal_mask(spec.kernel)
        if np.any(layers[spec.name].weight[:, :, outside]):
            raise ModelValueError(f"{spec.name}.weight is non-zero outside the causal mask (clause 5.1)",
                                  where=where)


def input_bounds(model_header) -> dict[str, int]:
    """Clause 9.5: in_max of every layer."""
    clip = model_header["clip"]
    bounds = {}
    for net in (HYPER_SYNTHESIS, GATHER, SYNTHESIS):
        for i, spec in enumerate(net):
            bounds[spec.name] = clip[net[i - 1].name] if i else None
    bounds[HYPER_SYNTHESIS[0].name] = K.CONTEXT_INPUT_MAX
    for spec in CONTEXT:
        bounds[spec.name] = K.CONTEXT_INPUT_MAX
    bounds[GATHER[0].name] = max(clip[s.name] for s in [HYPER_SYNTHESIS[-1], *CONTEXT])
    bounds[SYNTHESIS[0].name] = model_header["synthesis_input_clip"]
    return bounds


def check_accumulator_bound(layers, header, where=""):
    """Clause 9.5: sum |W| * in_max + |b| < 2^31 for every output channel of every layer."""
    for name, in_max in input_bounds(header).items():
        layer = layers[name]
        worst = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(axis=1) * in_max + np.abs(layer.bias)
        bad = np.flatnonzero(worst >= K.ACCUMULATOR_LIMIT)
        if bad.size:
            o = int(bad[0])
            raise AccumulatorOverflowRisk(
                f"layer {name}, output channel {o}: sum|W|*{in_max} + |b| = {int(worst[o])} >= 2^31",
                where=where)


def _check_tables(model, where):
    """Clause 9.4 item 4 for inv_gain and the factorised-prior tables."""
    header = model.header
    _expect_shape("inv_gain", model.inv_gain, (header["num_rates"], header["latent_channels"]), where)
    if model.inv_gain.min() < 0 or model.inv_gain.max() > 65536:
        raise ModelValueError("inv_gain outside 0..65536", where=where)
    cz = header["hyper_channels"]
    _expect_shape("z_lo", model.z_lo, (cz,), where)
    _expect_shape("z_count", model.z_count, (cz,), where)
    if model.z_count.min() < 1 or model.z_count.max() > MAX_Z_COUNT:
        raise ModelValueError(f"z_count outside 1..{MAX_Z_COUNT}", where=where)
    _expect_shape("z_cdf", model.z_cdf, (cz, int(model.z_count.max()) + 1), where)
    for c in range(cz):
        n_w, lo = int(model.z_count[c]), int(model.z_lo[c])
        row = model.z_cdf[c]
        if row[0] != 0 or np.any(np.diff(row[: n_w + 1]) < 1) or row[n_w] > 65535 or np.any(row[n_w + 1:] != 65536):
            raise ModelValueError(f"z_cdf row {c} is not a valid cumulative table (clause 9.4)", where=where)
        if abs(lo) > K.Z_MAX or abs(lo + n_w - 1) > K.Z_MAX:
            raise ModelValueError(f"z window of channel {c} exceeds Z_MAX", where=where)


def parse_model(data: bytes, where: str = "model") -> Model:
    """Clause 9.4: parse and validate a model file's bytes."""
    members = _read_members(data, where)
    header = _parse_header(members, where)
    wdtype = np.int16 if header["weight_bits"] == 16 else np.int8
    layers = {}
    for name in LAYER_NAMES:
        spec = BY_NAME[name]
        layers[name] = Layer(
            name=name,
            weight=_array(members, f"{name}.weight", wdtype, 4, where),
            bias=_array(members, f"{name}.bias", np.int32, 1, where),
            shift=_array(members, f"{name}.shift", np.uint8, 1, where),
            clip=header["clip"][name],
            kernel=spec.kernel, depth_to_space=spec.depth_to_space, leaky=spec.leaky,
        )
    model = Model(
        header=header, layers=layers,
        inv_gain=_array(members, "inv_gain", np.int32, 2, where),
        z_lo=_array(members, "z_lo", np.int32, 1, where),
        z_count=_array(members, "z_count", np.int32, 1, where),
        z_cdf=_array(members, "z_cdf", np.int32, 2, where),
        model_id=model_id_of(data), path=where,
    )
    if members:
        raise ModelFormatError(f"unexpected members {sorted(members)}", where=where)
    _check_layers(layers, header, where)
    _check_tables(model, where)
    check_accumulator_bound(layers, header, where)
    return model


MAX_MODEL_FILE_BYTES = 1 << 30


def load_model(path) -> Model:
    """Clause 9: read and validate a model file from disk."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_FILE_BYTES:
            raise ModelFormatError(f"file is {size} bytes, larger than any valid model", where=str(path))
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"cannot read model file ({exc.strerror})", where=str(path)) from None
    return parse_model(data, where=str(path))


# --- Informative: writing model files -------------------------------------------------

def _npy_bytes(arr: np.ndarray) -> bytes:
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
