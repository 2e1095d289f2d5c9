"""The model-parameter file of spec clause 9: loading, validation, and (informative) writing.

parse_model runs the checks of clause 9.4 in its order and reports the first failure:

1. format [ModelFormatError]: the container (clause 9.1), the header (clause 9.2) and the
   member list with every member's dtype and number of dimensions (clause 9.3);
2. shapes [ModelShapeError]: the channel limits of clause 5.2, then shape consistency;
3. values [ModelValueError];
4. the accumulator bound of clause 9.5 [AccumulatorOverflowRisk].
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import math
import struct
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import constants as K
from .architecture import BY_NAME, CONTEXT, GATHER, HYPER_SYNTHESIS, LAYER_NAMES, OUTPUT_LAYER, SYNTHESIS, causal_mask
from .errors import AccumulatorOverflowRisk, ModelFormatError, ModelShapeError, ModelValueError, UnknownModel
from .clauses import clause, informative

# Clause 9.1: container limits, checked before any member is read.
MAX_MODEL_FILE_BYTES = 1 << 30
MAX_MEMBERS = 256
MAX_MEMBER_BYTES = 1 << 28
NPY_MAGIC = b"\x93NUMPY"
# Clause 5.2 and 9.2 to 9.4: limits of the header fields and arrays.
MAX_CHANNELS = K.MAX_CHANNELS  # 2048
MAX_RATES = K.MAX_RATES  # 64
MAX_SHIFT = K.MAX_SHIFT  # 27
MAX_INV_GAIN_SHIFT = K.MAX_INV_GAIN_SHIFT  # 27
MAX_INV_GAIN = 65536
MAX_Z_COUNT = 1024
REQUIRED_KEYS = ("format", "format_version", "profile", "weight_bits", "latent_channels", "hyper_channels",
                 "num_rates", "inv_gain_shift", "synthesis_input_clip", "clip")
OPTIONAL_KEYS = ("description", "provenance", "act_exponents")
HEADER_KEYS = set(REQUIRED_KEYS) | set(OPTIONAL_KEYS)
INTEGER_KEYS = ("format_version", "weight_bits", "latent_channels", "hyper_channels", "num_rates",
                "inv_gain_shift", "synthesis_input_clip")
PROFILES = {"W16A16": 16, "W8A16": 8}


@dataclass(eq=False)
class Layer:
    """One layer of clause 5.1 as loaded: the clause 9.3 arrays (int64) and its clip bound (clause 9.2)."""

    name: str
    weight: np.ndarray  # int64 (out, in, k, k)
    bias: np.ndarray  # int64 (out,)
    shift: np.ndarray  # int64 (out,)
    clip: int
    kernel: int
    depth_to_space: bool
    leaky: bool


@dataclass(eq=False)
class Model:
    """A model file that passed clause 9.4: header (clause 9.2), arrays (clause 9.3), model id (clause 9.1)."""

    header: dict
    layers: dict[str, Layer]
    inv_gain: np.ndarray  # int64 (R, C_y)
    z_lo: np.ndarray
    z_count: np.ndarray
    z_cdf: np.ndarray
    model_id: bytes
    path: str = ""

    @property
    def latent_channels(self) -> int:
        return self.header["latent_channels"]

    @property
    def hyper_channels(self) -> int:
        return self.header["hyper_channels"]

    @property
    def num_rates(self) -> int:
        return self.header["num_rates"]


@clause("9.1", "Container")
def model_id_of(data: bytes) -> bytes:
    """Clause 9.1: the first 8 bytes of the SHA-256 digest of the file."""
    return hashlib.sha256(data).digest()[:8]


# --- Clause 9.4 item 1: format [ModelFormatError] --------------------------------------------

@informative("formats a value from the file for an error message")
def _show(value) -> str:
    """Informative: a value from the file for an error message, kept to one short line (a long
    string or list is cut, a huge integer is named by its size)."""
    if isinstance(value, tuple):
        inner = ", ".join(_show(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if type(value) is int and value.bit_length() > 64:
        return f"{'-' if value < 0 else ''}<{value.bit_length()}-bit integer>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class _Member:
    """Clause 9.1: one .npy member whose header passed; its data is converted only when needed."""

    dtype: np.dtype
    shape: tuple
    raw: bytes
    offset: int

    @clause("9.1", "Container")
    def array(self) -> np.ndarray:
        count = math.prod(self.shape)
        if count == 0:
            return np.zeros(self.shape, self.dtype)
        return np.frombuffer(self.raw, dtype=self.dtype, count=count, offset=self.offset).reshape(self.shape)


@clause("9.1", "Container")
def _parse_npy(raw: bytes, filename: str, where: str) -> _Member:
    """Clause 9.1: a .npy array, format version 1.0, C order, little-endian (or without byte order
    for 1-byte types), not an object array. The header is read as a literal; nothing is unpickled."""

    def bad(message):
        return ModelFormatError(f"member {_show(filename)}: {message}", where=where)

    if len(raw) < 10 or raw[:6] != NPY_MAGIC:
        raise bad("not a .npy array (no .npy magic)")
    if raw[6:8] != b"\x01\x00":
        raise bad(f".npy format version {raw[6]}.{raw[7]}; clause 9.1 allows only version 1.0")
    end = 10 + struct.unpack_from("<H", raw, 8)[0]
    if len(raw) < end:
        raise bad("truncated .npy header")
    try:
        meta = ast.literal_eval(raw[10:end].decode("latin-1"))
    except Exception:  # noqa: BLE001 - any malformed header is a format error, never a traceback
        raise bad("malformed .npy header") from None
    if not isinstance(meta, dict) or set(meta) != {"descr", "fortran_order", "shape"}:
        raise bad("malformed .npy header (keys descr, fortran_order, shape expected)")
    shape, fortran_order, descr = meta["shape"], meta["fortran_order"], meta["descr"]
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise bad(f"malformed .npy shape {_show(shape)}")
    if any(d > MAX_MEMBER_BYTES for d in shape):
        raise bad(f".npy shape {_show(shape)} has a dimension above 2^28 (clause 9.1)")
    if type(fortran_order) is not bool:
        raise bad(f"malformed .npy fortran_order {_show(fortran_order)}")
    if fortran_order:
        raise bad("array in Fortran order; clause 9.1 requires C order")
    if not isinstance(descr, str):
        raise bad(f"structured dtype {_show(descr)} is not allowed")
    try:
        dtype = np.dtype(descr)
    except Exception:  # noqa: BLE001
        raise bad(f"unknown dtype {_show(descr)}") from None
    if dtype.hasobject:
        raise bad("object array; clause 9.1 forbids them (nothing is unpickled)")
    if dtype.fields is not None or dtype.subdtype is not None:
        raise bad(f"structured or sub-array dtype {_show(descr)} is not allowed")
    order = descr[:1]
    if order == ">":
        raise bad(f"big-endian dtype {_show(descr)}; clause 9.1 requires little-endian")
    if order not in ("<", "|") or (order == "|" and dtype.itemsize > 1 and dtype.kind in "biufc"):
        raise bad(f"dtype {_show(descr)} without an explicit little-endian byte order (clause 9.1)")
    need = math.prod(shape) * dtype.itemsize
    if len(raw) - end < need:
        raise bad(f"truncated .npy data: {need} bytes announced, {len(raw) - end} present")
    return _Member(dtype=dtype, shape=shape, raw=raw, offset=end)


@clause("9.1", "Container")
def _read_members(data: bytes, where: str) -> dict[str, _Member]:
    """Clause 9.1: the container. File size, member count, unique names and member sizes are
    checked before any member is read; then every member must be a valid .npy array."""
    if len(data) > MAX_MODEL_FILE_BYTES:
        raise ModelFormatError(f"file is {len(data)} bytes, at most {MAX_MODEL_FILE_BYTES} allowed",  # unreachable: a vector would be over 1 GiB
                               where=where)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception as exc:  # noqa: BLE001 - any malformed archive is a format error
        raise ModelFormatError(f"not a ZIP/.npz archive ({exc})", where=where) from None
    if len(infos) > MAX_MEMBERS:
        raise ModelFormatError(f"{len(infos)} members, at most {MAX_MEMBERS} allowed", where=where)
    duplicates = sorted(name for name, n in Counter(info.filename for info in infos).items() if n > 1)
    if duplicates:
        raise ModelFormatError(f"duplicate member names {_show(duplicates)} (clause 9.1)", where=where)
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise ModelFormatError(f"member {_show(info.filename)} is not a .npy file", where=where)
        if info.file_size > MAX_MEMBER_BYTES:
            raise ModelFormatError(f"member {_show(info.filename)} is {info.file_size} bytes, "
                                   f"at most {MAX_MEMBER_BYTES} allowed", where=where)
    members = {}
    for info in infos:
        try:
            with zf.open(info) as fh:
                raw = fh.read(MAX_MEMBER_BYTES + 1)
        except Exception as exc:  # noqa: BLE001 - any unreadable member is a format error
            raise ModelFormatError(f"member {_show(info.filename)} cannot be read ({exc})", where=where) from None
        members[info.filename[:-4]] = _parse_npy(raw, info.filename, where)
    return members


@clause("9.2", "Header")
def _json_object(pairs, where):
    """Clause 9.2: a JSON object without duplicate keys."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ModelFormatError(f"duplicate key {_show(key)} in the header JSON (clause 9.2)", where=where)
        obj[key] = value
    return obj


