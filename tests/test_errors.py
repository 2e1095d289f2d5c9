"""Every error class of spec clause 11.2, each produced by a crafted input.

For each class in refdec.errors.ALL_ERRORS there is at least one input that makes the
decoder (or the model-file parser) raise exactly that class; the test checks that
str(error) names the clause that clause 11.2 gives for it, and the byte offset where the
spec defines one. Further tests check the order of the clause 6.2 checks.
"""

from __future__ import annotations

import copy
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from refdec.constants import MAX_HEIGHT, MAX_WIDTH, Y_MAX
from refdec import constants
from refdec import errors as E
from refdec.decoder import decode
from refdec.model_file import ModelStore
from refdec.generators.encoder import encode_latents
from refdec.model_file import model_id_of, parse_model
from refdec.generators.model_writer import model_arrays, serialize_model
from refdec.generators.random_model import random_latents, random_model
from refdec.generators.range_encoder import RangeEncoder

# Clause 9.2 / 9.4 maxima (from refdec.constants where it names them).
MAX_SHIFT = constants.MAX_SHIFT
MAX_INV_GAIN_SHIFT = constants.MAX_INV_GAIN_SHIFT
SPEC = Path(__file__).resolve().parents[1] / "spec" / "11-conformance.md"
HEADER = struct.Struct(">4sBBHHB8sII")
HDR = 27


# --- fixtures and helpers -----------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    """(model bytes, Model, a valid 70x33 stream, its z_hat, its y_hat)."""
    data, model = random_model(11)
    z, y = random_latents(model, 70, 33, seed=5)
    stream = encode_latents(model, z, y, 1, 70, 33)
    assert np.array_equal(decode(stream, model, trace=True).stages["y_hat"], y)
    return data, model, stream, z, y


def fields(stream: bytes) -> dict:
    names = ("magic", "version", "flags", "width", "height", "rate_index", "model_id", "z_length", "y_length")
    return dict(zip(names, HEADER.unpack_from(stream)))


def with_header(stream: bytes, **changes) -> bytes:
    """The stream with header fields replaced (payload bytes unchanged)."""
    f = fields(stream)
    f.update(changes)
    return HEADER.pack(*f.values()) + stream[HDR:]


def payloads(stream: bytes) -> tuple[bytes, bytes]:
    f = fields(stream)
    z_end = HDR + f["z_length"]
    return stream[HDR:z_end], stream[z_end:z_end + f["y_length"]]


def assemble(stream: bytes, z_payload: bytes, y_payload: bytes) -> bytes:
    """A stream with the header of `stream` and the given payloads (lengths fixed up)."""
    f = fields(stream)
    f.update(z_length=len(z_payload), y_length=len(y_payload))
    return HEADER.pack(*f.values()) + z_payload + y_payload


def escape_z_payload(model, bits) -> bytes:
    """A z payload whose first symbol is channel 0's escape symbol, followed by `bits`."""
    n_w = int(model.z_count[0])
    cdf = model.z_cdf[0, : n_w + 1].tolist()
    enc = RangeEncoder()
    enc.encode_symbol(cdf, n_w + 1, n_w)
    for b in bits:
        enc.write_bit(b)
    return enc.finish()


def exp_golomb_bits(side: int, m: int) -> list[int]:
    """Clause 7.10 escape payload for a magnitude m (any length of prefix)."""
    v = m + 1
    k = v.bit_length() - 1
    return [side] + [1] * k + [0] + [(v >> b) & 1 for b in range(k - 1, -1, -1)]


def spec_clauses() -> dict[str, str]:
    """The clause 11.2 table of the spec: class name -> clause."""
    table = {}
    for line in SPEC.read_text().splitlines():
        m = re.match(r"\|\s*\w+\s*\|\s*`(\w+)`\s*\|.*\|\s*([\d.]+)\s*\|\s*$", line)
        if m:
            table[m.group(1)] = m.group(2)
    return table


def check_error(exc: E.RefdecError, cls, offset=None, offset_range=None):
    assert type(exc) is cls, f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
    text = str(exc)
    clause = spec_clauses()[cls.__name__]
    assert exc.clause == clause
    assert text.startswith(f"{cls.__name__} (clause {clause})"), text
    assert "\n" not in text
    if offset is not None:
        assert exc.offset == offset, text
        assert f"at byte {offset}:" in text
    if offset_range is not None:
        lo, hi = offset_range
        assert exc.offset is not None and lo <= exc.offset <= hi, text
        assert f"at byte {exc.offset}:" in text


