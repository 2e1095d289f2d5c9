"""`refdec check` as an implementer's daily tool (issue 22; spec clauses 11.5.3 to 11.5.5): results
as they happen, nothing lost on an interrupt, set-up errors before the first vector, evidence kept,
counts that tell decodes from rejections, the report's schema, partial traces, and traced checking
that reads a trace's hashes before its arrays. No torch: vector sets cloned from vectors/."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from checkerkit import (PY, VECTORS, alive, child_env, committed, fake_decoder, make_set, quick, report,
                        requires_vectors, run_check, validate)
from conftest import ROOT, SPEC_DIR
from refdec import cli
from refdec.conformance import runner
from refdec.conformance.diagnosis import diagnose_trace
from refdec.conformance.hashes import stage_hash
from refdec.conformance.manifest import load_manifest, readme_text
from refdec.conformance.reports import DIAGNOSIS_KEYS, RESULT_KEYS, SAMPLE_KEYS, SUMMARY_KEYS
from refdec.conformance.traces import TraceError, stage_file_hash
from refdec.stages import LATENT_STAGES, POST_LATENT_STAGES, STAGE_CLAUSE, STAGE_ORDER

pytestmark = requires_vectors

# A decoder that is right except for one sample of the image and one element of synthesis.2 in
# its trace: refdec, through its library interface.
WRONG = """
from refdec.decoder import decode
from refdec.model_file import ModelStore
from refdec.conformance.images import png_bytes
from refdec.conformance.traces import write_trace
from refdec.errors import RefdecError
try:
    d = decode(open(IN, "rb").read(), ModelStore([sys.argv[3]]), trace=True)
except RefdecError as exc:
    print(f"wrongdec: error: {exc}", file=sys.stderr)
    sys.exit(2)
