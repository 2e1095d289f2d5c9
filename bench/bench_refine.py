"""What the refining encoder buys per second spent: BD-rate against the plain encoder and WebP for a
few refinement step counts (informative; the decoder and its model are the same for all).

    python bench/bench_refine.py [--images N] [--crop C] [--steps 5 10 20 40] [--lr LR] [--checkpoint CKPT]
                                 [--threads T] [--json OUT.json]
    python bench/bench_refine.py --quick     # one 128x128 crop, steps 2 and 4: a smoke test

For each of the first N Kodak images (whole, or centre crops) and each rate point, the latents are
refined (refcodec.refine.refine_latents, Adam at --lr, by default refine's 0.0075, temperature
annealed to 0 over the run)
once per step count: a shorter run is its own schedule, not the start of a longer one. Rates are the
float model's ideal code lengths of the rounded latents and PSNR is of the float model's 8-bit
reconstruction, as the results page's float curve; WebP codes the same images with the qualities
of the main comparison. Seconds are per image and rate point, wall clock, with T torch threads; they
include the discrete cost checks (at the start and every 10 steps), so "0 steps" is the analysis plus
one evaluation of the float model, not the plain encoder alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from refcodec.experiment import anchor_sweep, curve_bd_rate, experiment_images  # noqa: E402
from refcodec.model import NUM_RATES, load_float_model  # noqa: E402
from refcodec.options import DEFAULT_KODAK  # noqa: E402
from refcodec.refine import DEFAULT_LR, _curve, _point, refine_latents  # noqa: E402

ANCHOR = "WebP"


def measure(model, images: dict, step_counts: list[int], lr: float = DEFAULT_LR, log=print) -> dict:
    """{steps: {"seconds": mean per image and rate, "curve": mean curve}} for 0 (the plain encoder)
    and every count in step_counts, and WebP's curve on the same images."""
    points = {s: [] for s in [0] + step_counts}
    seconds = {s: [] for s in points}
    anchor = []
    refine_latents(model, next(iter(images.values())), 0, 0)  # warm-up, untimed
    for name, img in images.items():
        h, w, _ = img.shape
        per_steps = {s: {} for s in points}
        for rate in range(NUM_RATES):
            for steps in points:
                t0 = time.perf_counter()
                _, _, history = refine_latents(model, img, rate, steps, lr)
                seconds[steps].append(time.perf_counter() - t0)
                best = min(history, key=lambda c: c[1])
                per_steps[steps][rate] = _point(best[2], best[3], h * w)
            log(f"{name} rate {rate}: " + "  ".join(
                f"{s}: {per_steps[s][rate]['bpp']:.4f} bpp {per_steps[s][rate]['psnr']:.2f} dB" for s in points))
        for steps in points:
            points[steps].append(per_steps[steps])
        anchor.append(anchor_sweep(img, ANCHOR))
    return {"anchor": ANCHOR, "anchor_curve": _curve(anchor),
            "runs": {s: {"seconds": float(np.mean(seconds[s])), "curve": _curve(points[s])} for s in points}}


def table(doc: dict) -> list[str]:
    plain = doc["runs"][0]["curve"]
    lines = [f"| steps | s per image and rate | x plain time | BD-rate vs plain | BD-rate vs {doc['anchor']} | "
             "bpp range |", "|---|---|---|---|---|---|"]
    t_plain = doc["runs"][0]["seconds"]
    for steps, run in doc["runs"].items():
        curve = run["curve"]
        vs_plain = "0 (plain)" if steps == 0 else f"{curve_bd_rate(plain, curve):+.2f}%"
        lines.append(f"| {steps} | {run['seconds']:.2f} | {run['seconds'] / t_plain:.1f} | {vs_plain} | "
                     f"{curve_bd_rate(doc['anchor_curve'], curve):+.2f}% | "
                     f"{curve[0]['bpp']:.3f}-{curve[-1]['bpp']:.3f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench_refine", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "float.pt")
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK)
    ap.add_argument("--images", type=int, default=2, help="the first N Kodak images")
    ap.add_argument("--crop", type=int, default=0, help="centre crop size, a multiple of 64 (0: whole images)")
    ap.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 40])
    ap.add_argument("--lr", type=float, default=DEFAULT_LR, help="Adam's learning rate on the latents")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="one 128x128 crop, steps 2 and 4")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.crop, args.steps = 1, 128, [2, 4]
    if any(s < 1 for s in args.steps) or not args.lr > 0:
        ap.error("every --steps must be at least 1 and --lr positive")
    images = experiment_images(ap, args)
    if not images:
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_float_model(args.checkpoint).eval()
    steps = sorted(set(args.steps))
    print(f"{len(images)} Kodak image(s) {'whole' if not args.crop else f'{args.crop}x{args.crop} crops'}, "
          f"{NUM_RATES} rate points, steps {steps}, lr {args.lr:g}, {torch.get_num_threads()} torch threads, "
          f"checkpoint {args.checkpoint}", flush=True)
    doc = measure(model, images, steps, args.lr, log=lambda m: print(m, flush=True))
    print("\n".join(table(doc)))
    if args.json:
        args.json.write_text(json.dumps({"images": list(images), "crop": args.crop, "lr": args.lr, **doc}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
