"""The mutation harness (tools/mutate.py): its mutants, and a small seeded run against the quick
subset of the committed vectors."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from conftest import ROOT, TOOLS_DIR

sys.path.insert(0, str(TOOLS_DIR))
import mutate  # noqa: E402

VECTORS = ROOT / "vectors"


@pytest.fixture(scope="module")
def enumerated():
    return mutate.all_mutants(mutate.normative_modules())


def test_mutants_are_deterministic_unique_and_compile(enumerated):
    mutants, missing, _ = enumerated
    again, _, _ = mutate.all_mutants(mutate.normative_modules())
    assert [m.key for m in mutants] == [m.key for m in again]
    assert len({m.key for m in mutants}) == len(mutants) > 1000
    for m in mutants[::37]:
        compile(m.source, f"{m.module}.py", "exec")
    kinds = {m.kind for m in mutants}
    assert {"operator", "comparison", "constant", "clip-deleted", "min-max", "arguments", "delete-raise",
            "hand"} <= kinds


def test_every_hand_fault_applies_to_this_tree(enumerated):
    """A hand-written fault whose text is gone (the module was rewritten) must be rewritten too."""
    _, missing, _ = enumerated
    assert missing == []
    assert len(mutate.HAND_FAULTS) >= 60


def test_informative_code_is_not_mutated(enumerated):
    mutants, _, sources = enumerated
    for name, src in sources.items():
        informative = []
        for node in ast.walk(src.tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and mutate._is_informative(node):
                informative.append((node.lineno, node.end_lineno))
        for m in mutants:
            if m.module == name and not m.hand:
                assert not any(a <= m.line <= b for a, b in informative), m.key
                assert m.line not in src.excluded, m.key


@pytest.mark.parametrize("key", ["arith:hand:round2-ties-away", "arith:hand:round2-ties-down",
                                 "arith:hand:round2-truncates"])
def test_the_rounding_faults_change_round2(enumerated, key):
    """A hand fault that computes the original function is an equivalent mutant by mistake (the
    first version of ties-away was): each rounding fault must differ from Round2 exactly at the
    inputs its description names, and agree elsewhere."""
    import numpy as np

    from refdec import arith

    mutant = next(m for m in enumerated[0] if m.key == key)
    namespace = {"__name__": "refdec.arith", "__package__": "refdec"}
    exec(compile(mutant.source, "arith.py", "exec"), namespace)
    x = np.arange(-5000, 5001, dtype=np.int64)
    for n in (1, 3, 10):
        differ = namespace["round2"](x, n) != arith.round2(x, n)
        tie = (x % (1 << n)) == (1 << (n - 1))
        if key.endswith("ties-away"):
            assert np.array_equal(differ, tie & (x < 0)), n
        elif key.endswith("ties-down"):
            assert np.array_equal(differ, tie), n
        else:
            assert differ.any() and not differ[x >= 0].any(), n


def test_a_mutant_is_a_one_node_change():
    src = mutate._Source("arith", ROOT / "refdec" / "arith.py")
    mutants = mutate.ast_mutants(src)
    swap = next(m for m in mutants if m.function == "floor_div" and m.kind == "operator")
    assert swap.original == "a // b" and swap.replacement == "a * b"
    assert swap.source.count("\n") == src.text.count("\n")  # line numbers kept
    diff = [(a, b) for a, b in zip(src.text.splitlines(), swap.source.splitlines()) if a != b]
    assert diff == [("    return a // b", "    return (a * b)")]


def test_equivalence_arguments_by_key_and_pattern(tmp_path):
    path = tmp_path / "equivalent.json"
    path.write_text(json.dumps({"_comment": "x", "a:f:constant:1->2#1": "exact", "a:f:*": "pattern", "b:*": "other"}))
    got = mutate.load_arguments(path, ["a:f:constant:1->2#1", "a:f:operator:x#1", "c:g:x#1"])
    assert got == {"a:f:constant:1->2#1": "exact", "a:f:operator:x#1": "pattern"}


@pytest.mark.slow
@pytest.mark.skipif(not (VECTORS / "manifest.json").is_file(), reason="vectors/ is not committed")
def test_a_seeded_sample_against_the_quick_subset(tmp_path):
    """A seeded sample of mutants and four hand-written faults, each decoded by refdec in a
    subprocess against the quick subset: faults that every vector sees are killed, and the report
    accounts for every mutant."""
    hand = ["arith:hand:round2-ties-down", "symbols:hand:escape-side-swapped", "bitstream:hand:header-little-endian",
            "range_decoder:hand:range-init-little-endian"]
    out = tmp_path / "run.json"
    cmd = [sys.executable, str(TOOLS_DIR / "mutate.py"), str(VECTORS), "--subset", "quick", "--only", *hand,
           "--no-write", "--json", str(out), "--cache", str(tmp_path / "cache"), "-j", "2", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=ROOT)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert {k: v["status"] for k, v in doc["outcomes"].items()} == {k: "killed" for k in hand}
    sample = [sys.executable, str(TOOLS_DIR / "mutate.py"), str(VECTORS), "--subset", "quick", "--sample", "12",
              "--seed", "7", "--no-write", "--json", str(out), "--cache", str(tmp_path / "cache"), "-j", "2", "-q"]
    proc = subprocess.run(sample, capture_output=True, text=True, timeout=1500, cwd=ROOT)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    total = doc["summary"]["total"]
    assert total["killed"] + total["equivalent"] + total["untestable"] + total["open"] == len(doc["outcomes"]) == 12
    assert all(v["status"] != "killed" or v["vector"] for v in doc["outcomes"].values())


def test_rescore_applies_new_arguments_without_running(tmp_path):
    """--rescore reports an earlier run again: a survivor given an argument becomes equivalent, a
    kill stays a kill with its vector, and the date and commit stay those of the run."""
    keys = ["arith:hand:round2-ties-down", "architecture:hand:padded-size-ceil-16"]
    outcomes = {keys[0]: {"status": "killed", "vector": "v1", "why": "samples differ", "ran": 1, "quick": True,
                          "seconds": 1.0, "line": 1},
                keys[1]: {"status": "open", "vector": "", "why": "", "ran": 5, "quick": False, "seconds": 9.0,
                          "line": 1}}
    summary = {"path": "literal", "stages_compared": True, "seed": 3, "sample": None, "vectors": 5,
               "vectors_manifest_sha256": "ab", "seconds": 10.0, "vectors_not_run_on_literal_path": [],
               "subsets": None, "selection": None, "commit": "0123456", "date": "2026-01-02"}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"summary": summary, "outcomes": outcomes}))
    arguments = tmp_path / "equivalent.json"
    arguments.write_text(json.dumps({keys[1]: "Hy and Wy are never read."}))
    again = tmp_path / "again.json"
    proc = subprocess.run([sys.executable, str(TOOLS_DIR / "mutate.py"), "--rescore", str(earlier), "--equivalent",
                           str(arguments), "--json", str(again), "--no-write", "-q"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(again.read_text())
    assert {k: v["status"] for k, v in doc["outcomes"].items()} == {keys[0]: "killed", keys[1]: "equivalent"}
    assert doc["outcomes"][keys[0]]["vector"] == "v1"
    assert (doc["summary"]["date"], doc["summary"]["commit"]) == ("2026-01-02", "0123456")
    assert doc["summary"]["total"] == {"killed": 1, "equivalent": 1, "untestable": 0, "open": 0, "score": 100.0}
    # An argument that begins "Untestable:" is no equivalence: listed apart, and it counts against the score.
    arguments.write_text(json.dumps({keys[1]: mutate.UNTESTABLE + " a 1 GiB model file."}))
    proc = subprocess.run([sys.executable, str(TOOLS_DIR / "mutate.py"), "--rescore", str(earlier), "--equivalent",
                           str(arguments), "--json", str(again), "--no-write", "-q"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(again.read_text())
    assert doc["outcomes"][keys[1]]["status"] == "untestable"
    assert doc["summary"]["total"] == {"killed": 1, "equivalent": 0, "untestable": 1, "open": 0, "score": 50.0}
    # The folder a run writes holds the same document: its outcomes.json is the input of --rescore.
    out = tmp_path / "out"
    for rescored, folder in ((earlier, out), (out / "outcomes.json", tmp_path / "again")):
        proc = subprocess.run([sys.executable, str(TOOLS_DIR / "mutate.py"), "--rescore", str(rescored),
                               "--equivalent", str(arguments), "-q", "--out", str(folder)],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
    again_doc = json.loads((tmp_path / "again" / "outcomes.json").read_text())
    assert again_doc["outcomes"] == doc["outcomes"] and again_doc["summary"]["total"] == doc["summary"]["total"]


def test_resume_keeps_only_the_kills_that_still_hold(enumerated):
    """--resume keeps a kill only when the mutated module and the killing vector are unchanged
    since the earlier run's commit; every other mutant (open, or killed by a changed vector or in
    a changed module, or a kill by a timeout) is run again."""
    mutants, _, _ = enumerated
    by_module = {}
    for m in mutants:
        by_module.setdefault(m.module, []).append(m)
    a, b, c, e = by_module["arith"][:4]
    d = by_module["entropy"][0]
    manifest = json.loads((VECTORS / "manifest.json").read_text())
    vectors = manifest["vectors"]
    first, second = vectors[0]["id"], vectors[1]["id"]
    then = json.loads(json.dumps(manifest))
    then["vectors"][1]["golden"]["sha256"] = "0" * 64  # the second vector changed since
    entropy_then = (ROOT / "refdec" / "entropy.py").read_bytes() + b"# an edit since\n"

    def show(commit, path):
        assert commit == "abc1234"
        if path == "vectors/manifest.json":
            return json.dumps(then).encode()
        return entropy_then if path == "refdec/entropy.py" else (ROOT / path).read_bytes()

    summary = {"sample": None, "subsets": None, "selection": None, "path": "literal", "stages_compared": True,
               "commit": "abc1234", "vectors_manifest_sha256": mutate.vector_set_digest(then), "seconds": 10.0}
    outcomes = {a.key: {"status": "killed", "vector": first, "why": "x", "ran": 1, "quick": True, "seconds": 1},
                b.key: {"status": "killed", "vector": second, "why": "x", "ran": 2, "quick": False, "seconds": 1},
                c.key: {"status": "open", "vector": "", "why": "", "ran": 9, "quick": False, "seconds": 1},
                d.key: {"status": "killed", "vector": first, "why": "x", "ran": 1, "quick": True, "seconds": 1},
                e.key: {"status": "killed", "vector": first, "why": "timeout", "ran": 1, "quick": True, "seconds": 1}}
    doc = {"summary": summary, "outcomes": outcomes}
    kept, meta = mutate.resumable_kills(doc, [a, b, c, d, e], vectors, True, True, lambda msg: None, show=show)
    assert set(kept) == {a.key} and kept[a.key].vector == first
    assert meta["kills_kept"] == 1 and meta["commit"] == "abc1234"
    # A survivor argued equivalent since is kept (more vectors could only kill it); unargued, it runs.
    kept, meta = mutate.resumable_kills(doc, [a, c, d], vectors, True, True, lambda msg: None, show=show,
                                        argued={c.key})
    assert set(kept) == {a.key, c.key} and kept[c.key].status == "survived" and meta["argued_survivors_kept"] == 1
    with pytest.raises(SystemExit, match="path"):
        mutate.resumable_kills(doc, [a], vectors, False, True, lambda msg: None, show=show)
    with pytest.raises(SystemExit, match="vector set"):
        mutate.resumable_kills({"summary": {**summary, "vectors_manifest_sha256": "f"}, "outcomes": outcomes}, [a],
                               vectors, True, True, lambda msg: None, show=show)
    with pytest.raises(SystemExit, match="not a full run"):
        mutate.resumable_kills({"summary": {**summary, "sample": 300}, "outcomes": outcomes}, [a], vectors, True,
                               True, lambda msg: None, show=show)