@clause("9.2", "Header")
def _json_constant(name, where):
    """Clause 9.2: NaN and Infinity are not JSON."""
    raise ModelFormatError(f"header JSON contains {name}, which is not JSON", where=where)


JSON_INT_EXACT_DIGITS = 4000  # below Python's default int-from-string limit (4300 digits)


@clause("9.2", "Header")
def _json_int(text: str) -> int:
    """Clause 9.2: a JSON integer of any length is an integer. Up to 4000 digits it is converted
    exactly; a longer one is beyond every range of clause 9.4 (and of clause 5.2), so it is
    represented by +-10^4000, which fails exactly the checks that the true value fails (and
    avoids Python's limit on converting long digit strings, which would be a ValueError)."""
    if len(text) - text.startswith("-") <= JSON_INT_EXACT_DIGITS:
        return int(text)
    return -(10 ** JSON_INT_EXACT_DIGITS) if text.startswith("-") else 10 ** JSON_INT_EXACT_DIGITS


@clause("9.2", "Header")
def _is_integer(value) -> bool:
    """Clause 9.2: a JSON number without fraction or exponent (json gives int; not bool, not float)."""
    return type(value) is int


@clause("9.2", "Header")
def _parse_header(members, where) -> dict:
    """Clause 9.2 and 9.4 item 1: JSON syntax, key set, types, format, format_version, profile."""
    if "header" not in members:
        raise ModelFormatError("member header.npy is missing", where=where)
    member = members.pop("header")
    if member.dtype != np.uint8 or len(member.shape) != 1:
        raise ModelFormatError("header.npy must be a 1-D uint8 array", where=where)
    try:
        text = member.array().tobytes().decode("utf-8")
        header = json.loads(text, object_pairs_hook=lambda pairs: _json_object(pairs, where), parse_int=_json_int,
                            parse_constant=lambda name: _json_constant(name, where))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelFormatError(f"header is not UTF-8 JSON ({exc})", where=where) from None
    if not isinstance(header, dict):
        raise ModelFormatError("header JSON must be an object", where=where)
    unknown = sorted(set(header) - HEADER_KEYS)
    missing = sorted(set(REQUIRED_KEYS) - set(header))
    if unknown:
        raise ModelFormatError(f"unknown header keys {_show(unknown)}", where=where)
    if missing:
        raise ModelFormatError(f"missing header keys {missing}", where=where)
    # Types.
    for key in ("format", "profile", "description"):
        if key in header and not isinstance(header[key], str):
            raise ModelFormatError(f"header field {_show(key)} must be a string, found {_show(header[key])}", where=where)
    for key in INTEGER_KEYS:
        if not _is_integer(header[key]):
            raise ModelFormatError(f"header field {_show(key)} must be an integer (clause 9.2), found {_show(header[key])}",
                                   where=where)
    clips = header["clip"]
    if not isinstance(clips, dict) or set(clips) != set(LAYER_NAMES):
        raise ModelFormatError("header 'clip' must map exactly the 20 layer names of clause 5.1", where=where)
    for name in LAYER_NAMES:
        if not _is_integer(clips[name]):
            raise ModelFormatError(f"clip of {name!r} must be an integer (clause 9.2), found {_show(clips[name])}",
                                   where=where)
    if "provenance" in header and not isinstance(header["provenance"], dict):
        raise ModelFormatError(f"header field 'provenance' must be an object, found {_show(header['provenance'])}",
                               where=where)
    if "act_exponents" in header:
        exponents = header["act_exponents"]
        if not isinstance(exponents, dict):
            raise ModelFormatError(f"header field 'act_exponents' must be an object, found {_show(exponents)}",
                                   where=where)
        for key, value in exponents.items():
            if not _is_integer(value):
                raise ModelFormatError(f"act_exponents[{_show(key)}] must be an integer (clause 9.2), found {_show(value)}",
                                       where=where)
    # Values that make the file another format.
    if header["format"] != "refdec-model":
        raise ModelFormatError(f"format is {_show(header['format'])}, expected 'refdec-model'", where=where)
    if header["format_version"] != 1:
        raise ModelFormatError(f"format_version {_show(header['format_version'])} is not supported", where=where)
    if header["profile"] not in PROFILES:
        raise ModelFormatError(f"unknown profile {_show(header['profile'])}", where=where)
    return header


