"""Decoder benchmark: time, time split, stream size and peak memory of refdec.decode.

Informative: not part of the decoding process.

    python bench/bench_decode.py [--runs-small N] [--runs-4k N] [--quick] [--json PATH]

For a 768x512 and a 3840x2160 image it prints, in a plain-text table:

- end-to-end decode time (median of N runs; default 3 for 768x512, 1 for 4K);
- the time split of that run: z decoding + hyper synthesis, y entropy decoding
  (entropy parameters: context model, gather network, mixture parameters,
  windows and CDFs; versus range decoding of the symbols) and synthesis
  (inverse gain, banded synthesis, crop);
- stream size and bits per pixel;
- peak memory: each case runs in a fresh subprocess; its peak RSS (VmHWM) is
  reported as is and minus the peak RSS of an idle interpreter with numpy
  imported;
- the float64 matrix-product rate of the machine (2048x2048 @ 2048x2048, best
  of a few) and the synthesis's achieved rate (2 * synthesis MACs / synthesis
  time) as a fraction of it.

The model is the committed test model (refdec/models/*.npz) if there is one,
else refdec.generators.random_model.random_model(seed, channels=REFERENCE_CHANNELS). The
latents are refdec.generators.random_model.random_latents with small scales (mostly zeros,
like a real low-rate image), encoded once with refdec.generators.encoder.encode_latents
and cached in a temporary folder; encoding is not timed.

--quick runs the same code on small images (a smoke test that a test suite can
call); its figures are not comparable with the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGETS = {
    "e2e_768x512_s": 1.5,  # end to end, 768x512, seconds
    "synthesis_fraction": 0.70,  # synthesis rate / float64 matmul rate
    "peak_4k_bytes": 1 << 30,  # peak memory of the 4K decode (minus the idle baseline)
}
FULL_CASES = [("768x512", 768, 512), ("3840x2160", 3840, 2160)]
QUICK_CASES = [("128x96", 128, 96), ("256x160", 256, 160)]
CACHE_DIR = Path(tempfile.gettempdir()) / "refdec-bench-cache"


# ---------------------------------------------------------------------------
# Model and streams (parent process)
# ---------------------------------------------------------------------------

def model_source(seed: int):
    """(path of the model file, description): the committed model, else a cached random model."""
    committed = sorted((REPO / "refdec" / "models").glob("*.npz"))
    if committed:
        return committed[0], f"committed model {committed[0].relative_to(REPO)}"
    from refdec.generators.random_model import REFERENCE_CHANNELS, random_model

    path = CACHE_DIR / f"random_model_ref_seed{seed}.npz"
    if not path.exists():
        data, _ = random_model(seed, channels=REFERENCE_CHANNELS)
        _atomic_write(path, data)
    return path, f"random_model(seed={seed}, channels=REFERENCE_CHANNELS) (no model in refdec/models/)"


def stream_for(model_path: Path, width: int, height: int, rate: int, seed: int, y_scale: float, z_scale: float) -> Path:
    """The cached stream for these latents, encoded (untimed) on first use."""
    from refdec.model_file import load_model, model_id_of

    mid = model_id_of(model_path.read_bytes()).hex()
    path = CACHE_DIR / f"{mid}_{width}x{height}_r{rate}_s{seed}_y{y_scale:g}_z{z_scale:g}.rdc"
    if not path.exists():
        from refdec.generators.encoder import encode_latents
        from refdec.generators.random_model import random_latents

        model = load_model(model_path)
        t = time.perf_counter()
        print(f"  encoding {width}x{height} (cached in {CACHE_DIR}) ...", end="", flush=True, file=sys.stderr)
        z, y = random_latents(model, width, height, seed=seed, y_scale=y_scale, z_scale=z_scale)
        _atomic_write(path, encode_latents(model, z, y, rate, width, height))
        print(f" {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def matmul_rate(n: int, repeats: int = 3) -> float:
    """float64 GFLOP/s of an n x n @ n x n product, best of `repeats`."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    a @ b  # warm-up (thread pool start)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


