"""`refdec check` and the conformance vectors (spec clause 11.5).

The vector set is generated once per module, with --quick, from examples/random_small.npz
(3 tiny valid streams, 6 invalid ones); generation needs the torch golden decoder. Runs of
the torch decoder through `--decoder` start one Python process per vector, so they are kept
to the vectors they need.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SPEC_DIR
from refdec import cli
from refdec.stages import LATENT_STAGES, STAGE_ORDER
from refdec.conformance.diagnosis import compare_samples, diagnose_hashes, diagnose_trace
from refdec.conformance.hashes import sample_hash, stage_hash
from refdec.conformance.images import png_bytes, read_png
from refdec.conformance.manifest import ManifestError, load_manifest, validate_manifest
from refdec.errors import ALL_ERRORS

EXAMPLE_MODEL = ROOT / "examples" / "random_small.npz"
PY = shlex.quote(sys.executable)
TORCH_DECODER = f"{PY} -m refcodec.decode_cli {{in}} {{out}} --trace {{trace}}"
QUICK_VALID = ["size-1x1", "odd-65x33", "escape-33x65"]


# --- clause 11.4 hashes and sample comparison (no torch) -------------------------------------------

def test_stage_hash_is_int32_little_endian_c_order():
    import hashlib

    a = np.arange(-6, 6, dtype=np.int64).reshape(2, 3, 2)
    assert stage_hash(a) == hashlib.sha256(a.astype("<i4").tobytes()).hexdigest()
    assert stage_hash(a.astype(np.int16)) == stage_hash(a)
    assert stage_hash(np.asfortranarray(a)) == stage_hash(a)           # C order regardless of memory layout
    with pytest.raises(ValueError):
        stage_hash(np.array([1 << 31]))
    with pytest.raises(ValueError):
        stage_hash(np.array([0.5]))


def test_sample_hash_is_planar_uint8():
    import hashlib

    img = np.arange(3 * 2 * 5, dtype=np.uint8).reshape(3, 2, 5)
    assert sample_hash(img) == hashlib.sha256(bytes(range(30))).hexdigest()


def test_png_bytes_fixed_and_without_metadata(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, size=(3, 7, 11), dtype=np.uint8)
    data = png_bytes(img)
    assert data == png_bytes(img.copy())
    chunks, pos = [], 8
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        chunks.append(data[pos + 4:pos + 8].decode())
        pos += 12 + n
    assert chunks[0] == "IHDR" and chunks[-1] == "IEND" and set(chunks) == {"IHDR", "IDAT", "IEND"}
    (tmp_path / "a.png").write_bytes(data)
    assert np.array_equal(read_png(tmp_path / "a.png"), img)


def test_compare_samples_counts_and_first_in_planar_order():
    exp = np.full((3, 4, 5), 100, dtype=np.uint8)
    got = exp.copy()
    got[2, 0, 0] = 90          # later plane, earlier position
    got[1, 3, 4] = 103
    got[1, 2, 1] = 99
    cmp = compare_samples(exp, got)
    assert not cmp["equal"]
    assert cmp["differing_samples"] == 3 and cmp["total_samples"] == 60 and cmp["differing_pixels"] == 3
    assert cmp["max_abs_diff"] == 10
    assert cmp["first"] == {"channel": 1, "row": 2, "column": 1, "expected": 100, "got": 99}
    mse = (100 + 9 + 1) / 60
    assert cmp["psnr_db"] == pytest.approx(10 * np.log10(255 ** 2 / mse), abs=1e-3)
    assert compare_samples(exp, exp.copy()) == {"equal": True}
    assert "expected_shape" in compare_samples(exp, exp[:, :3])


def _fake_stages(seed=0, hy=4, wy=8):
    rng = np.random.default_rng(seed)
    shapes = {name: (3, 2, 2) for name in STAGE_ORDER}
    shapes.update({name: (5, hy, wy) for name in LATENT_STAGES})
    shapes.update({"mixture.weights": (3, 5, hy, wy), "mixture.means": (3, 5, hy, wy),
                   "mixture.scale_index": (3, 5, hy, wy), "image": (3, 16, 16)})
    return {name: rng.integers(-100, 100, size=s) for name, s in shapes.items()}


def test_diagnosis_orders_latent_stages_by_wavefront():
    golden = _fake_stages()
    got = {k: v.copy() for k, v in golden.items()}
    # gather.3 wrong at (y, x) = (1, 1): wavefront 5; its consequences appear in context.3 at
    # wavefront 6 and in later stages. A stage-by-stage comparison would blame context.3.
    got["gather.3"][4, 1, 1] += 1
    got["context.3"][0, 1, 2] += 7
    got["context.3"][2, 3, 7] += 7
    got["y_hat"][1, 2, 3] += 1
    got["synthesis.2"][0, 0, 0] += 1
    d = diagnose_trace(golden, got)
    assert d["stage"] == "gather.3" and d["index"] == [4, 1, 1] and d["wavefront"] == 5
    assert d["expected"] == golden["gather.3"][4, 1, 1] and d["got"] == d["expected"] + 1
    assert d["text"].startswith("gather.3 differs at channel 4, position (1, 1): expected")
    assert d["diverging_stages"][:2] == ["context.3", "gather.3"]
    # Within a wavefront: stage order first, then increasing y, then the leading index.
    got["mixture.means"][2, 1, 0, 5] += 1        # wavefront 5, y = 0
    got["mixture.means"][0, 3, 1, 1] += 1        # wavefront 5, y = 1
    got["gather.0"][3, 1, 1] += 1                # wavefront 5, earlier stage than gather.3
    got["gather.0"][1, 0, 5] += 1                # wavefront 5, y = 0 -> first
    d = diagnose_trace(golden, got)
    assert d["stage"] == "gather.0" and d["index"] == [1, 0, 5]
    # Stages before the latent come first; a missing stage is skipped and listed.
    got["hyper_synthesis.1"][2, 1, 0] -= 3
    del got["z_hat"]
    d = diagnose_trace(golden, got)
    assert d["stage"] == "hyper_synthesis.1" and d["index"] == [2, 1, 0] and d["wavefront"] is None
    assert "z_hat" in d["missing_stages"]
    # A shape mismatch is a divergence without an element.
    got = {k: v.copy() for k, v in golden.items()}
    got["window.lo"] = got["window.lo"][:, :2]
    d = diagnose_trace(golden, got)
    assert d["stage"] == "window.lo" and d["index"] is None and "shape" in d["text"]
    assert diagnose_trace(golden, {k: v.copy() for k, v in golden.items()}) is None


def test_diagnosis_from_hashes_only():
    golden = _fake_stages()
    hashes = {n: {"shape": list(a.shape), "sha256": stage_hash(a)} for n, a in golden.items()}
    got = {k: v.copy() for k, v in golden.items()}
    assert diagnose_hashes(hashes, got) is None
    got["synthesis.4"][0, 1, 1] += 1
    got["image"][0, 0, 0] += 1
    d = diagnose_hashes(hashes, got)
    assert d["method"] == "hashes" and d["stage"] == "synthesis.4" and d["diverging_stages"] == ["synthesis.4", "image"]


def test_schema_matches_the_tool():
    schema = json.loads((SPEC_DIR / "manifest.schema.json").read_text())
    assert schema["properties"]["stage_order"]["const"] == STAGE_ORDER
    vec = schema["$defs"]["vector"]["properties"]
    assert set(vec["expected_error"]["enum"]) == set(ALL_ERRORS)
    assert vec["stages"]["propertyNames"]["enum"] == STAGE_ORDER
    text = (SPEC_DIR / "11-conformance.md").read_text()
    assert "## 11.5 Conformance vectors and the check procedure" in text


def test_check_cli_usage_errors(tmp_path, capsys):
    assert cli.main(["check", str(tmp_path / "none")]) == 2
    assert "cannot read manifest" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text("{}")
    assert cli.main(["check", str(tmp_path)]) == 2
    assert "invalid manifest" in capsys.readouterr().err
    assert cli.main(["check", str(tmp_path), "--decoder", "x", "--outputs", str(tmp_path)]) == 2
    capsys.readouterr()


# --- a generated vector set (torch: the golden decoder) ---------------------------------------------

def _generate(out: Path, **kw):
    from refcodec.make_vectors import generate

    return generate(out, [EXAMPLE_MODEL], quick=True, log=lambda m: None, **kw)


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("vectors")
    _generate(out)
    return out


@pytest.fixture
def child_env(monkeypatch):
    """Decoder commands are child processes: let them import refdec and refcodec from here."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Evidence folders go to the current folder by default: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