def raises(fn, cls, **kw) -> E.RefdecError:
    with pytest.raises(E.RefdecError) as info:
        fn()
    check_error(info.value, cls, **kw)
    return info.value


def model_variant(model, header_change=None, array_change=None) -> bytes:
    header = copy.deepcopy(model.header)
    arrays = {k: v.copy() for k, v in model_arrays(model).items()}
    if header_change:
        header_change(header)
    if array_change:
        array_change(arrays)
    return serialize_model(header, arrays)


# --- the spec table and ALL_ERRORS agree ---------------------------------------------------

def test_all_errors_match_spec_table():
    table = spec_clauses()
    assert set(table) == set(E.ALL_ERRORS), "clause 11.2 table and refdec.errors.ALL_ERRORS differ"
    for name, cls in E.ALL_ERRORS.items():
        assert cls.clause == table[name], name
        assert issubclass(cls, E.RefdecError)


# --- header errors (clause 6.2 checks 1 to 5, 7) ------------------------------------------

def test_truncated_header(small):
    stream = small[2]
    for n in (0, 1, 4, 26):
        raises(lambda: decode(stream[:n], small[1]), E.TruncatedHeader, offset=n)


def test_bad_magic(small):
    stream = small[2]
    raises(lambda: decode(with_header(stream, magic=b"RDEc"), small[1]), E.BadMagic, offset=0)
    raises(lambda: decode(b"\x89PNG" + stream[4:], small[1]), E.BadMagic, offset=0)


def test_unsupported_version(small):
    for v in (0, 2, 255):
        raises(lambda: decode(with_header(small[2], version=v), small[1]), E.UnsupportedVersion, offset=4)


def test_reserved_field_set(small):
    for f in (1, 0x80):
        raises(lambda: decode(with_header(small[2], flags=f), small[1]), E.ReservedFieldSet, offset=5)


def test_zero_dimension(small):
    raises(lambda: decode(with_header(small[2], width=0), small[1]), E.ZeroDimension, offset=6)
    raises(lambda: decode(with_header(small[2], height=0), small[1]), E.ZeroDimension, offset=8)


@pytest.mark.parametrize("w,h,offset", [(MAX_WIDTH + 1, 1, 6), (1, MAX_HEIGHT + 1, 8), (8192, 4097, 6),
                                         (65535, 65535, 6)])
def test_dimensions_too_large(small, w, h, offset):
    # The offset names the field at fault: height (8) when only the height is too large, else width (6).
    raises(lambda: decode(with_header(small[2], width=w, height=h), small[1]), E.DimensionsTooLarge, offset=offset)


def test_payload_too_short(small):
    stream = small[2]
    raises(lambda: decode(with_header(stream, z_length=3), small[1]), E.PayloadTooShort, offset=19)
    raises(lambda: decode(with_header(stream, y_length=0), small[1]), E.PayloadTooShort, offset=23)
    # z_length is checked first.
    raises(lambda: decode(with_header(stream, z_length=0, y_length=0), small[1]), E.PayloadTooShort, offset=19)


def test_payload_past_end(small):
    stream = small[2]
    err = raises(lambda: decode(stream[:-1], small[1]), E.PayloadPastEnd, offset=len(stream) - 1)
    assert f"payloads end at byte {len(stream)}" in str(err)
    f = fields(stream)
    raises(lambda: decode(with_header(stream, y_length=f["y_length"] + 1), small[1]), E.PayloadPastEnd,
           offset=len(stream))
    # Lengths whose sum overflows 32 bits are not wrapped.
    raises(lambda: decode(with_header(stream, z_length=0xFFFFFFFF, y_length=0xFFFFFFFF), small[1]),
           E.PayloadPastEnd, offset=len(stream))


def test_trailing_data(small):
    stream = small[2]
    raises(lambda: decode(stream + b"\x00", small[1]), E.TrailingData, offset=len(stream))
    f = fields(stream)
    raises(lambda: decode(with_header(stream, y_length=f["y_length"] - 1), small[1]), E.TrailingData,
           offset=len(stream) - 1)


