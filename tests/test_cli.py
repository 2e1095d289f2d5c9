"""The `refdec` command line (refdec/cli.py): decode, info, exit codes and error messages."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refdec.cli import main
from refdec.decoder import decode
from refdec.generators.encoder import encode_latents
from refdec.model_file import model_id_of
from refdec.generators.model_writer import model_arrays, serialize_model
from refdec.generators.random_model import random_latents, random_model

ROOT = Path(__file__).resolve().parents[1]
ERROR_LINE = re.compile(r"^refdec: error: \S.*$")

# Clause 11.3: the stage tensors of a trace.
STAGES = (["z_hat"] + [f"hyper_synthesis.{i}" for i in range(3)] + ["context.3", "context.5", "context.7"]
          + [f"gather.{i}" for i in range(7)] + ["mixture.weights", "mixture.means", "mixture.scale_index",
                                                 "window.lo", "window.hi", "cdf.sum", "y_hat", "synthesis_input"]
          + [f"synthesis.{i}" for i in range(7)] + ["image"])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A random model saved to a folder, and streams of a few sizes."""
    root = tmp_path_factory.mktemp("cli")
    data, model = random_model(7)
    models = root / "models"
    models.mkdir()
    model_path = models / "small.npz"
    model_path.write_bytes(data)
    streams = {}
    for i, (w, h, rate) in enumerate([(1, 1, 0), (16, 16, 3), (70, 33, 5)]):
        z, y = random_latents(model, w, h, seed=i)
        stream = encode_latents(model, z, y, rate, w, h)
        path = root / f"s{w}x{h}.rdec"
        path.write_bytes(stream)
        streams[(w, h)] = (path, stream, decode(stream, model, trace=True))
    return {"root": root, "model": model, "model_path": model_path, "models": models, "streams": streams}


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_error_line(err: str, *fragments):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert ERROR_LINE.match(lines[0]), lines[0]
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


# --- decode -------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(1, 1), (16, 16), (70, 33)])
def test_decode_png_equals_decode(env, capsys, tmp_path, size):
    path, stream, ref = env["streams"][size]
    out = tmp_path / "out.png"
    rc, stdout, err = run(["decode", path, "-o", out, "--model", env["model_path"], "-q"], capsys)
    assert rc == 0, err
    assert stdout == "" and err == ""
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == size
        pixels = np.asarray(im)
    assert np.array_equal(pixels.transpose(2, 0, 1), ref.image)


def test_decode_raw_is_canonical_planar(env, capsys, tmp_path):
    path, stream, ref = env["streams"][(70, 33)]
    out = tmp_path / "out.raw"
    rc, _, err = run(["decode", path, "-o", out, "--raw", "--model", env["models"], "-q"], capsys)
    assert rc == 0, err
    raw = out.read_bytes()
    w, h = 70, 33
    assert len(raw) == 3 * h * w
    # Clause 11.4: all of R row by row, then G, then B, uint8.
    for c in range(3):
        plane = np.frombuffer(raw[c * h * w:(c + 1) * h * w], dtype=np.uint8).reshape(h, w)
        assert np.array_equal(plane, ref.image[c])
    assert raw[w + 2] == ref.image[0, 1, 2]
    assert raw[h * w + 5 * w] == ref.image[1, 5, 0]


def test_decode_trace_dir(env, capsys, tmp_path):
    path, stream, ref = env["streams"][(16, 16)]
    out, trace = tmp_path / "o.png", tmp_path / "trace" / "nested"
    rc, _, err = run(["decode", path, "-o", out, "--trace-dir", trace, "--model", env["model_path"]], capsys)
    assert rc == 0, err
    files = sorted(p.name for p in trace.iterdir())
    assert files == sorted(f"{s}.npy" for s in STAGES)
    assert set(ref.stages) == set(STAGES)
    for name in STAGES:
        arr = np.load(trace / f"{name}.npy", allow_pickle=False)
        assert arr.dtype == np.int32, name
        assert arr.shape == ref.stages[name].shape, name
        assert np.array_equal(arr, ref.stages[name]), name
    assert np.array_equal(np.load(trace / "image.npy"), ref.image)
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im).transpose(2, 0, 1), ref.image)


