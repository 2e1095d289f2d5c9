"""Clause 9: the model-parameter file: canonical writing (informative), parsing and every
validation rule of clause 9.4 with its error class and in its order (format, shapes, values,
accumulator bound), and the clause 9.5 accumulator bound."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import struct
import zipfile

import numpy as np
import pytest

from refdec.constants import MAX_CHANNELS, MAX_SHIFT
from refdec import model_file
from refdec.architecture import CONTEXT, LAYER_NAMES, causal_mask
from refdec.errors import (AccumulatorOverflowRisk, ModelError, ModelFormatError, ModelShapeError,
                           ModelValueError)
from refdec.model_file import input_bounds, load_model, model_id_of, parse_model
from refdec.generators.model_writer import _npy_bytes, model_arrays, serialize_model
from refdec.generators.random_model import SMALL_CHANNELS, random_model

LIMIT = 1 << 31


# --- helpers ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(small_model):
    """(header, arrays) of the small model, to be copied and modified."""
    return small_model.header, model_arrays(small_model)


def fresh(base):
    header, arrays = base
    return copy.deepcopy(header), {k: v.copy() for k, v in arrays.items()}


def build(header, arrays) -> bytes:
    return serialize_model(header, arrays)


def expect(error_class, data):
    """parse_model rejects data with exactly this class (not a sibling, not a crash)."""
    with pytest.raises(ModelError) as info:
        parse_model(data)
    assert type(info.value) is error_class, f"{type(info.value).__name__}: {info.value}"
    return info.value


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buf.getvalue()


def members_of(data: bytes) -> dict[str, bytes]:
    zf = zipfile.ZipFile(io.BytesIO(data))
    return {info.filename: zf.read(info) for info in zf.infolist()}


def header_npy(obj_or_text) -> bytes:
    text = obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text)
    return _npy_bytes(np.frombuffer(text.encode("utf-8"), dtype=np.uint8))


def with_header_text(data: bytes, text: str) -> bytes:
    """The model file data with its header JSON replaced by this exact text."""
    members = members_of(data)
    members["header.npy"] = header_npy(text)
    return zip_of(members)


def npy_with_header(arr: np.ndarray, **meta) -> bytes:
    """A version 1.0 .npy member of arr's bytes under a hand-written header dict (descr,
    fortran_order, shape default to arr's)."""
    d = {"descr": arr.dtype.str, "fortran_order": False, "shape": arr.shape}
    d.update(meta)
    head = repr(d).encode("latin-1")
    head += b" " * (-(10 + len(head) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + np.ascontiguousarray(arr).tobytes()


# --- writing and identity (clause 9.1, informative writer) -----------------------------------

def test_serialization_is_deterministic(small_model_file, base):
    data, model = small_model_file
    header, arrays = fresh(base)
    once, twice = build(header, arrays), build(header, arrays)
    assert once == twice == data
    # Key order of the header and member order of the arrays do not matter.
    shuffled_header = dict(reversed(list(header.items())))
    shuffled_arrays = dict(reversed(list(arrays.items())))
    assert build(shuffled_header, shuffled_arrays) == data
    assert random_model(0)[0] == data
    assert model.model_id == hashlib.sha256(data).digest()[:8] == model_id_of(data)
    assert len(model.model_id) == 8


def test_different_parameters_give_a_different_id(base):
    header, arrays = fresh(base)
    arrays["gather.2.bias"][0] += 1
    assert model_id_of(build(header, arrays)) != model_id_of(build(*fresh(base)))


def test_parse_serialize_round_trip(small_model_file, small_model_w8_file):
    for data, model in (small_model_file, small_model_w8_file):
        again = serialize_model(model.header, model_arrays(model))
        assert again == data
        parsed = parse_model(again)
        assert parsed.model_id == model.model_id
        assert parsed.header == model.header
        for name in LAYER_NAMES:
            a, b = parsed.layers[name], model.layers[name]
            assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
            assert np.array_equal(a.shift, b.shift) and a.clip == b.clip
            assert (a.kernel, a.depth_to_space, a.leaky) == (b.kernel, b.depth_to_space, b.leaky)
        for name in ("inv_gain", "z_lo", "z_count", "z_cdf"):
            assert np.array_equal(getattr(parsed, name), getattr(model, name))


def test_file_layout(small_model_file):
    """Clause 9.1 / 9.3: exactly the 81 members, .npy version 1.0, dtypes of the profile."""
    data, model = small_model_file
    members = members_of(data)
    expected = {"header.npy", "inv_gain.npy", "z_lo.npy", "z_count.npy", "z_cdf.npy"}
    expected |= {f"{n}.{part}.npy" for n in LAYER_NAMES for part in ("weight", "bias", "shift")}
    assert set(members) == expected and len(expected) == 65
    for name, payload in members.items():
        assert payload[:8] == b"\x93NUMPY\x01\x00", name
        arr = np.lib.format.read_array(io.BytesIO(payload), allow_pickle=False)
        assert arr.dtype.byteorder in ("<", "|", "=")
    assert json.loads(bytes(np.lib.format.read_array(io.BytesIO(members["header.npy"]))))["format"] == "refdec-model"


def test_load_model_from_disk(small_model_file, tmp_path):
    data, model = small_model_file
    path = tmp_path / "model.npz"
    path.write_bytes(data)
    assert load_model(path).model_id == model.model_id
    err = expect_load_error(tmp_path / "missing.npz")
    assert type(err) is ModelFormatError


def expect_load_error(path):
    with pytest.raises(ModelError) as info:
        load_model(path)
    return info.value


# --- clause 9.4 item 1: container, header, members [ModelFormatError] -------------------------

def test_not_a_zip():
    expect(ModelFormatError, b"this is not a zip archive")
    expect(ModelFormatError, b"")


def test_too_many_members(small_model_file):
    members = members_of(small_model_file[0])
    for i in range(257 - len(members)):
        members[f"pad{i}.npy"] = _npy_bytes(np.zeros(1, np.int32))
    assert len(members) == 257
    err = expect(ModelFormatError, zip_of(members))
    assert "257 members" in str(err)


def test_member_too_large_is_rejected_before_reading(small_model_file):
    """The central directory announces 2^28 + 1 bytes: rejected without reading (clause 9.1)."""
    data = zip_of(members_of(small_model_file[0]))
    cd = data.find(b"PK\x01\x02")  # first central-directory entry
    assert cd > 0
    patched = bytearray(data)
    struct.pack_into("<I", patched, cd + 24, (1 << 28) + 1)  # uncompressed size
    err = expect(ModelFormatError, bytes(patched))
    assert str((1 << 28) + 1) in str(err)


def test_member_at_size_limit_is_not_a_size_error():
    """2^28 bytes (a real member of that size: a 128-byte .npy header and 2^28 - 128 bytes of
    int16 zeros) is at the limit: not a format error; the shapes (clause 9.4 item 2) reject it.
    Its CRC-32 is verified first (item 1), streamed without keeping the data."""
    from hostile_models import P28, _npy_header, model_with

    head = _npy_header("<i2", ((P28 - 128) // 2, 1, 1, 1))
    assert len(head) == 128
    data = model_with({"gather.1.weight.npy": (head, P28 - 128)})
    assert len(data) < 400_000
    err = expect(ModelShapeError, data)
    assert "gather.1 has 134217664 outputs" in str(err)
    bigger = model_with({"gather.1.weight.npy": (head + b"\0", P28 - 128)})  # 2^28 + 1 bytes
    assert str(P28 + 1) in str(expect(ModelFormatError, bigger))


@pytest.mark.parametrize("case", [
    "non_npy_member", "extra_member", "missing_member", "missing_header", "header_dtype", "header_2d",
    "header_not_utf8", "header_not_json", "header_not_object", "unknown_key", "missing_key",
    "bad_format", "bad_format_version", "bad_profile", "int_field_is_string", "int_field_is_bool",
    "clip_missing_layer", "clip_extra_layer", "clip_not_int", "weight_dtype", "weight_dtype_w8",
    "bias_dtype", "shift_dtype", "inv_gain_dtype", "z_cdf_dtype", "bias_ndim", "weight_ndim",
    "big_endian", "object_array", "garbage_npy",
    "weight_bits_float", "format_version_true", "format_version_float", "int_field_is_float",
    "int_field_has_exponent", "int_field_is_null", "clip_is_bool", "clip_not_object",
    "description_not_string", "provenance_not_object", "act_exponents_not_object", "act_exponents_float",
    "act_exponents_bool", "duplicate_key", "duplicate_key_in_clip", "json_nan", "json_infinity",
    "json_deeply_nested", "npy_v2", "npy_v3", "fortran", "fortran_1d", "native_byte_order",
    "no_byte_order_multibyte", "structured_dtype", "subarray_dtype", "npy_truncated_data",
    "npy_truncated_header", "npy_header_not_literal", "npy_header_extra_key", "npy_bad_shape",
    "duplicate_member", "directory_member",
])
def test_format_errors(base, small_model_file, case):
    header, arrays = fresh(base)
    data = None
    if case == "non_npy_member":
        members = members_of(small_model_file[0])
        members["README.txt"] = b"hello"
        data = zip_of(members)
    elif case == "extra_member":
        arrays["extra"] = np.zeros(3, np.int32)
    elif case == "missing_member":
        del arrays["gather.4.shift"]
    elif case == "missing_header":
        members = members_of(small_model_file[0])
        del members["header.npy"]
        data = zip_of(members)
    elif case in ("header_dtype", "header_2d", "header_not_utf8", "header_not_json", "header_not_object"):
        members = members_of(small_model_file[0])
        text = json.dumps(header).encode()
        members["header.npy"] = {
            "header_dtype": _npy_bytes(np.frombuffer(text, dtype=np.int8)),
            "header_2d": _npy_bytes(np.frombuffer(text[: len(text) // 2 * 2], dtype=np.uint8).reshape(2, -1)),
            "header_not_utf8": _npy_bytes(np.frombuffer(b"\xff\xfe" + text, dtype=np.uint8)),
            "header_not_json": header_npy("{'format': 'refdec-model'"),
            "header_not_object": header_npy([header]),
        }[case]
        data = zip_of(members)
    elif case == "unknown_key":
        header["comment"] = "x"
    elif case == "missing_key":
        del header["inv_gain_shift"]
    elif case == "bad_format":
        header["format"] = "refdec-modell"
    elif case == "bad_format_version":
        header["format_version"] = 2
    elif case == "bad_profile":
        header["profile"] = "W4A8"
    elif case == "int_field_is_string":
        header["latent_channels"] = str(header["latent_channels"])
    elif case == "int_field_is_bool":
        header["inv_gain_shift"] = True
    elif case == "clip_missing_layer":
        del header["clip"]["gather.3"]
    elif case == "clip_extra_layer":
        header["clip"]["gather.7"] = 100
    elif case == "clip_not_int":
        header["clip"]["gather.3"] = 100.0
    elif case == "weight_dtype":
        arrays["gather.1.weight"] = arrays["gather.1.weight"].astype(np.int32)
    elif case == "weight_dtype_w8":
        header["profile"], header["weight_bits"] = "W8A16", 8  # int16 weights in a W8A16 file
    elif case == "bias_dtype":
        arrays["synthesis.2.bias"] = arrays["synthesis.2.bias"].astype(np.int64)
    elif case == "shift_dtype":
        arrays["context.5.shift"] = arrays["context.5.shift"].astype(np.int8)
    elif case == "inv_gain_dtype":
        arrays["inv_gain"] = arrays["inv_gain"].astype(np.uint32)
    elif case == "z_cdf_dtype":
        arrays["z_cdf"] = arrays["z_cdf"].astype(np.int16)
    elif case == "bias_ndim":
        arrays["gather.0.bias"] = arrays["gather.0.bias"][None, :]
    elif case == "weight_ndim":
        arrays["gather.0.weight"] = arrays["gather.0.weight"][:, :, 0, 0]
    elif case == "big_endian":
        arrays["gather.1.bias"] = arrays["gather.1.bias"].astype(">i4")
    elif case in ("object_array", "garbage_npy"):
        members = members_of(small_model_file[0])
        if case == "object_array":
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
            members["gather.1.bias.npy"] = buf.getvalue()
        else:
            members["gather.1.bias.npy"] = b"\x93NUMPY\x01\x00garbage"
        data = zip_of(members)
    # Clause 9.2: "integer" is a JSON number without fraction or exponent; optional keys are typed.
    elif case == "weight_bits_float":
        header["weight_bits"] = 16.0
    elif case == "format_version_true":
        header["format_version"] = True
    elif case == "format_version_float":
        header["format_version"] = 1.0
    elif case == "int_field_is_float":
        header["num_rates"] = float(header["num_rates"])
    elif case == "int_field_has_exponent":
        text = json.dumps(header).replace('"latent_channels": 8', '"latent_channels": 8e0')
        assert "8e0" in text
        data = with_header_text(small_model_file[0], text)
    elif case == "int_field_is_null":
        header["hyper_channels"] = None
    elif case == "clip_is_bool":
        header["clip"]["synthesis.1"] = True
    elif case == "clip_not_object":
        header["clip"] = [100] * 20
    elif case == "description_not_string":
        header["description"] = 7
    elif case == "provenance_not_object":
        header["provenance"] = "refdec.generators.random_model"
    elif case == "act_exponents_not_object":
        header["act_exponents"] = [1, 2, 3]
    elif case == "act_exponents_float":
        header["act_exponents"] = {"gather.0": 8, "gather.1": 7.5}
    elif case == "act_exponents_bool":
        header["act_exponents"] = {"gather.0": False}
    elif case == "duplicate_key":
        data = with_header_text(small_model_file[0], json.dumps(header)[:-1] + ', "format": "refdec-model"}')
    elif case == "duplicate_key_in_clip":
        text = json.dumps(header).replace('"clip": {', '"clip": {"gather.0": 100, ', 1)
        data = with_header_text(small_model_file[0], text)
    elif case in ("json_nan", "json_infinity"):
        text = json.dumps(header).replace('"inv_gain_shift": 12', '"inv_gain_shift": ' +
                                          ("NaN" if case == "json_nan" else "-Infinity"))
        assert "12" not in text.split('"inv_gain_shift":')[1][:4]
        data = with_header_text(small_model_file[0], text)
    elif case == "json_deeply_nested":
        text = json.dumps(header)[:-1] + ', "provenance": ' + "[" * 100000 + "]" * 100000 + "}"
        data = with_header_text(small_model_file[0], text)
    # Clause 9.1: .npy version 1.0, C order, little-endian, plain dtypes, complete data.
    elif case in ("npy_v2", "npy_v3"):
        members = members_of(small_model_file[0])
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arrays["gather.1.bias"], version=(2, 0) if case == "npy_v2" else (3, 0))
        members["gather.1.bias.npy"] = buf.getvalue()
        data = zip_of(members)
    elif case in ("fortran", "fortran_1d"):
        members = members_of(small_model_file[0])
        buf = io.BytesIO()
        if case == "fortran":
            np.lib.format.write_array(buf, np.asfortranarray(arrays["gather.1.weight"]), version=(1, 0))
            members["gather.1.weight.npy"] = buf.getvalue()
        else:  # the same bytes as C order, but flagged Fortran: still not C order (clause 9.1)
            members["gather.1.bias.npy"] = npy_with_header(arrays["gather.1.bias"], fortran_order=True)
        data = zip_of(members)
    elif case in ("native_byte_order", "no_byte_order_multibyte", "structured_dtype", "subarray_dtype",
                  "npy_header_extra_key", "npy_bad_shape"):
        members = members_of(small_model_file[0])
        b = arrays["gather.1.bias"]
        meta = {"native_byte_order": {"descr": "=i4"}, "no_byte_order_multibyte": {"descr": "|i4"},
                "structured_dtype": {"descr": [("a", "<i4")]},
                "subarray_dtype": {"descr": "(2,)<i4", "shape": (len(b) // 2,)},
                "npy_header_extra_key": {"extra": 1}, "npy_bad_shape": {"shape": (len(b), -1)}}[case]
        members["gather.1.bias.npy"] = npy_with_header(b, **meta)
        data = zip_of(members)
    elif case == "npy_truncated_data":
        members = members_of(small_model_file[0])
        members["gather.1.bias.npy"] = members["gather.1.bias.npy"][:-1]
        data = zip_of(members)
    elif case == "npy_truncated_header":
        members = members_of(small_model_file[0])
        members["gather.1.bias.npy"] = members["gather.1.bias.npy"][:40]
        data = zip_of(members)
    elif case == "npy_header_not_literal":
        members = members_of(small_model_file[0])
        raw = members["gather.1.bias.npy"]
        head_len = struct.unpack_from("<H", raw, 8)[0]
        bad = b"__import__('os').getcwd()".ljust(head_len - 1) + b"\n"
        members["gather.1.bias.npy"] = raw[:10] + bad + raw[10 + head_len:]
        data = zip_of(members)
    elif case in ("duplicate_member", "directory_member"):
        members = members_of(small_model_file[0])
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, payload in members.items():
                zf.writestr(name, payload)
            if case == "duplicate_member":
                import warnings
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    zf.writestr("z_lo.npy", members["z_lo.npy"])  # identical bytes: still rejected
            else:
                zf.writestr("models/", b"")
        data = buf.getvalue()
    expect(ModelFormatError, data if data is not None else build(header, arrays))


def test_big_endian_member_message(base):
    """Clause 9.1: a big-endian member is rejected as such (not as a dtype mismatch that prints
    the same dtype name twice)."""
    header, arrays = fresh(base)
    arrays["gather.1.bias"] = arrays["gather.1.bias"].astype(">i4")
    err = expect(ModelFormatError, build(header, arrays))
    assert "big-endian" in str(err) and "gather.1.bias" in str(err)
    assert "found 1-D int32" not in str(err)


def test_npy_trailing_bytes_are_rejected(base, small_model_file):
    """Clause 9.1.3: a member's data is exactly what its shape needs; bytes after it (which NumPy's
    reader would ignore) are a format error, so that every byte of a valid member has a meaning."""
    members = members_of(small_model_file[0])
    members["gather.1.bias.npy"] += b"\0" * 4
    err = expect(ModelFormatError, zip_of(members))
    assert "gather.1.bias.npy" in str(err) and "needs 48 bytes of data, the member has 52" in str(err)


def test_optional_header_keys(base):
    """Clause 9.2: description, provenance and act_exponents are optional and informative."""
    header, arrays = fresh(base)
    for key in ("description", "provenance", "act_exponents"):
        header.pop(key, None)
    parse_model(build(header, arrays))
    header.update(description="", provenance={"nested": {"list": [1, 2.5, None, True]}},
                  act_exponents={"gather.0": 9, "synthesis_input": -3})
    model = parse_model(build(header, arrays))
    assert model.header["act_exponents"] == {"gather.0": 9, "synthesis_input": -3}


def test_header_integers_may_be_huge_json_integers(base):
    """A JSON integer of any size is an integer: range checks, never a crash (clause 9.4 items 2, 3)."""
    header, arrays = fresh(base)
    header["inv_gain_shift"] = 2 ** 70
    expect(ModelValueError, build(header, arrays))
    header, arrays = fresh(base)
    header["latent_channels"] = -(2 ** 70)
    expect(ModelShapeError, build(header, arrays))
    header, arrays = fresh(base)
    header["clip"]["gather.2"] = 2 ** 100
    expect(ModelValueError, build(header, arrays))


@pytest.mark.parametrize("key, digits, error", [
    ("num_rates", "9" * 5000, ModelShapeError),  # inv_gain is not (R, C_y)
    ("latent_channels", "-" + "9" * 5000, ModelShapeError),
    ("inv_gain_shift", "1" + "0" * 4999, ModelValueError),
    ("inv_gain_shift", "9" * 4000, ModelValueError),
])
def test_header_integers_beyond_the_int_string_limit(small_model_file, key, digits, error):
    """A JSON integer with more digits than Python converts by default is still an integer
    (clause 9.2): a range error of clause 9.4, not a format error and never a crash."""
    text = json.dumps(small_model_file[1].header).replace(f'"{key}": {small_model_file[1].header[key]},',
                                                          f'"{key}": {digits},')
    assert digits in text
    expect(error, with_header_text(small_model_file[0], text))


def test_informative_integers_may_be_long(small_model_file):
    header = dict(small_model_file[1].header, act_exponents={"gather.0": 1})
    text = json.dumps(header).replace('"gather.0": 1}', '"gather.0": ' + "7" * 6000 + "}")
    assert "7" * 6000 in text
    model = parse_model(with_header_text(small_model_file[0], text))
    assert model.header["act_exponents"]["gather.0"] > 10 ** 3999


def test_compressed_size_is_limited_by_the_uncompressed_size(small_model_file):
    """Clause 9.1.1: a member's compressed size is at most u + floor(u / 2^10) + 1024 bytes (empty
    deflate blocks make up the rest here): at the limit accepted, one byte past it rejected from
    the records, for a member under 2^10 bytes and one over."""
    from refdec.generators.invalid_models import _deflated_past_bound

    members = raw_members(small_model_file[0])
    small = min((m for m in members if len(m[1]) >= 64), key=lambda m: len(m[1]))[0]
    large = max(members, key=lambda m: len(m[1]))[0]
    assert len(dict(members)[small]) < 1 << 10 <= len(dict(members)[large])
    for name in (small, large):
        u = len(dict(members)[name])
        assert model_file.max_deflated_size(u) == u + u // 1024 + 1024
        at = _deflated_past_bound(members, name, 0)
        assert parse_model(at).layers["gather.0"].weight.shape == small_model_file[1].layers["gather.0"].weight.shape
        err = expect(ModelFormatError, _deflated_past_bound(members, name, 1))
        assert name in str(err) and str(model_file.max_deflated_size(u)) in str(err)


def test_no_valid_model_file_is_larger_than_the_file_limit():
    """Clause 9.1's note: the records and the members' data fill the file, so the limits bound it
    by MAX_MODEL_FILE_BYTES, from which load_model refuses a file before reading it."""
    from refdec.model_file import MEMBER_NAMES

    members = len(MEMBER_NAMES)
    data = (model_file.MAX_TOTAL_MEMBER_BYTES + (model_file.MAX_TOTAL_MEMBER_BYTES >> model_file.DEFLATE_GROWTH_SHIFT)
            + members * model_file.DEFLATE_GROWTH_BYTES)
    records = sum(30 + 46 + 2 * len(name.encode()) + 3 * 0xFFFF for name in MEMBER_NAMES)  # extras, comments
    largest = data + records + 22
    assert members == 65 and largest == 550_248_613 <= model_file.MAX_MODEL_FILE_BYTES == (1 << 29) + (1 << 24)


def test_oversized_file_on_disk_is_not_read(tmp_path):
    """load_model rejects a file larger than any valid model file from its size alone (a sparse
    file here)."""
    path = tmp_path / "huge.npz"
    with open(path, "wb") as fh:
        fh.truncate(model_file.MAX_MODEL_FILE_BYTES + 1)
    err = expect_load_error(path)
    assert type(err) is ModelFormatError and str(model_file.MAX_MODEL_FILE_BYTES + 1) in str(err)


# --- clause 9.4 item 3: weight_bits and weight range [ModelValueError] -------------------------

def test_weight_bits_must_match_profile(base):
    header, arrays = fresh(base)
    header["weight_bits"] = 8
    expect(ModelValueError, build(header, arrays))


@pytest.mark.parametrize("layer", ["hyper_synthesis.0", "context.7", "gather.6", "synthesis.6"])
def test_weights_are_symmetric_w16(base, layer):
    header, arrays = fresh(base)
    w = arrays[f"{layer}.weight"]
    w.flat[int(np.flatnonzero(w)[0])] = 32767  # the largest allowed magnitude is accepted
    parse_model(build(header, arrays))
    w.flat[int(np.flatnonzero(w)[0])] = -32767
    parse_model(build(header, arrays))
    w.flat[int(np.flatnonzero(w)[0])] = -32768
    expect(ModelValueError, build(header, arrays))


def test_weights_are_symmetric_w8(small_model_w8):
    header, arrays = small_model_w8.header, model_arrays(small_model_w8)
    arrays = {k: v.copy() for k, v in arrays.items()}
    assert arrays["gather.2.weight"].dtype == np.int8
    arrays["gather.2.weight"][0, 0, 0, 0] = 127
    parse_model(build(header, arrays))
    arrays["gather.2.weight"][0, 0, 0, 0] = -128
    expect(ModelValueError, build(header, arrays))


# --- clause 9.4 item 2: shapes [ModelShapeError] ------------------------------------------------

def _resize_out(arrays, layer, new_out):
    """Change a layer's output count (weight, bias, shift together)."""
    w = arrays[f"{layer}.weight"]
    reps = -(-new_out // w.shape[0])
    arrays[f"{layer}.weight"] = np.concatenate([w] * reps)[:new_out]
    arrays[f"{layer}.bias"] = np.concatenate([arrays[f"{layer}.bias"]] * reps)[:new_out]
    arrays[f"{layer}.shift"] = np.concatenate([arrays[f"{layer}.shift"]] * reps)[:new_out]


def _resize_in(arrays, layer, new_in):
    w = arrays[f"{layer}.weight"]
    reps = -(-new_in // w.shape[1])
    arrays[f"{layer}.weight"] = np.concatenate([w] * reps, axis=1)[:, :new_in] // reps


@pytest.mark.parametrize("case", [
    "hyper_kernel", "context_kernel", "gather_kernel", "synthesis_kernel",
    "hyper0_inputs", "context_inputs", "gather0_inputs", "synthesis0_inputs", "chain_inputs",
    "d2s_not_multiple_of_4", "gather6_outputs", "synthesis6_outputs", "bias_length", "shift_length",
    "inv_gain_rows", "inv_gain_cols", "z_lo_length", "z_count_length", "z_cdf_width", "z_cdf_rows",
    "layer_over_2048_outputs", "d2s_layer_over_2048_before_d2s", "layer_without_outputs", "num_rates_mismatch",
])
def test_shape_errors(base, case):
    header, arrays = fresh(base)
    cy = header["latent_channels"]
    if case.endswith("_kernel"):
        layer = {"hyper_kernel": "hyper_synthesis.1", "context_kernel": "context.5",
                 "gather_kernel": "gather.2", "synthesis_kernel": "synthesis.4"}[case]
        w = arrays[f"{layer}.weight"]
        k = w.shape[2]
        new_k = k + 2
        padded = np.zeros(w.shape[:2] + (new_k, new_k), w.dtype)
        padded[:, :, 1:1 + k, 1:1 + k] = w
        if layer.startswith("context"):
            padded *= causal_mask(new_k)
        arrays[f"{layer}.weight"] = padded
    elif case == "hyper0_inputs":
        _resize_in(arrays, "hyper_synthesis.0", header["hyper_channels"] + 1)
    elif case == "context_inputs":
        _resize_in(arrays, "context.3", cy + 1)
    elif case == "gather0_inputs":
        _resize_in(arrays, "gather.0", arrays["gather.0.weight"].shape[1] - 1)
    elif case == "synthesis0_inputs":
        _resize_in(arrays, "synthesis.0", cy + 2)
    elif case == "chain_inputs":
        _resize_out(arrays, "synthesis.2", arrays["synthesis.2.weight"].shape[0] + 1)
    elif case == "d2s_not_multiple_of_4":
        out = arrays["synthesis.3.weight"].shape[0]
        _resize_out(arrays, "synthesis.3", out + 2)  # delivers (out + 2) / 4: not an integer
    elif case == "gather6_outputs":
        _resize_out(arrays, "gather.6", 9 * cy + 3)
    elif case == "synthesis6_outputs":
        _resize_out(arrays, "synthesis.6", 4)
    elif case == "bias_length":
        arrays["gather.3.bias"] = arrays["gather.3.bias"][:-1]
    elif case == "shift_length":
        arrays["hyper_synthesis.2.shift"] = np.concatenate([arrays["hyper_synthesis.2.shift"], [0]]).astype(np.uint8)
    elif case == "inv_gain_rows":
        arrays["inv_gain"] = arrays["inv_gain"][:-1]
    elif case == "inv_gain_cols":
        arrays["inv_gain"] = arrays["inv_gain"][:, :-1]
    elif case == "z_lo_length":
        arrays["z_lo"] = arrays["z_lo"][:-1]
    elif case == "z_count_length":
        arrays["z_count"] = np.concatenate([arrays["z_count"], [3]]).astype(np.int32)
    elif case == "z_cdf_width":
        arrays["z_cdf"] = np.concatenate([arrays["z_cdf"], np.full((len(arrays["z_cdf"]), 1), 65536)], axis=1
                                         ).astype(np.int32)
    elif case == "z_cdf_rows":
        arrays["z_cdf"] = arrays["z_cdf"][:-1]
    elif case == "layer_over_2048_outputs":
        # gather.0 delivers 2049 channels to gather.1 (consistent shapes otherwise).
        _resize_out(arrays, "gather.0", 2049)
        _resize_in(arrays, "gather.1", 2049)
    elif case == "d2s_layer_over_2048_before_d2s":
        # 2052 outputs before D2S (513 after): clause 5.2 counts weight dimension 0.
        _resize_out(arrays, "synthesis.3", 2052)
        _resize_in(arrays, "synthesis.4", 513)
    elif case == "layer_without_outputs":
        for part in ("weight", "bias", "shift"):
            arrays[f"gather.5.{part}"] = arrays[f"gather.5.{part}"][:0]
        arrays["gather.6.weight"] = arrays["gather.6.weight"][:, :0]
    elif case == "num_rates_mismatch":
        header["num_rates"] = 0  # a value error too, but inv_gain is (6, C_y), not (0, C_y): shapes first
    err = expect(ModelShapeError, build(header, arrays))
    if case.startswith(("layer_over", "d2s_layer_over", "layer_without")):
        assert "outside 1..2048" in str(err)


def test_channel_limit_is_inclusive(base):
    """Clause 5.2: 2048 outputs (before D2S) is allowed, for a plain and a D2S layer."""
    header, arrays = fresh(base)
    _resize_out(arrays, "gather.0", 2048)
    _resize_in(arrays, "gather.1", 2048)
    _resize_out(arrays, "hyper_synthesis.0", 2048)  # delivers 512
    _resize_in(arrays, "hyper_synthesis.1", 512)
    model = parse_model(build(header, arrays))
    assert model.layers["gather.0"].weight.shape[0] == 2048
    assert model_file.MAX_CHANNELS == MAX_CHANNELS == 2048


def test_latent_channels_at_most_227():
    """Clause 5.2: gather.6 has 3 K C_y <= 2048 outputs, so C_y <= 227."""
    _, model = random_model(5, channels=dict(SMALL_CHANNELS, latent=227))
    assert model.layers["gather.6"].weight.shape[0] == 2043
    with pytest.raises(ModelShapeError) as info:
        random_model(5, channels=dict(SMALL_CHANNELS, latent=228))
    assert "gather.6 has 2052 outputs" in str(info.value)


def test_d2s_layer_may_deliver_more_than_before(base):
    """A consistent re-shaping of the synthesis is accepted (the checks are about consistency)."""
    header, arrays = fresh(base)
    _resize_out(arrays, "synthesis.1", 4 * 5)  # delivers 5 channels
    _resize_in(arrays, "synthesis.2", 5)
    parse_model(build(header, arrays))


@pytest.mark.parametrize("key, value", [("latent_channels", 2049), ("latent_channels", 4097),
                                        ("latent_channels", 0), ("hyper_channels", 0), ("hyper_channels", 2049),
                                        ("hyper_channels", -1)])
def test_header_channel_counts_are_shape_errors(base, key, value):
    """Clause 9.4 item 2: C_y, C_z outside clause 5.2 (1..2048) is a ModelShapeError."""
    header, arrays = fresh(base)
    header[key] = value
    err = expect(ModelShapeError, build(header, arrays))
    assert key in str(err) and "1..2048" in str(err)


def test_d2s_layer_output_before_d2s_is_limited(base):
    """Clause 5.2: a D2S layer's outputs are counted before D2S: 2052 (delivering 513) is too many."""
    header, arrays = fresh(base)
    cz = header["hyper_channels"]
    n1 = arrays["hyper_synthesis.1.weight"].shape[0]
    arrays["hyper_synthesis.0.weight"] = np.ones((2052, cz, 3, 3), np.int16)
    arrays["hyper_synthesis.0.bias"] = np.zeros(2052, np.int32)
    arrays["hyper_synthesis.0.shift"] = np.zeros(2052, np.uint8)
    arrays["hyper_synthesis.1.weight"] = np.ones((n1, 513, 3, 3), np.int16)
    err = expect(ModelShapeError, build(header, arrays))
    assert "hyper_synthesis.0 has 2052 outputs" in str(err)


# --- clause 9.4 item 3: values [ModelValueError] --------------------------------------------

@pytest.mark.parametrize("case", [
    "shift_28", "shift_32", "shift_255", "inv_gain_shift_28", "inv_gain_shift_negative",
    "clip_0", "clip_32768", "clip_negative", "synthesis_input_clip_0", "synthesis_input_clip_32768",
    "output_clip_not_255", "inv_gain_negative", "inv_gain_65537", "inv_gain_shift_32",
    "mask_centre", "mask_below", "mask_right", "z_cdf_first", "z_cdf_flat", "z_cdf_decreasing",
    "z_cdf_last_65536", "z_cdf_padding", "z_lo_beyond", "z_hi_beyond", "z_count_0", "z_count_1025",
    "num_rates_0", "num_rates_65",
])
def test_value_errors(base, case):
    header, arrays = fresh(base)
    c = 1
    n_w = int(arrays["z_count"][c])
    if case == "shift_28":
        arrays["gather.5.shift"][0] = 28
    elif case == "shift_32":
        arrays["gather.5.shift"][0] = 32
    elif case == "shift_255":
        arrays["synthesis.6.shift"][-1] = 255
    elif case == "inv_gain_shift_28":
        header["inv_gain_shift"] = 28
    elif case == "inv_gain_shift_negative":
        header["inv_gain_shift"] = -1
    elif case == "clip_negative":
        header["clip"]["hyper_synthesis.0"] = -5
    elif case == "clip_0":
        header["clip"]["synthesis.3"] = 0
    elif case == "clip_32768":
        header["clip"]["context.3"] = 32768
    elif case == "synthesis_input_clip_0":
        header["synthesis_input_clip"] = 0
    elif case == "synthesis_input_clip_32768":
        header["synthesis_input_clip"] = 32768
    elif case == "output_clip_not_255":
        header["clip"]["synthesis.6"] = 254
    elif case == "inv_gain_negative":
        arrays["inv_gain"][0, 0] = -1
    elif case == "inv_gain_65537":
        arrays["inv_gain"][-1, -1] = 65537
    elif case == "inv_gain_shift_32":
        header["inv_gain_shift"] = 32
    elif case.startswith("mask_"):
        layer = {"mask_centre": "context.3", "mask_below": "context.5", "mask_right": "context.7"}[case]
        w = arrays[f"{layer}.weight"]
        k = w.shape[2]
        p = k // 2
        ky, kx = {"mask_centre": (p, p), "mask_below": (k - 1, 0), "mask_right": (p, k - 1)}[case]
        assert not causal_mask(k)[ky, kx]
        w[0, 0, ky, kx] = 1
    elif case == "z_cdf_first":
        arrays["z_cdf"][c, 0] = 1
    elif case == "z_cdf_flat":
        arrays["z_cdf"][c, 2] = arrays["z_cdf"][c, 1]
    elif case == "z_cdf_decreasing":
        arrays["z_cdf"][c, 2] = arrays["z_cdf"][c, 1] - 1
    elif case == "z_cdf_last_65536":
        arrays["z_cdf"][c, n_w] = 65536
    elif case == "z_cdf_padding":
        width = arrays["z_cdf"].shape[1]
        c = int(np.argmin(arrays["z_count"]))
        assert int(arrays["z_count"][c]) + 1 < width
        arrays["z_cdf"][c, -1] = 65535
    elif case == "z_lo_beyond":
        arrays["z_lo"][c] = -16384
    elif case == "z_hi_beyond":
        arrays["z_lo"][c] = 16383 - n_w + 2  # lo + n_w - 1 == 16384
    elif case == "z_count_0":
        arrays["z_count"][c] = 0
    elif case == "z_count_1025":
        # z_cdf widened to max(z_count) + 1 = 1026 so that the shapes are consistent (clause 9.4 item 2).
        arrays["z_count"][c] = 1025
        z_cdf = np.full((len(arrays["z_cdf"]), 1026), 65536, np.int32)
        z_cdf[:, : arrays["z_cdf"].shape[1]] = arrays["z_cdf"]
        arrays["z_cdf"] = z_cdf
    elif case == "num_rates_0":
        header["num_rates"] = 0
        arrays["inv_gain"] = arrays["inv_gain"][:0]
    elif case == "num_rates_65":
        header["num_rates"] = 65
        arrays["inv_gain"] = np.resize(arrays["inv_gain"], (65, arrays["inv_gain"].shape[1]))
    expect(ModelValueError, build(header, arrays))


def test_value_limits_inclusive(base):
    """The ends of every range of clause 9.4 item 3 are valid."""
    header, arrays = fresh(base)
    arrays["gather.5.shift"][0] = 27
    arrays["gather.5.shift"][1] = 0
    header["inv_gain_shift"] = 27
    header["clip"]["gather.6"] = 32767  # gather.6 feeds no layer (clause 9.5)
    header["clip"]["synthesis.2"] = 1
    arrays["inv_gain"][0, 0], arrays["inv_gain"][0, 1] = 0, 65536
    c = 1
    n_w = int(arrays["z_count"][c])
    arrays["z_cdf"][c, n_w] = 65535
    arrays["z_lo"][c] = 16383 - n_w + 1  # lo + n_w - 1 == Z_MAX
    arrays["z_lo"][0] = -16383
    parse_model(build(header, arrays))
    header["inv_gain_shift"] = 0
    parse_model(build(header, arrays))


@pytest.mark.parametrize("num_rates", [1, 64])
def test_num_rates_limits_inclusive(base, num_rates):
    header, arrays = fresh(base)
    header["num_rates"] = num_rates
    arrays["inv_gain"] = np.resize(arrays["inv_gain"], (num_rates, arrays["inv_gain"].shape[1]))
    assert parse_model(build(header, arrays)).num_rates == num_rates


def test_z_count_1025_without_wider_table_is_a_shape_error(base):
    """Clause 9.4 item 2 comes first: z_cdf must be (C_z, max(z_count) + 1) before z_count's range
    (item 3) is looked at."""
    header, arrays = fresh(base)
    arrays["z_count"][1] = 1025
    err = expect(ModelShapeError, build(header, arrays))
    assert "z_cdf" in str(err)


def test_random_model_shifts_stay_within_27():
    """random_model clips its shifts to 0..27 (clause 9.3): its models stay valid (random_model
    parses what it writes) for small and large activation clips."""
    for kwargs in ({}, {"act_clip": 1}, {"act_clip": 32767}, {"profile": "W8A16", "act_clip": 1}):
        _, model = random_model(9, **kwargs)
        assert 0 <= min(int(layer.shift.min()) for layer in model.layers.values())
        assert max(int(layer.shift.max()) for layer in model.layers.values()) <= MAX_SHIFT


# --- clause 9.5: the accumulator bound [AccumulatorOverflowRisk] --------------------------------

@pytest.mark.parametrize("layer", ["hyper_synthesis.0", "hyper_synthesis.2", "context.5", "gather.0", "gather.6",
                                   "synthesis.0", "synthesis.3", "synthesis.6"])
@pytest.mark.parametrize("sign", [1, -1])
def test_accumulator_bound_is_exact(base, layer, sign):
    header, arrays = fresh(base)
    # Make gather.0's in_max the largest of four different clips, so a wrong choice shows.
    header["clip"].update({"hyper_synthesis.2": 700, "context.3": 900, "context.5": 5000, "context.7": 800})
    header["synthesis_input_clip"] = 3000
    in_max = input_bounds(header)[layer]
    assert in_max == {"hyper_synthesis.0": 255, "context.5": 255, "gather.0": 5000, "synthesis.0": 3000}.get(
        layer, header["clip"][LAYER_NAMES[LAYER_NAMES.index(layer) - 1]])
    o = arrays[f"{layer}.weight"].shape[0] - 1  # the last output channel
    s = int(np.abs(arrays[f"{layer}.weight"][o].astype(np.int64)).sum())
    assert 0 < s * in_max < LIMIT
    arrays[f"{layer}.bias"][o] = sign * (LIMIT - 1 - s * in_max)  # sum|W| * in_max + |b| == 2^31 - 1
    parse_model(build(header, arrays))
    arrays[f"{layer}.bias"][o] = sign * (LIMIT - s * in_max)  # == 2^31
    err = expect(AccumulatorOverflowRisk, build(header, arrays))
    assert layer in str(err) and f"output channel {o}" in str(err)


def test_accumulator_bound_from_weights_alone(base):
    """sum|W| * in_max alone reaching 2^31 (with the clip of the previous layer as in_max)."""
    header, arrays = fresh(base)
    layer, prev = "gather.3", "gather.2"
    w = arrays[f"{layer}.weight"]
    w[:] = 0
    w[1:, 0, 0, 0] = 1
    w[0, :2, 0, 0] = [32767, -32767]  # sum|W| = 65534
    arrays[f"{layer}.bias"][:] = 0
    header["clip"][prev] = 32767  # 65534 * 32767 = 2147352578 < 2^31: fine
    parse_model(build(header, arrays))
    w[0, 2, 0, 0] = 5  # 65539 * 32767 = 2147516813 >= 2^31
    expect(AccumulatorOverflowRisk, build(header, arrays))
    header["clip"][prev] = 32766  # 65539 * 32766 = 2147451274 < 2^31
    parse_model(build(header, arrays))


def test_context_in_max_is_255_not_the_clip(base):
    header, arrays = fresh(base)
    s = int(np.abs(arrays["context.3.weight"][0].astype(np.int64)).sum())
    arrays["context.3.bias"][0] = LIMIT - 1 - 255 * s
    header["clip"] = {k: (1 if k != "synthesis.6" else 255) for k in header["clip"]}
    parse_model(build(header, arrays))


# --- clause 9.4: the order of the checks -------------------------------------------------------

def _violate(header, arrays, what):
    """Introduce one violation of the given group into (header, arrays)."""
    if what == "format":
        header["colour"] = "blue"
    elif what == "format_member":
        arrays["gather.2.bias"] = arrays["gather.2.bias"].astype(np.int64)
    elif what == "shape_limit":
        header["latent_channels"] = 2049
    elif what == "shape":
        arrays["synthesis.0.bias"] = arrays["synthesis.0.bias"][:-1]
    elif what == "value_header":
        header["weight_bits"] = 8
    elif what == "value":
        arrays["synthesis.4.shift"][1] = 28
    elif what == "accumulator":
        arrays["gather.3.bias"][0] = 2 ** 31 - 1
    else:
        raise AssertionError(what)


ORDER = [("format", ModelFormatError), ("format_member", ModelFormatError), ("shape_limit", ModelShapeError),
         ("shape", ModelShapeError), ("value_header", ModelValueError), ("value", ModelValueError),
         ("accumulator", AccumulatorOverflowRisk)]


@pytest.mark.parametrize("first, later", [(a, b) for i, (a, _) in enumerate(ORDER) for b, _ in ORDER[i + 1:]
                                          if a.split("_")[0] != b.split("_")[0]])
def test_check_order(base, first, later):
    """Clause 9.4: format, then shapes, then values, then the accumulator bound: with one violation
    of each of two groups, the earlier group is reported."""
    header, arrays = fresh(base)
    _violate(header, arrays, later)
    expect(dict(ORDER)[later], build(header, arrays))
    _violate(header, arrays, first)
    expect(dict(ORDER)[first], build(header, arrays))


def test_weight_bits_mismatch_is_a_value_error_after_shapes(base):
    """weight_bits vs profile is item 3: the member dtypes follow the profile (item 1), and a shape
    error is reported before the mismatch."""
    header, arrays = fresh(base)
    header["weight_bits"] = 8
    err = expect(ModelValueError, build(header, arrays))
    assert "weight_bits" in str(err)
    arrays["gather.0.weight"] = arrays["gather.0.weight"][:, :-1]
    expect(ModelShapeError, build(header, arrays))


def test_channel_limits_before_consistency(base):
    """Clause 9.4 item 2: the clause 5.2 limits are checked before the consistency rules, whichever
    layer comes first in the network."""
    header, arrays = fresh(base)
    arrays["hyper_synthesis.0.weight"] = arrays["hyper_synthesis.0.weight"][:, :-1]  # inconsistent inputs
    _resize_out(arrays, "synthesis.5", 2052)  # a later layer beyond the limit
    err = expect(ModelShapeError, build(header, arrays))
    assert "synthesis.5 has 2052 outputs" in str(err)
    header["hyper_channels"] = 0
    err = expect(ModelShapeError, build(header, arrays))
    assert "hyper_channels" in str(err)


def test_value_checks_in_order(base):
    """Clause 9.4 item 3's own order: the header ranges before the weights, shifts, ..., z tables."""
    header, arrays = fresh(base)
    arrays["z_cdf"][1, 0] = 1
    assert "z_cdf" in str(expect(ModelValueError, build(header, arrays)))
    arrays["context.3.weight"][0, 0, 1, 1] = 1  # the centre tap: outside the mask
    assert "causal mask" in str(expect(ModelValueError, build(header, arrays)))
    arrays["inv_gain"][0, 0] = -1
    assert "inv_gain" in str(expect(ModelValueError, build(header, arrays)))
    arrays["gather.1.shift"][0] = 28
    assert "gather.1.shift" in str(expect(ModelValueError, build(header, arrays)))
    arrays["gather.1.weight"][0, 0, 0, 0] = -32768
    assert "gather.1.weight" in str(expect(ModelValueError, build(header, arrays)))
    header["clip"]["gather.4"] = 0
    assert "gather.4" in str(expect(ModelValueError, build(header, arrays)))
    header["inv_gain_shift"] = 28
    assert "inv_gain_shift" in str(expect(ModelValueError, build(header, arrays)))
    header["weight_bits"] = 8
    assert "weight_bits" in str(expect(ModelValueError, build(header, arrays)))


# --- clause 9.1 and 9.2: integers, duplicates, .npy format ---------------------------------------

def test_weight_bits_must_be_an_integer(base):
    header, arrays = fresh(base)
    header["weight_bits"] = 16.0
    expect(ModelFormatError, build(header, arrays))


@pytest.mark.parametrize("value", [True, 1.0])
def test_format_version_must_be_the_integer_1(base, value):
    header, arrays = fresh(base)
    header["format_version"] = value
    expect(ModelFormatError, build(header, arrays))


@pytest.mark.parametrize("variant", ["npy_v2", "fortran"])
def test_npy_version_and_order(base, small_model_file, variant):
    members = members_of(small_model_file[0])
    buf = io.BytesIO()
    if variant == "npy_v2":
        np.lib.format.write_array(buf, base[1]["gather.1.bias"], version=(2, 0))
        members["gather.1.bias.npy"] = buf.getvalue()
    else:
        np.lib.format.write_array(buf, np.asfortranarray(base[1]["gather.1.weight"]), version=(1, 0))
        members["gather.1.weight.npy"] = buf.getvalue()
    expect(ModelFormatError, zip_of(members))


@pytest.mark.parametrize("what", ["member", "json_key"])
def test_duplicates_are_rejected(base, small_model_file, what):
    """Clause 9.1 / 9.2: duplicate member names and duplicate JSON keys are rejected (otherwise one
    decoder might take the first, another the last, and one model id decode two ways)."""
    members = members_of(small_model_file[0])
    if what == "member":
        w = base[1]["gather.1.weight"].copy()
        w[0, 0, 0, 0] ^= 1
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, payload in members.items():
                zf.writestr(name, payload)
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zf.writestr("gather.1.weight.npy", _npy_bytes(w))
        data = buf.getvalue()
    else:
        text = json.dumps(base[0])[:-1] + ', "inv_gain_shift": 13}'
        members["header.npy"] = header_npy(text)
        data = zip_of(members)
    err = expect(ModelFormatError, data)
    assert "duplicate" in str(err)


def test_small_channels_constant_matches_model(small_model):
    """Sanity: the fixture really is the small configuration the tests assume."""
    assert small_model.latent_channels == SMALL_CHANNELS["latent"]
    assert small_model.hyper_channels == SMALL_CHANNELS["hyper"]
    assert {spec.name for spec in CONTEXT} <= set(small_model.layers)


# --- clause 9.1.1: ZIP records; clause 9.1.2: member data -----------------------------------------

def raw_members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def test_numpy_savez_files_are_model_files(small_model_file):
    """Clause 9.1.1: np.savez (stored members) and np.savez_compressed (deflate) write local headers
    with sizes 0xFFFFFFFF and a ZIP64 extra field holding them; both are model files with the same
    arrays (and another model id: other bytes)."""
    data, model = small_model_file
    arrays = {name[:-4]: np.load(io.BytesIO(raw), allow_pickle=False) for name, raw in raw_members(data)}
    for save in (np.savez, np.savez_compressed):
        buf = io.BytesIO()
        save(buf, **arrays)
        other = buf.getvalue()
        assert struct.unpack_from("<II", other, 18) == (0xFFFFFFFF, 0xFFFFFFFF)  # local sizes
        parsed = parse_model(other)
        assert parsed.header == model.header and parsed.model_id == model_id_of(other) != model.model_id
        for name in LAYER_NAMES:
            assert np.array_equal(parsed.layers[name].weight, model.layers[name].weight)


def zip_with(members, method=zipfile.ZIP_DEFLATED, comment=b"", flag_bits=0):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, payload in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.flag_bits |= flag_bits
            zf.writestr(info, payload)
        zf.comment = comment
    return buf.getvalue()


def test_zip_archive_rules(small_model_file):
    """Clause 9.1.1: no archive comment; no data descriptor (zipfile writes one to a stream it
    cannot seek); only stored and deflate; member names exactly those of clause 9.3."""
    members = raw_members(small_model_file[0])
    assert parse_model(zip_with(members, zipfile.ZIP_STORED)).header == small_model_file[1].header
    assert "end-of-central-directory" in str(expect(ModelFormatError, zip_with(members, comment=b"x")))

    class Unseekable(io.RawIOBase):
        def __init__(self):
            self.out = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.out += b
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, payload in members:
            zf.writestr(name, payload)
    assert "data descriptor" in str(expect(ModelFormatError, bytes(sink.out)))
    assert "method 14" in str(expect(ModelFormatError, zip_with(members, zipfile.ZIP_LZMA)))
    renamed = [("models/" + name if name == "z_lo.npy" else name, raw) for name, raw in members]
    assert "unexpected member" in str(expect(ModelFormatError, zip_with(renamed)))
    upper = [(name.upper() if name == "z_lo.npy" else name, raw) for name, raw in members]
    assert "'Z_LO.NPY' is not a .npy file" in str(expect(ModelFormatError, zip_with(upper)))


def test_unknown_member_is_rejected_without_inflating_it(small_model_file):
    """Clause 9.1.1: names are checked from the records: an extra member whose deflate stream is
    corrupt (or would inflate to 2^28 bytes) is rejected for its name, never inflated."""
    from refdec.generators.invalid_models import _Entry, _zip

    entries = [_Entry(n, d) for n, d in raw_members(small_model_file[0])]
    data = _zip(entries + [_Entry("extra.npy", b"x" * 1000, corrupt_stream=True)])
    err = expect(ModelFormatError, data)
    assert "unexpected member 'extra.npy'" in str(err)


def test_local_zip64_extra_after_another_extra_field(small_model_file):
    """Clause 9.1.1: the ZIP64 extra field is found among the local header's extra fields."""
    from refdec.generators.invalid_models import _Entry, _deflate, _zip

    entries = []
    for n, d in raw_members(small_model_file[0]):
        fields = struct.pack("<HHBI", 0x5455, 5, 1, 0) + struct.pack("<HHQQ", 1, 16, len(d), len(_deflate(d)))
        entries.append(_Entry(n, d, local=(("sizes", (0xFFFFFFFF, 0xFFFFFFFF)), ("extra", fields))))
    assert parse_model(_zip(entries)).header == small_model_file[1].header


def test_header_member_limit(small_model_file):
    """Clause 9.1.1: header.npy is at most 2^20 bytes, whitespace included (JSON allows it)."""
    header = small_model_file[1].header
    text = json.dumps(header)
    room = (1 << 20) - len(header_npy(text))
    assert parse_model(with_header_text(small_model_file[0], text + " " * room)).header == header
    err = expect(ModelFormatError, with_header_text(small_model_file[0], text + " " * (room + 1)))
    assert "header.npy" in str(err) and str(1 << 20) in str(err)


def test_member_sizes_are_limited_together(small_model_file):
    """Clause 9.1.1: the members together are at most 2^29 bytes, from their records: declared
    sizes of exactly 2^29 in all pass that check (and fail on the data), 2^29 + 1 do not."""
    from refdec.generators.invalid_models import _Entry, _zip

    members = raw_members(small_model_file[0])
    big = [n for n, _ in members[:4]]
    rest = sum(len(d) for n, d in members[4:])
    for total, together in ((1 << 29, False), ((1 << 29) + 1, True)):
        sizes = dict.fromkeys(big, (total - rest) // 4)
        sizes[big[-1]] += total - rest - 4 * sizes[big[-1]]
        err = expect(ModelFormatError, _zip([_Entry(n, d, declared_size=sizes.get(n)) for n, d in members]))
        assert ("together" in str(err)) is together, err


def test_format_errors_come_before_shape_errors_even_in_member_data(base, small_model_file):
    """Clause 9.4: item 1 includes every member's data and CRC-32 (clause 9.1.2): a file with a
    shape error and a bad CRC-32 elsewhere is a format error, though the shapes are looked at
    before any array is built."""
    from refdec.generators.invalid_models import _Entry, _zip

    header, arrays = fresh(base)
    arrays["gather.3.bias"] = arrays["gather.3.bias"][:-1]
    members = raw_members(build(header, arrays))
    expect(ModelShapeError, _zip([_Entry(n, d) for n, d in members]))
    err = expect(ModelFormatError, _zip([_Entry(n, d, crc_xor=1 if n == "z_cdf.npy" else 0) for n, d in members]))
    assert "CRC-32" in str(err) and "z_cdf.npy" in str(err)


# --- clause 9.1.3: .npy headers ------------------------------------------------------------------

def npy_text(text: str, payload: bytes, pad_to: int | None = 64, newline=b"\n") -> bytes:
    head = text.encode("latin-1")
    if pad_to:
        head += b" " * (-(10 + len(head) + 1) % pad_to)
    head += newline
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + payload


@pytest.mark.parametrize("text, ok", [
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (12,), }", True),  # as NumPy writes it
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (12,)}", True),  # repr() of the dict
    ('{"shape": (12,), "descr": "<i4", "fortran_order": False}', True),  # double quotes, any key order
    ("{ 'descr' : '<i4' , 'fortran_order' : False , 'shape' : ( 12 , ) , }", True),  # spaces between tokens
    ("   {'descr': '<i4', 'fortran_order': False, 'shape': (12,)}", True),  # spaces before
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (12)}", False),  # (12) is not a tuple
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (1_2,)}", False),  # Python literal, not the grammar
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (0xc,)}", False),
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (+12,)}", False),
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (012,)}", False),
    ("{'descr': '<i4', 'fortran_order': 0, 'shape': (12,)}", False),
    ("{'descr': '<i4', 'fortran_order': True, 'shape': (12,)}", False),
    ("{'descr': '<i4',\t'fortran_order': False, 'shape': (12,)}", False),  # a tab is not a space
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (12,)} # comment", False),
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (12,),,}", False),
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (12,,)}", False),
    ("{'descr': u'<i4', 'fortran_order': False, 'shape': (12,)}", False),
    ("{'descr': '<i\\x34', 'fortran_order': False, 'shape': (12,)}", False),  # no escapes
    ("{'descr': \"<i4', 'fortran_order': False, 'shape': (12,)}", False),
    ("{'descr': '<i4', 'fortran_order': False, 'shape': (12,), 'shape': (12,)}", False),
    ("{'descr': '<i4', 'fortran_order': False}", False),
])
def test_npy_header_grammar(small_model_file, text, ok):
    """Clause 9.1.3: the header dictionary's grammar (not Python's literal syntax)."""
    members = members_of(small_model_file[0])
    payload = members["gather.1.bias.npy"][128:]
    assert len(payload) == 48
    members["gather.1.bias.npy"] = npy_text(text, payload)
    if ok:
        assert parse_model(zip_of(members)).layers["gather.1"].bias.shape == (12,)
    else:
        expect(ModelFormatError, zip_of(members))


def test_npy_header_padding_and_newline(small_model_file):
    """Clause 9.1.3: the header text ends with a newline; its length need not be aligned."""
    members = members_of(small_model_file[0])
    payload = members["gather.1.bias.npy"][128:]
    text = "{'descr': '<i4', 'fortran_order': False, 'shape': (12,)}"
    for pad_to in (None, 16, 64):
        members["gather.1.bias.npy"] = npy_text(text, payload, pad_to)
        parse_model(zip_of(members))
    members["gather.1.bias.npy"] = npy_text(text, payload, newline=b" ")
    expect(ModelFormatError, zip_of(members))
    members["gather.1.bias.npy"] = npy_text(text, payload, newline=b"\r\n")
    expect(ModelFormatError, zip_of(members))


@pytest.mark.parametrize("member, descr, ok", [
    ("gather.1.shift", "|u1", True), ("gather.1.shift", "<u1", True), ("gather.1.shift", "=u1", False),
    ("gather.1.shift", "u1", False), ("gather.1.shift", ">u1", False), ("gather.1.shift", "|b1", False),
    ("gather.1.shift", "|i1", False), ("gather.1.bias", "<i4", True), ("gather.1.bias", "=i4", False),
    ("gather.1.bias", "i4", False), ("gather.1.bias", "<u4", False), ("gather.1.bias", "<i8", False),
    ("gather.1.weight", "<i2", True), ("gather.1.weight", "|i2", False), ("gather.1.weight", "<f2", False),
])
def test_npy_descr_strings(base, small_model_file, member, descr, ok):
    """Clause 9.1.3: exactly the descr strings of the table for each dtype of clause 9.3."""
    members = members_of(small_model_file[0])
    arr = base[1][member]
    payload = np.ascontiguousarray(arr).tobytes()
    members[f"{member}.npy"] = npy_text(f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {arr.shape!r}}}",
                                        payload)
    if ok:
        parse_model(zip_of(members))
    else:
        expect(ModelFormatError, zip_of(members))


