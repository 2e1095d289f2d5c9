"""Seeded mutation fuzzing of the bitstream decoder and the model-file parser.

Every mutated bitstream must either decode to an image of the size its header gives or
raise a refdec.errors.RefdecError subclass (clause 11.1: an invalid stream yields no image
and an error of clause 11.2), within a time bound. Every mutated model file must either
parse or raise a ModelError subclass; one that parses must then decode (or reject) a
stream without any other exception.

Each case is reproducible from its seed alone: `bitstream_case(seed)` / `model_case(seed)`
rebuild the mutated input, and a failure message names the seed and the mutations.
REFDEC_FUZZ_SEED changes the base seed, REFDEC_FUZZ_SCALE multiplies the number of cases.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import struct
import time
import traceback
import zipfile
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest

from refdec import errors as E
from refdec.architecture import LAYER_NAMES, padded_sizes
from refdec.bitstream import HEADER_SIZE, parse_header
from refdec.decoder import decode
from refdec.model_file import ModelStore
from refdec.generators.encoder import encode_latents
from refdec.model_file import Model, parse_model
from refdec.generators.model_writer import model_arrays
from refdec.generators.random_model import random_latents, random_model

BASE_SEED = int(os.environ.get("REFDEC_FUZZ_SEED", "20250101"))
SCALE = float(os.environ.get("REFDEC_FUZZ_SCALE", "1"))
DECODE_TIME_LIMIT = 8.0  # seconds for one decode of a tiny stream, mutated or not
HEADER = struct.Struct(">4sBBHHB8sII")
FIELDS = ("magic", "version", "flags", "width", "height", "rate_index", "model_id", "z_length", "y_length")


# --- base material ------------------------------------------------------------------------

@lru_cache(maxsize=None)
def models() -> tuple[Model, Model]:
    _, a = random_model(3)
    _, b = random_model(4, profile="W8A16", num_rates=2)
    return a, b


@lru_cache(maxsize=None)
def base_streams() -> dict[str, bytes]:
    a, b = models()
    streams = {}
    for name, model, (w, h), rate, scales in [
        ("1x1", a, (1, 1), 0, {}),
        ("16x16", a, (16, 16), 2, {}),
        ("70x33", a, (70, 33), 5, {}),
        ("16x16-escapes-w8", b, (16, 16), 1, {"y_scale": 60.0, "z_scale": 30.0}),
    ]:
        z, y = random_latents(model, w, h, seed=len(streams), **scales)
        streams[name] = encode_latents(model, z, y, rate, w, h)
    return streams


@lru_cache(maxsize=None)
def store() -> ModelStore:
    s = ModelStore()
    for m in models():
        s.add(m)
    return s


def unpack(stream: bytes) -> dict:
    return dict(zip(FIELDS, HEADER.unpack_from(stream)))


def pack(f: dict) -> bytes:
    return HEADER.pack(*(f[k] for k in FIELDS))


def split(stream: bytes):
    f = unpack(stream)
    z0 = HEADER_SIZE + f["z_length"]
    return f, stream[HEADER_SIZE:z0], stream[z0:z0 + f["y_length"]]


def join(f: dict, z: bytes, y: bytes) -> bytes:
    f = dict(f, z_length=len(z), y_length=len(y))
    return pack(f) + z + y


# --- bitstream mutators (each: (rng, stream) -> (stream, description)) ---------------------

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
INTERESTING_U16 = (0, 1, 2, 15, 16, 17, 63, 64, 65, 127, 128, 255, 256, 8191, 8192, 8193, 32768, 65535)
INTERESTING_U32 = (0, 1, 3, 4, 5, 26, 27, 100, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


def m_bitflip(rng, s):
    if not s:
        return m_insert(rng, s)
    s = bytearray(s)
    n = rng.choice((1, 1, 2, 3, 8))
    where = []
    for _ in range(n):
        i = rng.randrange(len(s))
        b = rng.randrange(8)
        s[i] ^= 1 << b
        where.append(f"{i}.{b}")
    return bytes(s), f"bitflip({','.join(where)})"


def m_payload_bitflip(rng, s):
    if len(s) <= HEADER_SIZE:
        return m_bitflip(rng, s)
    s = bytearray(s)
    i = rng.randrange(HEADER_SIZE, len(s))
    b = rng.randrange(8)
    s[i] ^= 1 << b
    return bytes(s), f"payload_bitflip({i}.{b})"


def m_byte(rng, s):
    if not s:
        return m_insert(rng, s)
    s = bytearray(s)
    i = rng.randrange(len(s))
    v = rng.choice(INTERESTING_BYTES) if rng.random() < 0.5 else rng.randrange(256)
    s[i] = v
    return bytes(s), f"byte({i}={v:#04x})"


def m_truncate(rng, s):
    cls = rng.choice(("header", "27", "payload", "tail"))
    if cls == "header":
        n = rng.randrange(HEADER_SIZE)
    elif cls == "27":
        n = HEADER_SIZE
    elif cls == "payload":
        n = rng.randrange(HEADER_SIZE, max(len(s), HEADER_SIZE + 1))
    else:
        n = max(0, len(s) - rng.randrange(1, 5))
    return s[:n], f"truncate({n})"


def m_payload_resize(rng, s):
    """Cut or extend one payload and fix the length fields (payload-level truncation/extension)."""
    f, z, y = split(s)
    which = rng.choice("zy")
    p = z if which == "z" else y
    kind = rng.choice(("cut", "cut", "extend"))
    if kind == "cut":
        n = rng.choice((0, 1, 3, 4, 5, len(p) // 2, len(p) - 1, rng.randrange(len(p) + 1)))
        p = p[:max(0, min(n, len(p)))]
    else:
        extra = bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 7))))
        p = p + extra
    z, y = (p, y) if which == "z" else (z, p)
    return join(f, z, y), f"{which}_payload_{kind}({len(p)})"


def m_insert(rng, s):
    i = rng.randrange(len(s) + 1)
    data = bytes(rng.randrange(256) for _ in range(rng.choice((1, 1, 2, 4, 16))))
    return s[:i] + data + s[i:], f"insert({i},{data.hex()})"


def m_delete(rng, s):
    if not s:
        return s, "delete(none)"
    i = rng.randrange(len(s))
    n = rng.choice((1, 1, 2, 4))
    return s[:i] + s[i + n:], f"delete({i},{n})"


def m_header_field(rng, s):
    if len(s) < HEADER_SIZE:
        return m_byte(rng, s)
    f = unpack(s)
    key = rng.choice(("magic", "version", "flags", "width", "height", "rate_index", "model_id"))
    if key == "magic":
        v = rng.choice((b"RDEC", b"rdec", b"\x00" * 4, b"RDE\x00", bytes(rng.randrange(256) for _ in range(4))))
    elif key in ("version", "flags", "rate_index"):
        v = rng.choice((0, 1, 2, 5, 6, 63, 64, 255, rng.randrange(256)))
    elif key in ("width", "height"):
        v = rng.choice(INTERESTING_U16 + (rng.randrange(65536), rng.randrange(1, 200)))
    else:
        mid = bytearray(f["model_id"])
        mid[rng.randrange(8)] ^= 1 << rng.randrange(8)
        v = rng.choice((bytes(mid), bytes(8), b"\xff" * 8, models()[1].model_id))
    f[key] = v
    return pack(f) + s[HEADER_SIZE:], f"header({key}={v.hex() if isinstance(v, bytes) else v})"


def m_length_field(rng, s):
    if len(s) < HEADER_SIZE:
        return m_byte(rng, s)
    f = unpack(s)
    kind = rng.choice(("set", "delta", "shift"))
    if kind == "set":
        key = rng.choice(("z_length", "y_length"))
        f[key] = rng.choice(INTERESTING_U32 + (len(s) - HEADER_SIZE, rng.randrange(len(s))))
        desc = f"{key}={f[key]}"
    elif kind == "delta":
        key = rng.choice(("z_length", "y_length"))
        f[key] = max(0, min(0xFFFFFFFF, f[key] + rng.choice((-2, -1, 1, 2, 256))))
        desc = f"{key}={f[key]}"
    else:  # move the boundary between the payloads; the total stays consistent
        d = rng.choice((-3, -2, -1, 1, 2, 3, rng.randrange(-f["z_length"], f["y_length"] + 1)))
        f["z_length"] += d
        f["y_length"] -= d
        if not (0 <= f["z_length"] <= 0xFFFFFFFF and 0 <= f["y_length"] <= 0xFFFFFFFF):
            return s, "shift(noop)"
        desc = f"shift({d})"
    return pack(f) + s[HEADER_SIZE:], f"length({desc})"


def m_payload_random(rng, s):
    f, z, y = split(s)
    which = rng.choice("zy")
    p = z if which == "z" else y
    fill = rng.choice(("random", "zeros", "ones", "pattern"))
    n = len(p)
    if fill == "random":
        q = bytes(rng.randrange(256) for _ in range(n))
    elif fill == "zeros":
        q = bytes(n)
    elif fill == "ones":
        q = b"\xff" * n
    else:
        q = (b"\x55\xaa" * n)[:n]
    start = rng.randrange(max(1, n)) if fill != "random" else 0
    p = p[:start] + q[start:]
    z, y = (p, y) if which == "z" else (z, p)
    return join(f, z, y), f"{which}_payload_{fill}(from {start})"


def m_splice(rng, s):
    """Payloads of another base stream (possibly another size or model) under this header."""
    f, z, y = split(s)
    other = rng.choice(list(base_streams().values()))
    _, z2, y2 = split(other)
    kind = rng.choice(("z", "y", "both"))
    z = z2 if kind in ("z", "both") else z
    y = y2 if kind in ("y", "both") else y
    return join(f, z, y), f"splice({kind})"


def m_dims_same_grid(rng, s):
    """Width/height changed within the same padded grid (clause 5.4): still valid."""
    f = unpack(s)
    hz, wz, _, _ = padded_sizes(f["width"], f["height"])
    if not 1 <= hz * 64 <= 8192 or not 1 <= wz * 64 <= 8192:
        return s, "dims(noop)"
    f["width"] = rng.randrange(64 * (wz - 1) + 1, 64 * wz + 1)
    f["height"] = rng.randrange(64 * (hz - 1) + 1, 64 * hz + 1)
    return pack(f) + s[HEADER_SIZE:], f"dims({f['width']}x{f['height']})"


MUTATORS = [
    (m_bitflip, 6), (m_payload_bitflip, 8), (m_byte, 5), (m_truncate, 4), (m_payload_resize, 5),
    (m_insert, 3), (m_delete, 3), (m_header_field, 5), (m_length_field, 5), (m_payload_random, 3),
    (m_splice, 2), (m_dims_same_grid, 1),
]
_MUTATOR_FNS = [m for m, _ in MUTATORS]
NEEDS_HEADER = {m_payload_resize, m_header_field, m_length_field, m_payload_random, m_splice, m_dims_same_grid}
_MUTATOR_WEIGHTS = [w for _, w in MUTATORS]


def bitstream_case(seed: int):
    """(base name, mutated stream, description) for a case seed: deterministic."""
    rng = random.Random(seed)
    name = rng.choice(sorted(base_streams()))
    s = base_streams()[name]
    steps = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        mut = rng.choices(_MUTATOR_FNS, _MUTATOR_WEIGHTS)[0]
        if mut in NEEDS_HEADER and len(s) < HEADER_SIZE:
            mut = m_insert
        s, desc = mut(rng, s)
        steps.append(desc)
    return name, s, " + ".join(steps)


# --- the oracle ---------------------------------------------------------------------------

def check_decode(stream: bytes, label: str, stats: Counter, failures: list, expect=None, model=None):
    """Decode; record an outcome; append a failure message for anything but an image of the
    header's size or a RefdecError (with a sane offset), or for a slow decode.
    Returns (seconds, the Decoded result or the RefdecError)."""
    t0 = time.perf_counter()
    result = None
    try:
        out = result = decode(stream, model if model is not None else store())
    except E.RefdecError as exc:
        result = exc
        outcome = exc.name
        if exc.offset is not None and not 0 <= exc.offset <= len(stream):
            failures.append(f"{label}: {exc.name} offset {exc.offset} outside the stream of {len(stream)} bytes")
        if isinstance(exc, E.PayloadError) and not HEADER_SIZE <= (exc.offset or 0) <= len(stream):
            failures.append(f"{label}: payload error without a payload offset: {exc}")
        if "\n" in str(exc):
            failures.append(f"{label}: multi-line message {str(exc)!r}")
    except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
        outcome = f"CRASH {type(exc).__name__}"
        failures.append(f"{label}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-4)}")
    else:
        outcome = "decoded"
        h = parse_header(stream)
        if out.image.shape != (3, h.height, h.width) or out.image.dtype != np.uint8:
            failures.append(f"{label}: image {out.image.shape} {out.image.dtype} for a {h.width}x{h.height} header")
        elif expect is not None and not expect(out):
            failures.append(f"{label}: decoded image differs from the expected samples")
    dt = time.perf_counter() - t0
    if dt > DECODE_TIME_LIMIT:
        failures.append(f"{label}: decode took {dt:.1f} s (> {DECODE_TIME_LIMIT} s)")
    stats[outcome] += 1
    return dt, result


def report(kind, stats, failures, n, elapsed, slowest):
    summary = (f"{kind}: {n} cases in {elapsed:.1f} s, slowest {slowest[0]:.3f} s ({slowest[1]}); "
               f"outcomes {dict(sorted(stats.items()))}")
    print(summary)
    if failures:
        shown = "\n\n".join(failures[:10])
        pytest.fail(f"{len(failures)} fuzz failures (first {min(10, len(failures))}):\n{shown}\n\n{summary}",
                    pytrace=False)


# --- bitstream fuzzing ----------------------------------------------------------------------

def test_base_streams_decode():
    for name, s in base_streams().items():
        out = decode(s, store())
        h = parse_header(s)
        assert out.image.shape == (3, h.height, h.width), name


def test_truncation_at_every_length():
    """Every prefix of every base stream (header length fields unchanged): never an image."""
    stats, failures = Counter(), []
    t0 = time.perf_counter()
    slowest = (0.0, "")
    n = 0
    for name, s in base_streams().items():
        for k in range(len(s)):
            dt, _ = check_decode(s[:k], f"truncate {name} to {k}", stats, failures)
            n += 1
            slowest = max(slowest, (dt, f"{name}[:{k}]"))
            assert stats.get("decoded", 0) == 0, f"a strict prefix ({name}[:{k}]) decoded"
    report("truncation", stats, failures, n, time.perf_counter() - t0, slowest)
    assert set(stats) <= {"TruncatedHeader", "PayloadPastEnd"}


def test_payload_truncation_every_length_class():
    """Each payload cut to every length up to 12 and a few longer ones, lengths fixed up:
    PayloadTooShort below 4, otherwise PayloadTruncated at exactly the cut."""
    stats, failures = Counter(), []
    t0 = time.perf_counter()
    n = 0
    for name, s in base_streams().items():
        f, z, y = split(s)
        for which, p in (("z", z), ("y", y)):
            lengths = sorted(set(range(min(len(p), 13))) | {len(p) // 3, len(p) // 2, len(p) - 1})
            for k in lengths:
                cut = join(f, p[:k], y) if which == "z" else join(f, z, p[:k])
                label = f"{name}: {which} payload cut to {k} of {len(p)}"
                _, result = check_decode(cut, label, stats, failures)
                n += 1
                base = HEADER_SIZE + (0 if which == "z" else len(z))
                if k < 4:
                    assert isinstance(result, E.PayloadTooShort), f"{label}: {result}"
                else:
                    assert isinstance(result, E.PayloadTruncated), f"{label}: {result}"
                    assert result.offset == base + k, f"{label}: {result}"
    report("payload truncation", stats, failures, n, time.perf_counter() - t0, (0.0, ""))


N_BITSTREAM_CASES = int(3000 * SCALE)


def test_bitstream_mutation_fuzz():
    stats, failures = Counter(), []
    t0 = time.perf_counter()
    slowest = (0.0, "")
    for i in range(N_BITSTREAM_CASES):
        seed = BASE_SEED * 1_000_000 + i
        name, s, desc = bitstream_case(seed)
        label = f"bitstream_case({seed}) [{name}: {desc}]"
        expect = None
        if desc.startswith("dims(") and "+" not in desc:
            # Same padded grid, same payloads: the image is a crop of the same synthesis output.
            full = _full_output(name)
            expect = lambda out, full=full: np.array_equal(  # noqa: E731
                out.image, full[:, :out.image.shape[1], :out.image.shape[2]])
        dt, _ = check_decode(s, label, stats, failures, expect)
        slowest = max(slowest, (dt, label))
    report("bitstream mutations", stats, failures, N_BITSTREAM_CASES, time.perf_counter() - t0, slowest)
    # The fuzzer must reach deep into the decoder, not stop at the header.
    for cls in ("decoded", "PayloadTruncated", "TrailingPayloadBytes", "InvalidRangeState", "PayloadPastEnd",
                "UnknownModel", "DimensionsTooLarge"):
        assert stats[cls] > 0, f"no case ended in {cls}: {dict(stats)}"


@lru_cache(maxsize=None)
def _full_output(name):
    s = base_streams()[name]
    f = unpack(s)
    hz, wz, _, _ = padded_sizes(f["width"], f["height"])
    big = pack(dict(f, width=64 * wz, height=64 * hz)) + s[HEADER_SIZE:]
    return decode(big, store()).image


def test_hypothesis_payloads():
    """Arbitrary payload bytes under a valid header (hypothesis)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    f, _, _ = split(base_streams()["16x16"])

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(z=st.binary(min_size=0, max_size=24), y=st.binary(min_size=0, max_size=64),
           rate=st.integers(0, 7))
    def run(z, y, rate):
        stats, failures = Counter(), []
        check_decode(join(dict(f, rate_index=rate), z, y), f"z={z.hex()} y={y.hex()} rate={rate}", stats,
                     failures)
        assert not failures, failures[0]

    run()