def test_unknown_model(small):
    data, model, stream = small[:3]
    bad_id = bytes(8)
    raises(lambda: decode(with_header(stream, model_id=bad_id), model), E.UnknownModel, offset=11)
    raises(lambda: decode(stream, ModelStore()), E.UnknownModel, offset=11)
    with pytest.raises(E.UnknownModel, match=r"\(known: none\)"):
        decode(stream, ModelStore())
    # A large store is summarised: four ids and a count, not a wall of hex.
    from refdec.generators.random_model import random_model

    store = ModelStore()
    for seed in range(10, 16):
        store.add(random_model(seed)[1])
    with pytest.raises(E.UnknownModel, match=r"\(known: [0-9a-f]{16}, [0-9a-f]{16}, [0-9a-f]{16}, [0-9a-f]{16} "
                                             r"and 2 more\)"):
        decode(with_header(stream, model_id=bad_id), store)


def test_rate_index_out_of_range(small):
    data, model, stream = small[:3]
    raises(lambda: decode(with_header(stream, rate_index=model.num_rates), model), E.RateIndexOutOfRange,
           offset=10)
    raises(lambda: decode(with_header(stream, rate_index=255), model), E.RateIndexOutOfRange, offset=10)
    # The last rate point is valid.
    decode(with_header(stream, rate_index=model.num_rates - 1), model)


def test_header_check_order(small):
    """Clause 6.2: the first failing check is reported."""
    data, model, stream = small[:3]
    bad = with_header(stream, magic=b"XXXX", version=9, flags=1, width=0)
    raises(lambda: decode(bad[:HDR + 1], model), E.BadMagic)
    raises(lambda: decode(with_header(stream, version=9, flags=1, width=0), model), E.UnsupportedVersion)
    raises(lambda: decode(with_header(stream, flags=1, width=0), model), E.ReservedFieldSet)
    raises(lambda: decode(with_header(stream, width=0, z_length=1), model), E.ZeroDimension)
    raises(lambda: decode(with_header(stream, height=9000, z_length=1), model), E.DimensionsTooLarge)
    raises(lambda: decode(with_header(stream, z_length=1) + b"junk", model), E.PayloadTooShort)
    # Lengths are checked before the model is looked up, the model before the rate index.
    raises(lambda: decode(with_header(stream, model_id=bytes(8)) + b"x", model), E.TrailingData)
    raises(lambda: decode(with_header(stream, model_id=bytes(8), rate_index=200), model), E.UnknownModel)
    # Header errors come before payload errors.
    z, y = payloads(stream)
    raises(lambda: decode(with_header(assemble(stream, b"\xff" * 4, y), rate_index=200), model),
           E.RateIndexOutOfRange)


def test_dimension_limits_are_inclusive(small):
    """Clause 5.2: 8192 and 2^25 samples are allowed (the z payload then runs out)."""
    data, model, stream = small[:3]
    for w, h in ((8192, 1), (1, 8192), (8192, 4096)):
        with pytest.raises(E.RefdecError) as info:
            decode(with_header(stream, width=w, height=h), model)
        assert isinstance(info.value, E.PayloadError)


# --- payload errors (clauses 8.3, 8.5, 7.10) ----------------------------------------------

def test_invalid_range_state_z(small):
    data, model, stream = small[:3]
    z, y = payloads(stream)
    # V = 0xFFFFFFFF: FloorDiv(V, 65535) = 65537 >= 2^16 on the first symbol; P = 4.
    bad = assemble(stream, b"\xff\xff\xff\xff", y)
    raises(lambda: decode(bad, model), E.InvalidRangeState, offset=HDR + 4)
    bad = assemble(stream, b"\xff\xff\x00\x00" + z[4:], y)
    raises(lambda: decode(bad, model), E.InvalidRangeState, offset=HDR + 4)


def test_invalid_range_state_y(small):
    data, model, stream = small[:3]
    z, y = payloads(stream)
    bad = assemble(stream, z, b"\xff\xff\xff\xff" + y[4:])
    raises(lambda: decode(bad, model), E.InvalidRangeState, offset=HDR + len(z) + 4)


def test_just_below_invalid_range_state(small):
    """V = 0xFFFEFFFF is the largest valid initial code value: FloorDiv(V, 65535) = 65535."""
    data, model, stream = small[:3]
    z, y = payloads(stream)
    try:
        decode(assemble(stream, b"\xff\xfe\xff\xff" + z[4:], y), model)
    except E.RefdecError as exc:
        assert not (isinstance(exc, E.InvalidRangeState) and exc.offset == HDR + 4), str(exc)


