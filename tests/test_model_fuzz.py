"""Seeded, time-bounded mutation fuzzing of model files at the container level (clause 9.1):
ZIP local and central records and the end record, .npy headers, member sizes, truncations, bit
flips, huge declared sizes and members that inflate far beyond their size.

Every mutant must end in a clean parse or a clause 9 error (a RefdecError subclass), never another
exception, within a memory bound (the mutants are parsed in a child process under RLIMIT_AS =
1 GiB, so an allocation of what a file declares fails there as a MemoryError, which counts as a
crash) and a time bound per mutant. The fast tier runs by default; REFDEC_FUZZ_SCALE multiplies
its count and REFDEC_FUZZ_SEED changes its seeds; the slow tier (@pytest.mark.slow) runs 10 times
as many with larger bombs. `mutant(seed)` rebuilds any case from its seed alone.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import textwrap
import zlib
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import ROOT

BASE_SEED = int(os.environ.get("REFDEC_FUZZ_SEED", "20250101"))
SCALE = float(os.environ.get("REFDEC_FUZZ_SCALE", "1"))
FAST_CASES = int(500 * SCALE)
SLOW_CASES = int(5000 * SCALE)
SECONDS_PER_MUTANT = 10.0  # a busy 2-core machine inflates about 100 MB/s: 2^28 bytes take 3 s
LIMIT_MIB = 1024

# Field (offset, size) tables of the three ZIP records (clause 9.1.1).
LOCAL_FIELDS = {"signature": (0, 4), "version": (4, 2), "flags": (6, 2), "method": (8, 2), "time": (10, 2),
                "date": (12, 2), "crc": (14, 4), "csize": (18, 4), "usize": (22, 4), "name_len": (26, 2),
                "extra_len": (28, 2)}
CENTRAL_FIELDS = {"signature": (0, 4), "made_by": (4, 2), "version": (6, 2), "flags": (8, 2), "method": (10, 2),
                  "time": (12, 2), "date": (14, 2), "crc": (16, 4), "csize": (20, 4), "usize": (24, 4),
                  "name_len": (28, 2), "extra_len": (30, 2), "comment_len": (32, 2), "disk": (34, 2),
                  "internal": (36, 2), "external": (38, 4), "offset": (42, 4)}
EOCD_FIELDS = {"signature": (0, 4), "disk": (4, 2), "cd_disk": (6, 2), "count_here": (8, 2), "count": (10, 2),
               "cd_size": (12, 4), "cd_offset": (16, 4), "comment_len": (20, 2)}
SIZES = (0, 1, 2, 127, 128, 255, 256, 65535, 65536, 1 << 20, (1 << 28) - 1, 1 << 28, (1 << 28) + 1, (1 << 30) - 1,
         1 << 30, (1 << 31) - 1, 1 << 31, 0xFFFFFFFE, 0xFFFFFFFF)


@lru_cache(maxsize=None)
def bases() -> tuple[tuple[str, bytes], ...]:
    """(label, file) of the valid bases: the tiny model of the invalid-model generator deflated,
    and the same members stored with NumPy's ZIP64 local sizes."""
    from refdec.generators.invalid_models import _Base, _Entry, _zip, tiny_base_model

    base = tiny_base_model()
    members = _Base(base).members
    stored = _zip([_Entry(n, d, method=0, local=(("sizes", (0xFFFFFFFF, 0xFFFFFFFF)),
                                                 ("extra", struct.pack("<HHQQ", 1, 16, len(d), len(d)))))
                   for n, d in members])
    return (("deflated", base), ("stored-zip64", stored))


@lru_cache(maxsize=None)
def members() -> tuple[tuple[str, bytes], ...]:
    from refdec.generators.invalid_models import _Base, tiny_base_model

    return tuple(_Base(tiny_base_model()).members)


