"""The cross-device failure that motivates the integer decoder (informative experiment).

A float entropy model is used as a codec would use it: the encoder computes
each element's mixture CDF in float32, quantises it to 16-bit frequencies and
range-codes the latent; the decoder recomputes the same CDFs from what it has
decoded so far, wavefront by wavefront. The decoder side is then perturbed in
ways that happen between devices:

* ``float64``: the entropy networks run in float64 instead of float32;
* ``ulp``: every scale sigma is moved up by one float32 ulp;
* ``threads``: the networks run with a different thread count.

For each perturbation we count the elements whose quantised CDF table differs
from the encoder's (computed from the true latent), and decode the stream for
real: after the first such element the range decoder desynchronises and the
remaining latents come out wrong. The integer model (refdec) gives identical
tables by construction; the same count is reported for it as a control.

    python -m refcodec.crossdevice --checkpoint models/float.pt --images 4 --out results/crossdevice.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from refdec.constants import CONTEXT_INPUT_MAX
from refdec.latent import wavefronts
from refdec.range_decoder import RangeDecoder
from refdec.generators.range_encoder import RangeEncoder

from .codec import analyse
from .experiment import experiment_images
from .model import NUM_RATES, FloatCodec, checkpoint_record, linearised_softmax, load_float_model, normal_cdf, scale_from_index, split_mixture
from .options import DEFAULT_KODAK

HALF_WINDOW = 16  # window of +-16 around the rounded mixture mean, plus an escape-free clamp
PROB_ONE = 1 << 16


def float_tables(params: torch.Tensor, ulp: bool = False):
    """Quantised CDF tables (E, 2R+2) and window starts (E,) from gather outputs (P, 3*K*C)."""
    logits, means, scale_idx = split_mixture(params[:, :, None, None])
    w = linearised_softmax(logits, dim=1)
    sigma = scale_from_index(scale_idx)
    if ulp:
        sigma = torch.nextafter(sigma, torch.full_like(sigma, float("inf")))
    centre = torch.round((w * means).sum(dim=1))  # (P, C, 1, 1)
    offsets = torch.arange(-HALF_WINDOW, HALF_WINDOW + 2, dtype=params.dtype) - 0.5  # boundaries
    b = centre[..., None] + offsets  # (P, C, 1, 1, J)
    m = (w[..., None] * normal_cdf((b[:, None] - means[..., None]) / sigma[..., None])).sum(dim=1)
    m = m[..., 0, 0, :]  # (P, C, J)
    n = 2 * HALF_WINDOW + 1
    d = (m - m[..., :1]) / torch.clamp(m[..., -1:] - m[..., :1], min=1e-30)
    cdf = torch.arange(n + 1, dtype=params.dtype) + torch.floor(d * (PROB_ONE - n - 1))
    lo = centre[..., 0, 0] - HALF_WINDOW
    return cdf.reshape(-1, n + 1).long(), lo.reshape(-1).long()


def _context(model, y_hat):
    q = torch.clamp(y_hat, -CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX)
    return [F.leaky_relu(conv(q), 0.125) for conv in model.context]


def gather_at(model, hyper, y_hat, ys, xs):
    ctx = _context(model, y_hat)
    g = torch.cat([hyper[0, :, ys, xs]] + [c[0, :, ys, xs] for c in ctx], dim=0).T[:, :, None, None]
    for stage in model.gather:
        g = stage(g)
    return g[:, :, 0, 0]


def code(enc_or_dec, cdf_row, lo, value=None):
    """Code one element with a clamped window (values outside are clamped by the encoder)."""
    n = cdf_row.shape[0] - 1
    table = cdf_row.tolist()
    if value is not None:
        j = min(max(value - lo, 0), n - 1)
        enc_or_dec.encode_symbol(table, n, j)
        return lo + j
    return lo + enc_or_dec.decode_symbol(table, n)


@torch.no_grad()
def run_image(model: FloatCodec, img, rate, variant):
    z_hat, y_hat = analyse(model, img, rate)
    dtype = torch.float64 if variant == "float64" else torch.float32
    net = FloatCodec()
    net.load_state_dict(model.state_dict())
    net = net.to(dtype).eval()
    y = torch.from_numpy(y_hat)[None].to(dtype)
    hyper = net.hyper_synthesis(torch.clamp(torch.from_numpy(z_hat)[None].to(dtype), -255, 255))
    ref = model.float().eval()
    ref_hyper = ref.hyper_synthesis(torch.clamp(torch.from_numpy(z_hat)[None].float(), -255, 255))
    # Encoder: float32, full tensor.
    enc = RangeEncoder()
    coded = torch.zeros_like(y)
    _, c, hy, wy = y.shape
    enc_tables = {}
    for ys, xs in wavefronts(hy, wy):
        ys_t, xs_t = torch.from_numpy(ys), torch.from_numpy(xs)
        p = gather_at(ref, ref_hyper, y.float(), ys_t, xs_t)
        cdf, lo = float_tables(p)
        vals = y[0, :, ys_t, xs_t].T.reshape(-1).long().tolist()
        for e, v in enumerate(vals):
            code(enc, cdf[e], int(lo[e]), v)
        enc_tables[len(enc_tables)] = (cdf, lo)
    stream = enc.finish()
    # Decoder: perturbed.
    threads = torch.get_num_threads()
    if variant == "threads":
        torch.set_num_threads(1 if threads > 1 else 2)
    dec = RangeDecoder(stream)
    y_dec = torch.zeros_like(y)
    mismatched_tables = 0
    first_wrong = None
    try:
        for t, (ys, xs) in enumerate(wavefronts(hy, wy)):
            ys_t, xs_t = torch.from_numpy(ys), torch.from_numpy(xs)
            p = gather_at(net, hyper, y_dec, ys_t, xs_t)
            cdf, lo = float_tables(p, ulp=(variant == "ulp"))
            e_cdf, e_lo = enc_tables[t]
            mismatched_tables += int(((cdf != e_cdf).any(dim=1) | (lo != e_lo)).sum())
            vals = []
            for e in range(cdf.shape[0]):
                try:
                    vals.append(code(dec, cdf[e], int(lo[e])))
                except Exception:
                    vals.append(0)
            y_dec[0, :, ys_t, xs_t] = torch.tensor(vals, dtype=y.dtype).reshape(len(ys), c).T
    finally:
        torch.set_num_threads(threads)
    wrong = int((y_dec.round() != torch.clamp(y, -10**6, 10**6)).sum())
    return {"variant": variant, "elements": int(y.numel()), "mismatched_tables": mismatched_tables,
            "wrong_latents": wrong, "decoded_correctly": wrong == 0}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="refcodec crossdevice", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--rate", type=int, default=3)
    ap.add_argument("--crop", type=int, default=256, help="centre crop, a multiple of 64 (speed); 0 for whole images")
    ap.add_argument("--out", type=Path, default=Path("results/crossdevice.json"))
    args = ap.parse_args(argv)
    if not 0 <= args.rate < NUM_RATES:
        ap.error(f"expected --rate one of 0..{NUM_RATES - 1}, got {args.rate}")
    images = experiment_images(ap, args)
    if not images:
        return 2
    model = load_float_model(args.checkpoint).eval()
    results = []
    for name, img in images.items():
        for variant in ("float64", "ulp", "threads"):
            r = run_image(model, img, args.rate, variant)
            r["image"] = name
            results.append(r)
            print(json.dumps(r), flush=True)
    summary = {}
    for variant in ("float64", "ulp", "threads"):
        rs = [r for r in results if r["variant"] == variant]
        summary[variant] = {"images": len(rs), "images_decoded_wrongly": sum(not r["decoded_correctly"] for r in rs),
                            "wrong_latents": sum(r["wrong_latents"] for r in rs),
                            "mismatched_tables": sum(r["mismatched_tables"] for r in rs),
                            "elements": sum(r["elements"] for r in rs)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    setup = {**checkpoint_record(args.checkpoint),
             "rate": args.rate, "crop": args.crop or "whole images"}
    args.out.write_text(json.dumps({"setup": setup, "summary": summary, "results": results}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
