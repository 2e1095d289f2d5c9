"""Informative generator refdec.generators.invalid_models: one invalid model file per check of clause 9
(refdec/model_file.py), each rejected with its error class; deterministic; and together with the
tiny base model they reach every line and branch of refdec/model_file.py that file bytes can reach."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from refdec.errors import ALL_ERRORS, ModelError
from refdec.generators.invalid_models import InvalidModel, invalid_models, tiny_base_model
from refdec.clauses import COVERAGE_EXCLUDE
from refdec.model_file import parse_model

from conftest import REFDEC_DIR, ROOT

MODEL_FILE = REFDEC_DIR / "model_file.py"
CLAUSE = re.compile(r"[0-9]+(?:\.[0-9]+)*")

# What parse_model cannot reach from a model file's bytes but the decoder does reach, excluded
# from this measure by name (each regex must match exactly one line of model_file.py; a matched
# def excludes the whole function). Code marked @informative or "# unreachable:" (refdec.clauses.COVERAGE_EXCLUDE:
# the model store, reading a file from disk) is excluded as in the vector gate.
EXCLUDED = {
    r"^    def latent_channels\(self\)": "Model.latent_channels: accessor, not used by parse_model",
    r"^    def hyper_channels\(self\)": "Model.hyper_channels: accessor, not used by parse_model",
    r"^    def num_rates\(self\)": "Model.num_rates: accessor, not used by parse_model",
}


@pytest.fixture(scope="module")
def base() -> bytes:
    return tiny_base_model()


@pytest.fixture(scope="module")
def models(base) -> list[InvalidModel]:
    return invalid_models(base)


def test_tiny_base_model_is_valid_and_small(base):
    model = parse_model(base, where="tiny base")
    assert (model.latent_channels, model.hyper_channels) == (1, 2)
    assert len(base) < 20_000
    assert tiny_base_model() == base


def test_every_file_is_rejected_with_its_error(models):
    """(a) parse_model raises exactly expected_error, with a one-line message naming the file."""
    problems = []
    for m in models:
        try:
            parse_model(m.data, where=m.name)
        except ModelError as exc:
            message = str(exc)
            if type(exc).__name__ != m.expected_error:
                problems.append(f"{m.name}: expected {m.expected_error}, got {message}")
            if "\n" in message or m.name not in message:
                problems.append(f"{m.name}: message is not one line naming the file: {message!r}")
        else:
            problems.append(f"{m.name}: accepted")
    assert not problems, "\n".join(problems)


def test_generation_is_deterministic(base, models):
    """(b) The same base gives byte-identical files in the same order."""
    again = invalid_models(tiny_base_model())
    assert [m.name for m in again] == [m.name for m in models]
    assert again == models


def test_entries_are_well_formed(models):
    """(c) Unique slugs, known error classes, clause numbers, one-line descriptions, small files."""
    names = [m.name for m in models]
    assert len(names) == len(set(names))
    for m in models:
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", m.name), m.name
        assert m.expected_error in ALL_ERRORS, m.name
        assert CLAUSE.fullmatch(m.clause), m.name
        assert m.description and "\n" not in m.description, m.name
        assert len(m.data) < 64_000, m.name
    assert sum(len(m.data) for m in models) < 2_500_000
    assert {m.expected_error for m in models} == {"ModelFormatError", "ModelShapeError", "ModelValueError",
                                                  "AccumulatorOverflowRisk"}
    assert {m.clause for m in models} >= {"5.1", "5.2", "9.1", "9.2", "9.3", "9.4", "9.5"}


def test_other_bases(small_model_file, small_model_w8_file):
    """The generator derives from any valid model (it checks every entry itself)."""
    for data, _ in (small_model_file, small_model_w8_file):
        derived = invalid_models(data)
        assert len(derived) >= len(invalid_models(tiny_base_model())) - 1  # value-z-cdf-padding needs padding


CHILD = r"""
import json, sys
import coverage
model_file, folder, excluded, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
cov = coverage.Coverage(branch=True, data_file=None, include=[model_file], config_file=False)
for regex in excluded:
    cov.exclude(regex)
