"""The coverage gate of spec clause 11.5.6: do the conformance vectors exercise all of the spec?

    python tools/vector_coverage.py [VECTORS] [--json FILE] [--fail-under PERCENT] [--literal-samples N]

Decodes every vector of the set with refdec's literal path (`decode(..., fast=False)`: the
normative modules alone, refdec.clauses.NORMATIVE_MODULES) under line and branch coverage of
those modules, and checks every result against the manifest on the way. Vectors larger than
--literal-samples samples (default 65536: the Kodak and large vectors, which take a minute or
more each on the literal path) are decoded by the fast path instead and checked the same way;
they reach no line that the smaller ones do not. Functions marked @informative and lines marked
"# unreachable: ..." are excluded (refdec.clauses.COVERAGE_EXCLUDE); nothing else is.

It prints the coverage of the valid vectors alone, then of all vectors (the error paths are
reached by the invalid ones), with the lines and branches missed, and exits 1 when the figure
for all vectors is below --fail-under (default 100) or when a vector does not decode as its
manifest says.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parents[1]


def _measure(cov: coverage.Coverage, include: list[str]) -> dict:
    """Coverage figures so far: total percent and, per file, the missed lines and branches."""
    cov.stop()
    buffer = io.StringIO()
    percent = cov.report(file=buffer, include=include, show_missing=True, skip_covered=False)
    json_path = Path(cov.config.data_file or ".coverage").with_suffix(".json.tmp")
    cov.json_report(outfile=str(json_path), include=include)
    files = json.loads(json_path.read_text())["files"]
    json_path.unlink()
    cov.start()
    detail = {}
    for name, f in sorted(files.items()):
        detail[Path(name).name] = {
            "percent": round(f["summary"]["percent_covered"], 2),
            "statements": f["summary"]["num_statements"],
            "branches": f["summary"].get("num_branches", 0),
            "missing_lines": f["missing_lines"],
            "missing_branches": f.get("missing_branches", []),
        }
    return {"percent": percent, "files": detail, "table": buffer.getvalue()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/vector_coverage.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("vectors", nargs="?", type=Path, default=ROOT / "vectors")
    ap.add_argument("--json", type=Path, help="write the figures and the misses as JSON")
    ap.add_argument("--fail-under", type=float, default=100.0)
    ap.add_argument("--literal-samples", type=int, default=1 << 16,
                    help="largest vector (width x height) decoded on the literal path; larger ones use the fast path")
    args = ap.parse_args(argv)

    # Coverage starts before refdec is imported, so that module-level lines count too.
    sys.path.insert(0, str(ROOT))
    from refdec import clauses  # noqa: E402 - only constants; imported again under coverage below

    include = [str(ROOT / "refdec" / f"{m}.py") for m in clauses.NORMATIVE_MODULES]
    for name in list(sys.modules):
        if name == "refdec" or name.startswith("refdec."):
            del sys.modules[name]
    cov = coverage.Coverage(branch=True, data_file=None, include=include, config_file=False)
    for pattern in clauses.COVERAGE_EXCLUDE:
        cov.exclude(pattern)
    cov.start()

    from refdec.conformance.hashes import sample_hash  # noqa: E402

    from refdec.conformance.manifest import load_manifest  # noqa: E402
    from refdec.decoder import decode  # noqa: E402
    from refdec.model_file import ModelStore
    from refdec.errors import RefdecError  # noqa: E402

    manifest = load_manifest(args.vectors)
    vectors = manifest.data["vectors"]
    store = ModelStore([manifest.file(m["file"]) for m in manifest.data["models"].values()])
    problems = []

    paths = {"literal": 0, "fast": 0}

    def run(vec, trace: bool) -> None:
        stream = manifest.file(vec["bitstream"]["file"]).read_bytes()
        golden = vec.get("golden")
        literal = golden is None or golden["width"] * golden["height"] <= args.literal_samples
        paths["literal" if literal else "fast"] += 1
        try:
            decoded = decode(stream, store, fast=not literal, trace=trace)
        except RefdecError as exc:
            if exc.name != vec.get("expected_error"):
                problems.append(f"{vec['id']}: {exc.name} ({exc}), expected {vec.get('expected_error', 'no error')}")
            return
        if vec["kind"] == "invalid":
            problems.append(f"{vec['id']}: decoded, expected {vec['expected_error']}")
        elif sample_hash(decoded.image) != vec["golden"]["samples_sha256"]:
            problems.append(f"{vec['id']}: samples differ from the golden output")

    valid = [v for v in vectors if v["kind"] == "valid"]
    invalid = [v for v in vectors if v["kind"] == "invalid"]
    for i, vec in enumerate(valid):
        run(vec, trace=i == 0)  # one traced decode reaches decode()'s trace branch
    valid_only = _measure(cov, include)
    for vec in invalid:
        run(vec, trace=False)
    everything = _measure(cov, include)
    cov.stop()

    print(f"decoded on the literal path: {paths['literal']} vectors; on the fast path (over {args.literal_samples} "
          f"samples): {paths['fast']}")
    print(f"coverage of refdec's normative modules by {len(valid)} valid vectors:")
    print(f"  {valid_only['percent']:.2f}% of lines and branches")
    print(f"by all {len(vectors)} vectors (the {len(invalid)} invalid ones reach the error paths):")
    print(everything["table"])
    for p in problems:
        print(f"vector problem: {p}")
    if args.json:
        args.json.write_text(json.dumps({
            "vectors": len(vectors), "valid": len(valid), "invalid": len(invalid),
            "valid_only_percent": valid_only["percent"], "percent": everything["percent"],
            "files": everything["files"], "valid_only_files": valid_only["files"], "problems": problems,
            "decoded_literal": paths["literal"], "decoded_fast": paths["fast"],
        }, indent=1, sort_keys=True))
    if problems:
        print(f"FAIL: {len(problems)} vectors do not decode as their manifest says")
        return 1
    if everything["percent"] < args.fail_under:
        print(f"FAIL: coverage {everything['percent']:.2f}% is below {args.fail_under:.2f}%")
        return 1
    print(f"coverage gate passed: {everything['percent']:.2f}% >= {args.fail_under:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