def test_w8_weights_and_header_descr_variants(small_model_w8_file):
    """Clause 9.1.3: int8 weights as '|i1' (NumPy) or '<i1'; header.npy as '|u1' or '<u1'."""
    members = members_of(small_model_w8_file[0])
    for name in ("gather.2.weight.npy", "header.npy"):
        raw = members[name]
        assert b"'descr': '|" in raw[:128]
        members[name] = raw.replace(b"'descr': '|", b"'descr': '<", 1)
    model = parse_model(zip_of(members))
    assert np.array_equal(model.layers["gather.2"].weight, small_model_w8_file[1].layers["gather.2"].weight)


def test_zero_sized_and_huge_shapes_are_shape_or_format_errors(base, small_model_file):
    """Clause 9.1.3 / 9.4: a shape with a zero dimension is never built: (0, 2^28, 2^28, 2^28)
    passes item 1 (every dimension at most 2^28, no data) and is a shape error; a dimension above
    2^28 is a format error, with or without elements."""
    members = members_of(small_model_file[0])
    members["gather.1.weight.npy"] = npy_text(f"{{'descr': '<i2', 'fortran_order': False, 'shape': (0, {1 << 28}, "
                                              f"{1 << 28}, {1 << 28})}}", b"")
    assert "outside 1..2048" in str(expect(ModelShapeError, zip_of(members)))
    members["gather.1.weight.npy"] = npy_text(f"{{'descr': '<i2', 'fortran_order': False, 'shape': (0, {(1 << 28) + 1},"
                                              " 1, 1)}", b"")
    assert "above 2^28" in str(expect(ModelFormatError, zip_of(members)))
    members["gather.1.weight.npy"] = npy_text("{'descr': '<i2', 'fortran_order': False, 'shape': (0, "
                                              + "9" * 5000 + ", 1, 1)}", b"")
    assert "above 2^28" in str(expect(ModelFormatError, zip_of(members)))


