"""The cost of traced checking: `refdec check` with an external decoder, traced and untraced.

Informative: not part of the specification.

    python bench/bench_check.py [--subset NAME]... [--large] [-j N] [--runs N] [--json OUT.json]

Runs `refdec check VECTORS --decoder CMD` on a subset (default: quick) with the torch-free
external decoder `python -m refdec decode {in} -o {out} --model {model}`, once as is and once with
`--trace-dir {trace}` appended (every clause 11.3 stage written by the decoder and checked by the
checker), and prints one table row per case:

| column | meaning |
|---|---|
| `vectors` | vectors checked |
| `untraced s`, `traced s` | wall time of the whole `refdec check` run (median of --runs) |
| `ratio` | traced / untraced (target: at most 1.5) |
| `checker MiB` | the checker process's own peak RSS (VmHWM, from the JSON report), traced run (target: under 1024) |
| `trace MiB` | the size of the largest vector's trace |

--large adds the 1920x1080 vector as a case of its own (a 661 MiB trace; about a minute per run on
two cores). The decoder and the checker run with one BLAS thread (OPENBLAS_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.5
TARGET_MIB = 1024


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def run_case(vectors: Path, subsets: list, traced: bool, jobs: int, work: Path) -> dict:
    decoder = f"{sys.executable} -m refdec decode {{in}} -o {{out}} --model {{model}} -q"
    if traced:
        decoder += " --trace-dir {trace}"
    report = work / f"r-{'t' if traced else 'u'}.json"
    argv = [sys.executable, "-m", "refdec", "check", str(vectors), "--decoder", decoder, "-j", str(jobs), "-q",
            "--json", str(report), "--evidence-dir", str(work / "evidence")]
    for s in subsets:
        argv += ["--subset", s]
    trace_dir = work / "traces"
    if traced:
        argv += ["--trace-dir", str(trace_dir)]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env())
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench_check: the check failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    doc = json.loads(report.read_text())
    trace_mib = 0.0
    if traced:
        for d in trace_dir.iterdir():
            trace_mib = max(trace_mib, sum(f.stat().st_size for f in d.iterdir()) / 2**20)
        for d in trace_dir.iterdir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
    return {"wall_s": wall, "vectors": doc["summary"]["total"], "checker_mib": doc["checker_peak_rss_mib"],
            "trace_mib": trace_mib}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vectors", type=Path, default=REPO / "vectors")
    ap.add_argument("--subset", action="append", default=None, help="subset of the first case (default: quick)")
    ap.add_argument("--large", action="store_true", help="add the 1920x1080 vector as a second case")
    ap.add_argument("-j", "--jobs", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1, help="runs per case and mode (median)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    cases = [(",".join(args.subset or ["quick"]), args.subset or ["quick"])]
    if args.large:
        cases.append(("large", ["*large-1920x1080"]))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        work = Path(tmp)
        for name, subsets in cases:
            res = {}
            for traced in (False, True):
                runs = [run_case(args.vectors, subsets, traced, args.jobs, work) for _ in range(args.runs)]
                res[traced] = {"wall_s": statistics.median(r["wall_s"] for r in runs),
                               "checker_mib": max(r["checker_mib"] for r in runs),
                               "trace_mib": max(r["trace_mib"] for r in runs), "vectors": runs[0]["vectors"]}
            rows.append({"case": name, "vectors": res[False]["vectors"], "untraced_s": round(res[False]["wall_s"], 2),
                         "traced_s": round(res[True]["wall_s"], 2),
                         "ratio": round(res[True]["wall_s"] / res[False]["wall_s"], 3),
                         "checker_mib_untraced": res[False]["checker_mib"], "checker_mib": res[True]["checker_mib"],
                         "trace_mib": round(res[True]["trace_mib"], 1)})
    print(f"refdec check, decoder 'python -m refdec decode', -j {args.jobs}, median of {args.runs} run(s)")
    head = f"| {'case':<8} | vectors | untraced s | traced s | ratio | checker MiB (untraced/traced) | trace MiB |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        print(f"| {r['case']:<8} | {r['vectors']:>7} | {r['untraced_s']:>10.2f} | {r['traced_s']:>8.2f} | "
              f"{r['ratio']:>5.2f} | {r['checker_mib_untraced']:>13.1f} / {r['checker_mib']:<13.1f} | {r['trace_mib']:>9.1f} |")
    ok = all(r["ratio"] <= TARGET_RATIO and r["checker_mib"] < TARGET_MIB for r in rows)
    print(f"targets: traced at most {TARGET_RATIO}x untraced, checker under {TARGET_MIB} MiB: {'met' if ok else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"jobs": args.jobs, "runs": args.runs, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
