"""`refcodec`: the PyTorch implementation's command-line tool.

    refcodec encode IN.png -o OUT.rdc --model MODEL.npz [--checkpoint FLOAT.pt] [--rate R] [--refine STEPS]
    refcodec decode IN.rdc -o OUT.png [--model MODEL.npz] [--device cuda]
    refcodec train ...        (python -m refcodec.train)
    refcodec integerise ...   (python -m refcodec.integerise)
    refcodec evaluate ...     (python -m refcodec.evaluate)
    refcodec refine ...       (python -m refcodec.refine: the latent refinement's measurement)

Every subcommand needs the torch extra (evaluate the eval extra too); without it the command
prints one line naming the extra to install and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .options import DEFAULT_CHECKPOINT, DEFAULT_MODEL, non_negative

# refdec installs without the extras, so this command can be on PATH without PyTorch. Each
# subcommand's third-party modules and the extra of pyproject.toml that installs them: a missing
# one is one line naming the extra and exit 2, before any work (not an import traceback).
NEEDS = {"encode": ("torch",), "decode": ("torch",), "train": ("torch",), "integerise": ("torch",),
         "evaluate": ("torch", "scipy"), "refine": ("torch",)}
EXTRA_OF = {"torch": "torch", "tqdm": "torch", "scipy": "eval", "matplotlib": "eval"}
INSTALL = {"torch": 'pip install "refdec[torch]" (PyTorch only as torch==2.13.0, which the extra pins)',
           "eval": 'pip install "refdec[eval]"'}


def _encode(args) -> int:
    from refdec.model_file import load_model

    from .codec import encode_image, load_rgb
    from .model import load_float_model

    float_model = load_float_model(args.checkpoint).eval()
    model = load_model(args.model)
    if not 0 <= args.rate < model.num_rates:
        raise ValueError(f"--rate {args.rate}: {args.model.name} has rate points 0 to {model.num_rates - 1}")
    t0 = time.time()
    img = load_rgb(args.input)
    latents = None
    if args.refine:  # imported only with --refine: refcodec.refine needs scipy (the eval extra) too
        from .refine import refine_latents

        latents = refine_latents(float_model, img, args.rate, args.refine)[:2]
    enc = encode_image(float_model, model, img, args.rate, args.device, latents)
    args.output.write_bytes(enc.stream)
    refined = f", latents refined by {args.refine} steps" if args.refine else ""
    print(f"{args.input} -> {args.output}: {len(enc.stream)} bytes, {enc.bits_per_pixel:.4f} bpp, "
          f"rate {args.rate}{refined}, {time.time() - t0:.1f}s", file=sys.stderr)
    return 0


def _decode(args) -> int:
    from PIL import Image

    from refdec.model_file import load_model

    from .codec import decode_torch

    image = decode_torch(args.input.read_bytes(), load_model(args.model), args.device)
    Image.fromarray(image.transpose(1, 2, 0)).save(args.output, format="PNG")
    return 0


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that is no package; a module without a spec
        return False


def _missing_extra(command: str, module: str) -> int:
    """One line naming the extra that installs module, exit status 2."""
    extra = EXTRA_OF.get(module)
    hint = INSTALL.get(extra, f"pip install {module}")
    print(f"refcodec: error: 'refcodec {command}' needs {module}, which is not installed: {hint}", file=sys.stderr)
    return 2


def _run(command: str, call) -> int:
    """call() after checking the command's modules; an extra's module missing on import later
    (a dependency of it, a module this table does not list) is the same one line."""
    for module in NEEDS.get(command, ()):
        if not _installed(module):
            return _missing_extra(command, module)
    try:
        return call()
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF:
            raise
        return _missing_extra(command, top)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = {"train": "train", "integerise": "integerise", "evaluate": "evaluate", "refine": "refine"}
    if argv and argv[0] in passthrough:
        import importlib

        return _run(argv[0], lambda: importlib.import_module(f"refcodec.{passthrough[argv[0]]}").main(argv[1:]))
    ap = argparse.ArgumentParser(prog="refcodec", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    e = sub.add_parser("encode", help="encode a PNG to a refdec bitstream")
    e.add_argument("input", type=Path)
    e.add_argument("-o", "--output", type=Path, required=True)
    e.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    e.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    e.add_argument("--rate", type=int, default=2)
    e.add_argument("--device", default="cpu", help="device of the integer entropy model")
    e.add_argument("--refine", type=non_negative, default=0, metavar="STEPS",
                   help="refine the latents for the rate-distortion cost by STEPS steps (refcodec.refine; "
                        "on the CPU; 100 steps take about 90 s for a 768x512 image on this project's machines)")
    e.set_defaults(run=_encode)
    d = sub.add_parser("decode", help="decode with the torch integer decoder")
    d.add_argument("input", type=Path)
    d.add_argument("-o", "--output", type=Path, required=True)
    d.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    d.add_argument("--device", default="cpu")
    d.set_defaults(run=_decode)
    for name in passthrough:
        sub.add_parser(name, help=f"see python -m refcodec.{name} --help")
    args = ap.parse_args(argv)
    from refdec.errors import RefdecError

    try:
        return _run(args.command, lambda: args.run(args))
    except (RefdecError, OSError, ValueError) as exc:
        print(f"refcodec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