def test_payload_truncated(small):
    data, model, stream = small[:3]
    z, y = payloads(stream)
    # The decoder reads exactly the bytes the encoder wrote, so cutting a payload to k bytes
    # fails when it asks for byte k.
    for k in range(4, len(z)):
        raises(lambda: decode(assemble(stream, z[:k], y), model), E.PayloadTruncated, offset=HDR + k)
    for k in (4, 5, len(y) // 2, len(y) - 1):
        raises(lambda: decode(assemble(stream, z, y[:k]), model), E.PayloadTruncated,
               offset=HDR + len(z) + k)


def test_trailing_payload_bytes(small):
    data, model, stream = small[:3]
    z, y = payloads(stream)
    for extra in (b"\x00", b"\xff\xff", bytes(100)):
        raises(lambda: decode(assemble(stream, z + extra, y), model), E.TrailingPayloadBytes,
               offset=HDR + len(z))
        raises(lambda: decode(assemble(stream, z, y + extra), model), E.TrailingPayloadBytes,
               offset=HDR + len(z) + len(y))


def test_escape_too_long(small):
    data, model, stream = small[:3]
    z_bad = escape_z_payload(model, [1] + [1] * 15)  # side bit, then 15 one-bits
    raises(lambda: decode(assemble(stream, z_bad, payloads(stream)[1]), model), E.EscapeTooLong,
           offset_range=(HDR + 4, HDR + len(z_bad)))


def test_escape_prefix_14_is_allowed(small):
    """k = 14 is the longest prefix; it is followed by 14 suffix bits (clause 7.10)."""
    data, model, stream = small[:3]
    n_w, lo = int(model.z_count[0]), int(model.z_lo[0])
    hi = lo + n_w - 1
    # m = 2^14 - 1 needs k = 14; the value hi + 1 + m is beyond Z_MAX: LatentOutOfRange, not EscapeTooLong.
    z_bad = escape_z_payload(model, exp_golomb_bits(1, (1 << 14) - 1))
    err = raises(lambda: decode(assemble(stream, z_bad, payloads(stream)[1]), model), E.LatentOutOfRange,
                 offset_range=(HDR + 4, HDR + len(z_bad)))
    assert str(hi + 1 + (1 << 14) - 1) in str(err)


@pytest.mark.parametrize("side", [0, 1])
def test_latent_out_of_range(small, side):
    data, model, stream = small[:3]
    n_w, lo = int(model.z_count[0]), int(model.z_lo[0])
    hi = lo + n_w - 1
    # The smallest magnitude that lands on Z_MAX + 1.
    m = (constants.Z_MAX + 1) - (hi + 1) if side else (lo - 1) + (constants.Z_MAX + 1)
    assert m >= 0
    z_bad = escape_z_payload(model, exp_golomb_bits(side, m))
    err = raises(lambda: decode(assemble(stream, z_bad, payloads(stream)[1]), model), E.LatentOutOfRange,
                 offset_range=(HDR + 4, HDR + len(z_bad)))
    assert str(constants.Z_MAX + 1 if side else -(constants.Z_MAX + 1)) in str(err)


def test_latent_at_z_max_decodes(small):
    """|z_hat| = Z_MAX is valid (clause 5.3): the boundary of LatentOutOfRange."""
    data, model, stream, z, y = small
    z2 = z.copy()
    z2[0, 0, 0] = constants.Z_MAX
    z2[-1, -1, -1] = -constants.Z_MAX
    good = encode_latents(model, z2, y, 1, 70, 33)
    out = decode(good, model, trace=True)
    assert np.array_equal(out.stages["z_hat"], z2)


def test_y_escape_and_y_max(small):
    """|y_hat| = Y_MAX round-trips through the escape path of the y payload."""
    data, model, stream, z, y = small
    y2 = y.copy()
    y2[0, 0, 0] = Y_MAX
    y2[-1, -1, -1] = -Y_MAX
    out = decode(encode_latents(model, z, y2, 1, 70, 33), model, trace=True)
    assert np.array_equal(out.stages["y_hat"], y2)


def test_payload_errors_report_offsets_inside_the_payload(small):
    data, model, stream = small[:3]
    z, y = payloads(stream)
    # Garbage y payloads: whatever the error, it points into the y payload.
    rng = np.random.default_rng(0)
    for _ in range(20):
        junk = rng.integers(0, 256, size=len(y), dtype=np.uint8).tobytes()
        try:
            decode(assemble(stream, z, junk), model)
        except E.PayloadError as exc:
            assert HDR + len(z) <= exc.offset <= HDR + len(z) + len(y), str(exc)
            assert f"at byte {exc.offset}" in str(exc)


# --- model errors (clauses 6.2 check 6, 9.4, 9.5) ------------------------------------------

def _set_key(key, value):
    def change(h):
        h[key] = value
    return change


def _del_key(key):
    def change(h):
        del h[key]
    return change


def _set_array(name, fn):
    def change(a):
        a[name] = fn(a[name])
    return change


def _with(arr, index, value):
    arr = arr.copy()
    arr[index] = value
    return arr


def _noncausal(w):
    w = w.copy()
    k = w.shape[-1]
    w[0, 0, k // 2, k // 2] = 1  # the centre tap (the position itself)
    return w


def _accumulator_violation(arrays, model, margin):
    """gather.0 output 0 with sum|W| * in_max + |b| = 2^31 + margin (in_max = 4095)."""
    w = arrays["gather.0.weight"].astype(np.int64)
    in_max = max(model.header["clip"][n] for n in ("hyper_synthesis.2", "context.3", "context.5", "context.7"))
    s = int(np.abs(w[0]).sum())
    b = arrays["gather.0.bias"].copy()
    b[0] = (1 << 31) + margin - s * in_max
    assert 0 < b[0] < (1 << 31)
    arrays["gather.0.bias"] = b


def _bad_zcdf(kind):
    def change(a):
        cdf = a["z_cdf"].copy()
        n = int(a["z_count"][0])
        if kind == "first":
            cdf[0, 0] = 1
        elif kind == "flat":
            cdf[0, 2] = cdf[0, 1]
        elif kind == "last":
            cdf[0, n] = 65536
        elif kind == "padding":
            longest = int(np.argmax(a["z_count"]))
            short = int(np.argmin(a["z_count"]))
            assert short != longest
            cdf[short, -1] = 65535
        a["z_cdf"] = cdf
    return change


MODEL_CASES = {
    # ModelFormatError: container, header, member list (clause 9.4 item 1)
    "unknown header key": (E.ModelFormatError, _set_key("colour", "blue"), None),
    "missing header key": (E.ModelFormatError, _del_key("num_rates"), None),
    "bad format string": (E.ModelFormatError, _set_key("format", "refdec-modle"), None),
    "bad format version": (E.ModelFormatError, _set_key("format_version", 2), None),
    "unknown profile": (E.ModelFormatError, _set_key("profile", "W4A8"), None),
    "non-integer field": (E.ModelFormatError, _set_key("num_rates", "6"), None),
    "clip map incomplete": (E.ModelFormatError, lambda h: h["clip"].pop("gather.3"), None),
    # Clause 9.2 JSON types (these once raised TypeError or were accepted, found by test_fuzz).
    "profile is a list": (E.ModelFormatError, _set_key("profile", ["W16A16"]), None),
    "profile is an object": (E.ModelFormatError, _set_key("profile", {"name": "W16A16"}), None),
    "weight_bits is a float": (E.ModelFormatError, _set_key("weight_bits", 16.0), None),
    "format_version is a float": (E.ModelFormatError, _set_key("format_version", 1.0), None),
    "format_version is true": (E.ModelFormatError, _set_key("format_version", True), None),
    "clip is a float": (E.ModelFormatError, lambda h: h["clip"].update({"gather.0": 4095.0}), None),
    "wrong weight dtype": (E.ModelFormatError, None, _set_array("synthesis.2.weight", lambda w: w.astype(np.int32))),
    "wrong bias dtype": (E.ModelFormatError, None, _set_array("gather.1.bias", lambda b: b.astype(np.int64))),
    "big-endian shift": (E.ModelFormatError, None, _set_array("context.5.shift", lambda s: s.astype(">u2"))),
    "wrong ndim": (E.ModelFormatError, None, _set_array("z_lo", lambda v: v[None, :])),
    "missing member": (E.ModelFormatError, None, lambda a: a.pop("inv_gain")),
    "extra member": (E.ModelFormatError, None, lambda a: a.update(extra=np.zeros(3, np.int32))),
    # ModelShapeError (item 3)
    "bias length": (E.ModelShapeError, None, _set_array("synthesis.0.bias", lambda b: b[:-1])),
    "shift length": (E.ModelShapeError, None, _set_array("hyper_synthesis.1.shift", lambda s: np.concatenate([s, s[:1]]))),
    "kernel size": (E.ModelShapeError, None, _set_array("gather.2.weight", lambda w: np.repeat(np.repeat(w, 3, 2), 3, 3))),
    "input channels": (E.ModelShapeError, None, _set_array("synthesis.3.weight", lambda w: w[:, :-1])),
    "inv_gain shape": (E.ModelShapeError, None, _set_array("inv_gain", lambda g: g[:-1])),
    "z_cdf shape": (E.ModelShapeError, None, _set_array("z_cdf", lambda c: np.concatenate([c, np.full((c.shape[0], 1), 65536, c.dtype)], 1))),
    # ModelValueError (items 2 and 4)
    "weight -32768 in W16A16": (E.ModelValueError, None, _set_array("context.7.weight", lambda w: _with(w, (0, 0, 0, 0), -32768))),
    "weight_bits mismatch": (E.ModelValueError, _set_key("weight_bits", 8), None),
    "shift beyond the maximum": (E.ModelValueError, None, _set_array("synthesis.4.shift", lambda s: _with(s, 1, MAX_SHIFT + 1))),
    "shift 255": (E.ModelValueError, None, _set_array("gather.0.shift", lambda s: _with(s, 0, 255))),
    "non-causal context weight": (E.ModelValueError, None, _set_array("context.3.weight", _noncausal)),
    "z_cdf first entry": (E.ModelValueError, None, _bad_zcdf("first")),
    "z_cdf not increasing": (E.ModelValueError, None, _bad_zcdf("flat")),
    "z_cdf last entry 65536": (E.ModelValueError, None, _bad_zcdf("last")),
    "z_cdf padding": (E.ModelValueError, None, _bad_zcdf("padding")),
    "z_count zero": (E.ModelValueError, None, _set_array("z_count", lambda c: _with(c, int(np.argmin(c)), 0))),
    "z window beyond Z_MAX": (E.ModelValueError, None, _set_array("z_lo", lambda v: _with(v, 0, constants.Z_MAX))),
    "inv_gain 65537": (E.ModelValueError, None, _set_array("inv_gain", lambda g: _with(g, (0, 0), 65537))),
    "inv_gain negative": (E.ModelValueError, None, _set_array("inv_gain", lambda g: _with(g, (0, 0), -1))),
    "clip 0": (E.ModelValueError, lambda h: h["clip"].update({"gather.0": 0}), None),
    "output clip not 255": (E.ModelValueError, lambda h: h["clip"].update({"synthesis.6": 254}), None),
    "inv_gain_shift beyond the maximum": (E.ModelValueError, _set_key("inv_gain_shift", MAX_INV_GAIN_SHIFT + 1), None),
    "num_rates 65": (E.ModelValueError, _set_key("num_rates", 65),
                     _set_array("inv_gain", lambda g: np.resize(g, (65, g.shape[1])))),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_model_validation(small, case):
    cls, header_change, array_change = MODEL_CASES[case]
    data = model_variant(small[1], header_change, array_change)
    err = raises(lambda: parse_model(data, where="variant.npz"), cls)
    assert err.where and "variant.npz" in str(err)


def test_w8a16_weight_range():
    data, model = random_model(2, profile="W8A16")
    for bad in (-128,):
        variant = model_variant(model, None, _set_array("gather.4.weight", lambda w: _with(w, (1, 2, 0, 0), bad)))
        raises(lambda: parse_model(variant), E.ModelValueError)
    ok = model_variant(model, None, _set_array("gather.4.weight", lambda w: _with(w, (1, 2, 0, 0), -127)))
    parse_model(ok)


def test_bad_zip():
    for blob in (b"", b"not a zip file", b"PK\x03\x04" + bytes(40), bytes(1000)):
        err = raises(lambda: parse_model(blob, where="junk"), E.ModelFormatError)
        assert "junk" in str(err)


def test_bad_npy_member(small):
    import io
    import zipfile

    data = small[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            raw = src.read(info)
            if info.filename == "z_lo.npy":
                raw = raw[:20]
            dst.writestr(info.filename, raw)
    raises(lambda: parse_model(buf.getvalue()), E.ModelFormatError)


def test_non_npy_member(small):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(small[0])) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("README.txt", b"hello")
    raises(lambda: parse_model(buf.getvalue()), E.ModelFormatError)


@pytest.mark.parametrize("margin,ok", [(-1, True), (0, False), (1, False)])
def test_accumulator_bound_boundary(small, margin, ok):
    """Clause 9.5: sum|W| * in_max + |b| < 2^31 exactly."""
    model = small[1]
    data = model_variant(model, None, lambda a: _accumulator_violation(a, model, margin))
    if ok:
        parse_model(data)
    else:
        err = raises(lambda: parse_model(data, where="acc"), E.AccumulatorOverflowRisk)
        assert "gather.0" in str(err) and "output channel 0" in str(err)


def test_accumulator_bound_synthesis_input_clip(small):
    """in_max of synthesis.0 is synthesis_input_clip: raising it alone violates the bound."""
    model = small[1]

    def big_weights(a):
        w = a["synthesis.0.weight"]
        a["synthesis.0.weight"] = np.full_like(w, 32767)

    raises(lambda: parse_model(model_variant(model, _set_key("synthesis_input_clip", 32767), big_weights)),
           E.AccumulatorOverflowRisk)


@pytest.mark.parametrize("case,cls", [("unknown header key", E.ModelFormatError),
                                      ("bias length", E.ModelShapeError),
                                      ("shift 255", E.ModelValueError)])
def test_model_errors_through_decode(small, tmp_path, case, cls):
    """Clause 6.2 check 6: a stream whose model file fails clause 9.4 reports the model error."""
    _, model, stream = small[:3]
    _, header_change, array_change = MODEL_CASES[case]
    data = model_variant(model, header_change, array_change)
    path = tmp_path / "bad.npz"
    path.write_bytes(data)
    bad_stream = with_header(stream, model_id=model_id_of(data))
    err = raises(lambda: decode(bad_stream, ModelStore([tmp_path])), cls)
    assert str(path) in str(err)


def test_accumulator_error_through_decode(small, tmp_path):
    _, model, stream = small[:3]
    data = model_variant(model, None, lambda a: _accumulator_violation(a, model, 0))
    (tmp_path / "acc.npz").write_bytes(data)
    bad_stream = with_header(stream, model_id=model_id_of(data))
    raises(lambda: decode(bad_stream, ModelStore([tmp_path / "acc.npz"])), E.AccumulatorOverflowRisk)
    # A model error comes before the rate-index check (clause 6.2 check 6 before 7).
    raises(lambda: decode(with_header(bad_stream, rate_index=200), ModelStore([tmp_path])),
           E.AccumulatorOverflowRisk)


def test_unreadable_model_file(tmp_path):
    from refdec.model_file import load_model

    raises(lambda: load_model(tmp_path / "missing.npz"), E.ModelFormatError)


# --- every class is covered ----------------------------------------------------------------

COVERED = {
    "TruncatedHeader": test_truncated_header, "BadMagic": test_bad_magic,
    "UnsupportedVersion": test_unsupported_version, "ReservedFieldSet": test_reserved_field_set,
    "ZeroDimension": test_zero_dimension, "DimensionsTooLarge": test_dimensions_too_large,
    "PayloadTooShort": test_payload_too_short, "PayloadPastEnd": test_payload_past_end,
    "TrailingData": test_trailing_data, "RateIndexOutOfRange": test_rate_index_out_of_range,
    "UnknownModel": test_unknown_model, "ModelFormatError": test_model_validation,
    "ModelShapeError": test_model_validation, "ModelValueError": test_model_validation,
    "AccumulatorOverflowRisk": test_accumulator_bound_boundary, "InvalidRangeState": test_invalid_range_state_z,
    "PayloadTruncated": test_payload_truncated, "TrailingPayloadBytes": test_trailing_payload_bytes,
    "EscapeTooLong": test_escape_too_long, "LatentOutOfRange": test_latent_out_of_range,
}


def test_every_error_class_has_a_crafted_input():
    assert set(COVERED) == set(E.ALL_ERRORS)
    model_classes = {cls for cls, _, _ in MODEL_CASES.values()}
    assert model_classes == {E.ModelFormatError, E.ModelShapeError, E.ModelValueError}