@pytest.mark.parametrize("band_rows", ["1", "5", "16", "1000"])
def test_band_rows_do_not_change_the_result(env, capsys, tmp_path, band_rows):
    path, stream, ref = env["streams"][(70, 33)]
    out = tmp_path / "o.raw"
    rc, _, err = run(["decode", path, "-o", out, "--raw", "--band-rows", band_rows,
                      "--model", env["model_path"], "-q"], capsys)
    assert rc == 0, err
    assert out.read_bytes() == ref.image.tobytes()


def test_decode_summary_line(env, capsys, tmp_path):
    path, stream, ref = env["streams"][(70, 33)]
    rc, out, err = run(["decode", path, "-o", tmp_path / "o.png", "--model", env["model_path"]], capsys)
    assert rc == 0
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "70x33" in lines[0] and "rate index 5" in lines[0]
    assert env["model"].model_id.hex() in lines[0]
    assert re.search(r"\d+\.\d+ s", lines[0])
    rc, out, err = run(["decode", path, "-o", tmp_path / "o.png", "--model", env["model_path"], "--quiet"],
                       capsys)
    assert rc == 0 and err == "" and out == ""


# --- info ---------------------------------------------------------------------------------

def test_info_json(env, capsys):
    path, stream, ref = env["streams"][(70, 33)]
    rc, out, err = run(["info", path, "--json", "--model", env["model_path"]], capsys)
    assert rc == 0, err
    info = json.loads(out)
    h = info["header"]
    assert h == ref.header.as_dict()
    assert (h["width"], h["height"], h["rate_index"], h["version"], h["flags"]) == (70, 33, 5, 1, 0)
    assert h["model_id"] == env["model"].model_id.hex()
    assert h["total_length"] == len(stream) == 27 + h["z_length"] + h["y_length"]
    assert info["padded"] == {"hz": 1, "wz": 2, "hy": 4, "wy": 8}
    m = info["model"]
    assert m["available"] is True and m["status"] == "ok"
    assert m["profile"] == "W16A16" and m["num_rates"] == 6
    assert m["id"] == h["model_id"] and m["rate_index_valid"] is True


def test_info_json_unknown_model(env, capsys):
    path = env["streams"][(1, 1)][0]
    rc, out, err = run(["info", path, "--json"], capsys)
    assert rc == 0, err
    info = json.loads(out)
    assert info["model"]["available"] is False and info["model"]["status"] == "unknown"
    assert "profile" not in info["model"]


def test_info_invalid_model(env, capsys, tmp_path):
    """A model file with the stream's id that fails clause 9.4: reported, not decoded."""
    path, stream, _ = env["streams"][(16, 16)]
    model = env["model"]
    header = dict(model.header, bogus=1)
    data = serialize_model(header, model_arrays(model))
    (tmp_path / "bad.npz").write_bytes(data)
    bad = stream[:11] + model_id_of(data) + stream[19:]
    (tmp_path / "bad.rdec").write_bytes(bad)
    rc, out, err = run(["info", tmp_path / "bad.rdec", "--json", "--model", tmp_path / "bad.npz"], capsys)
    assert rc == 0
    m = json.loads(out)["model"]
    assert m["available"] is False and m["status"] == "invalid" and "ModelFormatError" in m["error"]
    rc, out, err = run(["decode", tmp_path / "bad.rdec", "-o", tmp_path / "x.png", "--model", tmp_path], capsys)
    assert rc == 2
    assert_one_error_line(err, "ModelFormatError (clause 9.4)", "bad.npz")
    assert not (tmp_path / "x.png").exists()