# --- model-file fuzzing ---------------------------------------------------------------------

def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), version=(1, 0), allow_pickle=False)
    return buf.getvalue()


def zip_members(members: dict[str, bytes], compress: bool) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, raw in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            zf.writestr(info, raw)
    return buf.getvalue()


@lru_cache(maxsize=None)
def model_parts():
    """(header dict, {name: array}, {member name: npy bytes}) of the W16A16 fuzz model."""
    model = models()[0]
    arrays = model_arrays(model)
    header = copy.deepcopy(model.header)
    members = {"header.npy": _npy(np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))}
    members.update({f"{k}.npy": _npy(v) for k, v in sorted(arrays.items())})
    return header, arrays, members


JSON_VALUES = (0, 1, -1, 2, 3, 8, 16, 31, 32, 63, 64, 65, 255, 256, 4095, 4096, 4097, 32767, 32768, 65536,
               2 ** 31, 2 ** 63, -(2 ** 31), 1.0, 1.5, 16.0, 1e308, True, False, None, "", "W16A16", "W8A16",
               "refdec-model", [], [1], {}, {"a": 1}, "x" * 100)

DTYPES = ("<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", ">i2", ">i4", "<f4", "<f8", "|b1", "<c8", "<U3")


# Clause 9.2: the normative header fields and their JSON types.
TYPED_FIELDS = {"format": str, "format_version": int, "profile": str, "weight_bits": int,
                "latent_channels": int, "hyper_channels": int, "num_rates": int, "inv_gain_shift": int,
                "synthesis_input_clip": int}