# --- clause 9.2: JSON ------------------------------------------------------------------------------

def test_json_whitespace_and_bom(small_model_file):
    """Clause 9.2: JSON whitespace (space, tab, LF, CR) around the object is allowed; a byte order
    mark, or other white space, is not."""
    header = small_model_file[1].header
    text = json.dumps(header)
    assert parse_model(with_header_text(small_model_file[0], " \t\r\n" + text + "\n\r\t ")).header == header
    for bad in ("\ufeff" + text, "\u00a0" + text, text + "\x0b", text + "\x00"):
        expect(ModelFormatError, with_header_text(small_model_file[0], bad))


def test_json_duplicate_keys_at_any_level(small_model_file):
    """Clause 9.2: no object of the header, at any depth, has a key twice, compared after
    unescaping ("a" and "\\u0061" are the same key)."""
    header = dict(small_model_file[1].header, provenance={"tool": {"a": 1}}, act_exponents={"gather.0": 8})
    text = json.dumps(header)
    parse_model(with_header_text(small_model_file[0], text))
    for dup in ('{"a": 1, "a": 1}', '{"a": 1, "\\u0061": 2}'):
        expect(ModelFormatError, with_header_text(small_model_file[0], text.replace('{"a": 1}', dup)))
    dup = text.replace('"act_exponents": {', '"act_exponents": {"gather.0": 3, ', 1)
    assert dup.count('"gather.0"') == 3
    expect(ModelFormatError, with_header_text(small_model_file[0], dup))