@clause("9.3", "Arrays")
def _member_specs(profile: str) -> list[tuple[str, np.dtype, int]]:
    """Clause 9.3: (member name, dtype, number of dimensions) of every array, in table order."""
    wdtype = np.dtype(np.int16 if PROFILES[profile] == 16 else np.int8)
    specs = []
    for name in LAYER_NAMES:
        specs += [(f"{name}.weight", wdtype, 4), (f"{name}.bias", np.dtype(np.int32), 1),
                  (f"{name}.shift", np.dtype(np.uint8), 1)]
    specs += [("inv_gain", np.dtype(np.int32), 2), ("z_lo", np.dtype(np.int32), 1),
              ("z_count", np.dtype(np.int32), 1), ("z_cdf", np.dtype(np.int32), 2)]
    return specs


@clause("9.4", "Validation")
def _read_arrays(members, header, where) -> dict[str, np.ndarray]:
    """Clause 9.4 item 1: every member of clause 9.3 present with exactly its dtype (the profile's
    weight dtype) and number of dimensions, and no other member; returned as int64 arrays."""
    specs = _member_specs(header["profile"])
    for name, dtype, ndim in specs:
        if name not in members:
            raise ModelFormatError(f"member {name}.npy is missing", where=where)
        member = members[name]
        if member.dtype != dtype or len(member.shape) != ndim:
            raise ModelFormatError(f"{name} must be {ndim}-D {dtype.name}, found "
                                   f"{len(member.shape)}-D {member.dtype.name}", where=where)
    extra = sorted(set(members) - {name for name, _, _ in specs})
    if extra:
        raise ModelFormatError(f"unexpected members {_show(extra)}", where=where)
    return {name: members[name].array().astype(np.int64) for name, _, _ in specs}