def _retype(rng, v):
    """The same value in another JSON type (16 -> 16.0, "W16A16" -> ["W16A16"], 1 -> true, ...)."""
    options = [[v], {"value": v}]
    if isinstance(v, int) and not isinstance(v, bool):
        options += [str(v), float(v), float(v), bool(v), float(v) + 0.5]
    return rng.choice(options)


def _mutate_header_json(rng, header):
    """(mutated header, description, wrongly_typed): wrongly_typed is True where a normative
    field now holds a value of the wrong JSON type, which clause 9.4 item 1 must reject."""
    h = copy.deepcopy(header)
    kind = rng.choice(("set", "set", "set_clip", "delete", "add", "clip_type", "retype", "retype"))
    if kind == "retype":
        if rng.random() < 0.25:
            key = rng.choice(LAYER_NAMES)
            h["clip"][key] = _retype(rng, h["clip"][key])
            return h, f"clip[{key}]={h['clip'][key]!r:.40} (retyped)", True
        key = rng.choice(sorted(TYPED_FIELDS))
        h[key] = _retype(rng, h[key])
        return h, f"header[{key}]={h[key]!r:.40} (retyped)", True
    if kind == "set":
        key = rng.choice(sorted(h))
        h[key] = rng.choice(JSON_VALUES)
        wrong = key in TYPED_FIELDS and not _json_type_ok(h[key], TYPED_FIELDS[key])
        return h, f"header[{key}]={h[key]!r:.40}", wrong
    if kind == "set_clip":
        key = rng.choice(LAYER_NAMES)
        h["clip"][key] = rng.choice(JSON_VALUES)
        return h, f"clip[{key}]={h['clip'][key]!r:.40}", not _json_type_ok(h["clip"][key], int)
    if kind == "delete":
        key = rng.choice(sorted(h))
        del h[key]
        return h, f"del header[{key}]", False
    if kind == "add":
        key = rng.choice(("extra", "Format", "clip ", "provenance", "description", "act_exponents"))
        h[key] = rng.choice(JSON_VALUES)
        return h, f"header[{key!r}] added", False
    h["clip"] = rng.choice(JSON_VALUES)
    return h, f"clip={h['clip']!r:.40}", False


