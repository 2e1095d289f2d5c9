"""Encoder-side latent refinement (informative: spec annex A.1 leaves the choice of latents to the encoder).

The decoder only sees y_hat and z_hat, so an encoder may code any latents, not just the rounded
analysis output. ``refine_latents`` starts from the analysis output and lowers the training's
rate-distortion cost, bpp + lambda * MSE (8-bit units), by gradient descent on the continuous
latents of the one image being coded (Campos et al. 2019, "Content adaptive optimization for
neural image compression"). The quantisation surrogate is stochastic Gumbel annealing (Yang et al.
2020, "Improving inference for neural image compression", SGA): each latent is a random soft
choice between its floor and its ceiling, the nearer one the likelier, sharpened as the temperature
falls linearly from TEMPERATURE_START to 0, so that the synthesis, the context model and the
likelihood all see (nearly) the integers that will be coded. (Plain rounding with a straight-through
gradient, or the training's uniform noise, drift to higher rates instead: results/design-history.md.)

The cost that decides is the discrete one: the float model's ideal code length of the rounded
latents plus lambda times their squared error, evaluated at the start and every ``check_every``
steps. The latents with the lowest discrete cost are returned, so refinement never returns latents
worse than the analysis's by that measure. The model's parameters are not changed.

The encoder (refcodec.codec) codes whatever latents it is given and does not import this module:
``refcodec encode --refine`` and ``refcodec evaluate --refine`` refine here and hand the latents on.
The rest of the module is the refinement's measurement:

    python -m refcodec.refine --checkpoint models/float.pt --images 4 --crop 0 --steps 100 --out results/refine.json

measures the gain on Kodak: BD-rate against the plain encoder, and against WebP and AVIF coding the
same images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from refdec.decoder import decode
from refdec.model_file import ModelStore, load_model

from .codec import analyse, analysis_latents, encode_latents, encoder_reconstruction, image_tensor, psnr, round_latents
from .experiment import anchor_sweep, curve_bd_rate, experiment_images, float_latent_cost, write_experiment
from .model import NUM_RATES, FloatCodec, checkpoint_record, load_float_model, mixture_likelihood
from .options import DEFAULT_KODAK, DEFAULT_MODEL
from .train import LAMBDAS

TEMPERATURE_START = 0.5
DEFAULT_STEPS = 100
DEFAULT_LR = 0.0075


def soft_round_sga(v: torch.Tensor, temperature: float) -> torch.Tensor:
    """Stochastic Gumbel annealing (Yang et al. 2020, eq. 7): floor(v) plus a Gumbel-softmax
    sample of {0, 1} whose logits -atanh(distance) / temperature favour the nearer integer."""
    below = torch.floor(v)
    frac = v - below
    eps = 1e-5  # atanh(1) is infinite: the distances stay inside (-1, 1)
    logits = torch.stack([-torch.atanh(torch.clamp(frac, -1 + eps, 1 - eps)),
                          -torch.atanh(torch.clamp(1 - frac, -1 + eps, 1 - eps))]) / temperature
    gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-10, 1)))
    return below + torch.softmax(logits + gumbel, dim=0)[1]


def _discrete_cost(model: FloatCodec, img: np.ndarray, y: torch.Tensor, z: torch.Tensor, rate: int):
    """(cost, bits, mse) of the rounded latents, as the evaluation measures the float model
    (refcodec.experiment.float_latent_cost): ideal code length in bits, mean squared error of the
    8-bit reconstruction over the image's own pixels (not the padding)."""
    h, w, _ = img.shape
    y_bits, z_bits, rec = float_latent_cost(model, *round_latents(y, z), rate, (h, w))
    bits = float(y_bits + z_bits)
    mse = float(np.mean((rec.astype(np.float64) - img) ** 2))
    return bits / (h * w) + LAMBDAS[rate] * mse, bits, mse