def test_info_text(env, capsys):
    path, stream, ref = env["streams"][(16, 16)]
    rc, out, err = run(["info", path, "--model", env["models"]], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert "width: 16" in lines and "height: 16" in lines and "rate_index: 3" in lines
    assert f"model_id: {env['model'].model_id.hex()}" in lines
    model_line = [ln for ln in lines if ln.startswith("model:")]
    assert len(model_line) == 1 and "available" in model_line[0] and "W16A16" in model_line[0]
    assert "num_rates 6" in model_line[0]
    rc, out, err = run(["info", path], capsys)
    assert rc == 0 and "not available" in out


def test_info_does_not_decode_payloads(env, capsys, tmp_path):
    """Garbage payloads with a valid header: info succeeds, decode fails."""
    path, stream, ref = env["streams"][(70, 33)]
    bad = tmp_path / "garbage.rdec"
    bad.write_bytes(stream[:27] + b"\xff" * (len(stream) - 27))
    rc, out, err = run(["info", bad, "--json", "-m", env["model_path"]], capsys)
    assert rc == 0 and json.loads(out)["model"]["available"] is True
    rc, out, err = run(["decode", bad, "-o", tmp_path / "o.png", "-m", env["model_path"]], capsys)
    assert rc == 2
    assert_one_error_line(err, "refdec: error: InvalidRangeState (clause 8.3) at byte 31:")


def test_info_rate_index_out_of_range(env, capsys, tmp_path):
    path, stream, ref = env["streams"][(1, 1)]
    bad = tmp_path / "rate.rdec"
    bad.write_bytes(stream[:10] + bytes([200]) + stream[11:])
    rc, out, err = run(["info", bad, "--json", "-m", env["model_path"]], capsys)
    assert rc == 0 and json.loads(out)["model"]["rate_index_valid"] is False
    rc, out, err = run(["decode", bad, "-o", tmp_path / "o.png", "-m", env["model_path"]], capsys)
    assert rc == 2
    assert_one_error_line(err, "RateIndexOutOfRange (clause 6.2) at byte 10:")


# --- errors and exit codes ----------------------------------------------------------------

def test_truncated_stream_message(env, capsys, tmp_path):
    path, stream, ref = env["streams"][(16, 16)]
    bad = tmp_path / "cut.rdec"
    bad.write_bytes(stream[:31])
    for argv in (["decode", bad, "-o", tmp_path / "o.png", "-m", env["model_path"]], ["info", bad]):
        rc, out, err = run(argv, capsys)
        assert rc == 2
        line = assert_one_error_line(err)
        end = len(stream)
        assert line == (f"refdec: error: PayloadPastEnd (clause 6.2) at byte 31: payloads end at byte {end} "
                        f"but the stream has 31 bytes")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("mutate,fragment", [
    (lambda s: s[:10], "TruncatedHeader (clause 6.2) at byte 10:"),
    (lambda s: b"RIFF" + s[4:], "BadMagic (clause 6.2) at byte 0:"),
    (lambda s: s[:4] + b"\x02" + s[5:], "UnsupportedVersion (clause 6.2) at byte 4:"),
    (lambda s: s + b"\x00", "TrailingData (clause 6.2)"),
    (lambda s: s[:11] + bytes(8) + s[19:], "UnknownModel (clause 6.2) at byte 11:"),
])
def test_invalid_stream_exit_2(env, capsys, tmp_path, mutate, fragment):
    path, stream, ref = env["streams"][(16, 16)]
    bad = tmp_path / "bad.rdec"
    bad.write_bytes(mutate(stream))
    out = tmp_path / "o.raw"
    rc, stdout, err = run(["decode", bad, "-o", out, "--raw", "-m", env["model_path"]], capsys)
    assert rc == 2 and stdout == ""
    assert_one_error_line(err, fragment)
    assert not out.exists()


def test_payload_error_exit_2(env, capsys, tmp_path):
    path, stream, ref = env["streams"][(70, 33)]
    z_len, y_len = struct.unpack(">II", stream[19:27])
    # Extend the y payload by one byte: TrailingPayloadBytes at the old end of the stream.
    bad_stream = stream[:23] + struct.pack(">I", y_len + 1) + stream[27:] + b"\x00"
    bad = tmp_path / "ext.rdec"
    bad.write_bytes(bad_stream)
    rc, out, err = run(["decode", bad, "-o", tmp_path / "o.png", "-m", env["model_path"]], capsys)
    assert rc == 2
    assert_one_error_line(err, f"TrailingPayloadBytes (clause 8.5) at byte {len(stream)}:")


def test_missing_and_unreadable_files(env, capsys, tmp_path):
    missing = tmp_path / "does-not-exist.rdec"
    rc, out, err = run(["decode", missing, "-o", tmp_path / "o.png"], capsys)
    assert rc == 2
    assert_one_error_line(err, str(missing))
    rc, out, err = run(["info", tmp_path], capsys)  # a folder, not a file
    assert rc == 2
    assert_one_error_line(err, str(tmp_path))
    path = env["streams"][(1, 1)][0]
    rc, out, err = run(["decode", path, "-o", tmp_path / "o.png", "--model", tmp_path / "nope.npz"], capsys)
    assert rc == 2
    assert_one_error_line(err, "nope.npz")
    target = tmp_path / "no" / "such" / "dir" / "o.png"
    rc, out, err = run(["decode", path, "-o", target, "-m", env["model_path"], "-q"], capsys)
    assert rc == 2
    assert_one_error_line(err, str(target))


@pytest.mark.parametrize("argv,fragment", [
    ([], "required"),
    (["frobnicate"], "invalid choice"),
    (["decode"], "required"),
    (["decode", "x.rdec"], "-o/--output"),
    (["decode", "x.rdec", "-o", "y.png", "--band-rows", "0"], "--band-rows"),
    (["decode", "x.rdec", "-o", "y.png", "--band-rows", "many"], "--band-rows"),
    (["info"], "required"),
    (["info", "x.rdec", "--bogus"], "--bogus"),
])
def test_usage_errors(capsys, argv, fragment):
    rc, out, err = run(argv, capsys)
    assert rc == 2
    assert_one_error_line(err, fragment)


def test_help_and_version(capsys):
    rc, out, err = run(["--help"], capsys)
    assert rc == 0 and "decode" in out and "info" in out
    rc, out, err = run(["decode", "--help"], capsys)
    assert rc == 0 and "--trace-dir" in out and "--band-rows" in out
    rc, out, err = run(["--version"], capsys)
    assert rc == 0 and out.startswith("refdec ")


# --- as a program -------------------------------------------------------------------------

def _subprocess(args, **kw):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "refdec", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, timeout=120, **kw)