def test_json_depth_limit(small_model_file):
    """Clause 9.2: objects and arrays nest at most 32 deep, the header object counting as 1."""
    def nested(levels):
        value: object = 0
        for i in range(levels):
            value = [value] if i % 2 else {"n": value}
        return value

    header = small_model_file[1].header
    ok = with_header_text(small_model_file[0], json.dumps(dict(header, provenance=nested(31))))
    assert parse_model(ok).header["provenance"] == nested(31)
    err = expect(ModelFormatError, with_header_text(small_model_file[0], json.dumps(dict(header, provenance=nested(32)))))
    assert "32 deep" in str(err)
    text = json.dumps(dict(header, provenance=0)).replace('"provenance": 0', '"provenance": ' + "[" * 5000 + "]" * 5000)
    deep = with_header_text(small_model_file[0], text)
    expect(ModelFormatError, deep)  # beyond Python's recursion limit too: still the format error


def test_json_strings_are_unicode(small_model_file):
    """Clause 9.2: a surrogate pair escape is one character; an unpaired one is a format error."""
    header = small_model_file[1].header
    text = json.dumps(dict(header, description="@"))
    model = parse_model(with_header_text(small_model_file[0], text.replace('"@"', '"\\ud83d\\ude00"')))
    assert model.header["description"] == "\U0001F600"
    for lone in ('"\\ud83d"', '"\\ude00x"', '"\\ude00\\ud83d"'):
        expect(ModelFormatError, with_header_text(small_model_file[0], text.replace('"@"', lone)))


