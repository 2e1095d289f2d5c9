"""`refdec check` against decoders that misbehave (issue 21 item 3, spec clause 11.5.3): each case
ends in its documented state within bounded time and bounded memory of the checker, and a seeded
fuzz of decoder behaviours agrees with the rules of clause 11.5.3. No torch: the vector sets are
cloned from the committed vectors/ (quick subset) and the decoders are small Python scripts."""

from __future__ import annotations

import json
import random
import signal
import struct
import time
import zlib
from pathlib import Path

import pytest

from checkerkit import PY, alive, child_env, fake_decoder, make_set, quick, report, requires_vectors, run_check
from refdec.conformance.processes import DRAIN_SECONDS, Capture, run_command

pytestmark = requires_vectors

# The checker process alone (Python, NumPy, Pillow, the report): measured about 45 MiB.
CHECKER_RSS_MIB = 200


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """One valid and two invalid vectors."""
    v, inv = quick("valid"), quick("invalid")
    return make_set(tmp_path_factory.mktemp("set"), [(v[0]["id"], v[0]), (inv[0]["id"], inv[0]),
                                                     (inv[1]["id"], inv[1])])


def _run(tmp_path, vectors, body, *extra, timeout=120, env=None):
    dec = fake_decoder(tmp_path, body)
    start = time.monotonic()
    proc = run_check(vectors, "--decoder", f"{PY} {dec} {{in}} {{out}}", "--json", tmp_path / "r.json",
                     "--evidence-dir", tmp_path / "ev", *extra, timeout=timeout, env=env)
    took = time.monotonic() - start
    assert "Traceback" not in proc.stderr, proc.stderr
    doc, res = report(tmp_path / "r.json")
    return proc, doc, res, took


def test_death_by_a_signal_is_an_error_never_a_rejection(tmp_path, small_set):
    proc, doc, res, _ = _run(tmp_path, small_set, "os.kill(os.getpid(), signal.SIGSEGV)\n")
    assert proc.returncode == 1
    assert {r["state"] for r in res.values()} == {"error"}
    for r in res.values():
        assert r["exit_code"] == -signal.SIGSEGV and r["signal"] == "SIGSEGV" and "SIGSEGV" in r["message"]
    assert doc["summary"]["rejected"] == 0 and "rejected as required" in proc.stdout
    # A shell wrapper reports a crashed child as 128 + N: not a rejection either; 126/127 neither.
    proc, doc, res, _ = _run(tmp_path, small_set, "sys.exit(139)\n")
    assert {r["state"] for r in res.values()} == {"error"} and all(r["exit_code"] == 139 for r in res.values())


def test_timeout_kills_the_process_group(tmp_path, small_set):
    body = """
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(os.environ["PIDFILE"] + os.environ["REFDEC_VECTOR_ID"], "w").write(str(child.pid))
    time.sleep(600)
    """
    proc, doc, res, took = _run(tmp_path, small_set, body, "--timeout", "1.5", "-j", "2",
                                env=child_env(PIDFILE=tmp_path / "pid-"))
    assert proc.returncode == 1
    assert {r["state"] for r in res.values()} == {"timeout"}
    assert all(r["seconds"] < 1.5 + DRAIN_SECONDS + 5 for r in res.values())
    assert took < 60
    pids = [int(p.read_text()) for p in tmp_path.glob("pid-*")]
    assert pids and not any(alive(p) for p in pids)


def test_a_grandchild_in_its_own_session_holding_the_pipes(tmp_path, small_set):
    """The decoder exits at once; its grandchild, in a session of its own, keeps stdout and stderr
    open for ten minutes. The vector ends DRAIN_SECONDS after the decoder, and the grandchild is
    found by its tag and killed."""
    body = """
    g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    open(os.environ["PIDFILE"] + os.environ["REFDEC_VECTOR_ID"], "w").write(str(g.pid))
    print("BadMagic: refused", file=sys.stderr, flush=True)
    sys.exit(3)
    """
    proc, doc, res, took = _run(tmp_path, small_set, body, env=child_env(PIDFILE=tmp_path / "pid-"))
    states = {r["kind"]: r["state"] for r in res.values()}
    assert states == {"valid": "error", "invalid": "pass"}
    for r in res.values():
        assert r["seconds"] < DRAIN_SECONDS + 5
        assert any("held its output open" in n for n in r["notes"]), r["notes"]
        assert any("left running were killed" in n for n in r["notes"]), r["notes"]
    assert took < 60
    pids = [int(p.read_text()) for p in tmp_path.glob("pid-*")]
    assert len(pids) == 3 and not any(alive(p) for p in pids)