def test_python_m_refdec(env, tmp_path):
    path, stream, ref = env["streams"][(70, 33)]
    out = tmp_path / "o.png"
    proc = _subprocess(["decode", path, "-o", out, "--model", env["model_path"]])
    assert proc.returncode == 0, proc.stderr
    assert b"70x33" in proc.stderr and proc.stdout == b""
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im).transpose(2, 0, 1), ref.image)
    # Invalid input: status 2, one line, no traceback.
    bad = tmp_path / "bad.rdec"
    bad.write_bytes(stream[:31])
    proc = _subprocess(["decode", bad, "-o", tmp_path / "x.png", "--model", env["model_path"]])
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr.decode(), "PayloadPastEnd (clause 6.2) at byte 31:")
    # stdin and stdout as '-'.
    proc = _subprocess(["decode", "-", "-o", "-", "--raw", "-q", "-m", env["model_path"]], input=stream)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ref.image.tobytes() and proc.stderr == b""


# --- the literal path, output names, partial traces, progress (issues 19, 20, 22) --------------

def test_literal_path_gives_the_same_samples_and_trace(env, capsys, tmp_path):
    path, stream, ref = env["streams"][(70, 33)]
    out, trace = tmp_path / "o.rgb", tmp_path / "trace"
    rc, _, err = run(["decode", path, "-o", out, "--literal", "--trace-dir", trace, "--model", env["model_path"]],
                     capsys)
    assert rc == 0, err
    assert "(literal path)" in err
    assert out.read_bytes() == ref.image.tobytes()  # .rgb: the clause 11.4 planar bytes, without --raw
    for name, tensor in ref.stages.items():
        assert np.array_equal(np.load(trace / f"{name}.npy"), tensor), name


@pytest.mark.parametrize("name, fragment", [("o.jpg", "o.jpg"), ("o.PNG.bmp", ".bmp")])
def test_output_names_that_are_not_png_or_rgb_are_refused(env, capsys, tmp_path, name, fragment):
    path, _, _ = env["streams"][(16, 16)]
    rc, _, err = run(["decode", path, "-o", tmp_path / name, "--model", env["model_path"]], capsys)
    assert rc == 2
    assert_one_error_line(err, fragment, ".rgb")
    assert not (tmp_path / name).exists()
    rc, _, err = run(["decode", path, "-o", tmp_path / "o.png", "--raw", "--model", env["model_path"]], capsys)
    assert rc == 2
    assert_one_error_line(err, "--raw", ".png")


