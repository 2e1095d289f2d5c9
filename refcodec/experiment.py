"""What the experiments share (informative): the images they measure, the float model's operating
point, the anchor codecs, mean curves and BD-rates, and how an experiment writes its results.

refcodec.evaluate, refcodec.ceiling, refcodec.crossdevice and refcodec.refine's measurement (and
bench/bench_refine.py) import these from here, none from another experiment, so that every
experiment measures the float model, the anchors and the curves the same way; the results page
(refcodec.evaluate) sets their figures side by side.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .bdrate import bd_rate
from .codec import analyse, load_rgb, psnr
from .model import FloatCodec, mixture_likelihood

ANCHORS = {
    "JPEG 4:2:0": ("JPEG", {"subsampling": 2}, [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    "JPEG 4:4:4": ("JPEG", {"subsampling": 0}, [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    # The lowest WebP and AVIF qualities reach down to the PSNR range of the test model (WebP at
    # quality 5 is already above 28 dB on Kodak), so that the BD-rates against them are defined.
    "WebP": ("WEBP", {"method": 6}, [0, 1, 2, 3, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    "AVIF 4:4:4 speed 4": ("AVIF", {"speed": 4, "subsampling": "4:4:4"}, [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90]),
}


# --- the images ------------------------------------------------------------------------------------

def centre_crop(img: np.ndarray, crop: int) -> np.ndarray:
    """The central crop x crop window (the whole image when crop is 0 or larger than it)."""
    h, w, _ = img.shape
    if crop <= 0 or crop >= min(h, w):
        return img
    top, left = (h - crop) // 2, (w - crop) // 2
    return np.ascontiguousarray(img[top: top + crop, left: left + crop])


def kodak_images(folder: Path, count: int, crop: int) -> dict:
    """{file name: (H, W, 3) uint8 centre crop} of the first count PNG images of the folder, sorted
    by name; empty when there are none."""
    return {p.name: centre_crop(load_rgb(p), crop) for p in sorted(folder.glob("*.png"))[:count]}


def experiment_images(ap, args) -> dict:
    """kodak_images for an experiment's command line (--kodak, --images, --crop; refcodec.ceiling's,
    refcodec.refine's, refcodec.crossdevice's and bench/bench_refine.py's): a usage error for
    --images below 1 or a --crop that is not 0 or a multiple of 64; empty, after an error message,
    when the folder has no PNG images."""
    if args.images < 1:
        ap.error(f"--images must be at least 1, got {args.images}")
    if args.crop < 0 or args.crop % 64:
        ap.error(f"--crop must be 0 or a positive multiple of 64, got {args.crop}")
    images = kodak_images(args.kodak, args.images, args.crop)
    if not images:
        print(f"error: no PNG images in {args.kodak}", file=sys.stderr)
    return images


def write_experiment(doc: dict, out: Path, report_lines) -> None:
    """An experiment's JSON file, and its results page section (report_lines(doc, file name)) on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print("\n".join(report_lines(doc, out.name)))


# --- the float model's operating point -------------------------------------------------------------

@torch.no_grad()
def float_latent_cost(model: FloatCodec, z_hat: np.ndarray, y_hat: np.ndarray, rate: int, size):
    """The float model on rounded latents: the ideal code lengths (bits, 0-d tensors) of y_hat under
    its mixture and of z_hat under its factorised density, and its 8-bit reconstruction cropped to
    size (H, W), as an (H, W, 3) array. Computed in the dtype of the model's parameters."""
    dtype = next(model.parameters()).dtype
    y = torch.from_numpy(y_hat)[None].to(dtype)
    z = torch.from_numpy(z_hat)[None].to(dtype)
    y_bits = -torch.log2(mixture_likelihood(y, model.entropy_parameters(y, z)).clamp_min(1e-12)).sum()
    z_bits = -torch.log2(model.z_density.likelihood(z).clamp_min(1e-12)).sum()
    return y_bits, z_bits, eight_bit(model.decode_pixels(y, torch.tensor([rate]))[0], size)


def eight_bit(x_hat: torch.Tensor, size) -> np.ndarray:
    """A (3, H', W') synthesis output in 8-bit units as the (H, W, 3) image of size (H, W):
    rounded, clamped to 0..255 and cropped, as the integer decoder outputs it."""
    h, w = size
    return torch.clamp(torch.round(x_hat), 0, 255)[:, :h, :w].permute(1, 2, 0).numpy()


def float_point(model: FloatCodec, img: np.ndarray, rate: int, latents=None):
    """(bpp, psnr) of the float model: ideal code length of the rounded latents (by default the
    analysis output's; or latents = (z_hat, y_hat)), 8-bit output."""
    z_hat, y_hat = analyse(model, img, rate) if latents is None else latents
    h, w, _ = img.shape
    y_bits, z_bits, rec = float_latent_cost(model, z_hat, y_hat, rate, (h, w))
    return float(y_bits + z_bits) / (h * w), psnr(rec, img)


# --- the anchors and the curves --------------------------------------------------------------------

def anchor_point(img: np.ndarray, fmt: str, options: dict, quality: int):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, quality=quality, **options)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        rec = np.asarray(im.convert("RGB"))
    return 8 * len(data) / (img.shape[0] * img.shape[1]), psnr(rec, img)


def anchor_sweep(img: np.ndarray, codec: str) -> dict:
    """{quality: {"bpp", "psnr"}} of one of ANCHORS over its quality sweep, for one image."""
    fmt, options, qualities = ANCHORS[codec]
    return {q: dict(zip(("bpp", "psnr"), anchor_point(img, fmt, options, q))) for q in qualities}


def mean_curve(points):
    """Average bpp and PSNR over images for each setting (the usual Kodak convention)."""
    by_setting = {}
    for p in points:
        by_setting.setdefault(p["setting"], []).append(p)
    curve = []
    for setting, ps in sorted(by_setting.items()):
        curve.append({"setting": setting, "bpp": float(np.mean([p["bpp"] for p in ps])),
                      "psnr": float(np.mean([p["psnr"] for p in ps])), "n": len(ps)})
    return sorted(curve, key=lambda c: c["bpp"])


def curve_bd_rate(anchor: list, test: list) -> float:
    """BD-rate (percent) of one curve of mean_curve's form against another."""
    return bd_rate([c["bpp"] for c in anchor], [c["psnr"] for c in anchor],
                   [c["bpp"] for c in test], [c["psnr"] for c in test])
