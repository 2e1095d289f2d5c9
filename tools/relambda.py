"""Move a training checkpoint's gain units to new rate-distortion weights (informative).

    python tools/relambda.py runs/train/last.pt --old 0.0018,0.0035,0.0067,0.0130,0.0250,0.0483 \
        --new 0.00025,0.00072,0.00205,0.0059,0.0168,0.0483

The gain and inverse-gain vector of each new rate point is interpolated linearly in log lambda
between those of the two nearest old points (extrapolated beyond the old range), so that training
resumes near where the new lambdas will settle. In the Adam state of these two parameters the first
moment is zeroed and the second interpolated the same way; every other tensor is unchanged. The
file is rewritten in place after a copy to PATH.before-relambda. The file may be a training state
(RUN_DIR/last.pt) or exported weights (models/float.pt, no optimiser state). Then change LAMBDAS in
refcodec/train.py to the new values and resume with --resume (or --init for exported weights).
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
    try:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # a missing file, or one that is not a torch checkpoint
        raise SystemExit(f"error: cannot read {args.checkpoint} as a checkpoint: {exc}") from None
    # A training state (refcodec.train's last.pt: model, optimizer, step) or exported weights alone.
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not {"log2_gain", "log2_inv_gain"} <= weights.keys():
        raise SystemExit(f"error: {args.checkpoint} has no gain units (log2_gain, log2_inv_gain): not a "
                         "refcodec checkpoint")
    rows = weights["log2_gain"].shape[0]
    if len(old) != rows:
        raise SystemExit(f"error: the checkpoint has {rows} rate points, --old and --new give {len(old)}")
    names = [n for n, _ in FloatCodec().named_parameters()]
    optimizer = state.get("optimizer") if "model" in state else None
    if optimizer is not None and [i for g in optimizer["param_groups"] for i in g["params"]] != list(range(len(names))):
        # refcodec.train's Adam holds every parameter, in named_parameters() order, in one group;
        # with any other layout the indices below would name other tensors.
        raise SystemExit(f"error: the optimiser of {args.checkpoint} does not hold the model's "
                         f"{len(names)} parameters in order")
    shutil.copy(args.checkpoint, args.checkpoint.with_name(args.checkpoint.name + ".before-relambda"))
    for key in ("log2_gain", "log2_inv_gain"):
        weights[key] = interpolate(weights[key].float(), old, new).to(weights[key].dtype)
        adam = optimizer["state"].get(names.index(key)) if optimizer is not None else None
        if adam:  # no moments yet for a parameter that has had no gradient
            adam["exp_avg"].zero_()
            adam["exp_avg_sq"].copy_(interpolate(adam["exp_avg_sq"], old, new).clamp_min(0))
    torch.save(state, args.checkpoint)
    print(f"moved the gain units of {args.checkpoint} (step {state.get('step')}) to lambdas {args.new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