def synthesis_macs(model_path: Path, width: int, height: int) -> int:
    """Multiply-accumulates of the synthesis (clause 7.12) over the padded image, without band halos."""
    from refdec.architecture import SYNTHESIS, padded_sizes
    from refdec.model_file import load_model

    model = load_model(model_path)
    _, _, hy, wy = padded_sizes(width, height)
    h, w, macs = hy, wy, 0
    for spec in SYNTHESIS:
        weight = model.layers[spec.name].weight
        macs += h * w * weight.size  # out * in * k * k per position
        if spec.depth_to_space:
            h, w = 2 * h, 2 * w
    return macs


# ---------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------

def peak_rss_bytes() -> int:
    """Peak resident set size of this process: VmHWM, else ru_maxrss."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def child_matmul(n: int) -> dict:
    return {"gflops": matmul_rate(n)}


def child_baseline() -> dict:
    import numpy  # noqa: F401  (the baseline is an idle interpreter with numpy imported)

    return {"peak_rss": peak_rss_bytes()}


class _Timers:
    """Wraps module-level functions of refdec to accumulate their time (wrappers cost ~1 us a call)."""

    def __init__(self):
        self.t: dict[str, float] = {}
        self.windows = [0, 0]  # sum of n_w, elements

    def wrap(self, module, name: str, key: str, post=None):
        fn = getattr(module, name)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            self.t[key] = self.t.get(key, 0.0) + time.perf_counter() - t
            if post is not None:
                post(out)
            return out

        setattr(module, name, wrapper)

    def reset(self):
        self.t = {}
        self.windows = [0, 0]


def child_case(model_path: str, stream_path: str, runs: int, band_rows: int | None, literal: bool = False) -> dict:
    """Decode the stream `runs` times in this process; the split columns time the fast path's steps
    (the literal path is timed as a whole)."""
    from refdec import FastOptions
    from refdec.decoder import decode
    from refdec.fast import REGISTRY
    from refdec.fast import latent as fast_latent
    from refdec.hyper import hyper_synthesis
    from refdec.latent import decode_y
    from refdec.model_file import load_model
    from refdec.synthesis import synthesis

    model = load_model(model_path)
    stream = Path(stream_path).read_bytes()
    timers = _Timers()

    def count_windows(lo_hi):
        lo, hi = lo_hi
        timers.windows[0] += int((hi - lo + 1).sum())
        timers.windows[1] += lo.size

    # The steps of clause 7.1 as the fast path runs them: the registered accelerations, wrapped in place.
    steps = {hyper_synthesis: "hyper", decode_y: "y", synthesis: "synthesis"}
    holder = type("Holder", (), {})()
    for acc in REGISTRY:
        if acc.step:
            setattr(holder, "fast", acc.fast)
            timers.wrap(holder, "fast", steps[acc.literal])
            acc.fast = holder.fast
    from refdec import decoder
    timers.wrap(decoder, "decode_z", "z")
    timers.wrap(decoder, "inverse_gain", "synthesis")
    timers.wrap(decoder, "output", "synthesis")
    # Inside the fast decode_y: the per-wavefront entropy parameters (clauses 7.6 to 7.9) and the
    # symbol decoding (clause 7.10); the rest of decode_y is bookkeeping.
    for name in ("context_model", "gather_network", "mixture_parameters", "coding_window", "coding_cdfs"):
        timers.wrap(fast_latent, name, "y_params", count_windows if name == "coding_window" else None)
    timers.wrap(fast_latent, "decode_values", "y_range")

    # Warm-up on a tiny stream of the same model: builds the model's cached weight matrices.
    from refdec.generators.encoder import encode_latents
    from refdec.generators.random_model import random_latents

    z, y = random_latents(model, 64, 64, seed=1, y_scale=0.3, z_scale=1.0)
    decode(encode_latents(model, z, y, 0, 64, 64), model)

    results = []
    fast = False if literal else (True if band_rows is None else FastOptions(band_rows=band_rows))
    for _ in range(runs):
        timers.reset()
        t = time.perf_counter()
        decode(stream, model, fast=fast)
        total = time.perf_counter() - t
        results.append({"total": total, **timers.t, "windows": list(timers.windows)})
    results.sort(key=lambda r: r["total"])
    median = results[(len(results) - 1) // 2]
    return {"runs": [r["total"] for r in results], "median": median, "peak_rss": peak_rss_bytes()}


BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def run_child(args: list[str], blas_threads: int | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child"] + args
    env = dict(os.environ)
    if blas_threads is not None:
        env.update({name: str(blas_threads) for name in BLAS_THREAD_VARS})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({' '.join(args)}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def mib(n: float) -> str:
    return f"{n / (1 << 20):.0f}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs-small", type=int, default=3, help="decode runs of the 768x512 case (median)")
    ap.add_argument("--runs-4k", type=int, default=1, help="decode runs of the 3840x2160 case (median)")
    ap.add_argument("--quick", action="store_true", help="small sizes, one run: a fast smoke test")
    ap.add_argument("--only", choices=("small", "large"), default=None,
                    help="run only the first (768x512) or the second (3840x2160) image")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random model and latents")
    ap.add_argument("--rate", type=int, default=0, help="rate index of the streams")
    ap.add_argument("--y-scale", type=float, default=0.3, help="Laplace scale of the y latents")
    ap.add_argument("--z-scale", type=float, default=1.0, help="Laplace scale of the z latents")
    ap.add_argument("--band-rows", type=int, default=None, help="synthesis band rows (default: the decoder's)")
    ap.add_argument("--matmul-n", type=int, default=None, help="size of the matmul-rate probe (default 2048)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="set OPENBLAS/OMP/MKL_NUM_THREADS to N in the measuring subprocesses (default: inherit)")
    ap.add_argument("--literal", choices=("none", "small", "all"), default="small",
                    help="also decode on the literal path (refdec.decode(fast=False)), one run: the 768x512 case "
                         "(default), every case (the 3840x2160 one takes about 20 minutes and several GB), or none")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "baseline":
            out = child_baseline()
        elif kind == "matmul":
            out = child_matmul(int(rest[0]))
        else:
            model_path, stream_path, runs, band, path = rest
            out = child_case(model_path, stream_path, int(runs), None if band == "-" else int(band), path == "literal")
        print(json.dumps(out))
        return 0

    all_cases = QUICK_CASES if args.quick else FULL_CASES
    runs = {all_cases[0][0]: 1 if args.quick else args.runs_small, all_cases[1][0]: 1 if args.quick else args.runs_4k}
    cases = {None: all_cases, "small": all_cases[:1], "large": all_cases[1:]}[args.only]
    matmul_n = args.matmul_n or (512 if args.quick else 2048)

    model_path, model_desc = model_source(args.seed)
    streams = {label: stream_for(model_path, w, h, args.rate, args.seed, args.y_scale, args.z_scale)
               for label, w, h in cases}
    threads = args.blas_threads
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rates = [run_child(["matmul", str(matmul_n)], threads)["gflops"]]
    baseline = run_child(["baseline"], threads)["peak_rss"]
    results = {}
    for label, w, h in cases:
        band = "-" if args.band_rows is None else str(args.band_rows)
        res = run_child(["case", str(model_path), str(streams[label]), str(runs[label]), band, "fast"], threads)
        if args.literal == "all" or args.literal == "small" and label == cases[0][0]:
            res["literal"] = run_child(["case", str(model_path), str(streams[label]), "1", band, "literal"], threads)
        rates.append(run_child(["matmul", str(matmul_n)], threads)["gflops"])
        res["matmul_gflops"] = max(rates[-2:])  # the probes just before and just after the case
        res["macs"] = synthesis_macs(model_path, w, h)
        res["bytes"] = streams[label].stat().st_size
        res["width"], res["height"] = w, h
        results[label] = res
    rate = max(rates)

    import numpy as np

    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"refdec decode benchmark{' (--quick: smoke sizes, not comparable with the targets)' if args.quick else ''}")
    print(f"model:    {model_desc}")
    print(f"latents:  random_latents(seed={args.seed}, y_scale={args.y_scale:g}, z_scale={args.z_scale:g}), "
          f"rate index {args.rate}")
    blas = ", ".join(f"{name}={os.environ.get(name, 'unset') if threads is None else threads}"
                     for name in BLAS_THREAD_VARS[:2])
    print(f"machine:  {os.cpu_count()} CPUs, numpy {np.__version__}, {blas}; "
          f"1-min load average {load_start:.2f} at the start, {load_end:.2f} at the end")
    if load_start > 0.5 * (os.cpu_count() or 1):
        print("          (the machine was busy before the benchmark started: times are inflated, compare ratios)")
    print(f"matmul:   float64 {matmul_n}^3, best of 3, in a subprocess like the decodes: "
          + ", ".join(f"{r:.1f}" for r in rates) + " GFLOP/s (before, between and after the cases); "
          "each case's synthesis is compared with the better probe next to it")
    print(f"memory:   idle interpreter with numpy: {mib(baseline)} MiB peak RSS (baseline)")
    print()
    header = ["image", "runs", "decode s", "z+hyper s", "y params s", "y rangedec s", "y other s", "synth s",
              "bytes", "bpp", "mean n_w", "peak MiB", "-base MiB", "synth GF/s", "of matmul"]
    rows = []
    for label, res in results.items():
        m = res["median"]
        y_other = m.get("y", 0) - m.get("y_params", 0) - m.get("y_range", 0)
        synth_rate = 2 * res["macs"] / m["synthesis"] / 1e9
        res["synth_gflops"] = synth_rate
        res["synth_fraction"] = synth_rate / res["matmul_gflops"]
        nw = m["windows"][0] / max(1, m["windows"][1])
        rows.append([label, str(len(res["runs"])), f"{m['total']:.2f}", f"{m.get('z', 0) + m.get('hyper', 0):.2f}",
                     f"{m.get('y_params', 0):.2f}", f"{m.get('y_range', 0):.2f}", f"{y_other:.2f}",
                     f"{m['synthesis']:.2f}", str(res["bytes"]), f"{8 * res['bytes'] / (res['width'] * res['height']):.3f}",
                     f"{nw:.1f}", mib(res["peak_rss"]), mib(res["peak_rss"] - baseline), f"{synth_rate:.1f}",
                     f"{100 * res['synth_fraction']:.0f}%"])
    print(table(rows, header))
    print()
    print("y params: context model + gather network + mixture parameters + windows + CDFs (clauses 7.6-7.9);")
    print("y rangedec: symbol decoding (clause 7.10); synth: inverse gain + synthesis + crop (7.11-7.13).")
    literal_rows = [[label, f"{res['median']['total']:.2f}", f"{res['literal']['median']['total']:.2f}",
                     f"{res['literal']['median']['total'] / res['median']['total']:.0f}x", mib(res["peak_rss"]),
                     mib(res["literal"]["peak_rss"])]
                    for label, res in results.items() if "literal" in res]
    if literal_rows:
        print()
        print("literal path (the normative modules alone, refdec.decode(fast=False)) beside the fast path:")
        print(table(literal_rows, ["image", "fast s", "literal s", "literal/fast", "fast peak MiB", "literal peak MiB"]))
    print("All runs of a case: " + "; ".join(
        f"{label} " + ", ".join(f"{t:.2f}" for t in res["runs"]) + " s" for label, res in results.items()))

    small, big = results.get(all_cases[0][0]), results.get(all_cases[1][0])
    checks = []  # (target, measured, met or None when not measured)
    checks.append((f"{all_cases[0][0]} end to end <= {TARGETS['e2e_768x512_s']} s",
                   f"{small['median']['total']:.2f} s" if small else "not measured",
                   small["median"]["total"] <= TARGETS["e2e_768x512_s"] if small else None))
    checks.append((f"synthesis >= {TARGETS['synthesis_fraction']:.0%} of the float64 matmul rate",
                   " / ".join(f"{100 * r['synth_fraction']:.0f}% ({label})" for label, r in results.items()),
                   min(r["synth_fraction"] for r in results.values()) >= TARGETS["synthesis_fraction"]))
    checks.append((f"{all_cases[1][0]} peak memory <= {TARGETS['peak_4k_bytes'] >> 20} MiB (minus baseline)",
                   f"{mib(big['peak_rss'] - baseline)} MiB ({mib(big['peak_rss'])} MiB raw)" if big else "not measured",
                   big["peak_rss"] - baseline <= TARGETS["peak_4k_bytes"] if big else None))
    print()
    print("targets" + (" (quick sizes: indicative only)" if args.quick else "") + ":")
    verdict = {True: "met", False: "NOT met", None: "-"}
    print(table([[name, value, verdict[ok]] for name, value, ok in checks], ["target", "measured", ""]))
    if args.json:
        args.json.write_text(json.dumps({"model": model_desc, "matmul_gflops": rate, "baseline_rss": baseline,
                                         "cases": results, "targets_met": {n: ok for n, _, ok in checks}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