# --- Clause 9.4 item 2: shapes [ModelShapeError] ---------------------------------------------

@clause("9.4", "Validation")
def _expect_shape(name, arr, shape, where):
    """Clause 9.4 item 2: ModelShapeError unless arr has exactly this shape."""
    if arr.shape != tuple(shape):
        raise ModelShapeError(f"{name} has shape {arr.shape}, expected {_show(tuple(shape))}", where=where)


@clause("9.4", "Validation")
def _check_shapes(header, arrays, where):
    """Clause 9.4 item 2: C_y, C_z and every layer's outputs within clause 5.2 first, then the
    consistency of every shape."""
    cy, cz = header["latent_channels"], header["hyper_channels"]
    for key in ("latent_channels", "hyper_channels"):
        if not 1 <= header[key] <= MAX_CHANNELS:
            raise ModelShapeError(f"header field {_show(key)} = {_show(header[key])} outside 1..{MAX_CHANNELS} (clause 5.2)",
                                  where=where)
    for name in LAYER_NAMES:
        out = arrays[f"{name}.weight"].shape[0]
        if not 1 <= out <= MAX_CHANNELS:
            raise ModelShapeError(f"{name} has {out} outputs (weight dimension 0, before depth-to-space), "
                                  f"outside 1..{MAX_CHANNELS} (clause 5.2)", where=where)

    def chain(spec_list, in_channels):
        for spec in spec_list:
            weight = arrays[f"{spec.name}.weight"]
            out = weight.shape[0]
            _expect_shape(f"{spec.name}.weight", weight, (out, in_channels, spec.kernel, spec.kernel), where)
            _expect_shape(f"{spec.name}.bias", arrays[f"{spec.name}.bias"], (out,), where)
            _expect_shape(f"{spec.name}.shift", arrays[f"{spec.name}.shift"], (out,), where)
            if spec.depth_to_space:
                if out % 4:
                    raise ModelShapeError(f"{spec.name} has {out} outputs, not a multiple of 4 (depth-to-space)",
                                          where=where)
                out //= 4
            in_channels = out
        return in_channels

    hyper_out = chain(HYPER_SYNTHESIS, cz)
    ctx_out = sum(chain([spec], cy) for spec in CONTEXT)
    gather_out = chain(GATHER, hyper_out + ctx_out)
    if gather_out != 3 * K.NUM_MIXTURES * cy:
        raise ModelShapeError(f"gather.6 has {gather_out} outputs, expected 3*K*C_y = {3 * K.NUM_MIXTURES * cy}",
                              where=where)
    if chain(SYNTHESIS, cy) != 3:
        raise ModelShapeError(f"{OUTPUT_LAYER} must have 3 outputs", where=where)
    _expect_shape("inv_gain", arrays["inv_gain"], (header["num_rates"], cy), where)
    _expect_shape("z_lo", arrays["z_lo"], (cz,), where)
    _expect_shape("z_count", arrays["z_count"], (cz,), where)
    _expect_shape("z_cdf", arrays["z_cdf"], (cz, int(arrays["z_count"].max()) + 1), where)