def test_output_is_captured_up_to_a_cap(tmp_path, small_set):
    """512 MB on stdout and 300 kB on stderr: counted, the tails kept, the checker stays small."""
    body = """
    chunk = b"o" * (1 << 20)
    for _ in range(512):
        sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    sys.stderr.write("UnknownModel first line\\n" + "e" * 300000 + "\\nlast line\\n")
    sys.exit(2)
    """
    proc, doc, res, took = _run(tmp_path, small_set, body, "--subset", quick("valid")[0]["id"])
    (r,) = res.values()
    assert r["state"] == "error" and r["exit_code"] == 2
    assert r["stdout_bytes"] == 512 << 20 and r["stderr_bytes"] == len("UnknownModel first line\n") + 300000 + 11
    assert r["stderr_tail"].endswith("last line\n") and len(r["stderr_tail"]) <= 2000
    assert r["reported_error"] == "UnknownModel"            # the first line of stderr
    assert doc["checker_peak_rss_mib"] < CHECKER_RSS_MIB, doc["checker_peak_rss_mib"]
    kept = Path(r["evidence"])
    assert (kept / "stdout.txt").stat().st_size <= Capture().tail_limit + 100
    assert (kept / "stdout.txt").read_bytes().startswith(b"[" + str((512 << 20) - (64 << 10)).encode())


def test_a_decoder_that_writes_into_the_vectors_folder(tmp_path):
    """It adds a file to the set, overwrites a golden image, and changes its own input copy: the
    vector is an error (its inputs, restored), the folder's changes are an error of the run."""
    v, inv = quick("valid")[0], quick("invalid")[0]
    vectors = make_set(tmp_path / "set", [(v["id"], v), (inv["id"], inv)])
    body = f"""
    root = {str(vectors)!r}
    open(os.path.join(root, "added.txt"), "w").write("x")
    open(os.path.join(root, {v['golden']['file']!r}), "ab").write(b"x")
    try:
        os.chmod(IN, 0o644)
        open(IN, "ab").write(b"junk")
    except OSError:
        pass
    sys.exit(3)
    """
    proc, doc, res, _ = _run(tmp_path, vectors, body, "--junit", tmp_path / "r.xml", "--subset", inv["id"])
    assert proc.returncode == 1
    r = res[inv["id"]]
    assert r["state"] == "error" and "changed its read-only inputs" in r["message"]
    f = doc["vectors_folder"]
    assert f == {"intact": False, "changed": [v["golden"]["file"]], "added": ["added.txt"], "removed": []}
    assert not doc["summary"]["all_pass"]
    assert "vectors folder CHANGED during the run" in proc.stdout
    assert "vectors-folder-intact" in (tmp_path / "r.xml").read_text()
    # The decoder was given a copy: the set's own stream is untouched.
    assert (vectors / inv["bitstream"]["file"]).read_bytes() == (Path(__file__).parents[1] / "vectors"
                                                                 / inv["bitstream"]["file"]).read_bytes()


def _huge_png(path: Path, w: int = 12000, h: int = 12000) -> None:
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * w)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_a_huge_png_is_refused_from_its_header(tmp_path, small_set):
    huge = tmp_path / "huge.png"
    _huge_png(huge)
    proc, doc, res, _ = _run(tmp_path, small_set, f"import shutil\nshutil.copyfile({str(huge)!r}, OUT)\n",
                             "--subset", quick("valid")[0]["id"])
    (r,) = res.values()
    g = quick("valid")[0]["golden"]
    assert r["state"] == "fail" and f"is 12000x12000, expected {g['width']}x{g['height']}" in r["message"]
    assert doc["checker_peak_rss_mib"] < CHECKER_RSS_MIB, doc["checker_peak_rss_mib"]
    assert "DecompressionBomb" not in proc.stderr + proc.stdout


def test_run_command_bounds(tmp_path):
    """The primitive itself: a flood is counted and cut, a timeout is reported as such."""
    done = run_command([PY, "-c", "import sys; sys.stdout.write('x' * 1000000); sys.exit(4)"], 30)
    assert done.returncode == 4 and done.stdout.total == 1000000 and len(done.stdout.tail) == 64 << 10
    assert len(done.stdout.head) == 4 << 10
    done = run_command([PY, "-c", "import time; time.sleep(60)"], 0.5)
    assert done.timed_out and done.returncode is None and done.seconds < 10


# --- a seeded fuzz of decoder behaviours ---------------------------------------------------------

BEHAVIOUR = """
import json, shutil
b = json.load(open(os.environ["BEHAVIOURS"]))[os.environ["REFDEC_VECTOR_ID"]]
if b["stdout"]:
    sys.stdout.write("o" * b["stdout"])
    sys.stdout.flush()
if b["stderr"]:
    sys.stderr.write(b["stderr"])
    sys.stderr.flush()
if b["output"] == "golden":
    shutil.copyfile(b["golden"], OUT)
elif b["output"] == "empty":
    open(OUT, "wb").close()
elif b["output"] == "garbage":
    open(OUT, "wb").write(b"not a png at all")
elif b["output"] == "small":
    shutil.copyfile(b["small"], OUT)
if b["sleep"]:
    time.sleep(b["sleep"])
if b["signal"]:
    os.kill(os.getpid(), getattr(signal, b["signal"]))
    time.sleep(5)
sys.exit(b["exit"])
"""