def test_act_exponents_keys_are_free(base):
    """Clause 9.2: act_exponents maps any strings (not only layer names: the committed models carry
    synthesis_input) to integers of any size; its keys are not checked like clip's."""
    header, arrays = fresh(base)
    header["act_exponents"] = {"synthesis_input": 7, "": 0, "not a layer": -3, "gather.0": 10 ** 30}
    assert parse_model(build(header, arrays)).header["act_exponents"]["not a layer"] == -3
    header["act_exponents"] = {"synthesis_input": "7"}
    expect(ModelFormatError, build(header, arrays))


@pytest.mark.parametrize("edit", ["missing", "extra", "float", "string", "bool", "null", "huge"])
def test_clip_object_rules(base, edit):
    """Clause 9.2 / 9.4 item 1: clip's key set and integer type are format rules; only the range of
    an integer (however long) is a value rule (item 3)."""
    header, arrays = fresh(base)
    clips = header["clip"]
    if edit == "missing":
        del clips["gather.0"]
    elif edit == "extra":
        clips["synthesis_input"] = 100
    elif edit == "huge":
        clips["gather.0"] = 10 ** 50
    else:
        clips["gather.0"] = {"float": 100.0, "string": "100", "bool": True, "null": None}[edit]
    expect(ModelValueError if edit == "huge" else ModelFormatError, build(header, arrays))