img = d.image.copy()
img[1, img.shape[1] // 2, img.shape[2] // 2] ^= 4
open(OUT, "wb").write(png_bytes(img))
if len(sys.argv) > 4:
    st = dict(d.stages)
    st["synthesis.2"] = st["synthesis.2"].copy()
    st["synthesis.2"][3, 1, 2] += 1
    write_trace(st, sys.argv[4])
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """Two valid and two invalid vectors (both W16A16 quick vectors' kinds)."""
    v, inv = quick("valid"), quick("invalid")
    return make_set(tmp_path_factory.mktemp("set"), [(x["id"], x) for x in v[:2] + inv[:2]])


def _decoder(tmp_path, body, args="{in} {out}"):
    return f"{PY} {fake_decoder(tmp_path, body)} {args}"


# --- 1. results as they happen ------------------------------------------------------------------

def test_a_line_per_vector_as_it_finishes(tmp_path, small_set):
    dec = _decoder(tmp_path, "time.sleep(1.5)\nsys.exit(3)\n")
    proc = subprocess.Popen([PY, "-m", "refdec", "check", str(small_set), "--decoder", dec, "--subset", "invalid",
                             "--evidence-dir", str(tmp_path / "ev")], stdout=subprocess.PIPE, text=True,
                            env=child_env(), bufsize=1)
    seen = []
    start = time.monotonic()
    for line in proc.stdout:
        seen.append((time.monotonic() - start, line.rstrip("\n")))
    assert proc.wait(timeout=60) == 0
    lines = [text for _, text in seen]
    assert lines[0].startswith("refdec check: 2 vectors (subsets invalid) of ")
    first = next(t for t, text in seen if text.startswith("[1/2] 0:0"))
    last = next(t for t, text in seen if text.startswith("[2/2] 0:0"))
    assert last - first > 1.0            # printed when vector 1 finished, not at the end
    assert re.match(r"\[1/2\] 0:0\d PASS    err-", next(x for x in lines if x.startswith("[1/2]")))
    assert any(x.startswith("summary: 2 vectors in ") and x.endswith("all pass") for x in lines)


def test_quiet_keeps_failures_and_the_summary(tmp_path, small_set, capsys):
    rc = cli.main(["check", str(small_set), "-q", "--decoder", _decoder(tmp_path, "sys.exit(3)\n")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "PASS" not in out and out.count("ERROR   ") == 4        # two live lines and two in the recap
    assert "summary: 4 vectors in" in out and "valid:   0 of 2 decoded bit-exact" in out


# --- 2. an interrupt --------------------------------------------------------------------------------

@pytest.mark.parametrize("jobs", ["1", "2"])
def test_interrupt_writes_the_partial_reports_and_ends_every_process(tmp_path, jobs):
    """The invalid vectors come first and are rejected at once; the valid ones hang, each with a
    child: SIGINT while they hang."""
    v, inv = quick("valid"), quick("invalid")
    small_set = make_set(tmp_path / "set", [(x["id"], x) for x in inv[:2] + v[:2]])
    body = """
    kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.environ["PIDS"], "a") as f:
        f.write(f"{os.getpid()}\\n{kid.pid}\\n")
    if os.environ["REFDEC_VECTOR_ID"].startswith("err-"):
        sys.exit(3)
    time.sleep(600)
    """
    pids = tmp_path / "pids"
    dec = _decoder(tmp_path, body)
    proc = subprocess.Popen([PY, "-m", "refdec", "check", str(small_set), "--decoder", dec, "-j", jobs,
                             "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"),
                             "--evidence-dir", str(tmp_path / "ev")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env(PIDS=pids))
    deadline = time.monotonic() + 60
    # wait until both invalid vectors are done and a valid one is hanging
    while time.monotonic() < deadline:
        n = len(pids.read_text().split()) if pids.exists() else 0
        if n >= 6:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    assert "refdec check: interrupted (SIGINT) after" in out and "every process the check started has been ended" in out
    assert "reports (partial): JSON" in out
    doc, res = report(tmp_path / "r.json")
    assert doc["interrupted"] is True and doc["interrupt_signal"] == "SIGINT"
    assert doc["summary"]["not_run"] >= 1 and len(doc["not_run"]) == doc["summary"]["not_run"]
    assert all(r["state"] == "pass" for r in res.values() if r["kind"] == "invalid")
    xml = (tmp_path / "r.xml").read_text()
    assert '<property name="interrupted" value="true"' in xml and "<skipped" in xml
    time.sleep(0.3)
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) >= 6 and not [p for p in started if alive(p)]
    assert not [p for p in _processes_tagged_by(proc.pid) if alive(p)]


def _processes_tagged_by(checker_pid):
    """Processes whose environment carries the tag of the checker with this pid (processes.py)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                env = open(f"/proc/{entry}/environ", "rb").read()
            except OSError:
                continue
            if f"REFDEC_CHECK_TAG={checker_pid}-".encode() in env:
                out.append(int(entry))
    return out


# --- 3. set-up errors before the first vector ------------------------------------------------------------

def test_setup_errors_come_before_any_vector(tmp_path, small_set, capsys, monkeypatch):
    marker = tmp_path / "ran"
    runs = _decoder(tmp_path, f"open({str(marker)!r}, 'w').write('x')\nsys.exit(3)\n")
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    cases = [
        (["--decoder", "no-such-decoder-xyz {in} {out}"], "command 'no-such-decoder-xyz' not found on PATH"),
        (["--decoder", f"{a_file} {{in}} {{out}}"], "is not an executable file"),
        (["--decoder", f"{tmp_path / 'nothing'} {{in}} {{out}}"], "does not exist"),
        (["--decoder", "cat {in}"], "must contain {out}"),
        (["--decoder", runs, "--json", a_file / "r.json"], "--json: cannot write"),
        (["--decoder", runs, "--junit", tmp_path], "--junit: "),
        (["--decoder", runs, "--evidence-dir", a_file / "ev"], "--evidence-dir: cannot"),
        (["--decoder", runs, "--subset", "no-such-subset"], "subset 'no-such-subset' matches no vector"),
        (["--outputs", tmp_path / "none"], "--outputs: "),
    ]
    for extra, text in cases:
        argv = ["check", str(small_set), *map(str, extra)]
        if "--json" not in argv:
            argv += ["--json", str(tmp_path / "ok.json")]
        rc = cli.main(argv)
        err = capsys.readouterr().err
        assert rc == 2, (extra, err)
        assert err.count("\n") == 1 and err.startswith("refdec: error: ") and text in err, (extra, err)
        assert not marker.exists()
        assert not (tmp_path / "ok.json").exists()      # a report opened early is removed again
    assert cli.main(["check", str(tmp_path / "no-set")]) == 2
    assert "cannot read manifest" in capsys.readouterr().err
    # Outside the repository, with no vector folder: say what to pass.
    monkeypatch.setattr(runner, "_REPO_VECTORS", tmp_path / "site-packages" / "vectors")
    assert cli.main(["check"]) == 2
    err = capsys.readouterr().err
    assert "no vector folder given" in err and "pass the folder of a vector set" in err


# --- 4. evidence, --keep-all, --fail-fast, timeouts ------------------------------------------------------

def test_a_wrong_decoder_keeps_its_evidence(tmp_path, small_set):
    dec = _decoder(tmp_path, WRONG, "{in} {out} {model} {trace}")
    proc = run_check(small_set, "--decoder", dec, "--json", tmp_path / "rep" / "r.json")
    print(proc.stdout)
    assert proc.returncode == 1
    doc, res = report(tmp_path / "rep" / "r.json")
    evidence = Path(doc["evidence_dir"])
    assert evidence.parent == tmp_path / "rep" and evidence.name.startswith("refdec-check-")
    assert f"evidence of the vectors that did not pass: {evidence}" in proc.stdout
    for v in quick("valid")[:2]:
        r = res[v["id"]]
        assert r["state"] == "fail" and r["samples"]["differing_samples"] == 1
        kept = evidence / v["id"]
        assert Path(r["evidence"]) == kept and (kept / "output.png").is_file() and (kept / "diff.png").is_file()
        assert (kept / "trace" / "synthesis.2.npy").is_file() and r["trace"]["dir"] == str(kept / "trace")
        d = r["diagnosis"]
        assert d["stage"] == "synthesis.2" and d["index"] == [3, 1, 2] and d["method"] == "elements"
        assert d["got"] == d["expected"] + 1 and d["diverging_stages"][0] == "synthesis.2"
        assert r["look_at"][0] == STAGE_CLAUSE["synthesis.2"] and r["look_at"][1:] == v["look_at"]
        assert f"look at: clauses {', '.join(r['look_at'])}" in proc.stdout
    for v in quick("invalid")[:2]:
        assert res[v["id"]]["state"] == "pass" and res[v["id"]]["evidence"] is None
        assert not (evidence / v["id"]).exists()
    # --keep-all keeps passing outputs too; --fail-fast stops at the first vector that does not pass.
    right = _decoder(tmp_path, "import shutil\nshutil.copyfile(os.environ['G'] + os.environ['REFDEC_VECTOR_ID'] + "
                               "'.png', OUT) if not os.environ['REFDEC_VECTOR_ID'].startswith('err-') else sys.exit(3)\n")
    proc = run_check(small_set, "--decoder", right, "--keep-all", "--evidence-dir", tmp_path / "all",
                     env=child_env(G=str(small_set / "golden") + "/"))
    assert proc.returncode == 0, proc.stdout
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(v["id"] for v in quick("valid")[:2])
    proc = run_check(small_set, "--decoder", dec, "--fail-fast", "--json", tmp_path / "ff.json", "--junit",
                     tmp_path / "ff.xml", "--evidence-dir", tmp_path / "ff")
    doc, res = report(tmp_path / "ff.json")
    assert proc.returncode == 1 and len(res) == 1 and doc["summary"]["not_run"] == 3 and len(doc["not_run"]) == 3
    assert "stopped at the first failure" in proc.stdout
    assert (tmp_path / "ff.xml").read_text().count("<skipped") == 3
    assert not validate(doc, json.loads((SPEC_DIR / "report.schema.json").read_text()))


def test_the_default_timeout_scales_with_the_image():
    m = load_manifest(VECTORS)
    opts = runner.CheckOptions(decoder="x {in} {out}")
    by_id = {v["id"]: v for v in m.vectors}
    tiny = quick("valid")[0]
    assert runner.vector_timeout(opts, m, tiny) == pytest.approx(runner.TIMEOUT_BASE + runner.TIMEOUT_PER_MP * 1e-6, abs=0.1)
    large = next(v for v in m.vectors if v["kind"] == "valid" and v["golden"]["width"] == 1920)
    assert runner.vector_timeout(opts, m, large) == pytest.approx(30 + 60 * 1920 * 1080 / 1e6, abs=0.1)
    assert runner.vector_timeout(opts, m, by_id["err-truncated-header"]) == runner.TIMEOUT_BASE
    assert runner.vector_timeout(runner.CheckOptions(decoder="x", timeout=7), m, large) == 7


# --- 5. verdicts that mean what they say --------------------------------------------------------------

def test_a_decoder_that_decodes_nothing_gets_no_flattering_headline(tmp_path, small_set, capsys):
    rc = cli.main(["check", str(small_set), "--decoder", _decoder(tmp_path, "sys.exit(3)\n"), "--json",
                   str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "summary: 4 vectors in" in out and "NOT all pass: 0 fail, 2 error, 0 timeout" in out
    assert "  valid:   0 of 2 decoded bit-exact" in out
    assert "  invalid: 2 of 2 rejected as required; error class: 0 as expected, 0 another, 2 none named" in out
    assert "warning: no valid vector was decoded" in out
    doc, _ = report(tmp_path / "r.json")
    s = doc["summary"]
    assert (s["decoded"], s["rejected"], s["class_none"], s["all_pass"]) == (0, 2, 2, False)


def test_the_error_class_is_read_from_the_first_line_of_stderr(tmp_path, small_set, capsys):
    inv = quick("invalid")[:2]
    body = (f"first = {{{inv[0]['id']!r}: '{inv[0]['expected_error']}: no', {inv[1]['id']!r}: "
            f"'note: starting\\n{inv[1]['expected_error']}'}}\n"
            "print(first[os.environ['REFDEC_VECTOR_ID']], file=sys.stderr)\nsys.exit(1)\n")
    dec = _decoder(tmp_path, body)
    rc = cli.main(["check", str(small_set), "--subset", "invalid", "--decoder", dec, "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    _, res = report(tmp_path / "r.json")
    assert rc == 0 and "error class: 1 as expected, 0 another, 1 none named" in out
    assert res[inv[0]["id"]]["reported_error"] == inv[0]["expected_error"] and res[inv[0]["id"]]["error_class"] == "expected"
    assert res[inv[1]["id"]]["reported_error"] is None and res[inv[1]["id"]]["error_class"] == "none"
    rc = cli.main(["check", str(small_set), "--subset", "invalid", "--decoder", dec, "--strict-errors"])
    out = capsys.readouterr().out
    assert rc == 1 and f"FAIL    {inv[1]['id']}" in out and "(--strict-errors)" in out


def test_list_prints_the_subsets_and_the_vectors(capsys):
    assert cli.main(["check", str(VECTORS), "--list"]) == 0
    out = capsys.readouterr().out
    data = committed()
    for name in data["subsets"]:
        n = sum(name in v["subsets"] for v in data["vectors"])
        assert re.search(rf"^  {re.escape(name)}\s+{n}  ", out, re.M), name
    assert re.search(rf"^  all\s+{len(data['vectors'])}  every vector", out, re.M)
    for v in data["vectors"]:
        assert re.search(rf"^  {re.escape(v['id'])}\s+{v['kind']}\s", out, re.M)
    assert cli.main(["check", str(VECTORS), "--list", "--subset", "quick"]) == 0
    out = capsys.readouterr().out
    assert "vectors (12 selected):" in out and "large-1920x1080" not in out.split("vectors (12")[1]


def test_trace_dir_when_refdec_checks_itself(tmp_path, small_set, capsys):
    v = quick("valid")[0]
    rc = cli.main(["check", str(small_set), "--subset", v["id"], "--trace-dir", str(tmp_path / "t")])
    assert rc == 0, capsys.readouterr().out
    for name in STAGE_ORDER:
        assert stage_file_hash(tmp_path / "t" / v["id"] / f"{name}.npy")[1] == v["stages"][name]["sha256"]


def test_an_empty_output_is_no_output_in_both_modes(tmp_path, small_set, capsys):
    dec = _decoder(tmp_path, "open(OUT, 'wb').close()\nsys.exit(0 if not os.environ['REFDEC_VECTOR_ID'].startswith('err-') else 2)\n")
    rc = cli.main(["check", str(small_set), "--decoder", dec, "--json", str(tmp_path / "d.json")])
    _, dres = report(tmp_path / "d.json")
    outs = tmp_path / "outs"
    outs.mkdir()
    for vid in dres:
        (outs / f"{vid}.png").write_bytes(b"")
    rc2 = cli.main(["check", str(small_set), "--outputs", str(outs), "--json", str(tmp_path / "o.json")])
    _, ores = report(tmp_path / "o.json")
    capsys.readouterr()
    assert rc == rc2 == 1
    for vid in dres:
        want = "pass" if vid.startswith("err-") else "error"
        assert dres[vid]["state"] == ores[vid]["state"] == want, (vid, dres[vid]["message"], ores[vid]["message"])


# --- 6. the JSON report and its schema -------------------------------------------------------------------

def test_a_real_report_matches_the_published_schema(tmp_path, small_set):
    schema = json.loads((SPEC_DIR / "report.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert list(schema["$defs"]["result"]["properties"]) == list(RESULT_KEYS)
    assert list(schema["$defs"]["samples"]["properties"]) == list(SAMPLE_KEYS)
    assert list(schema["$defs"]["diagnosis"]["properties"]) == list(DIAGNOSIS_KEYS)
    assert list(schema["$defs"]["summary"]["properties"]) == list(SUMMARY_KEYS)
    dec = _decoder(tmp_path, WRONG, "{in} {out} {model} {trace}")
    proc = run_check(small_set, "--decoder", dec, "--json", tmp_path / "r.json", "--evidence-dir", tmp_path / "ev")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 1
    assert validate(doc, schema) == []
    # every key always present: null when it does not apply
    for r in doc["results"]:
        assert list(sorted(r)) == sorted(RESULT_KEYS)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", doc["created"]) and doc["tool"]["name"] == "refdec"
    assert doc["report_version"] == 2
    # the schema rejects what it should
    bad = json.loads(json.dumps(doc))
    del bad["results"][0]["notes"]
    bad["summary"]["pass"] = -1
    bad["results"][1]["state"] = "maybe"
    problems = validate(bad, schema)
    assert len(problems) == 3, problems
    # Clause 11.5.5 names every key of the report.
    text = (SPEC_DIR / "11-conformance.md").read_text().split("### 11.5.5")[1].split("### 11.5.6")[0]
    for key in list(schema["properties"]) + list(RESULT_KEYS) + list(SUMMARY_KEYS):
        assert f"`{key}`" in text, key


# --- partial traces and traced checking (issue 20 items 4 and 6) --------------------------------------

def _stages(seed=0, hy=4, wy=8):
    rng = np.random.default_rng(seed)
    shapes = {name: (3, 2, 2) for name in STAGE_ORDER}
    shapes.update({name: (5, hy, wy) for name in LATENT_STAGES})
    shapes.update({"mixture.weights": (3, 5, hy, wy), "mixture.means": (3, 5, hy, wy),
                   "mixture.scale_index": (3, 5, hy, wy)})
    return {name: rng.integers(-100, 100, size=s) for name, s in shapes.items()}


def test_partial_trace_diagnosis_ignores_positions_never_decoded():
    golden = _stages()
    got = {k: v.copy() for k, v in golden.items() if k not in POST_LATENT_STAGES}
    for name in LATENT_STAGES:                 # never decoded: x + 4y >= 9 holds zeros
        t = np.arange(8)[None, :] + 4 * np.arange(4)[:, None]
        got[name][..., t >= 9] = 0
    assert diagnose_trace(golden, got, valid_wavefronts=9) is None
    assert diagnose_trace(golden, got) is not None            # read as complete, it differs
    got["gather.2"][1, 2, 0] += 1                              # wavefront 8: decoded, wrong
    d = diagnose_trace(golden, got, valid_wavefronts=9)
    assert d["stage"] == "gather.2" and d["index"] == [1, 2, 0] and d["wavefront"] == 8
    assert d["latent_wavefronts"] == 9 and d["differing_elements"] == 1 and "partial trace, 9" in d["text"]
    assert d["total_elements"] == 5 * int(np.count_nonzero(t < 9))


def test_a_failed_decode_is_diagnosed_from_its_partial_trace(tmp_path, small_set, capsys):
    """No output (an error), a partial trace with a wrong value at wavefront 3 and garbage beyond
    the wavefronts decoded: the diagnosis names the wrong value, and look_at starts with its clause."""
    from refdec.conformance.traces import write_trace
    from refdec.decoder import decode
    from refdec.model_file import ModelStore

    v = quick("valid")[1]              # odd-65x33: latent 3 x 5, 13 wavefronts
    d = decode((small_set / v["bitstream"]["file"]).read_bytes(), ModelStore([small_set / v["model"]["file"]]),
               trace=True)
    st = {k: np.array(a) for k, a in d.stages.items() if k not in POST_LATENT_STAGES}
    n = 5
    hy, wy = st["y_hat"].shape[-2:]
    t = np.arange(wy)[None, :] + 4 * np.arange(hy)[:, None]
    for name in LATENT_STAGES:
        st[name][..., t >= n] = 12345
    st["mixture.means"][1, 7, 0, 3] += 2                     # (y, x) = (0, 3): wavefront 3
    trace = tmp_path / "traces" / v["id"]
    write_trace(st, trace)
    (trace / "partial.json").write_text(json.dumps({"partial": True, "latent_wavefronts": n}))
    outs = tmp_path / "outs"
    outs.mkdir()
    rc = cli.main(["check", str(small_set), "--subset", v["id"], "--outputs", str(outs), "--trace-dir",
                   str(tmp_path / "traces"), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    _, res = report(tmp_path / "r.json")
    r = res[v["id"]]
    assert rc == 1 and r["state"] == "error"
    diag = r["diagnosis"]
    assert diag["stage"] == "mixture.means" and diag["index"] == [1, 7, 0, 3] and diag["wavefront"] == 3
    assert diag["latent_wavefronts"] == n and diag["differing_elements"] == 1
    assert "synthesis.0" in diag["missing_stages"] and r["trace"]["partial"] is True
    assert r["look_at"][0] == "7.8" and r["look_at"][1:] == v["look_at"]
    assert any(f"latent stages valid in {n} of {(wy - 1) + 4 * (hy - 1) + 1} wavefronts" in x for x in r["notes"])
    assert "first diverging stage: mixture.means differs at component 1, channel 7, position (0, 3)" in out
    # Without the wrong value, the partial trace agrees wherever it was computed.
    st["mixture.means"][1, 7, 0, 3] -= 2
    write_trace(st, trace)
    cli.main(["check", str(small_set), "--subset", v["id"], "--outputs", str(outs), "--trace-dir",
              str(tmp_path / "traces"), "--json", str(tmp_path / "r.json")])
    capsys.readouterr()
    _, res = report(tmp_path / "r.json")
    assert res[v["id"]]["diagnosis"] is None
    assert any("equals the golden stages wherever it was computed" in x for x in res[v["id"]]["notes"])


def test_a_matching_trace_is_checked_by_its_hashes_alone(tmp_path, small_set, capsys, monkeypatch):
    """Stage hashes first: no golden decode for a trace that matches the manifest."""
    from refdec.conformance.images import png_bytes
    from refdec.conformance.traces import write_trace
    from refdec.decoder import decode
    from refdec.model_file import ModelStore

    v = quick("valid")[2]
    vectors = make_set(tmp_path / "set", [(v["id"], v)])
    d = decode((vectors / v["bitstream"]["file"]).read_bytes(), ModelStore([vectors / v["model"]["file"]]), trace=True)
    outs = tmp_path / "outs"
    outs.mkdir()
    (outs / f"{v['id']}.png").write_bytes(png_bytes(d.image))
    write_trace({k: a.astype(np.int64) for k, a in d.stages.items()}, tmp_path / "t" / v["id"])  # int64 files
    monkeypatch.setattr(runner.Checker, "_golden_diagnosis", lambda *a: pytest.fail("golden decode started"))
    rc = cli.main(["check", str(vectors), "--outputs", str(outs), "--trace-dir", str(tmp_path / "t")])
    assert rc == 0 and "samples and trace match" in capsys.readouterr().out


def test_stage_files_are_hashed_in_bounded_chunks(tmp_path, monkeypatch):
    from refdec.conformance import traces

    monkeypatch.setattr(traces, "CHUNK_BYTES", 64)
    rng = np.random.default_rng(3)
    a = rng.integers(-(1 << 31), 1 << 31, size=(5, 7, 9), dtype=np.int64)
    for dt in ("<i4", ">i4", "<i8", "<i2", "<f8"):
        b = (a if dt[1:] in ("i4", "i8") else a % 3000).astype(dt)
        np.save(tmp_path / "s.npy", b)
        assert stage_file_hash(tmp_path / "s.npy") == ((5, 7, 9), stage_hash(b.astype(np.int64)))
    np.save(tmp_path / "f.npy", np.asfortranarray(a.astype(np.int32)))
    assert stage_file_hash(tmp_path / "f.npy")[1] == stage_hash(a.astype(np.int32))
    np.save(tmp_path / "x.npy", np.array([0.5, 1.0]))
    with pytest.raises(TraceError, match="non-integer"):
        stage_file_hash(tmp_path / "x.npy")
    data = (tmp_path / "s.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:-10])
    with pytest.raises(TraceError, match="truncated"):
        stage_file_hash(tmp_path / "t.npy")


# --- workers -------------------------------------------------------------------------------------

def test_workers_and_their_decoders_get_one_blas_thread(tmp_path, small_set):
    from refdec.conformance.workers import THREAD_VARS, worker_env

    assert all(worker_env()[k] == "1" for k in THREAD_VARS)
    dec = _decoder(tmp_path, "print('threads', os.environ.get('OMP_NUM_THREADS'), file=sys.stderr)\nsys.exit(3)\n")
    env = child_env()
    env.pop("OMP_NUM_THREADS", None)
    proc = run_check(small_set, "--decoder", dec, "-j", "2", "--json", tmp_path / "r.json", env=env)
    _, res = report(tmp_path / "r.json")
    assert proc.returncode == 1 and all("threads 1" in r["stderr_tail"] for r in res.values())
    # refdec itself in workers: the same verdicts as in-process
    a = run_check(small_set, "-j", "2", "--json", tmp_path / "a.json")
    b = run_check(small_set, "--json", tmp_path / "b.json")
    assert a.returncode == b.returncode == 0
    ra, rb = report(tmp_path / "a.json")[1], report(tmp_path / "b.json")[1]
    assert {k: r["message"] for k, r in ra.items()} == {k: r["message"] for k, r in rb.items()}


# --- the READMEs --------------------------------------------------------------------------------------

def test_the_readmes_say_how_to_wrap_a_decoder():
    from refdec.conformance.manifest import WRAPPING

    generated = readme_text(committed())
    assert (VECTORS / "README.md").read_text() == generated        # regenerated, never edited by hand
    readme = (ROOT / "README.md").read_text()
    assert WRAPPING in generated and WRAPPING.split("\n", 1)[1] in readme
    section = readme.split("## Checking another decoder")[1].split("\n## ")[0]
    for text in (generated, section):
        assert "Wrapping your decoder" in text
        assert re.search(r'--decoder "[^"]*\{in\}[^"]*\{out\}[^"]*\{model\}', text) or \
            re.search(r'--decoder "[^"]*\{model\}', text)
        for word in ("{model}", "{trace}", "exit", "line of stderr", "error class", "partial.json", "timeout",
                     "--strict-errors", "--list"):
            assert word in text, word