def refine_latents(model: FloatCodec, img: np.ndarray, rate: int, steps: int = DEFAULT_STEPS,
                   lr: float = DEFAULT_LR, check_every: int = 10, seed: int = 0):
    """(z_hat, y_hat, history) for an (H, W, 3) uint8 image: int64 numpy latents as from
    refcodec.codec.analyse, and the discrete cost [(step, cost, bits, mse), ...] at every check.

    With steps = 0 the latents are exactly analyse()'s. Deterministic for a given seed; the
    global torch generator is left as it was.
    """
    if steps < 0 or check_every < 1:
        raise ValueError("steps must be at least 0 and check_every at least 1")
    size = img.shape[:2]
    generator_state = torch.get_rng_state()
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:  # gradients for the latents only
        p.requires_grad_(False)
    torch.manual_seed(seed)
    try:
        x = image_tensor(img)
        r = torch.tensor([rate])
        y_start, z_start = analysis_latents(model, x, rate)
        y, z = y_start.requires_grad_(True), z_start.requires_grad_(True)
        opt = torch.optim.Adam([y, z], lr=lr)
        lam = LAMBDAS[rate] * 255.0**2
        num_pixels = size[0] * size[1]
        best = _discrete_cost(model, img, y, z, rate)
        best_latents = round_latents(y, z)  # analyse()'s
        history = [(0, *best)]
        for step in range(1, steps + 1):
            temperature = max(1e-3, TEMPERATURE_START * (1 - step / steps))
            y_soft, z_soft = soft_round_sga(y, temperature), soft_round_sga(z, temperature)
            params = model.entropy_parameters(y_soft, z_soft)
            bits = -(torch.log2(mixture_likelihood(y_soft, params).clamp_min(1e-9)).sum()
                     + torch.log2(model.z_density.likelihood(z_soft).clamp_min(1e-9)).sum())
            x_hat = model.decode_pixels(y_soft, r) / 255.0
            mse = ((x_hat - x)[..., : size[0], : size[1]] ** 2).mean()
            loss = bits / num_pixels + lam * mse
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % check_every == 0 or step == steps:
                cost = _discrete_cost(model, img, y, z, rate)
                history.append((step, *cost))
                if cost[0] < best[0]:
                    best = cost
                    best_latents = round_latents(y, z)
    finally:
        torch.set_rng_state(generator_state)
        for p in trainable:
            p.requires_grad_(True)
    return best_latents[0], best_latents[1], history


def _curve(points):
    """Mean bpp and PSNR per setting over images, as refcodec.experiment.mean_curve."""
    return [{"setting": k, "bpp": float(np.mean([p[k]["bpp"] for p in points])),
             "psnr": float(np.mean([p[k]["psnr"] for p in points]))} for k in sorted(points[0])]


def _point(bits: float, mse: float, num_pixels: int) -> dict:
    return {"bpp": bits / num_pixels, "psnr": float(10 * np.log10(255.0**2 / mse))}


ANCHOR_CODECS = ("WebP", "AVIF 4:4:4 speed 4")  # as in refcodec.experiment.ANCHORS
CURVES = ("float plain", "float refined", "integer plain", "integer refined", "integer refined stream") + ANCHOR_CODECS
BD_RATES = {  # name: (anchor curve, test curve)
    "refined vs plain (float model)": ("float plain", "float refined"),
    "refined vs plain (integer model)": ("integer plain", "integer refined"),
    "plain vs WebP (float model)": ("WebP", "float plain"),
    "refined vs WebP (float model)": ("WebP", "float refined"),
    "refined vs WebP (integer model, stream bytes)": ("WebP", "integer refined stream"),
    "plain vs AVIF (float model)": ("AVIF 4:4:4 speed 4", "float plain"),
    "refined vs AVIF (float model)": ("AVIF 4:4:4 speed 4", "float refined"),
    "refined vs AVIF (integer model, stream bytes)": ("AVIF 4:4:4 speed 4", "integer refined stream"),
}


def measure(model: FloatCodec, int_model, images: dict, steps: int, lr: float, log=print) -> dict:
    """Plain and refined operating points of every image at every rate point, their mean curves
    and the BD-rates of BD_RATES.

    Float curves: the float model's ideal code length and reconstruction of the rounded latents (as
    the results page's float curve). Integer curves: the integer model's (a refdec Model) ideal code
    length and the pixels refdec decodes from the stream, which must equal the encoder's own
    reconstruction (recorded per point); "stream" counts the whole bitstream instead.
    """
    store = ModelStore()
    store.add(int_model)
    curves_in = {name: [] for name in CURVES}
    per_image = {}
    for name, img in images.items():
        h, w, _ = img.shape
        pts = {c: {} for c in CURVES}
        rows = {}
        for rate in range(NUM_RATES):
            t0 = time.perf_counter()
            z_hat, y_hat, history = refine_latents(model, img, rate, steps, lr)
            seconds = time.perf_counter() - t0
            best = min(history, key=lambda c: c[1])
            pts["float plain"][rate] = _point(history[0][2], history[0][3], h * w)
            pts["float refined"][rate] = _point(best[2], best[3], h * w)
            identical = []
            for kind, (zq, yq) in (("plain", analyse(model, img, rate)), ("refined", (z_hat, y_hat))):
                enc = encode_latents(int_model, zq, yq, w, h, rate)
                image = decode(enc.stream, store).image
                identical.append(bool(np.array_equal(image, encoder_reconstruction(int_model, enc))))
                quality = psnr(image.transpose(1, 2, 0), img)  # refdec: (3, H, W)
                pts[f"integer {kind}"][rate] = {"bpp": enc.ideal_bits_per_pixel, "psnr": quality}
                if kind == "refined":
                    pts["integer refined stream"][rate] = {"bpp": enc.bits_per_pixel, "psnr": quality}
            rows[rate] = {c: pts[c][rate] for c in CURVES if c not in ANCHOR_CODECS}
            rows[rate].update(seconds=seconds, best_step=best[0], refdec_identical=all(identical))
            log(f"{name} rate {rate}: {pts['float plain'][rate]['bpp']:.4f} bpp "
                f"{pts['float plain'][rate]['psnr']:.2f} dB -> {pts['float refined'][rate]['bpp']:.4f} bpp "
                f"{pts['float refined'][rate]['psnr']:.2f} dB (float model; {seconds:.0f} s)")
        for codec in ANCHOR_CODECS:
            pts[codec] = anchor_sweep(img, codec)
        for c in CURVES:
            curves_in[c].append(pts[c])
        per_image[name] = rows
    curves = {c: _curve(v) for c, v in curves_in.items()}

    return {"per_image": per_image, "curves": curves,
            "bd_rate_percent": {k: curve_bd_rate(curves[a], curves[t]) for k, (a, t) in BD_RATES.items()},
            "refdec_identical": sum(r["refdec_identical"] for rows in per_image.values() for r in rows.values()),
            "points": sum(len(rows) for rows in per_image.values())}


