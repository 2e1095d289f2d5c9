"""Training of the float model (informative; not part of the decoding process).

Variable-rate rate-distortion training with gain units: every sample draws a
rate point r and is weighted by LAMBDAS[r]. Quantisation surrogate:
stochastic uniform annealing (model.quantize_sua) with a temperature that
decays from 1 to --tau-end over --anneal-steps, scale lower bound SCALE_MIN,
zero-centre rounding with a straight-through gradient for the decoder path.
With --bf16 the analysis and synthesis transforms run in mixed precision
(model.FloatCodec.bf16_transforms); the weights and the optimiser stay float32.

Resumable: the full state (model, optimiser, step, RNG) goes to
RUN_DIR/last.pt every --checkpoint-every steps, and --resume continues from it.
--time-limit stops a run cleanly, with its state saved and its weights exported, once a
wall-clock budget is spent: a session's remaining time, or a lent GPU's call limit
(tools/device_train.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .model import NUM_RATES, FloatCodec
from .options import DEFAULT_TRAIN_DIR

# MSE in 8-bit units is multiplied by LAMBDAS[r] * 255^2 (CompressAI's convention). Geometric,
# ratio 2.87: the bit rate of this model grows only as about lambda^(1/3), so the lowest point needs
# a small lambda to come down to about 0.1 bpp on Kodak (the earlier lambdas of the test model:
# results/design-history.md).
LAMBDAS = (0.00025, 0.00072, 0.00205, 0.0059, 0.0168, 0.0483)
assert len(LAMBDAS) == NUM_RATES



def list_images(folder: Path):
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"error: no training images in {folder}")
    return files


def make_crop_pool(files, crop, crops_per_image, seed):
    """Random crops after a random downscale by a factor in [0.5, 1.0] (JPEG-artefact suppression)."""
    rng = random.Random(seed)
    pool = []
    for path in files:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            lo = max(0.5, crop / min(w, h))
            if lo > 1.0:
                continue
            for _ in range(crops_per_image):
                f = rng.uniform(lo, 1.0)
                sw, sh = max(crop, round(w * f)), max(crop, round(h * f))
                small = im.resize((sw, sh), Image.BICUBIC) if (sw, sh) != (w, h) else im
                x0, y0 = rng.randint(0, sw - crop), rng.randint(0, sh - crop)
                pool.append(np.asarray(small.crop((x0, y0, x0 + crop, y0 + crop)), dtype=np.uint8))
    return np.stack(pool)


def batch_from_pool(pool, batch, gen, device="cpu"):
    idx = torch.randint(len(pool), (batch,), generator=gen)
    # Bytes travel to the device, floats are made there (a quarter of the transfer).
    x = torch.from_numpy(pool[idx.numpy()]).to(device).permute(0, 3, 1, 2).float() / 255.0
    if torch.rand(1, generator=gen).item() < 0.5:
        x = x.flip(3)
    if torch.rand(1, generator=gen).item() < 0.5:
        x = x.flip(2)
    return x


def learning_rate(step, base, drops):
    """base, replaced by LR from each (STEP, LR) of drops once step reaches STEP."""
    lr = base
    for at, value in sorted(drops):
        if step >= at:
            lr = value
    return lr


def lr_drop(text):
    """argparse type of --lr-drop STEP:LR."""
    try:
        at, value = text.split(":")
        return int(at), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected STEP:LR (e.g. 40000:1e-4), got {text!r}") from None


def temperature(step, anneal_steps, tau_end):
    return tau_end + (1 - tau_end) * max(0.0, 1 - step / anneal_steps)


def rd_loss(model, x, rate, tau):
    x_hat, y_lik, z_lik = model(x, rate, tau)
    num_pixels = x.shape[2] * x.shape[3]
    bits = -(torch.log2(y_lik).sum(dim=(1, 2, 3)) + torch.log2(z_lik).sum(dim=(1, 2, 3)))
    bpp = bits / num_pixels
    mse = ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
    lam = torch.tensor(LAMBDAS, device=x.device)[rate]
    loss = (lam * 255**2 * mse + bpp).mean()
    psnr = (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean()
    return loss, bpp.mean(), psnr


def save_state(path, model, opt, step, args):
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "args": vars(args), "rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def export_weights(model, path, step=None):
    """Weights only, float16: the committed float checkpoint (lean repository).

    With step, a sidecar PATH.json records it so that --init continues the
    temperature schedule where training stopped.
    """
    state = {k: v.detach().to(torch.float16) for k, v in model.state_dict().items()}
    torch.save(state, path)
    if step is not None:
        Path(path).with_suffix(".json").write_text(json.dumps({"step": step}) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="refcodec train", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_TRAIN_DIR)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/train"))
    ap.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    ap.add_argument("--init", type=Path, help="start from these weights (e.g. models/float.pt)")
    ap.add_argument("--steps", type=int, default=3000, help="stop at this global step")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--crops-per-image", type=int, default=6)
    ap.add_argument("--max-images", type=int, default=0, help="use only the first N images (smoke tests)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--lr-drop", type=lr_drop, action="append", default=[], metavar="STEP:LR",
                    help="from global step STEP on, learn at LR (repeatable)")
    ap.add_argument("--pool-refresh", type=int, default=5000, metavar="N",
                    help="draw a new pool of crops every N steps (0: never)")
    ap.add_argument("--anneal-steps", type=int, default=20000)
    ap.add_argument("--tau-end", type=float, default=0.25)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--time-limit", type=float, default=0, metavar="SECONDS",
                    help="stop after the step that spends this much wall-clock time (0: no limit); "
                         "the state is saved and the weights exported as at --steps")
    ap.add_argument("--export", type=Path, help="write float16 weights here at the end")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bf16", action="store_true",
                    help="mixed precision: analysis and synthesis (but their last layers) in bfloat16")
    args = ap.parse_args(argv)
    if args.time_limit < 0:
        ap.error(f"--time-limit must be at least 0 seconds, got {args.time_limit:g}")
    started = time.monotonic()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed shapes: pick the fastest kernels once
    model = FloatCodec().to(device)
    model.bf16_transforms = args.bf16
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step = 0
    args.run_dir.mkdir(parents=True, exist_ok=True)
    last = args.run_dir / "last.pt"
    if args.resume and last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"resumed from {last} at step {step}", flush=True)
    elif args.init:
        state = torch.load(args.init, map_location=device, weights_only=True)
        model.load_state_dict({k: v.float() for k, v in state.items()})
        sidecar = args.init.with_suffix(".json")
        if sidecar.exists():
            step = json.loads(sidecar.read_text())["step"]
        print(f"initialised from {args.init} at step {step}", flush=True)

    files = list_images(args.data)
    if args.max_images:
        files = files[: args.max_images]

    def new_pool():
        t0 = time.time()
        crops = make_crop_pool(files, args.crop, args.crops_per_image, args.seed + step)
        print(f"crop pool: {len(crops)} crops of {args.crop}x{args.crop} from {len(files)} images "
              f"in {time.time() - t0:.1f}s", flush=True)
        return crops

    pool = new_pool()
    gen = torch.Generator().manual_seed(args.seed * 7919 + step)

    model.train()
    first_step = step
    acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
    t_last = time.time()
    out_of_time = False
    while step < args.steps and not out_of_time:
        lr = learning_rate(step, args.lr, args.lr_drop)
        for group in opt.param_groups:
            group["lr"] = lr
        if args.pool_refresh and step % args.pool_refresh == 0 and step != first_step:
            pool = new_pool()
        x = batch_from_pool(pool, args.batch, gen, device)
        rate = torch.randint(NUM_RATES, (args.batch,), generator=gen).to(device)
        tau = temperature(step, args.anneal_steps, args.tau_end)
        loss, bpp, psnr = rd_loss(model, x, rate, tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        out_of_time = bool(args.time_limit) and time.monotonic() - started >= args.time_limit
        for key, val in (("loss", loss), ("bpp", bpp), ("psnr", psnr)):
            acc[key] += val.detach()  # summed on the device: no synchronisation per step on a GPU
        acc["n"] += 1
        if step % args.log_every == 0 or step == args.steps or out_of_time:
            n = acc["n"]
            dt = (time.time() - t_last) / n
            print(f"step {step:6d}  loss {float(acc['loss'])/n:.4f}  bpp {float(acc['bpp'])/n:.4f}  "
                  f"psnr {float(acc['psnr'])/n:.2f} dB  tau {tau:.3f}  lr {lr:.1e}  {dt:.2f} s/step", flush=True)
            acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
            t_last = time.time()
        if step % args.checkpoint_every == 0 or step == args.steps or out_of_time:
            save_state(last, model, opt, step, args)
            if not math.isfinite(loss.item()):
                raise SystemExit("error: loss is not finite; stopping")
    if out_of_time:
        print(f"time limit of {args.time_limit:g} s reached at step {step}", flush=True)
    if args.export:
        export_weights(model, args.export, step)
        print(f"exported float16 weights to {args.export}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
