"""Hostile model files of issue 21 (clause 9.1 resource bounds) and a way to measure what loading
them costs: peak memory (VmHWM) and time, in a child process under an address-space limit.

    python tests/hostile_models.py CASE [--mode parse|cli-decode|cli-info] [--limit-mib N]

builds CASE in a temporary folder, loads it in a child process (parse_model of the file's
bytes, or the command line `refdec decode`/`refdec info` of a stream that names it) and
prints one JSON line: outcome (error class, "accepted", or "crash ..."), exit status,
seconds, peak_mib (the child's VmHWM) and the last line of stderr. The tests import CASES,
build() and measure(); run as a script it measures the refdec on PYTHONPATH (so the same
command measures an older checkout: PYTHONPATH=/tmp/old python tests/hostile_models.py ...).

Each file is built from the tiny valid base model of refdec.generators.invalid_models in a
few megabytes of memory: members of 2^28 zero bytes are deflated once, in chunks, and the
compressed bytes reused.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MIB = 1 << 20
P28 = 1 << 28


# --- raw ZIP writing with precompressed members ------------------------------------------------

def _npy_header(descr: str, shape: tuple) -> bytes:
    """A .npy version 1.0 preamble and header as NumPy writes it (padded to 64 bytes)."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, shape)
    head = text.encode("latin-1")
    head += b" " * (-(10 + len(head) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head


@lru_cache(maxsize=None)
def _zeros_stream(count: int) -> bytes:
    """A raw deflate stream (ending with a final block) of `count` zero bytes, made in 1 MiB chunks."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MIB)
    out = [c.compress(chunk[: min(MIB, count - i)]) for i in range(0, count, MIB)]
    return b"".join(out) + c.flush()


@lru_cache(maxsize=None)
def deflated(prefix: bytes, zeros: int) -> tuple[bytes, int, int]:
    """(raw deflate stream, CRC-32, size) of prefix followed by `zeros` zero bytes: the prefix's
    blocks (flushed, not final) and then the cached stream of the zeros. Never holds the
    inflated bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    if not zeros:
        return c.compress(prefix) + c.flush(), zlib.crc32(prefix), len(prefix)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    chunk = bytes(MIB)
    for i in range(0, zeros, MIB):
        crc = zlib.crc32(chunk[: min(MIB, zeros - i)], crc)
    return head + _zeros_stream(zeros), crc, len(prefix) + zeros


def raw_zip(entries) -> bytes:
    """ZIP bytes of entries (name, deflate stream, crc, size): deflated, in order, fixed dates."""
    out, central = bytearray(), bytearray()
    for name, payload, crc, size in entries:
        n = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 33, crc, len(payload), size, len(n), 0)
        out += n + payload
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x314, 20, 0, 8, 0, 33, crc, len(payload), size,
                               len(n), 0, 0, 0, 0, 0o644 << 16, offset) + n
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0)
    return bytes(out + central + end)


@lru_cache(maxsize=None)
def base_members(profile: str = "W16A16") -> tuple[tuple[str, bytes], ...]:
    """(name, .npy bytes) of the tiny valid base model, in the given profile."""
    import io

    from refdec.generators.invalid_models import _Base, tiny_base_model
    from refdec.generators.model_writer import serialize_model

    b = _Base(tiny_base_model())
    data = b.data if profile == b.profile else serialize_model(*b.with_profile(profile))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return tuple((i.filename, zf.read(i)) for i in zf.infolist())


def model_with(replace=None, add=(), profile="W16A16") -> bytes:
    """The base model's ZIP with some members replaced and some added: each new member is
    (prefix bytes, number of zero bytes after it)."""
    replace = replace or {}
    entries = []
    for name, raw in base_members(profile):
        prefix, zeros = replace.get(name, (raw, 0))
        entries.append((name, *deflated(prefix, zeros)))
    for name, (prefix, zeros) in add:
        entries.append((name, *deflated(prefix, zeros)))
    return raw_zip(entries)


# --- the cases ---------------------------------------------------------------------------------

def case_zero_dim(folder: Path) -> Path:
    """A weight member of shape (0, 2^28, 2^28, 2^28): no elements, every dimension at the limit."""
    member = (_npy_header("<i2", (0, P28, P28, P28)), 0)
    return _write(folder, "zero-dim.npz", model_with({"gather.1.weight.npy": member}))


def case_w8_member_2p28(folder: Path) -> Path:
    """A W8A16 model (274 kB) with one int8 weight member of exactly 2^28 bytes."""
    head = _npy_header("|i1", (P28 - 128, 1, 1, 1))
    assert len(head) == 128
    return _write(folder, "w8-2p28.npz", model_with({"gather.1.weight.npy": (head, P28 - 128)}, profile="W8A16"))