@pytest.mark.parametrize("literal", [False, True])
def test_a_failed_decode_leaves_a_partial_trace(env, capsys, tmp_path, literal):
    """Clause 11.5.4: the stages computed before the error, and partial.json saying how many wavefronts
    of the latent stages are valid; they equal the full decode's stages there."""
    from refdec.bitstream import parse_header
    from refdec.stages import LATENT_STAGES, decoded_positions

    path, stream, ref = env["streams"][(70, 33)]
    h = parse_header(stream)
    cut = bytearray(stream[: h.y_offset + h.y_length // 2])
    cut[23:27] = struct.pack(">I", h.y_length // 2)  # a truncated y payload: PayloadTruncated part-way
    bad = tmp_path / "cut.rdec"
    bad.write_bytes(bytes(cut))
    trace = tmp_path / "trace"
    rc, _, err = run(["decode", bad, "-o", tmp_path / "o.png", "--trace-dir", trace, "--model", env["model_path"]]
                     + (["--literal"] if literal else []), capsys)
    assert rc == 2
    assert_one_error_line(err, "PayloadTruncated")
    info = json.loads((trace / "partial.json").read_text())
    assert info["partial"] is True and 0 < info["latent_wavefronts"]
    hy, wy = ref.stages["y_hat"].shape[1:]
    assert info["latent_wavefronts"] < wy + 4 * (hy - 1)
    keep = decoded_positions(hy, wy, info["latent_wavefronts"])
    assert not (trace / "synthesis_input.npy").exists() and not (trace / "image.npy").exists()
    for name in ["z_hat", "hyper_synthesis.2"]:
        assert np.array_equal(np.load(trace / f"{name}.npy"), ref.stages[name])
    for name in LATENT_STAGES:
        got = np.load(trace / f"{name}.npy")
        assert np.array_equal(np.where(keep, got, 0), np.where(keep, ref.stages[name], 0)), name
    # A later successful decode into the same folder removes the partial marker.
    rc, _, err = run(["decode", path, "-o", tmp_path / "o.png", "--trace-dir", trace, "--model", env["model_path"]],
                     capsys)
    assert rc == 0 and not (trace / "partial.json").exists()


def _read_until_closed(master: int) -> bytes:
    """Everything written to a pseudo-terminal until its other end is closed; closes it."""
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # Linux: EIO once the slave side is closed
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    return seen


def test_progress_is_shown_on_a_terminal_only(env, tmp_path):
    """On a terminal, refdec decode redraws one progress line (wavefronts, then output rows) and
    clears it; with stderr redirected it prints only the summary."""
    import pty

    path, _, _ = env["streams"][(70, 33)]
    cmd = [sys.executable, "-m", "refdec", "decode", str(path), "-o", str(tmp_path / "o.png"),
           "--model", str(env["model_path"])]
    env_vars = dict(os.environ, PYTHONPATH=str(ROOT))
    master, slave = pty.openpty()
    proc = subprocess.run(cmd, stderr=slave, stdout=subprocess.DEVNULL, env=env_vars, timeout=120)
    os.close(slave)
    seen = _read_until_closed(master)
    assert proc.returncode == 0
    text = seen.decode()
    assert re.search(r"latent (\d+)/\1 wavefronts", text) and "synthesis 64/64 output rows" in text, text
    assert text.rstrip().splitlines()[-1].split("\x1b[K")[-1].startswith("refdec: "), text  # cleared, then the summary
    redirected = subprocess.run(cmd, capture_output=True, text=True, env=env_vars, timeout=120)
    assert redirected.returncode == 0 and "wavefronts" not in redirected.stderr
    assert len(redirected.stderr.splitlines()) == 1


def test_check_shows_the_progress_of_a_decode_on_a_terminal(tmp_path):
    """refdec check, refdec checking itself in-process: on a terminal the decode's progress line
    appears and is cleared before the vector's result line."""
    import pty

    cmd = [sys.executable, "-m", "refdec", "check", str(ROOT / "vectors"), "--subset",
           "refdec-test-w16a16.hyper-2x2-128x128", "--evidence-dir", str(tmp_path / "ev")]
    master, slave = pty.openpty()
    proc = subprocess.run(cmd, stdout=slave, stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          timeout=300)
    os.close(slave)
    seen = _read_until_closed(master)
    text = seen.decode()
    assert proc.returncode == 0, text
    assert "decoding refdec-test-w16a16.hyper-2x2-128x128: latent" in text, text
    result = next(line for line in text.splitlines() if "PASS" in line or "pass" in line)
    assert result.split("\x1b[K")[-1].lstrip("\r").startswith("[1/1]"), result