# --- clause 9.4 item 2: z_count read before its range is checked ---------------------------------

def test_z_cdf_columns_use_z_count_as_stored(base):
    """Clause 9.4 item 2 compares z_cdf's columns with max(z_count) + 1 for z_count as stored (any
    int32: its range is item 3's): negative counts with a matching table reach item 3; the
    largest int32 is a shape error (2^31 columns), not an overflow."""
    header, arrays = fresh(base)
    cz = header["hyper_channels"]
    arrays["z_count"] = np.full(cz, -1, np.int32)
    arrays["z_cdf"] = np.zeros((cz, 0), np.int32)
    assert "z_count" in str(expect(ModelValueError, build(header, arrays)))
    header, arrays = fresh(base)
    arrays["z_count"][0] = 2 ** 31 - 1
    assert "2147483648" in str(expect(ModelShapeError, build(header, arrays)))


def test_provenance_numbers_of_any_size(base):
    """Clause 9.2: where any value is allowed (provenance), a number may have any size: 1e999."""
    header, arrays = fresh(base)
    header["provenance"] = {"loss": "@"}
    text = json.dumps(header).replace('"@"', "1e999")
    members = members_of(build(header, arrays))
    members["header.npy"] = header_npy(text)
    assert parse_model(zip_of(members)).header["provenance"]["loss"] == float("inf")
