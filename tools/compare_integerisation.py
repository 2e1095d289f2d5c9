"""Compare integerisation methods on held-out training images (informative; never Kodak).

For each variant, the integer model's ideal code length of the y latents (bits) and the PSNR of its
synthesis on training images that the calibration does not use, against W16A16 with plain rounding (and
the float model's, by its continuous mixture likelihood and unquantised synthesis):

    python tools/compare_integerisation.py --checkpoint models/float.pt --images 6 --crop 384
    python tools/compare_integerisation.py --variants "W16A16 compensated"   # a subset; prints seconds

Variants reuse the bit widths recorded in the committed models (no search), so the comparison
isolates the weight rounding.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from refdec.model_file import parse_model  # noqa: E402

from refcodec import integerise as integ  # noqa: E402
from refcodec.codec import psnr  # noqa: E402
from refcodec.experiment import float_latent_cost  # noqa: E402
from refcodec.model import load_float_model  # noqa: E402
from refcodec.options import DEFAULT_TRAIN_DIR  # noqa: E402
from refcodec.train import list_images  # noqa: E402

MODELS = ROOT / "refdec" / "models"
VARIANTS = {
    "W16A16 rounding": ("W16A16", {"bias_correction": False, "compensation": False}),
    "W16A16 bias correction": ("W16A16", {"bias_correction": True, "compensation": False}),
    "W16A16 compensated": ("W16A16", {"bias_correction": False, "compensation": True}),
    "W8A16 rounding": ("W8A16", {"bias_correction": False, "compensation": False}),
    "W8A16 bias correction": ("W8A16", {"bias_correction": True, "compensation": False}),
    "W8A16 compensated": ("W8A16", {"bias_correction": False, "compensation": True}),
}
REFERENCE = "W16A16 rounding"


def float_reference(model, samples):
    """(y bits, mean PSNR) of the float model on the samples: the references the integer models approach."""
    bits, psnrs = 0.0, []
    for s in samples:
        y_bits, _, rec = float_latent_cost(model, s["z_hat"], s["y_hat"], s["rate"], s["image"].shape[1:])
        bits += float(y_bits)
        psnrs.append(psnr(rec, s["image"].transpose(1, 2, 0)))
    return bits, float(np.mean(psnrs))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "float.pt")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--crop", type=int, default=384)
    ap.add_argument("--rates", default="0,1,2,3,4,5")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated subset of: " + ", ".join(VARIANTS) + " (W16A16 rounding is always run: the reference)")
    args = ap.parse_args(argv)
    chosen = list(dict.fromkeys([REFERENCE] + [v for v in args.variants.split(",") if v]))  # in order, once each
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    torch.set_grad_enabled(False)
    calib = {p: integ.default_calibration_files(DEFAULT_TRAIN_DIR, n) for p, n in integ.DEFAULT_CALIBRATION_IMAGES.items()}
    used = {f for files in calib.values() for f in files}
    held_out = [f for f in list_images(DEFAULT_TRAIN_DIR)[1::97] if f not in used][: args.images]
    rates = [int(r) for r in args.rates.split(",")]
    model = load_float_model(args.checkpoint).double().eval()
    _, _, samples = integ.calibrate(model, integ.load_calibration(held_out, args.crop), rates)
    bits_of = {p: parse_model((MODELS / f"refdec-test-{p.lower()}.npz").read_bytes()).header["provenance"]["bits"]
               for p in ("W16A16", "W8A16")}
    rows = {"float": float_reference(model, samples)}
    print(f"float: {rows['float'][0]:.0f} bits, {rows['float'][1]:.3f} dB", flush=True)
    for name in chosen:
        profile, options = VARIANTS[name]
        started = time.perf_counter()
        data = integ.integerise(args.checkpoint, profile, calib[profile], 256, [0, 2, 5], log=lambda *_: None,
                                fixed_bits=bits_of[profile], **options)
        m = parse_model(data)
        bits = sum(integ.symbol_bits(m, s) for s in samples)
        mse = np.array([integ.synthesis_mse(m, s) for s in samples])
        rows[name] = (bits, float(np.mean(10 * np.log10(255.0**2 / mse))))
        print(f"{name}: {bits:.0f} bits, {rows[name][1]:.3f} dB ({time.perf_counter() - started:.0f} s)", flush=True)
    ref_bits, ref_psnr = rows[REFERENCE]
    print(f"\n{len(held_out)} held-out training images, crop {args.crop}, rates {args.rates}\n")
    print(f"| variant | y bits vs {REFERENCE} | PSNR vs {REFERENCE} |\n|---|---|---|")
    for name, (bits, p) in rows.items():
        print(f"| {name} | {100 * (bits / ref_bits - 1):+.3f}% | {p - ref_psnr:+.4f} dB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