def _json_type_ok(value, typ) -> bool:
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typ)


def _mutate_array(rng, arr):
    kind = rng.choice(("dtype", "shape", "value", "value", "value", "extreme"))
    if kind == "dtype":
        dt = rng.choice(DTYPES)
        try:
            return arr.astype(dt), f"astype({dt})"
        except (TypeError, ValueError):
            return arr, "astype(failed)"
    if kind == "shape":
        op = rng.choice(("drop", "add", "flat", "axis", "empty"))
        if op == "drop" and arr.shape and arr.shape[-1] > 1:
            return arr[..., :-1], "drop last"
        if op == "add":
            return np.concatenate([arr, arr[..., :1]], axis=-1), "add last"
        if op == "flat":
            return arr.ravel(), "ravel"
        if op == "axis":
            return arr[None], "add axis"
        return arr[:0], "empty"
    if arr.size == 0:
        return arr, "value(empty)"
    a = arr.copy()
    flat = a.reshape(-1)
    i = rng.randrange(flat.size)
    info = np.iinfo(a.dtype) if a.dtype.kind in "iu" else None
    if kind == "value":
        v = rng.choice((0, 1, -1, 2, 31, 32, 127, 255, 1024, 1025, 16383, 32767, 65535, 65536, 65537))
    else:
        v = rng.choice((info.min, info.max)) if info else 0
    if info:
        v = int(np.clip(v, info.min, info.max))
    flat[i] = v
    return a, f"[{i}]={v}"


