"""Training on a lent GPU machine (informative; not part of the decoding process).

A lent machine sees only the working tree (64 MiB in all, the tracked files included) and gives
back at most 8 files of 16 MiB each, from $OUT, after a command of at most 10 minutes. Training
there therefore comes in two halves:

    python tools/device_train.py prepare           # here: a subset of the training images, .devdata/
    run(command="set -o pipefail; PYTHONUNBUFFERED=1 python3 tools/device_train.py run --seconds 500 2>&1 | tee $OUT/train.log",
        carry=[".devdata"], timeout_s=600)

``prepare`` copies a fixed, seeded selection of ../shared/data/train into .devdata/train (ignored by
git through .git/info/exclude), as many files as fit beside the tracked files under the travel
limit. ``run`` trains from the committed weights (or --init) with ``refcodec.train`` under a
wall-clock limit, so that the run ends, its weights exported, well inside the command's limit;
$OUT receives the float16 weights with their step sidecar (11 MB: the optimiser state is too large
to come back, so every lent run starts Adam afresh); the command above adds the training log. Evaluate what comes back
with ``python -m refcodec.evaluate --checkpoint ... --out /tmp/eval`` before adopting it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVDATA = ROOT / ".devdata"
DEFAULT_TRAIN_DIR = ROOT.parent / "shared" / "data" / "train"
TRAVEL_LIMIT = 64 * 2**20  # bytes of working tree a run call takes
TRAVEL_MARGIN = 2 * 2**20  # for untracked files that are not ignored (logs, notes)
SELECTION_SEED = 0

# What a lent H200 trains with: the CPU runs' settings but larger crops and batches (this model is
# small: batch 8 of 128x128 would leave most of the GPU unused; not yet measured there), a new crop pool every 2000 steps (the carried images are a fifth of
# the training set), and a learning rate for continuing, not starting, a run.
GPU_TRAIN_ARGS = ["--crop", "256", "--batch", "16", "--bf16", "--lr", "5e-5", "--crops-per-image", "8",
                  "--pool-refresh", "2000", "--log-every", "200"]


def tracked_bytes(root: Path = ROOT) -> int:
    """Size of the files git tracks: they travel with every run call."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True).stdout
    return sum((root / n).stat().st_size for n in names.decode().split("\0") if n and (root / n).is_file())


def select_images(data: Path, budget: int, seed: int = SELECTION_SEED) -> list[Path]:
    """A seeded random selection of the training images whose sizes sum to at most budget bytes."""
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    random.Random(seed).shuffle(files)
    chosen, total = [], 0
    for path in files:
        size = path.stat().st_size
        if total + size <= budget:
            chosen.append(path)
            total += size
    return sorted(chosen)


def ignore_devdata(root: Path = ROOT) -> None:
    exclude = root / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if "/.devdata/" not in lines:
        exclude.write_text("\n".join(lines + ["/.devdata/"]) + "\n")


def prepare(data: Path, megabytes: float | None, dest: Path = DEVDATA, root: Path = ROOT) -> list[Path]:
    if not data.is_dir():
        raise SystemExit(f"error: no training images at {data}")
    room = TRAVEL_LIMIT - TRAVEL_MARGIN - tracked_bytes(root)
    budget = room if megabytes is None else int(megabytes * 2**20)
    if budget > room:
        raise SystemExit(f"error: {budget / 2**20:.1f} MiB of images would not travel: the tracked files "
                         f"leave {max(room, 0) / 2**20:.1f} MiB under the {TRAVEL_LIMIT // 2**20} MiB limit")
    chosen = select_images(data, budget)
    if not chosen:
        raise SystemExit(f"error: no training image fits in {budget / 2**20:.1f} MiB")
    ignore_devdata(root)
    target = dest / "train"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in chosen:
        shutil.copyfile(path, target / path.name)
    total = sum(p.stat().st_size for p in chosen)
    print(f"{len(chosen)} of the training images ({total / 2**20:.1f} MiB) in {target}; "
          f"carry {dest.name} in the run call", flush=True)
    return chosen


NO_STEP_LIMIT = 10**9  # --steps is a global step: beyond any checkpoint's, so the time limit ends the run


def train_argv(init: Path, seconds: float, out: Path, data: Path, run_dir: Path, extra: list[str]) -> list[str]:
    return (["--data", str(data), "--run-dir", str(run_dir), "--init", str(init),
             "--steps", str(NO_STEP_LIMIT), "--time-limit", str(seconds),
             "--checkpoint-every", str(NO_STEP_LIMIT), "--export", str(out / "float.pt")]
            + GPU_TRAIN_ARGS + extra)


def run(init: Path, seconds: float, out: Path, data: Path, extra: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    from refcodec import train
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out.parent / (out.name + ".run")  # the full state stays behind: too large to come back
    argv = train_argv(init, seconds, out, data, run_dir, extra)
    print("refcodec.train " + " ".join(argv), flush=True)
    return train.main(argv)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="device_train", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: copy training images that fit into .devdata/train")
    p.add_argument("--data", type=Path, default=DEFAULT_TRAIN_DIR)
    p.add_argument("--megabytes", type=float, help="at most this many MiB (default: all that travel)")
    r = sub.add_parser("run", help="on the lent machine: train under a time limit, results to $OUT")
    r.add_argument("--seconds", type=float, default=500, help="training's wall-clock limit")
    r.add_argument("--init", type=Path, default=ROOT / "models" / "float.pt")
    r.add_argument("--data", type=Path, default=DEVDATA / "train")
    r.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if "OUT" in os.environ else None)
    r.add_argument("train_args", nargs=argparse.REMAINDER, help="more refcodec.train options (after --)")
    args = ap.parse_args(argv)
    if args.command == "prepare":
        prepare(args.data, args.megabytes)
        return 0
    if args.out is None:
        ap.error("run needs --out or $OUT")
    if not args.data.is_dir():
        ap.error(f"no training images at {args.data}: run 'prepare' here and carry .devdata")
    extra = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    return run(args.init, args.seconds, args.out, args.data, extra)


if __name__ == "__main__":
    sys.exit(main())
