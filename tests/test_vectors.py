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
    # Every rate index of every reference model (those with a rate sweep), Kodak at every rate of
    # the first model, a large image.
    models = {name: m for name, m in manifest.data["models"].items() if m["valid"]}
    swept = {v["model"]["name"] for v in valid if "rates" in v["subsets"]}
    assert len(swept) >= 2 and {"limits-max", "limits-min"} <= set(models)
    for name in swept:
        rates = {v["header"]["rate_index"] for v in valid if v["model"]["name"] == name}
        assert rates == set(range(len(rates))) and len(rates) >= 6, name
    kodak = [v for v in valid if "kodak" in v["subsets"]]
    assert {v["header"]["rate_index"] for v in kodak if "kodim23" in v["id"]} == set(range(6))
    assert any(v["header"]["width"] * v["header"]["height"] >= 1920 * 1080 for v in valid)
    assert any(v["header"]["width"] == 1 and v["header"]["height"] == 1 for v in valid)
    # Per reference model, the accumulator vector reaches the clause 9.5 bound of the worst channel
    # of the first layer of every network (the clamps reached are printed, for the closing note).
    peaks = {v["model"]["name"] for v in valid if "accumulators" in v["subsets"]}
    assert peaks == swept
    for name in peaks:
        layers = manifest.data["statistics"]["models"][name]["layers"]
        for first in ("hyper_synthesis.0", "context.3", "context.5", "context.7"):
            assert layers[first]["accumulator_peak"] == layers[first]["channel_bound"], (name, first)
        print(name, {k: (v["clamp_low_vectors"], v["clamp_low_possible"], v["clamp_high_vectors"],
                         v["clamp_high_possible"]) for k, v in layers.items()})
    size = sum(p.stat().st_size for p in VECTORS.rglob("*") if p.is_file())
    assert size < 25_000_000, f"vectors/ is {size / 1e6:.1f} MB"


def test_both_sides_of_every_limit(manifest):
    """Issue 20: a valid vector at each limit of clauses 5.2, 5.3, 6.2 and 9.4 and an invalid one
    past it, each breaking only that limit (refcodec.make_vectors.SingleFaultCheck)."""
    from refdec.constants import MAX_HEIGHT, MAX_PIXELS, MAX_WIDTH

    vectors = manifest.data["vectors"]
    valid = [v for v in vectors if v["kind"] == "valid"]
    by_id = {v["id"]: v for v in vectors}
    sizes = {(v["header"]["width"], v["header"]["height"]) for v in valid}
    # Clause 5.2: W = 8192, H = 8192, W * H = 2^25 decoded; 8193 and 2^25 + 8 rejected.
    assert any(w == MAX_WIDTH for w, _ in sizes) and any(h == MAX_HEIGHT for _, h in sizes)
    assert any(w * h == MAX_PIXELS for w, h in sizes)
    for vid in ("err-width-8193", "err-height-8193", "err-samples-4226x7940"):
        assert by_id[vid]["expected_error"] == "DimensionsTooLarge", vid
    # Clause 6.2: payload lengths 4 decoded, 3 rejected; rate index R - 1 decoded, R rejected (R = 64).
    assert by_id["limits-min.payloads-4-bytes-1x1"]["bitstream"]["bytes"] == 27 + 4 + 4
    for vid in ("err-z-length-3", "err-y-length-3"):
        assert by_id[vid]["expected_error"] == "PayloadTooShort", vid
    assert by_id["limits-max.rate-63-64x64"]["header"]["rate_index"] == 63
    assert by_id["err-rate-index-64"]["expected_error"] == "RateIndexOutOfRange"
    assert by_id["err-rate-index-64"]["model"]["name"] == "limits-max"
    # Clause 5.3: +-Y_MAX and +-Z_MAX decoded (escape-prefix-14), 16384 and -16384 rejected.
    assert any("escape-prefix-14" in v["features"] for v in valid)
    for vid in ("err-y-latent-16384", "err-z-latent-minus-16384"):
        assert by_id[vid]["expected_error"] == "LatentOutOfRange", vid
    # Clause 9.4: a valid model at the upper and one at the lower limits, and each limit one past.
    for name in ("shape-hyper-channels-2049", "shape-hyper-channels-0", "shape-latent-channels-228",
                 "shape-layer-outputs-too-many", "value-num-rates-0", "value-num-rates-65",
                 "value-inv-gain-shift-negative", "value-inv-gain-shift", "value-synthesis-input-clip-zero",
                 "value-synthesis-input-clip", "value-clip-zero", "value-clip-32768", "value-shift",
                 "value-inv-gain-negative", "value-inv-gain-too-large", "value-z-count-zero",
                 "value-z-count-too-large", "value-z-cdf-total", "value-z-window-low", "value-z-window-high",
                 "value-weight-int16-min", "value-weight-int8-min", "accumulator-synthesis-0"):
        assert f"err-model-{name}" in by_id, name
    assert "limits" in manifest.data["subsets"]
    # Clause 8.3: v = 2^16 exactly is rejected; R = 2^24 exactly at a payload's end reads no further byte.
    assert by_id["err-z-code-value-2-16-at-last-bit"]["expected_error"] == "InvalidRangeState"
    assert "range-2-24-at-end" in by_id["limits-min-z1.renorm-at-end-65x1"]["features"]
    # Clause 9.1: container limits exactly at (valid, or failing only a later rule) and one past.
    for vid in ("valid-zip-variants", "valid-npy-variants", "valid-deflate-empty-blocks", "valid-stored-large-member",
                "valid-header-limits"):
        assert by_id[f"{vid}.rate-01-65x33"]["kind"] == "valid", vid
    for name, error in (("zip-member-2-28-bytes", "ModelShapeError"), ("zip-member-2-28-plus-1-bytes", "ModelFormatError"),
                        ("npy-shape-dimension-2-28", "ModelShapeError"), ("zip-21-bytes", "ModelFormatError"),
                        ("zip-bad-crc-and-shape-error", "ModelFormatError"),
                        ("zip-members-2-29-bytes-together", "ModelShapeError"),
                        ("zip-members-2-29-plus-1-bytes-together", "ModelFormatError"),
                        ("zip-deflate-1-byte-past-bound", "ModelFormatError"),
                        ("zip-local-extra-3-stray-bytes-other-id", "ModelFormatError")):
        assert by_id[f"err-model-{name}"]["expected_error"] == error, name


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
    """Six latent-domain vectors, three of them boundary vectors, regenerate byte for byte from the
    models the manifest records (image-domain streams depend on the float analysis transform; clause
    11.5.1); the invalid ones pass the single-fault check on the way."""
    pytest.importorskip("torch")
    from refcodec.make_vectors import generate

    opts = manifest.data["generator"]["options"]
    vectors = manifest.data["vectors"]
    latent = [v["id"] for v in vectors if v["kind"] == "valid" and not {"images", "kodak", "large"} & set(v["subsets"])]
    invalid = [v["id"] for v in vectors if v["kind"] == "invalid"]
    # ... and boundary vectors: a valid stream of a limit model, invalid ones one past a limit.
    chosen = sorted({latent[0], next(i for i in latent if "accumulator" in i), invalid[-1],
                     "limits-min.payloads-4-bytes-1x1", "err-samples-4226x7940", "err-model-shape-hyper-channels-2049"})
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