def _mutate_npy_bytes(rng, raw: bytes):
    kind = rng.choice(("flip_header", "flip_data", "truncate", "descr", "shape", "order", "version"))
    if kind == "flip_header":
        b = bytearray(raw)
        i = rng.randrange(min(len(b), 128))
        b[i] ^= 1 << rng.randrange(8)
        return bytes(b), f"npy flip {i}"
    if kind == "flip_data" and len(raw) > 128:
        b = bytearray(raw)
        i = rng.randrange(128, len(b))
        b[i] ^= 1 << rng.randrange(8)
        return bytes(b), f"npy flip {i}"
    if kind == "truncate":
        n = rng.randrange(len(raw))
        return raw[:n], f"npy truncate {n}"
    text = raw[:128].decode("latin-1")
    if kind == "descr":
        start = text.index("'descr': '") + 10
        end = text.index("'", start)
        new = rng.choice(DTYPES + ("|O", "<V8", "bogus", ""))
        text = text[:start] + new + text[end:]
        desc = f"npy descr {new}"
    elif kind == "shape":
        start = text.index("'shape': (") + 10
        end = text.index(")", start)
        new = rng.choice(("", "1,", "0,", "-1,", "4294967296,", "1099511627776, 1099511627776",
                          "2, 2, 2, 2, 2", "9999999999,", "3, 3"))
        text = text[:start] + new + text[end:]
        desc = f"npy shape ({new})"
    elif kind == "order":
        text = text.replace("'fortran_order': False", "'fortran_order': True")
        desc = "npy fortran_order"
    else:
        text = "\x93NUMPY\x09" + text[7:]
        desc = "npy version 9"
    head = text.encode("latin-1")
    return head + raw[128:], desc