cov.start()
import pathlib
import refdec.model_file as mf
from refdec.errors import ModelError
files = sorted(pathlib.Path(folder).iterdir())
mf.parse_model(files[0].read_bytes(), where=files[0].name)  # the valid base
for f in files[1:]:
    try:
        mf.parse_model(f.read_bytes(), where=f.name)
    except ModelError:
        pass
    else:
        raise SystemExit(f"{f.name} accepted")
cov.stop()
cov.json_report(morfs=[model_file], outfile=out)
cov.report(morfs=[model_file], show_missing=True)
"""


def test_coverage_of_model_file(base, models, tmp_path):
    """(d) The base and the invalid files (with the boundary ones) reach every line and branch of
    model_file.py except EXCLUDED (measured in a fresh interpreter, where model_file is imported
    under coverage)."""
    from refdec.generators.invalid_models import boundary_invalid_models

    models = models + boundary_invalid_models(base)
    source = MODEL_FILE.read_text().splitlines()
    for regex in EXCLUDED:
        hits = [line for line in source if re.search(regex, line)]
        assert len(hits) == 1, f"exclusion {regex!r} matches {len(hits)} lines of model_file.py"
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "000-base.npz").write_bytes(base)
    for i, m in enumerate(models, 1):
        (folder / f"{i:03d}-{m.name}.npz").write_bytes(m.data)
    out = tmp_path / "coverage.json"
    patterns = list(EXCLUDED) + list(COVERAGE_EXCLUDE)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(MODEL_FILE), str(folder), json.dumps(patterns),
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(out.read_text())["files"]
    (entry,) = summary.values()
    totals = entry["summary"]
    print(proc.stdout)
    print(f"model_file.py: {totals['covered_lines']}/{totals['num_statements']} lines, "
          f"{totals['covered_branches']}/{totals['num_branches']} branches, "
          f"{totals['excluded_lines']} lines excluded")
    assert not entry["missing_lines"] and not entry["missing_branches"], (
        f"missing lines {entry['missing_lines']}, missing branches {entry['missing_branches']}\n{proc.stdout}")
    assert totals["percent_covered"] == 100.0


def test_valid_variants_sit_on_the_edges_they_name(base):
    """Each valid variant parses to the tiny base model's parameters (valid_variants checks that) and
    sits exactly on the edge its description names, so that a decoder one step too strict fails it."""
    import io
    import struct
    import zipfile

    from refdec.generators.invalid_models import valid_variants
    import zlib

    from refdec.model_file import MAX_HEADER_BYTES, MAX_JSON_DEPTH, max_deflated_size

    variants = {v.name: v for v in valid_variants(base)}
    assert set(variants) == {"valid-zip-variants", "valid-npy-variants", "valid-deflate-empty-blocks",
                             "valid-stored-large-member", "valid-header-limits"}
    for v in variants.values():
        assert v.data != base and parse_model(v.data).model_id != parse_model(base).model_id

    with zipfile.ZipFile(io.BytesIO(variants["valid-zip-variants"].data)) as zf:
        infos = zf.infolist()
        assert {i.flag_bits for i in infos} == {0x0806}
        assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
        assert all(i.comment and i.extra for i in infos)
        assert zf.getinfo("header.npy").file_size % 256 == 0
    data = variants["valid-zip-variants"].data
    local = struct.unpack_from("<IHHHHHIIIHH", data, 0)
    assert local[7:9] == (0xFFFFFFFF, 0xFFFFFFFF)  # sizes in the ZIP64 field, which ends the extra area
    extra = data[30 + local[9]: 30 + local[9] + local[10]]
    assert struct.unpack_from("<HH", extra, len(extra) - 20) == (1, 16)

    with zipfile.ZipFile(io.BytesIO(variants["valid-npy-variants"].data)) as zf:
        z_cdf = zf.read("z_cdf.npy")
        assert struct.unpack_from("<H", z_cdf, 8)[0] == 0xFFFF
        texts = [zf.read(i)[10: 10 + struct.unpack_from("<H", zf.read(i), 8)[0]] for i in zf.infolist()[1:]]
        assert any(b'"' in t for t in texts) and any(t.rstrip().endswith(b")}") for t in texts)

    with zipfile.ZipFile(io.BytesIO(variants["valid-deflate-empty-blocks"].data)) as zf:
        info = zf.getinfo("gather.2.weight.npy")
        assert info.compress_size == max_deflated_size(info.file_size)  # the most clause 9.1.1 allows
        raw = variants["valid-deflate-empty-blocks"].data[info.header_offset + 30 + len(info.filename):]
        assert zlib.decompressobj(-15).decompress(raw[: 1 << 20]) == b""  # 2^20 bytes that inflate to nothing

    with zipfile.ZipFile(io.BytesIO(variants["valid-stored-large-member"].data)) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert zf.getinfo("gather.2.weight.npy").file_size > 1 << 20

    with zipfile.ZipFile(io.BytesIO(variants["valid-header-limits"].data)) as zf:
        assert zf.getinfo("header.npy").file_size == MAX_HEADER_BYTES
    header = parse_model(variants["valid-header-limits"].data).header
    depth, node = 1, header["provenance"]
    while isinstance(node, dict):
        depth, node = depth + 1, node.get("deep", node.get("n"))
    assert depth == MAX_JSON_DEPTH


def test_boundary_models_at_the_container_limits(base):
    """The invalid files that sit on a container limit fail for their one other fault: the member
    of exactly 2^28 bytes, the members of exactly 2^29 together and the dimension of exactly 2^28
    pass clause 9.1 and fail the shapes."""
    import io
    import struct
    import zipfile

    from refdec.generators.invalid_models import boundary_invalid_models
    from refdec.model_file import max_deflated_size

    made = {m.name: m for m in boundary_invalid_models(base)}
    assert made["zip-member-2-28-bytes"].expected_error == "ModelShapeError"
    assert made["npy-shape-dimension-2-28"].expected_error == "ModelShapeError"
    assert made["zip-local-zip64-field-15-bytes"].expected_error == "ModelFormatError"
    assert made["npy-header-key-misspelled"].expected_error == "ModelFormatError"
    assert made["header-unpaired-surrogate-in-key"].expected_error == "ModelFormatError"
    assert len(made["zip-member-2-28-bytes"].data) < 300_000
    # Clause 9.1.1: all members together at exactly 2^29 bytes and one past, from real data.
    for name, total, error in (("zip-members-2-29-bytes-together", 1 << 29, "ModelShapeError"),
                               ("zip-members-2-29-plus-1-bytes-together", (1 << 29) + 1, "ModelFormatError")):
        with zipfile.ZipFile(io.BytesIO(made[name].data)) as zf:
            assert sum(info.file_size for info in zf.infolist()) == total
            assert max(info.file_size for info in zf.infolist()) <= 1 << 28
        assert made[name].expected_error == error and len(made[name].data) < 600_000
    # Clause 9.1.1: one compressed byte past u + floor(u / 2^10) + 1024.
    with zipfile.ZipFile(io.BytesIO(made["zip-deflate-1-byte-past-bound"].data)) as zf:
        assert any(i.compress_size == max_deflated_size(i.file_size) + 1 and i.file_size >= 1 << 9
                   for i in zf.infolist())
    # Clause 9.1.1: 3 bytes after the last extra field, too few for a field header, not the ZIP64 id.
    data = made["zip-local-extra-3-stray-bytes-other-id"].data
    name = b"synthesis.0.bias.npy"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        start = zf.getinfo(name.decode()).header_offset
    sizes, extra_len = struct.unpack_from("<II", data, start + 18), struct.unpack_from("<H", data, start + 28)[0]
    extra = data[start + 30 + len(name): start + 30 + len(name) + extra_len]
    assert sizes == (0xFFFFFFFF, 0xFFFFFFFF) and extra[-3:] == b"\xca\x00\x10" and extra[-3:-1] != b"\x01\x00"
    assert made["zip-local-extra-3-stray-bytes-other-id"].expected_error == "ModelFormatError"