@lru_cache(maxsize=None)
def zeros_stream(count: int) -> tuple[bytes, int]:
    """(raw deflate stream, CRC-32) of `count` zero bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk, crc, out = bytes(1 << 20), 0, []
    for i in range(0, count, 1 << 20):
        piece = chunk[: min(1 << 20, count - i)]
        out.append(c.compress(piece))
        crc = zlib.crc32(piece, crc)
    return b"".join(out) + c.flush(), crc


def records(data: bytes) -> dict:
    """Offsets of the end record, the central records and the local headers of a valid base."""
    end = len(data) - 22
    count, cd_size, cd_offset = struct.unpack_from("<HII", data, end + 10)
    central, local, pos = [], [], cd_offset
    for _ in range(count):
        central.append(pos)
        local.append(struct.unpack_from("<I", data, pos + 42)[0])
        pos += 46 + sum(struct.unpack_from("<HHH", data, pos + 28))
    return {"eocd": end, "central": central, "local": local}


def _put(buf: bytearray, offset: int, size: int, value: int) -> None:
    if offset + size <= len(buf):
        buf[offset: offset + size] = (value % (1 << (8 * size))).to_bytes(size, "little")


def _value(rng: random.Random, old: int, size: int) -> int:
    choice = rng.random()
    if choice < 0.4:
        return rng.choice(SIZES)
    if choice < 0.7:
        return old + rng.choice((-1, 1, -4, 4, 16, 1 << 16))
    return rng.getrandbits(8 * size)


def _npy_header_edit(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    """A member's .npy bytes with its header text, length or version edited."""
    end = 10 + struct.unpack_from("<H", raw, 8)[0]
    text, data = raw[10:end].decode("latin-1"), raw[end:]
    op = rng.choice(("descr", "shape", "key", "order", "len", "version", "pad", "token"))
    if op == "descr":
        new = rng.choice(("<i2", "|i1", "<i1", "<u1", "|u1", "<i4", "=i4", ">i4", "i4", "<i8", "<f4", "|O", "<U4",
                          "|V4", "<i4,<i4", "(2,)<i4", "", "'", "\\"))
        start = text.index("'descr': '") + 10
        text = text[:start] + new + text[text.index("'", start):]
        return _npy(text, data), f"descr {new!r}"
    if op == "shape":
        dims = rng.choice(("", "0,", "1,", "0, 268435456, 268435456, 268435456", "268435456,", "268435457,",
                           "4294967296, 4294967296", "9" * 50 + ",", "-1,", "1.0,", "1, 1, 1, 1, 1, 1, 1, 1",
                           "3", "(3,),", "0, 0", "65536, 65536"))
        start = text.index("'shape': (") + 10
        text = text[:start] + dims + text[text.index(")", start):]
        return _npy(text, data), f"shape ({dims})"
    if op == "key":
        key = rng.choice(("descr", "fortran_order", "shape"))
        text = text.replace(f"'{key}'", rng.choice(("'x'", f"'{key} '", f"\"{key}\"", f"'{key}', '{key}'")), 1)
        return _npy(text, data), f"key {key}"
    if op == "order":
        text = text.replace("False", rng.choice(("True", "0", "None", "false", "")))
        return _npy(text, data), "fortran_order"
    if op == "len":
        new = rng.choice((0, 1, end - 11, end - 9, end - 10 + 64, 0xFFFF))
        return raw[:8] + struct.pack("<H", new) + raw[10:], f"HEADER_LEN {new}"
    if op == "version":
        new = bytes([rng.choice((0, 1, 2, 3, 255)), rng.choice((0, 1))])
        return raw[:6] + new + raw[8:], f"version {new.hex()}"
    if op == "pad":
        return _npy(text.rstrip(" \n") + rng.choice(("", " ", "\t\n", "\n\n", "\r\n", " " * 100 + "\n")), data,
                    pad=False), "padding"
    pos = rng.randrange(len(text))
    text = text[:pos] + rng.choice("{}():,'\" 0123456789xTF\\\x00\x93") + text[pos + 1:]
    return _npy(text, data, pad=False), f"header byte {pos}"