def model_case(seed: int):
    """(mutated model file bytes, description, must_reject) for a case seed: deterministic."""
    rng = random.Random(seed)
    wrongly_typed = False
    header, arrays, members = model_parts()
    members = dict(members)
    kind = rng.choice(("file", "npy", "json", "json", "array", "array", "array", "members"))
    compress = rng.random() < 0.3
    if kind == "json":
        h, desc, wrongly_typed = _mutate_header_json(rng, header)
        if rng.random() < 0.1:
            raw = json.dumps(h).encode()[: rng.randrange(200)]
            desc += " (truncated JSON)"
        else:
            raw = json.dumps(h).encode()
        members["header.npy"] = _npy(np.frombuffer(raw, dtype=np.uint8))
    elif kind == "array":
        name = rng.choice(sorted(arrays))
        new, d = _mutate_array(rng, arrays[name])
        members[f"{name}.npy"] = _npy(new)
        desc = f"{name} {d}"
    elif kind == "npy":
        name = rng.choice(sorted(members))
        members[name], d = _mutate_npy_bytes(rng, members[name])
        desc = f"{name}: {d}"
    elif kind == "members":
        op = rng.choice(("drop", "rename", "add", "duplicate_as", "not_npy"))
        name = rng.choice(sorted(members))
        if op == "drop":
            del members[name]
        elif op == "rename":
            members["x" + name] = members.pop(name)
        elif op == "add":
            members["extra.npy"] = _npy(np.zeros(3, np.int32))
        elif op == "duplicate_as":
            other = rng.choice(sorted(members))
            members[other] = members[name]
        else:
            members[name[:-4] + ".txt"] = members.pop(name)
        desc = f"members {op} {name}"
    data = zip_members(members, compress)
    if kind == "file":
        b = bytearray(data)
        op = rng.choice(("flip", "flip", "truncate", "byte", "insert"))
        i = rng.randrange(len(b))
        if op == "flip":
            b[i] ^= 1 << rng.randrange(8)
        elif op == "truncate":
            del b[i:]
        elif op == "byte":
            b[i] = rng.choice(INTERESTING_BYTES)
        else:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 4))))
        data = bytes(b)
        desc = f"file {op} at {i} ({'deflated' if compress else 'stored'})"
    return data, desc, wrongly_typed