def _check(capsys, *argv):
    rc = cli.main(["check", *map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _report(path):
    doc = json.loads(Path(path).read_text())
    return doc, {r["id"]: r for r in doc["results"]}


def _junit(path):
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    return suite, cases


def test_manifest_and_readme(vectors):
    m = load_manifest(vectors)
    ids = [v["id"] for v in m.vectors]
    assert ids[:3] == QUICK_VALID and len(ids) == 9
    kinds = {v["id"]: v["kind"] for v in m.vectors}
    assert sum(k == "invalid" for k in kinds.values()) == 6
    for v in m.vectors:
        assert (vectors / v["bitstream"]["file"]).is_file() and (vectors / v["model"]["file"]).is_file()
        if v["kind"] == "valid":
            assert set(v["stages"]) == set(STAGE_ORDER)
            img = read_png(vectors / v["golden"]["file"])
            assert sample_hash(img) == v["golden"]["samples_sha256"]
            assert v["stages"]["image"]["sha256"] == stage_hash(img)
        else:
            assert v["expected_error"] in ALL_ERRORS
    esc = next(v for v in m.vectors if v["id"] == "escape-33x65")
    wanted = {"escape-y-above", "escape-y-below", "escape-z-above", "escape-z-below", "escape-prefix-14"}
    assert wanted <= set(esc["features"])
    # Every clause a vector names exists in spec/.
    from test_spec_refs import spec_clauses

    clauses = spec_clauses()
    named = {c for v in m.vectors for c in v["clauses"] + v["look_at"]}
    assert named <= set(clauses), named - set(clauses)
    readme = (vectors / "README.md").read_text()
    for v in m.vectors:
        line = [ln for ln in readme.splitlines() if ln.startswith(f"| `{v['id']}` |")]
        assert len(line) == 1 and v["purpose"] in line[0] and ", ".join(v["look_at"]) in line[0]
    try:
        import jsonschema
    except ImportError:
        return
    schema = json.loads((SPEC_DIR / "manifest.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(m.data)


def test_manifest_validation_finds_problems(vectors):
    data = json.loads((vectors / "manifest.json").read_text())
    assert validate_manifest(data) == []
    bad = json.loads(json.dumps(data))
    bad["manifest_version"] = 2
    bad["vectors"][1]["id"] = bad["vectors"][0]["id"]
    bad["vectors"][2]["expected_error"] = "BadMagic"
    bad["vectors"][3]["expected_error"] = "NoSuchError"
    bad["vectors"][4]["bitstream"]["file"] = "../outside.rdc"
    del bad["vectors"][0]["stages"]["gather.3"]
    bad["vectors"][5]["subsets"].append("undeclared")
    problems = "\n".join(validate_manifest(bad))
    for text in ("manifest_version", "duplicate id", "a valid vector has no expected_error", "NoSuchError",
                 "../outside.rdc", "gather.3", "undeclared"):
        assert text in problems, text


def test_refdec_passes_all(vectors, tmp_path, capsys):
    rc, out, _ = _check(capsys, vectors, "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml", "-j", "2")
    assert rc == 0, out
    assert re.search(r"^summary: 9 vectors in [0-9.]+ s: all pass$", out, re.M), out
    assert "  valid:   3 of 3 decoded bit-exact" in out and "  invalid: 6 of 6 rejected as required" in out
    doc, res = _report(tmp_path / "r.json")
    assert doc["format"] == "refdec-check-report" and doc["mode"] == "refdec" and doc["jobs"] >= 1
    s = doc["summary"]
    assert (s["pass"], s["fail"], s["error"], s["timeout"], s["total"]) == (9, 0, 0, 0, 9)
    assert (s["decoded"], s["rejected"], s["class_expected"], s["all_pass"]) == (3, 6, 6, True)
    assert res["err-bad-magic"]["reported_error"] == "BadMagic"
    suite, cases = _junit(tmp_path / "r.xml")
    assert suite.get("tests") == "9" and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert len(cases) == 9 and not any(list(c) for c in cases)


def test_refdec_must_report_the_expected_class(vectors, tmp_path, capsys):
    copy = tmp_path / "v"
    shutil.copytree(vectors, copy)
    data = json.loads((copy / "manifest.json").read_text())
    for v in data["vectors"]:
        if v["id"] == "err-bad-magic":
            v["expected_error"] = "UnsupportedVersion"
    (copy / "manifest.json").write_text(json.dumps(data))
    rc, out, _ = _check(capsys, copy, "--subset", "invalid")
    assert rc == 1
    assert "FAIL    err-bad-magic" in out and "rejected with BadMagic, expected UnsupportedVersion" in out


def test_vector_files_must_match_their_hashes(vectors, tmp_path, capsys):
    copy = tmp_path / "v"
    shutil.copytree(vectors, copy)
    stream = copy / "streams" / "odd-65x33.rdc"
    data = bytearray(stream.read_bytes())
    data[40] ^= 1
    stream.write_bytes(bytes(data))
    rc, _, err = _check(capsys, copy)
    assert rc == 2 and "odd-65x33" in err and "sha256" in err
    with pytest.raises(ManifestError):
        load_manifest(copy).select(["no-such-subset"])


@pytest.mark.slow
@pytest.mark.torch
def test_torch_decoder_passes_all(vectors, tmp_path, capsys, child_env):
    rc, out, _ = _check(capsys, vectors, "--decoder", TORCH_DECODER, "-j", "2", "--json", tmp_path / "r.json",
                        "--junit", tmp_path / "r.xml", "--trace-dir", tmp_path / "traces")
    assert rc == 0, out
    doc, res = _report(tmp_path / "r.json")
    assert doc["mode"] == "decoder" and doc["summary"]["pass"] == 9
    for vid in QUICK_VALID:
        assert "samples and trace match" in res[vid]["message"]
        assert len(list((tmp_path / "traces" / vid).glob("*.npy"))) == len(STAGE_ORDER)
    for vid, r in res.items():
        if r["kind"] == "invalid":
            assert r["exit_code"] == 2 and r["reported_error"] == r["expected_error"]
    suite, cases = _junit(tmp_path / "r.xml")
    assert suite.get("tests") == "9" and suite.get("failures") == "0" and len(cases) == 9


@pytest.mark.torch
def test_wrong_decoder_is_diagnosed_at_the_perturbed_layer(vectors, tmp_path, capsys, child_env):
    """One LSB wrong in gather.3 (output channel 5, every position): the range decoder loses sync,
    the decoder fails, and its partial trace still points at gather.3, wavefront 0."""
    rc, out, _ = _check(capsys, vectors, "--decoder", TORCH_DECODER + " --perturb gather.3:5", "--subset",
                        "size-1x1", "--json", tmp_path / "r.json")
    assert rc == 1
    _, res = _report(tmp_path / "r.json")
    r = res["size-1x1"]
    assert r["state"] in ("fail", "error")
    d = r["diagnosis"]
    assert d["stage"] == "gather.3" and d["index"][0] == 5 and d["wavefront"] == 0 and d["method"] == "elements"
    assert d["got"] == d["expected"] + 1
    assert "first diverging stage: gather.3 differs at channel 5, position (" in out


@pytest.mark.torch
def test_wrong_synthesis_layer_fails_with_sample_statistics(vectors, tmp_path, capsys, child_env):
    """One LSB wrong in synthesis.3: the stream decodes, the samples differ, and the diagnosis
    names synthesis.3; the output is raw planar (clause 11.4) this time. synthesis.3 has
    depth-to-space (clause 4.6): its output channel 5 is channel 1, offset (0, 1), of the stage."""
    rc, out, _ = _check(capsys, vectors, "--decoder", TORCH_DECODER + " --perturb synthesis.3:5", "--subset",
                        "odd-65x33", "--out-format", "rgb", "--json", tmp_path / "rep" / "r.json",
                        "--junit", tmp_path / "rep" / "r.xml")
    assert rc == 1
    _, res = _report(tmp_path / "rep" / "r.json")
    r = res["odd-65x33"]
    assert r["state"] == "fail" and r["command"][-1] == "synthesis.3:5" and r["command"][4].endswith(".rgb")
    assert r["look_at"][0] == "7.12"                  # the diverging stage's clause first
    d = r["diagnosis"]
    assert d["stage"] == "synthesis.3" and d["index"][0] == 1 and d["index"][1] % 2 == 0 and d["index"][2] % 2 == 1
    s = r["samples"]
    assert not s["equal"] and 0 < s["differing_samples"] < s["total_samples"] and 0 < s["psnr_db"] < 100
    evidence = Path(r["evidence"])
    assert evidence.parent.parent == tmp_path / "rep" and evidence.parent.name.startswith("refdec-check-")
    assert Path(r["diff_image"]) == evidence / "diff.png" and Path(r["diff_image"]).is_file()
    assert (evidence / "output.rgb").is_file() and Path(r["output"]) == evidence / "output.rgb"
    assert "samples differ" in r["message"]
    suite, cases = _junit(tmp_path / "rep" / "r.xml")
    assert suite.get("tests") == "1" and suite.get("failures") == "1"
    assert cases[0].find("failure").get("type") == "fail"
    assert "synthesis.3 differs" in out


def _refdec_outputs(vectors, folder, ids, raw=()):
    from refdec.decoder import decode
    from refdec.model_file import ModelStore

    folder.mkdir(parents=True, exist_ok=True)
    store = ModelStore([vectors / "models"])
    out = {}
    for vid in ids:
        dec = decode((vectors / "streams" / f"{vid}.rdc").read_bytes(), store, trace=True)
        if vid in raw:
            (folder / f"{vid}.rgb").write_bytes(dec.image.tobytes())
        else:
            (folder / f"{vid}.png").write_bytes(png_bytes(dec.image))
        out[vid] = dec
    return out


def test_outputs_with_a_tampered_png(vectors, tmp_path, capsys):
    outs = tmp_path / "outs"
    decoded = _refdec_outputs(vectors, outs, QUICK_VALID, raw=("escape-33x65",))
    img = decoded["odd-65x33"].image.copy()
    img[2, 5, 7] ^= 1          # blue plane
    img[1, 30, 60] = 255 - img[1, 30, 60]
    img[1, 31, 0] = 255 - img[1, 31, 0]
    (outs / "odd-65x33.png").write_bytes(png_bytes(img))
    rc, out, _ = _check(capsys, vectors, "--outputs", outs, "--json", tmp_path / "rep" / "r.json",
                        "--junit", tmp_path / "rep" / "r.xml")
    assert rc == 1
    doc, res = _report(tmp_path / "rep" / "r.json")
    s = doc["summary"]
    assert (s["pass"], s["fail"], s["error"], s["timeout"], s["total"], s["decoded"]) == (8, 1, 0, 0, 9, 2)
    s = res["odd-65x33"]["samples"]
    exp = decoded["odd-65x33"].image
    assert s["differing_samples"] == 3 and s["total_samples"] == 3 * 33 * 65
    assert s["share"] == pytest.approx(3 / (3 * 33 * 65))
    assert s["max_abs_diff"] == max(1, abs(255 - 2 * int(exp[1, 30, 60])), abs(255 - 2 * int(exp[1, 31, 0])))
    assert s["first"] == {"channel": 1, "row": 30, "column": 60, "expected": int(exp[1, 30, 60]),
                          "got": 255 - int(exp[1, 30, 60])}
    diff = read_png(res["odd-65x33"]["diff_image"])
    assert diff.shape == (3, 33, 65)
    red = (diff[0] >= 128) & (diff[1] == 0)
    assert red[5, 7] and red[30, 60] and red[31, 0] and red.sum() == 3
    assert "1 pass" not in out and "FAIL    odd-65x33" in out and "first at channel 1, row 30, column 60" in out
    for vid, r in res.items():   # no output for an invalid stream: pass
        if r["kind"] == "invalid":
            assert r["state"] == "pass"
    suite, cases = _junit(tmp_path / "rep" / "r.xml")
    assert suite.get("tests") == "9" and suite.get("failures") == "1" and len(cases) == 9
    assert [c.get("name") for c in cases if c.find("failure") is not None] == ["odd-65x33"]


def test_outputs_with_a_wrong_trace_element(vectors, tmp_path, capsys):
    from refdec.conformance.traces import write_trace

    outs = tmp_path / "outs"
    decoded = _refdec_outputs(vectors, outs, ["escape-33x65"])
    stages = dict(decoded["escape-33x65"].stages)
    stages["gather.3"] = stages["gather.3"].copy()
    stages["gather.3"][7, 2, 1] += 1
    del stages["synthesis.5"]                                   # a trace may lack stages
    write_trace(stages, tmp_path / "traces" / "escape-33x65")
    (tmp_path / "traces" / "escape-33x65" / "synthesis.6.npy").write_bytes(b"not npy")   # unreadable: a problem
    rc, out, _ = _check(capsys, vectors, "--outputs", outs, "--trace-dir", tmp_path / "traces", "--subset",
                        "escape-33x65", "--json", tmp_path / "r.json")
    assert rc == 1
    _, res = _report(tmp_path / "r.json")
    r = res["escape-33x65"]
    assert r["state"] == "fail" and r["samples"]["equal"] is True
    d = r["diagnosis"]
    assert d["stage"] == "gather.3" and d["index"] == [7, 2, 1] and d["wavefront"] == 1 + 4 * 2
    assert "synthesis.5" in d["missing_stages"] and d["diverging_stages"] == ["gather.3", "synthesis.6"]
    assert "gather.3 differs at channel 7, position (2, 1)" in out


def test_an_output_for_an_invalid_stream_fails(vectors, tmp_path, capsys):
    outs = tmp_path / "outs"
    outs.mkdir()
    (outs / "err-bad-magic.png").write_bytes(png_bytes(np.zeros((3, 1, 1), np.uint8)))
    rc, out, _ = _check(capsys, vectors, "--outputs", outs, "--subset", "invalid")
    assert rc == 1 and "FAIL    err-bad-magic" in out and "invalid: 5 of 6 rejected as required" in out


def test_timeout(vectors, tmp_path, capsys):
    sleeper = f"{PY} -c 'import time; time.sleep(60)' {{in}} {{out}}"
    rc, out, _ = _check(capsys, vectors, "--decoder", sleeper, "--timeout", "0.5", "--subset", "size-1x1",
                        "--subset", "err-bad-magic", "-j", "2", "--junit", tmp_path / "r.xml", "--json",
                        tmp_path / "r.json")
    assert rc == 1
    _, res = _report(tmp_path / "r.json")
    assert {r["state"] for r in res.values()} == {"timeout"} and len(res) == 2
    assert all(r["seconds"] < 30 for r in res.values())
    suite, cases = _junit(tmp_path / "r.xml")
    assert suite.get("tests") == "2" and suite.get("errors") == "2" and suite.get("failures") == "0"
    assert all(c.find("error") is not None and c.find("error").get("type") == "timeout" for c in cases)


def test_decoder_that_writes_nothing(vectors, tmp_path, capsys):
    quiet = f"{PY} -c 'import sys' {{in}} {{out}}"
    rc, out, _ = _check(capsys, vectors, "--decoder", quiet, "--subset", "size-1x1", "--subset", "err-bad-magic",
                        "--json", tmp_path / "r.json")
    assert rc == 1
    _, res = _report(tmp_path / "r.json")
    assert res["size-1x1"]["state"] == "error" and "wrote no output" in res["size-1x1"]["message"]
    assert res["err-bad-magic"]["state"] == "fail" and "accepted an invalid stream" in res["err-bad-magic"]["message"]
    # Rejecting an invalid stream (non-zero exit, no output) passes, for any decoder.
    reject = f"{PY} -c 'import sys; sys.exit(3)' {{in}} {{out}}"
    rc, out, _ = _check(capsys, vectors, "--decoder", reject, "--subset", "invalid")
    assert rc == 0 and "invalid: 6 of 6 rejected as required; error class: 0 as expected, 0 another, 6 none named" in out
    # ... but with --strict-errors a rejection must name the expected class.
    rc, out, _ = _check(capsys, vectors, "--decoder", reject, "--subset", "invalid", "--strict-errors")
    assert rc == 1 and "invalid: 0 of 6 rejected as required" in out
    rc, out, _ = _check(capsys, vectors, "--decoder", reject, "--subset", "size-1x1")
    assert rc == 1 and "decoder exited with status 3" in out


def test_generation_is_reproducible(vectors, tmp_path):
    again = tmp_path / "again"
    _generate(again)

    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b = files(vectors), files(again)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []


def regenerate_and_compare(committed: Path, tmp: Path, count: int = 3) -> list[str]:
    """Regenerate a few vectors of a vector set with the options its manifest records and compare
    their manifest entries and files byte for byte; returns the ids checked."""
    from refcodec.make_vectors import generate

    m = load_manifest(committed)
    opts = m.data["generator"]["options"]
    valid = [v["id"] for v in m.vectors if v["kind"] == "valid"]
    invalid = [v["id"] for v in m.vectors if v["kind"] == "invalid"]
    chosen = sorted(set(valid[:1] + valid[-1:] + invalid[-1:]))[:count]
    models = [committed / "models" / name for name in opts["models"]]
    data = generate(tmp, models, quick=opts["quick"], only=chosen, log=lambda msg: None)
    by_id = {v["id"]: v for v in m.vectors}
    assert sorted(v["id"] for v in data["vectors"]) == chosen
    for v in data["vectors"]:
        assert v == by_id[v["id"]], v["id"]
        refs = [v["bitstream"], v["model"]] + ([v["golden"]] if v["kind"] == "valid" else [])
        for ref in refs:
            assert (tmp / ref["file"]).read_bytes() == (committed / ref["file"]).read_bytes(), ref["file"]
    return chosen


def test_regenerating_a_few_vectors_gives_the_same_bytes(vectors, tmp_path):
    assert len(regenerate_and_compare(vectors, tmp_path)) == 3