def _extra(count: int):
    head = _npy_header("|u1", (P28 - 128,))
    return [(f"pad.{i:03d}.npy", (head, P28 - 128)) for i in range(count)]


def case_extra_4(folder: Path) -> Path:
    """The base model and 4 extra members of 2^28 bytes each (1 MB on disk, 1 GiB inflated)."""
    return _write(folder, "extra-4.npz", model_with(add=_extra(4)))


def case_extra_191(folder: Path) -> Path:
    """The base model and 191 extra members of 2^28 bytes each (50 MB on disk, 48 GiB inflated)."""
    return _write(folder, "extra-191.npz", model_with(add=_extra(191)))


def case_all_members_2p28(folder: Path) -> Path:
    """Every one of the 65 members of clause 9.3 with a plausible .npy header (its dtype and number
    of dimensions) and exactly 2^28 bytes of zeros: 17 MB on disk, 16.25 GiB inflated. Each
    member's header agrees with its size, so only the shapes (clause 9.4 item 2) reject it, after
    every member's CRC-32 is verified (item 1): the worst case of inflation a file can ask for."""
    from refdec.generators.invalid_models import _Base, tiny_base_model

    replace = {}
    for name, arr in _Base(tiny_base_model()).arrays.items():
        shape = ((P28 - 128) // arr.dtype.itemsize,) + (1,) * (arr.ndim - 1)
        head = _npy_header(arr.dtype.str, shape)
        assert len(head) == 128
        replace[f"{name}.npy"] = (head, shape[0] * arr.dtype.itemsize)
    return _write(folder, "all-2p28.npz", model_with(replace))


def case_max_inflation(folder: Path) -> Path:
    """Four members of nearly 2^27 bytes (zeros), 2^29 - 4 KiB together with the rest, each with a
    plausible .npy header: the most inflation the limits of clause 9.1.1 let a file ask for before
    its shapes are rejected (0.5 MB on disk)."""
    from refdec.model_file import MAX_TOTAL_MEMBER_BYTES
    from refdec.generators.invalid_models import _Base, tiny_base_model

    arrays = _Base(tiny_base_model()).arrays
    rest = sum(len(raw) for name, raw in base_members() if name not in BIG4)
    replace = {}
    for i, name in enumerate(BIG4):
        arr = arrays[name[:-4]]
        size = (MAX_TOTAL_MEMBER_BYTES - rest - 4096) // len(BIG4)
        shape = ((size - 128) // arr.dtype.itemsize,) + (1,) * (arr.ndim - 1)
        head = _npy_header(arr.dtype.str, shape)
        replace[name] = (head, shape[0] * arr.dtype.itemsize)
    return _write(folder, "max-inflation.npz", model_with(replace))


BIG4 = ("gather.0.weight.npy", "gather.1.weight.npy", "gather.2.weight.npy", "gather.3.weight.npy")


def case_lying_size(folder: Path) -> Path:
    """A member whose ZIP records declare its true .npy size but whose deflate stream goes on for
    2^28 - 128 more bytes (a ratio bomb behind a small declared size)."""
    entries = []
    for name, raw in base_members():
        payload, crc, size = deflated(raw, P28 - 128 if name == "z_cdf.npy" else 0)
        if name == "z_cdf.npy":
            crc, size = zlib.crc32(raw), len(raw)
        entries.append((name, payload, crc, size))
    return _write(folder, "lying-size.npz", raw_zip(entries))


def case_folder_3gib(folder: Path) -> Path:
    """A folder with a valid model and a 3 GiB (sparse) file beside it, both *.npz."""
    d = folder / "models-3gib"
    d.mkdir()
    _write(d, "tiny.npz", model_with())
    with open(d / "huge.npz", "wb") as fh:
        fh.truncate(3 << 30)
    return d


def case_fifo_folder(folder: Path) -> Path:
    """A folder with a FIFO named like a model file (nobody ever writes to it)."""
    d = folder / "models-fifo"
    d.mkdir()
    _write(d, "tiny.npz", model_with())
    os.mkfifo(d / "pipe.npz")
    return d


def case_fifo(folder: Path) -> Path:
    """A FIFO given as the model file (nobody ever writes to it)."""
    path = folder / "pipe.npz"
    os.mkfifo(path)
    return path


def case_valid(folder: Path) -> Path:
    """A valid model for comparison: the committed W16A16 test model (5.2 MB, 22 MB of arrays)."""
    return _write(folder, "valid.npz", (ROOT / "vectors" / "models" / "refdec-test-w16a16.npz").read_bytes())


def case_dev_zero(folder: Path) -> Path:
    """/dev/zero as the model file: endless bytes."""
    return Path("/dev/zero")


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


CASES = {
    "zero-dim": case_zero_dim,
    "w8-2p28": case_w8_member_2p28,
    "extra-4": case_extra_4,
    "extra-191": case_extra_191,
    "all-2p28": case_all_members_2p28,
    "lying-size": case_lying_size,
    "max-inflation": case_max_inflation,
    "folder-3gib": case_folder_3gib,
    "fifo-folder": case_fifo_folder,
    "fifo": case_fifo,
    "dev-zero": case_dev_zero,
    "valid": case_valid,
}
FILE_CASES = ("zero-dim", "w8-2p28", "extra-4", "extra-191", "all-2p28", "lying-size", "max-inflation", "valid")


def build(case: str, folder: Path) -> Path:
    return CASES[case](Path(folder))


def stream_naming(model_path: Path | None) -> bytes:
    """A well-formed bitstream (a committed vector's) whose model_id names this model file (or
    stays as it is: the committed W16A16 model, installed with refdec)."""
    stream = bytearray((ROOT / "vectors" / "streams" / "refdec-test-w16a16.image-noise-16x16.rdc").read_bytes())
    if model_path is not None:
        import hashlib

        h = hashlib.sha256()
        with open(model_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(MIB), b""):
                h.update(chunk)
        stream[11:19] = h.digest()[:8]
    return bytes(stream)


# --- measuring in a child process ----------------------------------------------------------------

CHILD = textwrap.dedent(r"""
    import json, os, resource, sys, time, traceback
    limit, mode, args, report = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    def peak_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    outcome, rc = "accepted", 0
    import numpy, refdec.cli, refdec.model_file  # imports are not measured (about 30 MiB, 0.3 s)
    t0 = time.perf_counter()
    try:
        if mode == "parse":
            from refdec.model_file import parse_model
            from refdec.errors import RefdecError
            try:
                parse_model(open(args[0], "rb").read(), where=args[0])
            except RefdecError as exc:
                outcome = type(exc).__name__
        elif mode == "load":
            from refdec.model_file import load_model
            from refdec.errors import RefdecError
            try:
                load_model(args[0])
            except RefdecError as exc:
                outcome = type(exc).__name__
        else:
            from refdec import cli
            rc = cli.main(args)
            outcome = f"exit {rc}"
    except BaseException as exc:
        outcome = f"crash {type(exc).__name__}"
        traceback.print_exc()
        rc = 1
    finally:
        with open(report, "w") as fh:
            json.dump({"outcome": outcome, "seconds": time.perf_counter() - t0, "peak_mib": peak_mib()}, fh)
    sys.exit(rc)
""")


def measure(mode: str, args: list[str], limit_mib: int = 2048, timeout: float = 120.0, env=None) -> dict:
    """Run a child that loads a model (mode parse/load: args[0] is the file) or runs the command
    line (mode cli: args is argv) under RLIMIT_AS = limit_mib; its outcome, exit status, time,
    peak memory and stderr's last line."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = dict(os.environ if env is None else env, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        env.setdefault("PYTHONPATH", str(ROOT))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-c", CHILD, str(limit_mib * MIB), mode, json.dumps(args),
                                   str(report)], capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
        except subprocess.TimeoutExpired:
            return {"outcome": "timeout", "rc": None, "seconds": timeout, "peak_mib": None, "stderr": ""}
        wall = time.perf_counter() - t0
        result = json.loads(report.read_text()) if report.exists() else {"outcome": "no report", "seconds": wall,
                                                                         "peak_mib": None}
        result.update(rc=proc.returncode, wall=wall, stderr=proc.stderr)
        return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--mode", default="parse", choices=("parse", "load", "cli-decode", "cli-info"))
    ap.add_argument("--limit-mib", type=int, default=2048)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = build(args.case, Path(tmp))
        built = time.perf_counter() - t0
        size = path.stat().st_size if path.is_file() else None
        if args.mode in ("parse", "load"):
            result = measure(args.mode, [str(path)], args.limit_mib, args.timeout)
        else:
            stream = Path(tmp) / "s.rdc"
            stream.write_bytes(stream_naming(path if args.case in FILE_CASES else None))
            cmd = ["decode", str(stream), "-o", str(Path(tmp) / "out.png")] if args.mode == "cli-decode" \
                else ["info", str(stream)]
            result = measure("cli", cmd + ["--model", str(path)], args.limit_mib, args.timeout)
    lines = [line for line in result.pop("stderr").splitlines() if line.strip()]
    result.update(case=args.case, mode=args.mode, file_bytes=size, build_s=round(built, 2),
                  last_stderr=lines[-1][:200] if lines else "", stderr_lines=len(lines))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
