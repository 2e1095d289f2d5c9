"""Move a training checkpoint's gain units to new rate-distortion weights (informative).

    python tools/relambda.py runs/train/last.pt --old 0.0018,0.0035,0.0067,0.0130,0.0250,0.0483 \
        --new 0.00025,0.00072,0.00205,0.0059,0.0168,0.0483

The gain and inverse-gain vector of each new rate point is interpolated linearly in log lambda
between those of the two nearest old points (extrapolated beyond the old range), so that training
resumes near where the new lambdas will settle. In the Adam state of these two parameters the first
moment is zeroed and the second interpolated the same way; every other tensor is unchanged. The
file is rewritten in place after a copy to PATH.before-relambda. Then change LAMBDAS in
refcodec/train.py to the new values and resume with --resume.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refcodec.model import FloatCodec  # noqa: E402


def interpolate(table: torch.Tensor, old: np.ndarray, new: np.ndarray) -> torch.Tensor:
    """(rates, C) rows at log lambdas `old` -> rows at `new`, linear, extrapolated at the ends."""
    t = table.double().numpy()
    out = np.empty((len(new), t.shape[1]))
    for i, x in enumerate(new):
        j = int(np.clip(np.searchsorted(old, x) - 1, 0, len(old) - 2))
        a = (x - old[j]) / (old[j + 1] - old[j])
        out[i] = (1 - a) * t[j] + a * t[j + 1]
    return torch.from_numpy(out).to(table.dtype)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    args = ap.parse_args(argv)
    old = np.log([float(v) for v in args.old.split(",")])
    new = np.log([float(v) for v in args.new.split(",")])
    if len(old) != len(new) or np.any(np.diff(old) <= 0) or np.any(np.diff(new) <= 0):
        raise SystemExit("error: --old and --new need the same number of increasing lambdas")
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    shutil.copy(args.checkpoint, args.checkpoint.with_name(args.checkpoint.name + ".before-relambda"))
    names = [n for n, _ in FloatCodec().named_parameters()]
    for key in ("log2_gain", "log2_inv_gain"):
        state["model"][key] = interpolate(state["model"][key], old, new)
        if "optimizer" in state:
            adam = state["optimizer"]["state"][names.index(key)]
            adam["exp_avg"].zero_()
            adam["exp_avg_sq"].copy_(interpolate(adam["exp_avg_sq"], old, new).clamp_min(0))
    torch.save(state, args.checkpoint)
    print(f"moved the gain units of {args.checkpoint} (step {state.get('step')}) to lambdas {args.new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