N_MODEL_CASES = int(600 * SCALE)


def test_model_file_fuzz():
    stats, failures = Counter(), []
    t0 = time.perf_counter()
    slowest = (0.0, "")
    probe = base_streams()["16x16"]
    accepted = 0
    for i in range(N_MODEL_CASES):
        seed = BASE_SEED * 1_000_000 + 500_000 + i
        data, desc, must_reject = model_case(seed)
        label = f"model_case({seed}) [{desc}]"
        t1 = time.perf_counter()
        try:
            model = parse_model(data, where="fuzz")
        except E.ModelError as exc:
            stats[exc.name] += 1
            if "\n" in str(exc):
                failures.append(f"{label}: multi-line message {str(exc)!r}")
            model = None
        except Exception as exc:  # noqa: BLE001
            stats[f"CRASH {type(exc).__name__}"] += 1
            failures.append(f"{label}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-4)}")
            model = None
        dt = time.perf_counter() - t1
        if dt > DECODE_TIME_LIMIT:
            failures.append(f"{label}: parsing took {dt:.1f} s")
        slowest = max(slowest, (dt, label))
        if model is not None and must_reject:
            failures.append(f"{label}: accepted a header field of the wrong JSON type (clause 9.2, 9.4 item 1)")
        if model is not None:
            # A file that passes clause 9.4 and 9.5 must be safe to decode with.
            accepted += 1
            stats["accepted"] += 1
            stream = pack(dict(unpack(probe), model_id=model.model_id)) + probe[HEADER_SIZE:]
            check_decode(stream, f"{label} decoding 16x16", stats, failures, model=model)
    report("model-file mutations", stats, failures, N_MODEL_CASES, time.perf_counter() - t0, slowest)
    assert accepted > 0 and stats["ModelFormatError"] > 0 and stats["ModelValueError"] > 0
    assert stats["ModelShapeError"] > 0