# --- Clause 9.4 item 3: values [ModelValueError] ---------------------------------------------

@clause("9.4", "Validation")
def _check_range(what, value, lo, hi, where):
    """Clause 9.4 item 3: ModelValueError unless lo <= value <= hi."""
    if not lo <= value <= hi:
        raise ModelValueError(f"{what} = {_show(value)} outside {lo}..{hi}", where=where)


@clause("9.4", "Validation")
def _check_values(header, arrays, where):
    """Clause 9.4 item 3, in its order."""
    if header["weight_bits"] != PROFILES[header["profile"]]:
        raise ModelValueError(f"weight_bits {_show(header['weight_bits'])} does not match profile {header['profile']}",
                              where=where)
    _check_range("header field 'num_rates'", header["num_rates"], 1, MAX_RATES, where)
    _check_range("header field 'inv_gain_shift'", header["inv_gain_shift"], 0, MAX_INV_GAIN_SHIFT, where)
    _check_range("header field 'synthesis_input_clip'", header["synthesis_input_clip"], 1, K.ACT16_MAX, where)
    clips = header["clip"]
    for name in LAYER_NAMES:
        _check_range(f"clip of {name!r}", clips[name], 1, K.ACT16_MAX, where)
    if clips[OUTPUT_LAYER] != 255:
        raise ModelValueError(f"clip of {OUTPUT_LAYER} must be 255, found {clips[OUTPUT_LAYER]}", where=where)

    wmax = (1 << (header["weight_bits"] - 1)) - 1
    for name in LAYER_NAMES:
        if np.abs(arrays[f"{name}.weight"]).max(initial=0) > wmax:
            raise ModelValueError(f"{name}.weight has a value beyond +-{wmax} ({header['profile']})", where=where)
    for name in LAYER_NAMES:
        shift = arrays[f"{name}.shift"]
        if shift.min(initial=0) < 0 or shift.max(initial=0) > MAX_SHIFT:
            raise ModelValueError(f"{name}.shift has a value outside 0..{MAX_SHIFT} (max {int(shift.max())})",
                                  where=where)
    inv_gain = arrays["inv_gain"]
    if inv_gain.min(initial=0) < 0 or inv_gain.max(initial=0) > MAX_INV_GAIN:
        raise ModelValueError(f"inv_gain outside 0..{MAX_INV_GAIN}", where=where)
    for spec in CONTEXT:
        outside = ~causal_mask(spec.kernel)
        if np.any(arrays[f"{spec.name}.weight"][:, :, outside]):
            raise ModelValueError(f"{spec.name}.weight is non-zero outside the causal mask (clause 5.1)",
                                  where=where)
    z_lo, z_count, z_cdf = arrays["z_lo"], arrays["z_count"], arrays["z_cdf"]
    if z_count.min() < 1 or z_count.max() > MAX_Z_COUNT:
        raise ModelValueError(f"z_count outside 1..{MAX_Z_COUNT}", where=where)
    for c in range(len(z_count)):
        n_w, lo = int(z_count[c]), int(z_lo[c])
        row = z_cdf[c]
        if row[0] != 0 or np.any(np.diff(row[: n_w + 1]) < 1) or row[n_w] > 65535 or np.any(row[n_w + 1:] != 65536):
            raise ModelValueError(f"z_cdf row {c} is not a valid cumulative table (clause 9.4)", where=where)
        if abs(lo) > K.Z_MAX or abs(lo + n_w - 1) > K.Z_MAX:
            raise ModelValueError(f"z window of channel {c} exceeds Z_MAX", where=where)


