"""Where the float model's quality is lost: quantisation, analysis or synthesis (informative experiment).

Three reconstructions of each Kodak image (or of its centre crop) at every rate point:

* ``rounded``: the model as it codes, synthesis of the rounded latents y_hat (with the ideal code
  length of y_hat and z_hat, as the evaluation measures it: refcodec.experiment.float_point);
* ``continuous``: synthesis of the analysis output before rounding, y * gain * inverse gain: the
  rate point without quantisation. Its gain over ``rounded`` is what quantisation costs there. It
  levels off towards the highest rate point, and a still higher one (a larger gain, finer
  quantisation) would approach the same level: its gain over the top rate point bounds what
  extending the rate range upwards can bring;
* ``optimised`` (once per image: it does not depend on the rate point): the synthesis input
  optimised for MSE alone by Adam, starting from the analysis output at the highest rate point,
  keeping the best iterate. Its gain over ``continuous`` is what a better analysis transform could
  find for this synthesis at unlimited rate (an upper bound on the analysis's share of the loss,
  found by a local search, so not necessarily the least bound).

    python -m refcodec.ceiling --checkpoint models/float.pt --images 8 --crop 256 --out results/ceiling.json

refcodec.evaluate adds the table to the results page when the JSON file is next to kodak.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from .codec import image_tensor, psnr
from .experiment import eight_bit, experiment_images, float_point, write_experiment
from .model import NUM_RATES, FloatCodec, checkpoint_record, load_float_model
from .options import DEFAULT_KODAK


def _pixels(model: FloatCodec, synthesis_input: torch.Tensor, size) -> np.ndarray:
    return eight_bit(model.synthesis(synthesis_input)[0] * 255.0, size)


def image_ceiling(model: FloatCodec, img: np.ndarray, rates, steps: int, lr: float = 0.05) -> dict:
    """The three reconstructions of the module docstring for one (H, W, 3) uint8 image, H and W
    multiples of 64. Returns {"rates": {r: {"bpp", "rounded", "continuous"}}, "optimised"}."""
    if img.shape[0] % 64 or img.shape[1] % 64:
        raise ValueError(f"image size {img.shape[1]}x{img.shape[0]} is not a multiple of 64")
    size = img.shape[:2]
    x = image_tensor(img)  # no padding: the size is a multiple of 64
    with torch.no_grad():
        y = model.analysis(x)
    per_rate = {}
    for r in rates:
        bpp, rounded = float_point(model, img, r)
        rt = torch.tensor([r])
        with torch.no_grad():
            continuous = psnr(_pixels(model, y * model.gain(rt) * model.inv_gain(rt), size), img)
        per_rate[r] = {"bpp": bpp, "rounded": rounded, "continuous": continuous}

    top = torch.tensor([NUM_RATES - 1])
    with torch.no_grad():
        u = (y * model.gain(top) * model.inv_gain(top)).requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    target = x * 255.0
    with torch.no_grad():
        best = psnr(_pixels(model, u, size), img)
    for _ in range(steps):
        loss = ((model.synthesis(u) * 255.0 - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            best = max(best, psnr(_pixels(model, u, size), img))
    return {"rates": per_rate, "optimised": best}


def summarise(per_image: dict) -> dict:
    """Means over images, per rate point, and the mean optimised PSNR."""
    rates = sorted({int(r) for res in per_image.values() for r in res["rates"]})
    rows = []
    for r in rates:
        vals = [res["rates"][r] if r in res["rates"] else res["rates"][str(r)] for res in per_image.values()]
        rows.append({"rate": r, **{k: float(np.mean([v[k] for v in vals])) for k in ("bpp", "rounded", "continuous")}})
    return {"rates": rows, "optimised": float(np.mean([res["optimised"] for res in per_image.values()]))}


def report_lines(doc: dict, file_name: str = "ceiling.json") -> list[str]:
    """The results page's section on this experiment (used by refcodec.evaluate)."""
    setup, summary = doc["setup"], doc["summary"]
    crop = f"{setup['crop']}x{setup['crop']} centre crops" if setup["crop"] else "whole images"
    top = summary["rates"][-1]
    lines = ["## Where the quality is lost: quantisation, analysis, synthesis", "",
             f"`python -m refcodec.ceiling` (numbers in `{file_name}`): {len(doc['images'])} Kodak images, "
             f"{crop}, checkpoint at training step {setup.get('training_step', '?')}. Mean RGB PSNR of the "
             "synthesis of the rounded latents (as coded), of the analysis output before rounding "
             "(the rate point without quantisation), and of a synthesis input optimised for MSE alone "
             f"({setup['steps']} Adam steps from the analysis output at the top rate point; what a better "
             "analysis could reach with this synthesis at unlimited rate).", "",
             "| rate | bpp | rounded (dB) | continuous (dB) | optimised input (dB) |", "|---|---|---|---|---|"]
    for row in summary["rates"]:
        lines.append(f"| {row['rate']} | {row['bpp']:.4f} | {row['rounded']:.2f} | {row['continuous']:.2f} | "
                     f"{summary['optimised']:.2f} |")
    lines += ["", f"At the top rate point quantisation costs {top['continuous'] - top['rounded']:.2f} dB: a higher "
              "rate point, quantising ever more finely, could add at most that. The analysis transform leaves "
              f"up to {summary['optimised'] - top['continuous']:.2f} dB more to this synthesis.", ""]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(prog="refcodec ceiling", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK)
    ap.add_argument("--images", type=int, default=8, help="the first N images of the folder")
    ap.add_argument("--crop", type=int, default=256, help="centre crop size, a multiple of 64 (0: whole images)")
    ap.add_argument("--steps", type=int, default=300, help="Adam steps of the optimised synthesis input")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args(argv)
    if args.steps < 0:
        ap.error("--steps must be at least 0")
    images = experiment_images(ap, args)
    if not images:
        return 2
    model = load_float_model(args.checkpoint).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    per_image = {}
    for i, (name, img) in enumerate(images.items()):
        res = per_image[name] = image_ceiling(model, img, range(NUM_RATES), args.steps)
        print(f"[{i + 1}/{len(images)}] {name}: rounded {res['rates'][NUM_RATES - 1]['rounded']:.2f} dB, "
              f"continuous {res['rates'][NUM_RATES - 1]['continuous']:.2f} dB at the top rate, "
              f"optimised {res['optimised']:.2f} dB", flush=True)
    setup = {**checkpoint_record(args.checkpoint),
             "crop": args.crop, "steps": args.steps}
    doc = {"setup": setup, "images": list(images), "per_image": per_image,
           "summary": summarise(per_image)}
    write_experiment(doc, args.out, report_lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