EXITS = [0] * 6 + [1, 2, 2, 3, 125, 255] + [126, 127, 134, 139]
SIGNALS = [None] * 16 + ["SIGSEGV", "SIGABRT", "SIGKILL", "SIGTERM", "SIGBUS"]
OUTPUTS = ["none", "golden", "golden", "empty", "garbage", "small"]


def _expected(v, b, timeout, strict):
    """Clause 11.5.3 as the checker documents it: (state, error class or None)."""
    if b["sleep"] > timeout:
        return "timeout", None
    if b["signal"] or 126 <= b["exit"] <= 192:
        return "error", None
    produced = b["output"] in ("golden", "garbage", "small")
    if v["kind"] == "invalid":
        if b["exit"] == 0 or produced:
            return "fail", None
        cls = b["says"]
        return ("fail" if strict and cls != "expected" else "pass"), cls
    if b["exit"] != 0 or not produced:
        return "error", None
    return ("pass" if b["output"] == "golden" else "fail"), None


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_decoder_behaviours(tmp_path, seed):
    """40 vectors (clones of the quick ones), each with a random behaviour: exit status, signal,
    output (none, empty, the right one, garbage, the wrong size), stdout and stderr, now and then a
    hang past the timeout. Every state and error class is the one clause 11.5.3 gives; bounded time."""
    rng = random.Random(seed)
    srcs = quick("valid") + quick("invalid")
    picks = [(f"fz{i:02d}-{s['id'][-20:].strip('.-')}", s) for i, s in enumerate(rng.choice(srcs) for _ in range(40))]
    vectors = make_set(tmp_path / "set", picks)
    small = tmp_path / "small.png"
    from refdec.conformance.images import png_bytes
    import numpy as np

    small.write_bytes(png_bytes(np.zeros((3, 2, 2), np.uint8)))
    strict = seed == 2
    timeout = 2.0
    behaviours, want = {}, {}
    # stderr, and the class clause 11.5.3 reads from it (the first non-empty line names it)
    stderr_choices = [("", "none"), ("dec: error: {exp}: bad\n", "expected"), ("dec: error: {other}: bad\n", "other"),
                      ("warning: slow\n{exp}\n", "none"), ("\n\n  {exp} (clause x)\n", "expected")]
    for vid, v in picks:
        exp = v.get("expected_error", "BadMagic")
        other = "TruncatedHeader" if exp != "TruncatedHeader" else "BadMagic"
        text, says = rng.choice(stderr_choices)
        b = {"exit": rng.choice(EXITS), "signal": rng.choice(SIGNALS), "output": rng.choice(OUTPUTS),
             "stdout": rng.choice([0, 0, 10, 200000]), "stderr": text.format(exp=exp, other=other), "says": says,
             "sleep": 30 if rng.random() < 0.06 else 0,
             "golden": str(vectors / v["golden"]["file"]) if v["kind"] == "valid" else str(small),
             "small": str(small)}
        if b["output"] == "golden" and v["kind"] == "invalid":
            b["output"] = "small"
        behaviours[vid] = b
        want[vid] = _expected(v, b, timeout, strict)
    (tmp_path / "b.json").write_text(json.dumps(behaviours))
    dec = fake_decoder(tmp_path, BEHAVIOUR)
    start = time.monotonic()
    proc = run_check(vectors, "--decoder", f"{PY} {dec} {{in}} {{out}}", "-j", "2", "--timeout", timeout,
                     "--json", tmp_path / "r.json", "--evidence-dir", tmp_path / "ev", "-q",
                     *(["--strict-errors"] if strict else []), env=child_env(BEHAVIOURS=tmp_path / "b.json"))
    took = time.monotonic() - start
    assert "Traceback" not in proc.stderr, proc.stderr
    doc, res = report(tmp_path / "r.json")
    got = {vid: (r["state"], r["error_class"]) for vid, r in res.items()}
    wrong = {vid: (got[vid], want[vid], behaviours[vid]) for vid in want if got[vid] != want[vid]}
    assert not wrong, wrong
    assert proc.returncode == (0 if all(s == "pass" for s, _ in want.values()) else 1)
    assert took < 150
    outcome = {}
    for s, c in want.values():
        outcome[s if c is None else f"{s}/{c}"] = outcome.get(s if c is None else f"{s}/{c}", 0) + 1
    print(f"seed {seed}: {len(want)} vectors in {took:.1f} s: {dict(sorted(outcome.items()))}")
    assert doc["checker_peak_rss_mib"] < CHECKER_RSS_MIB