def _npy(text: str, data: bytes, pad: bool = True) -> bytes:
    head = text.encode("latin-1")
    if pad and not head.endswith(b"\n"):
        head = head.rstrip(b" ")
        head += b" " * (-(10 + len(head) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head) % 65536) + head + data


def mutant(seed: int, bomb_max: int = 1 << 24) -> tuple[bytes, str]:
    """(mutated model file, description) for a seed: deterministic."""
    from refdec.generators.invalid_models import _Entry, _zip

    rng = random.Random(seed)
    label, base = rng.choice(bases())
    kind = rng.choice(("flip", "flip", "byte", "truncate", "splice", "record", "record", "record", "both",
                       "npy", "npy", "member", "bomb", "layout"))
    desc = f"{label}: {kind}"
    if kind in ("flip", "byte", "truncate", "splice", "record", "both"):
        buf = bytearray(base)
        if kind == "flip":
            for _ in range(rng.choice((1, 1, 2, 4, 8))):
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
                desc += f" {i}"
        elif kind == "byte":
            i = rng.randrange(len(buf))
            buf[i] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0x50, 0x4B))
            desc += f" {i}={buf[i]}"
        elif kind == "truncate":
            cut = rng.choice((rng.randrange(len(buf)), len(buf) - rng.randrange(1, 64)))
            del buf[cut:]
            desc += f" at {cut}"
        elif kind == "splice":
            i = rng.randrange(len(buf))
            if rng.random() < 0.5:
                n = rng.choice((1, 2, 4, 22, 46))
                del buf[i: i + n]
                desc += f" delete {n} at {i}"
            else:
                extra = bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 4, 30))))
                buf[i:i] = extra
                desc += f" insert {len(extra)} at {i}"
        else:
            where = records(base)
            if kind == "both":  # the same field of a member in its local and its central record
                m = rng.randrange(len(where["local"]))
                field = rng.choice(("flags", "method", "crc", "csize", "usize", "name_len"))
                value = _value(rng, struct.unpack_from("<H" if LOCAL_FIELDS[field][1] == 2 else "<I", base,
                                                       where["local"][m] + LOCAL_FIELDS[field][0])[0],
                               LOCAL_FIELDS[field][1])
                for table, offset in ((LOCAL_FIELDS, where["local"][m]), (CENTRAL_FIELDS, where["central"][m])):
                    _put(buf, offset + table[field][0], table[field][1], value)
                desc += f" member {m} {field}={value}"
            else:
                record = rng.choice(("eocd", "central", "local"))
                table = {"eocd": EOCD_FIELDS, "central": CENTRAL_FIELDS, "local": LOCAL_FIELDS}[record]
                offset = where["eocd"] if record == "eocd" else rng.choice(where[record])
                field = rng.choice(sorted(table))
                at, size = table[field]
                old = int.from_bytes(base[offset + at: offset + at + size], "little")
                value = _value(rng, old, size)
                _put(buf, offset + at, size, value)
                desc += f" {record}@{offset} {field}={value}"
        return bytes(buf), desc
    entries = [_Entry(n, d, method=0 if label == "stored-zip64" else 8) for n, d in members()]
    if kind == "npy":
        i = rng.randrange(len(entries))
        data, what = _npy_header_edit(rng, entries[i].data)
        entries[i] = _Entry(entries[i].name, data, method=entries[i].method)
        return _zip(entries), f"{desc} {entries[i].name} {what}"
    if kind == "member":
        i = rng.randrange(len(entries))
        e = entries[i]
        op = rng.choice(("declared", "cut", "append", "delta", "crc", "drop", "duplicate", "rename", "extra",
                         "stored", "method", "data-cut", "data-append"))
        if op == "declared":
            value = rng.choice(SIZES)
            entries[i] = _Entry(e.name, e.data, declared_size=value, method=e.method)
            desc += f" {e.name} declared {value}"
        elif op in ("cut", "append") and e.method == 8:
            edit = ("cut", rng.randrange(1, 8)) if op == "cut" else ("append", bytes(rng.randrange(1, 8)))
            entries[i] = _Entry(e.name, e.data, payload_edit=(edit,))
            desc += f" {e.name} payload {edit[0]}"
        elif op == "delta":
            delta = rng.choice((-16, -1, 1, 16, 1 << 20))
            entries[i] = _Entry(e.name, e.data, compressed_delta=delta, method=e.method)
            desc += f" {e.name} compressed size {delta:+d}"
        elif op == "crc":
            entries[i] = _Entry(e.name, e.data, crc_xor=1 << rng.randrange(32), method=e.method)
            desc += f" {e.name} crc"
        elif op == "drop":
            del entries[i]
            desc += f" drop {e.name}"
        elif op == "duplicate":
            entries.insert(rng.randrange(len(entries)), e)
            desc += f" duplicate {e.name}"
        elif op == "rename":
            new = rng.choice(("x" + e.name, e.name.upper(), e.name[:-4], "dir/" + e.name, e.name + "\x00",
                              "../" + e.name, "h\u00e9ader.npy"))
            entries[i] = _Entry(new, e.data, method=e.method)
            desc += f" rename {e.name} {new!r}"
        elif op == "extra":
            entries.append(_Entry(rng.choice(("extra.npy", "pad.npy", "README")), e.data))
            desc += " extra member"
        elif op in ("stored", "method"):
            entries[i] = _Entry(e.name, e.data, method=0 if op == "stored" else rng.choice((1, 9, 12, 14, 99)))
            desc += f" {e.name} method {entries[i].method}"
        elif op == "data-cut":
            entries[i] = _Entry(e.name, e.data[: rng.randrange(len(e.data))], method=e.method)
            desc += f" {e.name} data cut"
        else:
            entries[i] = _Entry(e.name, e.data + bytes(rng.choice((1, 4, 1000))), method=e.method)
            desc += f" {e.name} data appended"
        return _zip(entries), desc
    if kind == "bomb":
        # A member replaced by a .npy header of a huge shape followed by that many zero bytes (a
        # deflate stream of about 1000:1), its true size declared or a small one.
        i = rng.randrange(len(entries))
        count = rng.choice((1 << 16, 1 << 20, 1 << 24, bomb_max))
        dims = rng.choice(((count // 2,), (count // 2, 1, 1, 1), (count // 8, 4, 1, 1), (0, count, count, count)))
        stream, crc, size = bomb(f"{{'descr': '<i2', 'fortran_order': False, 'shape': {dims!r}, }}", count)
        lie = rng.random() < 0.3
        entries[i] = _Entry(entries[i].name, b"", declared_size=200 if lie else size, payload=stream, crc=crc)
        return _zip(entries), f"{desc} {entries[i].name} shape {dims} {'declared 200 bytes' if lie else ''}"
    # layout: records in another order, bytes before, between or after
    op = rng.choice(("shuffle", "before", "gap", "cd_tail", "comment"))
    if op == "shuffle":
        rng.shuffle(entries)
        return _zip(entries), f"{desc} members shuffled"
    archive = {"before": {"before": b"MZ" * 8}, "gap": {"gap": bytes(9)}, "cd_tail": {"cd_tail": bytes(3)},
               "comment": {"eocd": (("comment", b"x" * rng.choice((1, 22, 100))),)}}[op]
    return _zip(entries, **archive), f"{desc} {op}"


@lru_cache(maxsize=None)
def bomb(text: str, count: int) -> tuple[bytes, int, int]:
    """(raw deflate stream, CRC-32, size) of a .npy header with this text and `count` zero bytes."""
    head = _npy(text, b"")
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros, _ = zeros_stream(count)
    crc, chunk = zlib.crc32(head), bytes(1 << 20)
    for i in range(0, count, 1 << 20):
        crc = zlib.crc32(chunk[: min(1 << 20, count - i)], crc)
    return c.compress(head) + c.flush(zlib.Z_FULL_FLUSH) + zeros, crc, len(head) + count


# --- the child: parse every mutant under the memory limit --------------------------------------------

CHILD = textwrap.dedent(r"""
    import json, resource, sys, time, traceback
    sys.path[:0] = [sys.argv[5], sys.argv[6]]
    limit, first, count, bomb_max = (int(a) for a in sys.argv[1:5])
    import test_model_fuzz as F
    from refdec.errors import RefdecError
    from refdec.model_file import parse_model
    F.bases(), F.members(), F.zeros_stream(1 << 16), F.zeros_stream(1 << 20), F.zeros_stream(1 << 24)
    if bomb_max > 1 << 24:
        F.zeros_stream(bomb_max)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for seed in range(first, first + count):
        try:
            data, desc = F.mutant(seed, bomb_max)
        except MemoryError:
            print(json.dumps({"seed": seed, "outcome": "generator MemoryError"}), flush=True)
            continue
        t0 = time.perf_counter()
        try:
            parse_model(data, where="fuzz")
            outcome, message = "accepted", ""
        except RefdecError as exc:
            outcome, message = type(exc).__name__, str(exc)
            if "\n" in message:
                outcome = "CRASH multi-line message"
        except BaseException as exc:
            outcome, message = f"CRASH {type(exc).__name__}", traceback.format_exc(limit=-3)
        seconds = time.perf_counter() - t0
        print(json.dumps({"seed": seed, "desc": desc, "outcome": outcome, "seconds": seconds,
                          "message": message[:300]}), flush=True)
    peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
    print(json.dumps({"peak_kib": int(peak)}), flush=True)
""")


def run_fuzz(first: int, count: int, bomb_max: int, timeout: float):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(LIMIT_MIB << 20), str(first), str(count), str(bomb_max),
                           str(Path(__file__).parent), str(ROOT)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines and "peak_kib" in lines[-1], proc.stderr[-3000:]
    results, peak_mib = lines[:-1], lines[-1]["peak_kib"] / 1024
    stats = Counter(r["outcome"] for r in results)
    slowest = max(results, key=lambda r: r.get("seconds", 0))
    print(f"\nmodel container fuzz: {len(results)} mutants from seed {first}: "
          + ", ".join(f"{k} {v}" for k, v in stats.most_common())
          + f"; peak {peak_mib:.0f} MiB; slowest {slowest.get('seconds', 0):.2f} s ({slowest.get('desc')})")
    bad = [r for r in results if r["outcome"].startswith(("CRASH", "generator"))
           or r.get("seconds", 0) > SECONDS_PER_MUTANT]
    assert not bad, "\n".join(f"mutant({r['seed']}) [{r.get('desc')}]: {r['outcome']} in {r.get('seconds', 0):.1f} s "
                              f"{r.get('message', '')}" for r in bad[:20])
    assert len(results) == count
    return stats, peak_mib


def test_model_container_fuzz():
    """The fast tier: a few hundred mutants in well under 30 s of parsing."""
    stats, peak = run_fuzz(BASE_SEED * 1000, FAST_CASES, 1 << 24, timeout=600)
    assert stats["ModelFormatError"] > FAST_CASES // 2 and stats["accepted"] > 0
    assert peak < LIMIT_MIB


@pytest.mark.slow
def test_model_container_fuzz_slow():
    """The slow tier: ten times as many mutants, bombs of up to 2^28 bytes."""
    stats, peak = run_fuzz(BASE_SEED * 1000 + 500_000, SLOW_CASES, (1 << 28) - 256, timeout=3600)
    assert stats["ModelFormatError"] > SLOW_CASES // 2 and peak < LIMIT_MIB


def test_mutants_are_reproducible():
    assert mutant(7) == mutant(7) and mutant(7) != mutant(8)
