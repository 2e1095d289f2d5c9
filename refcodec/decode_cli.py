"""The PyTorch decoder (refcodec.int_decoder) as a command for `refdec check --decoder` (spec clause 11.5.3).

    python -m refcodec.decode_cli IN OUT [--trace DIR] [--model PATH]... [--device cpu]
                                  [--perturb STAGE:CHANNEL[:DELTA]] [--perturb-trace STAGE:INDEX[:DELTA]]

OUT is an RGB PNG, or the clause 11.4 raw planar bytes when it ends in .rgb. With --trace,
every clause 11.3 stage tensor is written as DIR/STAGE.npy; when decoding fails, the stages
computed before the failure are written with partial.json (a partial trace of spec clause 11.3). Models: every
--model file or folder; without --model, $REFDEC_MODEL_DIR, then $REFDEC_MODEL (both set by
`refdec check`), then refdec/models/. Exit status 0 on success; 2 with one line
`decode_cli: error: CLASS ...` naming the clause 11.2 error class, and no output, otherwise.

Testing aids: a deliberately non-conforming decoder, to show that `refdec check` names the
layer at fault (also settable as $REFCODEC_PERTURB / $REFCODEC_PERTURB_TRACE):

* --perturb gather.3:5 adds 1 (or DELTA) to output channel 5 of layer gather.3 wherever it is
  computed (before the next layer; kept inside the layer's clip), changing everything after;
  for a layer with depth-to-space the channel is counted before it (clause 4.6: channel c
  becomes channel c // 4 of the stage tensor, at offset ((c % 4) // 2, c % 2));
* --perturb-trace gather.3:5,0,0 adds 1 to one element of the written stage tensor only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROG = "decode_cli"


def _model_paths(args) -> list:
    if args.model:
        return args.model
    for var in ("REFDEC_MODEL_DIR", "REFDEC_MODEL"):
        if os.environ.get(var):
            return [os.environ[var]]
    return [ROOT / "refdec" / "models"]


def _parse_perturb(text: str | None):
    """'STAGE:I[,J...][:DELTA]' -> (stage, index tuple, delta)."""
    if not text:
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise SystemExit(f"{PROG}: error: bad perturbation {text!r} (STAGE:INDEX[:DELTA])")
    index = tuple(int(i) for i in parts[1].split(","))
    return parts[0], index, int(parts[2]) if len(parts) == 3 else 1


def _install_perturbation(int_decoder, stage: str, channel: int, delta: int) -> None:
    """Wrap clause 4.5's final step so that one output channel of one layer is off by `delta`."""
    finish = int_decoder._finish

    def wrapped(acc_f, layer):
        out = finish(acc_f, layer)
        if layer.name == stage:
            out = out.clone()
            out[channel] = int_decoder.clip3(layer.out_lo, layer.out_hi, out[channel] + delta)
        return out

    int_decoder._finish = wrapped


def _install_partial_trace(int_decoder, sink: dict) -> None:
    """Keep references to the stage tensors as int_decoder computes them, so that a failed decode
    can still write what it had (z_hat, hyper synthesis, the latent stages of earlier wavefronts)."""
    decode_z, hyper, stages_cls = int_decoder.decode_z, int_decoder.hyper_synthesis, int_decoder._Stages

    def decode_z_rec(*a, **k):
        sink["z_hat"] = z = decode_z(*a, **k)
        return z

    def hyper_rec(prep, z_hat, stages=None):
        stages = {} if stages is None else stages
        sink["_hyper"] = stages
        return hyper(prep, z_hat, stages)

    class StagesRec(stages_cls):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            sink["_latent"] = self.t
            sink["_latent_stages"] = self

    int_decoder.decode_z, int_decoder.hyper_synthesis, int_decoder._Stages = decode_z_rec, hyper_rec, StagesRec


def _write_trace(stages: dict, directory: Path, perturb_trace) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, arr in stages.items():
        a = np.ascontiguousarray(np.asarray(arr), dtype=np.int32)
        if perturb_trace and perturb_trace[0] == name:
            a = a.copy()
            a[perturb_trace[1]] += perturb_trace[2]
        np.save(directory / f"{name}.npy", a, allow_pickle=False)


def _partial(sink: dict) -> dict:
    out = {}
    if "z_hat" in sink:
        out["z_hat"] = sink["z_hat"]
    out.update(sink.get("_hyper", {}))
    out.update(sink.get("_latent", {}))
    return {k: v.cpu().numpy() if hasattr(v, "cpu") else v for k, v in out.items()}


def _write_image(image: np.ndarray, path: Path) -> None:
    """Write to a temporary name first, so that a failure never leaves an output behind; the bytes
    are refdec's (one PNG writer, one raw writer: refdec.conformance)."""
    from refdec.conformance.hashes import sample_bytes
    from refdec.conformance.images import png_bytes

    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(sample_bytes(image) if path.suffix.lower() == ".rgb" else png_bytes(image))
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m refcodec.{PROG}",
                                 description="Decode a refdec bitstream with the PyTorch integer decoder.")
    ap.add_argument("input", type=Path, metavar="IN")
    ap.add_argument("output", type=Path, metavar="OUT", help="PNG, or .rgb for clause 11.4 planar bytes")
    ap.add_argument("--trace", type=Path, default=None, metavar="DIR", help="write DIR/STAGE.npy (clause 11.3)")
    ap.add_argument("--model", action="append", default=[], metavar="PATH", help="model file or folder, repeatable")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--perturb", default=os.environ.get("REFCODEC_PERTURB"), metavar="STAGE:CHANNEL[:DELTA]",
                    help="testing aid: a wrong decoder (see the module docstring)")
    ap.add_argument("--perturb-trace", default=os.environ.get("REFCODEC_PERTURB_TRACE"),
                    metavar="STAGE:INDEX[:DELTA]", help="testing aid: a wrong trace element")
    args = ap.parse_args(argv)
    perturb = _parse_perturb(args.perturb)
    perturb_trace = _parse_perturb(args.perturb_trace)

    from refdec.bitstream import parse_header
    from refdec.model_file import ModelStore
    from refdec.errors import RateIndexOutOfRange, RefdecError

    sink: dict = {}
    try:
        try:
            stream = args.input.read_bytes()
        except OSError as exc:
            print(f"{PROG}: error: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
            return 2
        # Clause 6.2 checks 1 to 7 before torch is imported (fast rejection of bad headers).
        header = parse_header(stream)
        model = ModelStore(_model_paths(args)).get(header.model_id)  # refdec's: bounded hashing, id checked
        if header.rate_index >= model.num_rates:
            raise RateIndexOutOfRange(f"rate index {header.rate_index} not below {model.num_rates}", offset=10)

        import torch

        from . import int_decoder

        torch.set_num_threads(1)
        if perturb:
            _install_perturbation(int_decoder, perturb[0], perturb[1][0], perturb[2])
        if args.trace is not None:
            _install_partial_trace(int_decoder, sink)
        image, stages = int_decoder.decode(stream, model, device=args.device, trace=args.trace is not None)
    except RefdecError as exc:
        if args.trace is not None and sink:
            _write_trace(_partial(sink), args.trace, perturb_trace)
            latent = sink.get("_latent_stages")
            (args.trace / "partial.json").write_text(json.dumps(  # clause 11.3, partial traces
                {"partial": True, "latent_wavefronts": latent.wavefronts if latent is not None else None}) + "\n")
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    _write_image(image, args.output)
    if args.trace is not None:
        _write_trace(stages, args.trace, perturb_trace)
        (args.trace / "partial.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
