"""Hostile model files and model paths (issue 21; clause 9.1.4 resource bounds, clause 6.2 step 6):
each ends in its clause 9 error class, or is skipped, within a measured memory and time bound,
and the command line answers with one `refdec: error:` line and exit status 2, never a
traceback.

Each case is loaded in a child process under an address-space limit (RLIMIT_AS), which reports
its peak resident memory (VmHWM) and the time of the load alone (tests/hostile_models.py).
Python and NumPy alone take about 35 MiB; the bound asserted is the file's size plus 64 MiB
(clause 9.1.4: nothing the file declares is held before its shapes pass). The time bounds are
loose (a busy 2-core machine inflates about 100 MB/s); the measured figures are printed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from hostile_models import MIB, build, measure, model_with, stream_naming
from refdec.errors import ModelFormatError, UnknownModel
from refdec.model_file import MAX_MODEL_FILE_BYTES, ModelStore, file_model_id, load_model, model_id_of, parse_model

LIMIT_MIB = 1024  # RLIMIT_AS of the child: a load that allocates what the file declares fails


# case: (expected outcome, seconds allowed for the load alone)
FAST = {
    "zero-dim": ("ModelShapeError", 10),  # (0, 2^28, 2^28, 2^28): NumPy's ValueError before
    "w8-2p28": ("ModelShapeError", 60),  # one 2^28-byte int8 member: CRC-32 streamed, no int64 copy
    "extra-4": ("ModelFormatError", 10),  # 4 extra members of 2^28 bytes: rejected by name
    "lying-size": ("ModelFormatError", 10),  # more compressed bytes than its declared size allows
}
SLOW = {
    "extra-191": ("ModelFormatError", 10),  # 50 MB file, 48 GiB declared
    "all-2p28": ("ModelFormatError", 10),  # 65 members of 2^28: over 2^29 together
    "max-inflation": ("ModelShapeError", 240),  # 2^29 bytes inflated (streamed) before the shapes reject it
}


def _check_case(case, tmp_path, expected, seconds):
    path = build(case, tmp_path)
    size_mib = path.stat().st_size / MIB
    result = measure("parse", [str(path)], limit_mib=LIMIT_MIB, timeout=seconds + 60)
    print(f"{case}: {path.stat().st_size} bytes -> {result['outcome']} in {result['seconds']:.2f} s, "
          f"peak {result['peak_mib']:.1f} MiB")
    assert result["outcome"] == expected, result["stderr"][-2000:]
    assert result["peak_mib"] < size_mib + 64, result
    assert result["seconds"] < seconds, result


@pytest.mark.parametrize("case", sorted(FAST))
def test_hostile_file(case, tmp_path):
    _check_case(case, tmp_path, *FAST[case])


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SLOW))
def test_hostile_file_slow(case, tmp_path):
    _check_case(case, tmp_path, *SLOW[case])


def test_valid_model_memory(tmp_path):
    """The committed W16A16 model: peak memory within file + 8 x elements + one member + 64 MiB
    (clause 9.1.4)."""
    path = build("valid", tmp_path)
    model = parse_model(path.read_bytes())
    elements = sum(a.size for layer in model.layers.values() for a in (layer.weight, layer.bias, layer.shift))
    elements += model.inv_gain.size + model.z_lo.size + model.z_count.size + model.z_cdf.size
    result = measure("parse", [str(path)], limit_mib=LIMIT_MIB)
    bound = (path.stat().st_size + 8 * elements) / MIB + 64 + 16
    print(f"valid: {elements} elements, peak {result['peak_mib']:.1f} MiB (bound {bound:.1f}), {result['seconds']:.2f} s")
    assert result["outcome"] == "accepted" and result["peak_mib"] < bound


# --- the command line: one line, exit status 2, no traceback ----------------------------------------

CLI_FILE_CASES = ["zero-dim", "w8-2p28", "extra-4", "lying-size"]


def _cli(tmp_path, args, timeout=120):
    stream = tmp_path / "s.rdc"
    result = measure("cli", [args[0], str(stream)] + args[1:], limit_mib=LIMIT_MIB, timeout=timeout)
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    return result, lines


@pytest.mark.parametrize("case", CLI_FILE_CASES)
def test_cli_decode_hostile_file(case, tmp_path):
    path = build(case, tmp_path)
    (tmp_path / "s.rdc").write_bytes(stream_naming(path))
    result, lines = _cli(tmp_path, ["decode", "-o", str(tmp_path / "o.png"), "--model", str(path)])
    assert result["rc"] == 2 and len(lines) == 1 and lines[0].startswith("refdec: error: Model"), result
    assert "Traceback" not in result["stderr"] and not (tmp_path / "o.png").exists()
    assert result["peak_mib"] < path.stat().st_size / MIB + 64


@pytest.mark.parametrize("case", CLI_FILE_CASES)
def test_cli_info_hostile_file(case, tmp_path):
    """`refdec info` reports the model named by the stream as invalid (its own documented output,
    exit status 0), without a traceback."""
    path = build(case, tmp_path)
    (tmp_path / "s.rdc").write_bytes(stream_naming(path))
    proc = subprocess.run([sys.executable, "-m", "refdec", "info", str(tmp_path / "s.rdc"), "--model", str(path)],
                          capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert " invalid: Model" in proc.stdout


@pytest.mark.parametrize("case", ["dev-zero", "fifo"])
@pytest.mark.parametrize("command", ["decode", "info"])
def test_cli_model_path_that_is_not_a_file(case, command, tmp_path):
    """--model /dev/zero (endless bytes) or a FIFO nobody writes to: refused from its status,
    never opened or read (before: a MemoryError traceback after reading 3 GB, or a hang)."""
    path = build(case, tmp_path)
    (tmp_path / "s.rdc").write_bytes(stream_naming(None))
    extra = ["-o", str(tmp_path / "o.png")] if command == "decode" else []
    t0 = time.perf_counter()
    result, lines = _cli(tmp_path, [command] + extra + ["--model", str(path)], timeout=60)
    assert result["rc"] == 2 and len(lines) == 1, result
    assert lines[0].startswith("refdec: error: ModelFormatError") and "not a regular file" in lines[0]
    assert time.perf_counter() - t0 < 60 and result["peak_mib"] < 64


@pytest.mark.parametrize("case", ["folder-3gib", "fifo-folder"])
def test_cli_model_folder_with_hostile_entries(case, tmp_path):
    """--model DIR with a 3 GiB file or a FIFO beside a model: they are skipped without being
    read, and a stream naming an installed model decodes (before: a MemoryError traceback, or a
    hang)."""
    folder = build(case, tmp_path)
    (tmp_path / "s.rdc").write_bytes(stream_naming(None))
    result, lines = _cli(tmp_path, ["decode", "-o", str(tmp_path / "o.png"), "--model", str(folder)])
    assert result["rc"] == 0 and (tmp_path / "o.png").exists(), result
    assert result["peak_mib"] < 400  # the 16x16 decode itself takes about 150 MiB


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")


# --- the model store and load_model (clause 6.2 step 6) ---------------------------------------------

def test_store_skips_what_cannot_be_a_model_file(tmp_path, small_model_file):
    data, model = small_model_file
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "good.npz").write_bytes(data)
    with open(folder / "huge.npz", "wb") as fh:
        fh.truncate(MAX_MODEL_FILE_BYTES + 1)  # sparse: nothing is read from it
    os.mkfifo(folder / "pipe.npz")
    (folder / "dir.npz").mkdir()
    os.symlink("/dev/zero", folder / "zero.npz")
    (folder / "other.txt").write_bytes(b"not a candidate")
    (folder / "broken.npz").write_bytes(b"not a ZIP archive")  # a regular file: hashed (a vector names one)
    t0 = time.perf_counter()
    store = ModelStore([folder])
    assert time.perf_counter() - t0 < 10
    skipped = {path.name: reason for path, reason in store.skipped}
    assert set(skipped) == {"huge.npz", "pipe.npz", "dir.npz", "zero.npz"}, skipped
    assert "not a regular file" in skipped["pipe.npz"] and str(MAX_MODEL_FILE_BYTES + 1) in skipped["huge.npz"]
    assert store.get(model.model_id).model_id == model.model_id
    with pytest.raises(ModelFormatError):
        store.get(model_id_of(b"not a ZIP archive"))
    with pytest.raises(UnknownModel) as info:
        store.get(bytes(8))
    assert "skipped" in str(info.value)


@pytest.mark.parametrize("what", ["fifo", "dev-zero", "directory", "huge"])
def test_a_named_path_must_be_a_model_file(tmp_path, what):
    if what == "fifo":
        path = tmp_path / "pipe.npz"
        os.mkfifo(path)
    elif what == "dev-zero":
        path = Path("/dev/zero")
    elif what == "directory":
        path = tmp_path / "d.npz"
        path.mkdir()
    else:
        path = tmp_path / "huge.npz"
        with open(path, "wb") as fh:
            fh.truncate(3 << 30)
    for call in (load_model, file_model_id):
        with pytest.raises(ModelFormatError):
            call(path)
    if what != "directory":  # a directory given to the store is a folder of models
        with pytest.raises(ModelFormatError):
            ModelStore([path])


def test_file_hashed_in_pieces_gives_the_model_id(tmp_path, small_model_file):
    data, model = small_model_file
    path = tmp_path / "m.npz"
    path.write_bytes(data)
    assert file_model_id(path) == model.model_id == model_id_of(data)


def test_a_file_changed_after_hashing_is_not_that_model(tmp_path, small_model_file, small_model_w8_file):
    """Clause 6.2 step 6: the model used has the stream's model id, even when the store was built
    earlier (the file is hashed again when it is loaded)."""
    path = tmp_path / "m.npz"
    path.write_bytes(small_model_file[0])
    store = ModelStore([path])
    path.write_bytes(small_model_w8_file[0])
    with pytest.raises(UnknownModel) as info:
        store.get(small_model_file[1].model_id)
    assert "changed" in str(info.value)


def test_store_hashing_memory_does_not_grow_with_the_file(tmp_path):
    """ModelStore hashes a 512 MiB model-sized file (zeros: not a model) in 1 MiB pieces."""
    folder = tmp_path / "models"
    folder.mkdir()
    with open(folder / "big.npz", "wb") as fh:
        fh.truncate(512 * MIB)
    code = ("import sys, resource; from refdec.model_file import ModelStore; s = ModelStore([sys.argv[1]]); "
            "assert len(s._paths) == 1; print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=300,
                          env=_env())
    assert proc.returncode == 0, proc.stderr
    peak_mib = int(proc.stdout.split()[1]) / 1024
    print(f"hashing 512 MiB: peak {peak_mib:.1f} MiB")
    assert peak_mib < 80


def test_hostile_builders_make_what_they_say(tmp_path):
    """The 2^28-byte members really are that large (guards the measurements above)."""
    import io
    import zipfile

    data = model_with({"gather.1.weight.npy": (b"x", 5 * MIB)})
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo("gather.1.weight.npy")
        assert info.file_size == 5 * MIB + 1 and zf.read(info)[:1] == b"x"
    assert stat.S_ISFIFO(os.stat(build("fifo", tmp_path)).st_mode)
