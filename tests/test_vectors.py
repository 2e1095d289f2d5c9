"""The committed conformance vectors (vectors/, spec clause 11.5): they pass refdec and the torch
decoder, they reach every line and branch of refdec's normative modules, and a few of them
regenerate byte for byte from the command their manifest records."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import PIL
import pytest

from conftest import ROOT
from refdec import cli
from refdec.conformance.images import read_png
from refdec.conformance.manifest import load_manifest

VECTORS = ROOT / "vectors"
PY = sys.executable

pytestmark = pytest.mark.skipif(not (VECTORS / "manifest.json").is_file(), reason="vectors/ is not committed")


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(VECTORS)


def test_the_set_is_complete_and_small(manifest):
    vectors = manifest.data["vectors"]
    valid = [v for v in vectors if v["kind"] == "valid"]
    invalid = [v for v in vectors if v["kind"] == "invalid"]
    # Every error class of clause 11.2 has an invalid vector.
    from refdec.errors import ALL_ERRORS
    assert {v["expected_error"] for v in invalid} == set(ALL_ERRORS)
    # Every rate index of every valid model, Kodak at every rate of the first model, a large image.
    models = {name: m for name, m in manifest.data["models"].items() if m["valid"]}
    assert len(models) >= 2
    for name in models:
        rates = {v["header"]["rate_index"] for v in valid if v["model"]["name"] == name}
        assert rates == set(range(len(rates))) and len(rates) >= 6, name
    kodak = [v for v in valid if "kodak" in v["subsets"]]
    assert {v["header"]["rate_index"] for v in kodak if "kodim23" in v["id"]} == set(range(6))
    assert any(v["header"]["width"] * v["header"]["height"] >= 1920 * 1080 for v in valid)
    assert any(v["header"]["width"] == 1 and v["header"]["height"] == 1 for v in valid)
    # Per model, the accumulator vector reaches the clause 9.5 bound of the worst channel of the
    # first layer of every network (the clamps reached are printed, for the closing note).
    for name, st in manifest.data["statistics"]["models"].items():
        layers = st["layers"]
        for first in ("hyper_synthesis.0", "context.3", "context.5", "context.7"):
            assert layers[first]["accumulator_peak"] == layers[first]["channel_bound"], (name, first)
        print(name, {k: (v["clamp_low_vectors"], v["clamp_low_possible"], v["clamp_high_vectors"],
                         v["clamp_high_possible"]) for k, v in layers.items()})
    size = sum(p.stat().st_size for p in VECTORS.rglob("*") if p.is_file())
    assert size < 21 * 2**20, f"vectors/ is {size / 2**20:.1f} MiB"


LITERAL_SAMPLES = 1 << 16  # the vectors the literal path decodes in CI (and the coverage gate's default)


@pytest.mark.slow
def test_literal_path_reproduces_the_small_vectors(manifest):
    """Issue 19: refdec's normative modules alone (decode(..., fast=False)) reproduce every valid
    vector of at most 65536 samples, sample for sample and stage for stage."""
    from refdec.conformance.hashes import sample_hash, stage_hash
    from refdec.decoder import decode
    from refdec.model_file import ModelStore

    store = ModelStore([manifest.models_dir])
    small = [v for v in manifest.data["vectors"]
             if v["kind"] == "valid" and v["golden"]["width"] * v["golden"]["height"] <= LITERAL_SAMPLES]
    assert len(small) >= 40
    for v in small:
        decoded = decode(manifest.file(v["bitstream"]["file"]).read_bytes(), store, fast=False, trace=True)
        assert sample_hash(decoded.image) == v["golden"]["samples_sha256"], v["id"]
        assert {n: stage_hash(a) for n, a in decoded.stages.items()} == {n: s["sha256"] for n, s in v["stages"].items()}, v["id"]


@pytest.mark.slow
def test_refdec_passes_every_vector(tmp_path, capsys):
    rc = cli.main(["check", str(VECTORS), "-j", "2", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary["pass"] == len(load_manifest(VECTORS).data["vectors"])


@pytest.mark.slow
@pytest.mark.torch
def test_torch_decoder_passes_every_vector(tmp_path):
    """The README's command for a third-party decoder, with the torch decoder of refcodec."""
    pytest.importorskip("torch")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               OMP_NUM_THREADS="1")
    decoder = f"{PY} -m refcodec.decode_cli {{in}} {{out}}"
    proc = subprocess.run([PY, "-m", "refdec", "check", str(VECTORS), "--decoder", decoder, "-j", "2",
                           "--json", str(tmp_path / "r.json"), "-q"], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["summary"]["pass"] == len(doc["results"]) > 100


@pytest.mark.slow
def test_coverage_gate(tmp_path):
    """Clause 11.5.6: the vectors execute every line and branch of the normative modules (on the literal
    path: the vectors of at most LITERAL_SAMPLES samples; the larger ones on the fast path)."""
    out = tmp_path / "coverage.json"
    proc = subprocess.run([PY, str(ROOT / "tools" / "vector_coverage.py"), str(VECTORS), "--json", str(out),
                           "--literal-samples", str(LITERAL_SAMPLES)],
                          capture_output=True, text=True, timeout=1800, cwd=ROOT)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["percent"] == 100.0 and not figures["problems"]
    assert figures["decoded_literal"] >= 190 and figures["decoded_fast"] <= 20
    # The valid vectors alone miss only the error paths (reported; the invalid vectors reach them).
    print(f"valid vectors alone: {figures['valid_only_percent']:.2f}%")
    assert figures["valid_only_percent"] > 80.0


@pytest.mark.slow
def test_committed_vectors_regenerate(manifest, tmp_path):
    """Three latent-domain vectors regenerate byte for byte from the models the manifest records
    (image-domain streams depend on the float analysis transform; clause 11.5.1)."""
    pytest.importorskip("torch")
    from refcodec.make_vectors import generate

    opts = manifest.data["generator"]["options"]
    vectors = manifest.data["vectors"]
    latent = [v["id"] for v in vectors if v["kind"] == "valid" and not {"images", "kodak", "large"} & set(v["subsets"])]
    invalid = [v["id"] for v in vectors if v["kind"] == "invalid"]
    chosen = sorted({latent[0], next(i for i in latent if "accumulator" in i), invalid[-1]})
    models = [VECTORS / "models" / name for name in opts["models"]]
    data = generate(tmp_path, models, quick=opts["quick"], only=chosen, log=lambda msg: None)
    by_id = {v["id"]: v for v in vectors}
    assert sorted(v["id"] for v in data["vectors"]) == chosen
    # PNG bytes depend on the zlib inside Pillow; the samples (samples_sha256) never do.
    same_pillow = manifest.data["generator"].get("pillow") == PIL.__version__
    for v in data["vectors"]:
        want = by_id[v["id"]]
        if not same_pillow and v["kind"] == "valid":
            v, want = dict(v, golden=dict(v["golden"], sha256=None)), dict(want, golden=dict(want["golden"], sha256=None))
        assert v == want, v["id"]
        refs = [v["bitstream"], v["model"]] + ([v["golden"]] if v["kind"] == "valid" and same_pillow else [])
        for ref in refs:
            assert (tmp_path / ref["file"]).read_bytes() == (VECTORS / ref["file"]).read_bytes(), ref["file"]
        if v["kind"] == "valid":
            assert np.array_equal(read_png(tmp_path / v["golden"]["file"]), read_png(VECTORS / v["golden"]["file"]))