def report_lines(doc: dict, file_name: str = "refine.json") -> list[str]:
    """The results page's section on one run of this experiment (used by refcodec.evaluate)."""
    setup = doc["setup"]
    n = len(doc["images"])
    title = f"{n} Kodak images, {setup['crop']}x{setup['crop']} centre crops" if setup["crop"] else f"{n} whole Kodak images"
    curves = doc["curves"]
    seconds = [r["seconds"] for rows in doc["per_image"].values() for r in rows.values()]
    lines = [f"## Encoder-side latent refinement: {title}", "",
             f"`python -m refcodec.refine` (numbers in `{file_name}`): {', '.join(doc['images'])}; checkpoint at "
             f"training step {setup.get('training_step', '?')}, integer model {setup['model']}. The same decoder "
             f"and model; the encoder refines the latents of each image for the rate-distortion cost "
             f"({setup['steps']} steps of stochastic Gumbel annealing, Adam lr {setup['lr']}; {np.mean(seconds):.0f} s "
             f"per image and rate point on this machine). refdec decodes {doc['refdec_identical']} of "
             f"{doc['points']} pairs of refined and plain streams to the encoder's own reconstruction.", "",
             "| rate | plain bpp | plain dB | refined bpp | refined dB | integer refined bpp | integer refined dB |",
             "|---|---|---|---|---|---|---|"]
    for fp, fr, ir in zip(curves["float plain"], curves["float refined"], curves["integer refined"]):
        lines.append(f"| {fp['setting']} | {fp['bpp']:.4f} | {fp['psnr']:.2f} | {fr['bpp']:.4f} | {fr['psnr']:.2f} | "
                     f"{ir['bpp']:.4f} | {ir['psnr']:.2f} |")
    lines += ["", "| BD-rate | % |", "|---|---|"]
    lines += [f"| {k} | {v:+.2f} |" for k, v in doc["bd_rate_percent"].items()]
    subset = "a subset of Kodak, and on small crops the containers weigh more" if setup["crop"] else "a subset of Kodak"
    lines += ["", "bpp: ideal code length (of the float model, or of the integer model) unless marked stream "
              "bytes. WebP and AVIF (the settings and qualities of the main comparison) code the same images, so "
              f"that their rows compare like with like but are not the whole-Kodak figures above ({subset}). The "
              "refined-vs-plain rows are the refinement's own effect.", ""]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(prog="refcodec refine", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="integer model file (default W16A16)")
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK)
    ap.add_argument("--images", type=int, default=4, help="the first N images of the folder")
    ap.add_argument("--crop", type=int, default=0, help="centre crop size, a multiple of 64 (0: whole images)")
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--lr", type=float, default=DEFAULT_LR)
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args(argv)
    if args.steps < 1 or not args.lr > 0:
        ap.error("--steps must be at least 1 and --lr positive")
    images = experiment_images(ap, args)
    if not images:
        return 2
    model = load_float_model(args.checkpoint).eval()
    int_model = load_model(args.model)
    doc = measure(model, int_model, images, args.steps, args.lr, log=lambda m: print(m, flush=True))
    doc = {"setup": {**checkpoint_record(args.checkpoint),
                     "model": args.model.name, "model_id": int_model.model_id.hex(),
                     "crop": args.crop, "steps": args.steps, "lr": args.lr},
           "images": list(images), **doc}
    write_experiment(doc, args.out, report_lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