@clause("9.5", "Accumulator bound")
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


@clause("9.5", "Accumulator bound")
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


@clause("9.4", "Validation")
def parse_model(data: bytes, where: str = "model") -> Model:
    """Clause 9.4: parse and validate a model file's bytes; the checks run in the clause's order."""
    members = _read_members(data, where)
    header = _parse_header(members, where)
    arrays = _read_arrays(members, header, where)
    _check_shapes(header, arrays, where)
    _check_values(header, arrays, where)
    layers = {}
    for name in LAYER_NAMES:
        spec = BY_NAME[name]
        layers[name] = Layer(
            name=name, weight=arrays[f"{name}.weight"], bias=arrays[f"{name}.bias"], shift=arrays[f"{name}.shift"],
            clip=header["clip"][name], kernel=spec.kernel, depth_to_space=spec.depth_to_space, leaky=spec.leaky,
        )
    check_accumulator_bound(layers, header, where)
    return Model(
        header=header, layers=layers, inv_gain=arrays["inv_gain"], z_lo=arrays["z_lo"], z_count=arrays["z_count"],
        z_cdf=arrays["z_cdf"], model_id=model_id_of(data), path=where,
    )


@clause("9", "Model-parameter file")
def load_model(path) -> Model:
    """Clause 9: read and validate a model file from disk."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_FILE_BYTES:
            raise ModelFormatError(f"file is {size} bytes, larger than any valid model",  # unreachable: over 1 GiB
                                   where=str(path))
        data = path.read_bytes()
    except OSError as exc:  # unreachable: a file-system error, which no vector can cause
        raise ModelFormatError(f"cannot read model file ({exc.strerror})", where=str(path)) from None
    return parse_model(data, where=str(path))


# --- Clause 6.2 check 6: the model files a decoder has ---------------------------------------

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models"


@informative("finding a model file by its id is outside the decoding process (clause 6.2 check 6 needs only the model)")
class ModelStore:
    """Non-normative: the model files a decoder has, found by model id (clause 6.2, check 6).

    Files are hashed when the store is built and parsed (validated) only when a
    stream asks for them.
    """

    def __init__(self, paths=()):
        self._paths: dict[bytes, Path] = {}
        self._models: dict[bytes, Model] = {}
        for p in paths:
            self.add_path(p)

    def add_path(self, path) -> None:
        path = Path(path)
        files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
        for f in files:
            self._paths.setdefault(model_id_of(f.read_bytes()), f)

    @informative("library use: tools and tests")
    def add(self, model: Model) -> None:
        """Informative: make a parsed model available (library use: tools, tests)."""
        self._models[model.model_id] = model

    def get(self, model_id: bytes) -> Model:
        if model_id in self._models:
            return self._models[model_id]
        if model_id not in self._paths:
            ids = [k.hex() for k in sorted(set(self._paths) | set(self._models))]
            known = ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
            raise UnknownModel(f"no model file with id {model_id.hex()} (known: {known or 'none'})", offset=11)
        model = load_model(self._paths[model_id])
        self._models[model_id] = model
        return model

    @classmethod
    @informative("the command line's default models")
    def default(cls) -> "ModelStore":
        """Informative: the models shipped with refdec (the CLI's default)."""
        return cls([DEFAULT_MODEL_DIR] if DEFAULT_MODEL_DIR.is_dir() else [])
