"""Non-normative: the `refdec` command-line tool.

    refdec decode IN -o OUT [--raw] [--literal] [--trace-dir DIR] [--model PATH]... [--band-rows N] [-q]
    refdec info IN [--json] [--model PATH]...
    refdec check [VECTORS] [--decoder "CMD {in} {out} {model}"] [--outputs DIR] [--trace-dir DIR]
                 [--subset NAME]... [--list] [-j N] [--json FILE] [--junit FILE] [--timeout S]
                 [--evidence-dir DIR] [--keep-all] [--fail-fast] [--strict-errors] [-q]

Exit status: 0 on success, 2 on invalid input (any error of spec clause 11.2), on a file
that cannot be read or written, and on a usage error; `check` exits 1 when a vector does not
pass or the vector folder changed, 130 (143) when Ctrl-C (SIGTERM) interrupts it (spec clause
11.5.3). Every failure prints exactly one line
to stderr, `refdec: error: ...`; invalid input never produces a traceback.

Adding a subcommand (for example `check`): write `_add_NAME(subparsers)`, which builds the
subparser and sets `func=` to a function `(args) -> int`, and append it to SUBCOMMANDS.
Raise RefdecError, OSError or UsageError from the function for the exit-2 path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


from .architecture import padded_sizes
from .bitstream import parse_header
from .decoder import decode
from .model_file import ModelStore
from .errors import ModelError, RefdecError, UnknownModel
from .conformance.runner import CheckUsageError, add_arguments, positive_int, run as run_check
from .conformance.hashes import sample_bytes
from .conformance.images import png_bytes
from .conformance.manifest import ManifestError
from .conformance.progress import TerminalProgress
from .conformance.traces import write_trace
from .fast import FastOptions
from .stages import PARTIAL_TRACE_FILE, NullRecorder, Recorder

PROG = "refdec"
EXIT_OK = 0
EXIT_INVALID = 2


class UsageError(Exception):
    """A command line that argparse or a subcommand rejects (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors raise UsageError instead of printing usage and exiting,
    so that main() prints exactly one line and returns 2 (also when called in-process)."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --- helpers ------------------------------------------------------------------------------

def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def _model_store(paths) -> ModelStore:
    """ModelStore.default() plus every --model file or folder (clause 6.2 check 6)."""
    store = ModelStore.default()
    for p in paths or ():
        if not Path(p).exists():
            raise UsageError(f"model path {p!r} does not exist")
        store.add_path(p)
    return store


def _add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", action="append", default=[], metavar="PATH",
                        help="a model file (.npz) or a folder of them; repeatable "
                             "(added to the installed models)")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_error_message(exc: OSError) -> str:
    what = exc.strerror or exc.__class__.__name__
    if exc.filename is not None:
        return f"cannot access {exc.filename}: {what}"
    return f"{what}"


# --- decode -------------------------------------------------------------------------------

def _output_format(args) -> str:
    """'raw' with --raw or a .rgb name; 'png' for a .png name, no suffix or stdout; any other suffix
    (say .jpg) is a usage error rather than PNG bytes under a misleading name."""
    suffix = "" if args.output == "-" else Path(args.output).suffix.lower()
    if args.raw or suffix == ".rgb":
        if suffix == ".png":
            raise UsageError(f"--raw writes clause 11.4 planar bytes, but {args.output} is named .png")
        return "raw"
    if suffix in ("", ".png"):
        return "png"
    raise UsageError(f"-o {args.output}: name it .png (an RGB PNG) or .rgb (clause 11.4 planar bytes), or pass --raw")


def _cmd_decode(args) -> int:
    out_format = _output_format(args)
    stream = _read_input(args.input)
    store = _model_store(args.model)
    progress = TerminalProgress(sys.stderr, f"{PROG}: ") if sys.stderr.isatty() and not args.quiet else None
    record = Recorder(on_progress=progress) if args.trace_dir is not None else NullRecorder(on_progress=progress)
    fast = False if args.literal else FastOptions(band_rows=args.band_rows)
    start = time.perf_counter()
    try:
        result = decode(stream, store, fast=fast, record=record)
    except RefdecError:
        if args.trace_dir is not None and record.stages:  # clause 11.5.4: a partial trace shows how far it got
            write_trace(record.stages, args.trace_dir)
            (Path(args.trace_dir) / PARTIAL_TRACE_FILE).write_text(json.dumps(record.partial_info()) + "\n")
        raise
    finally:
        if progress is not None:
            progress.clear()
    elapsed = time.perf_counter() - start
    data = sample_bytes(result.image) if out_format == "raw" else png_bytes(result.image)
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(args.output).write_bytes(data)
    if args.trace_dir is not None:
        write_trace(record.stages, args.trace_dir)
        (Path(args.trace_dir) / PARTIAL_TRACE_FILE).unlink(missing_ok=True)
    if not args.quiet:
        h = result.header
        extra = f", trace in {args.trace_dir}" if args.trace_dir is not None else ""
        path = " (literal path)" if args.literal else ""
        print(f"{PROG}: {args.input}: {h.width}x{h.height}, rate index {h.rate_index}, "
              f"model {h.model_id.hex()}, {len(stream)} bytes, decoded in {elapsed:.3f} s{path} "
              f"-> {args.output}{' (raw)' if out_format == 'raw' else ''}{extra}", file=sys.stderr)
    return EXIT_OK


def _add_decode(subparsers) -> None:
    p = subparsers.add_parser("decode", help="decode a bitstream to a PNG or raw planar samples",
                              description="Decode bitstream IN (spec clause 7) and write the image.")
    p.add_argument("input", metavar="IN", help="bitstream file ('-' for stdin)")
    p.add_argument("-o", "--output", metavar="OUT", required=True,
                   help="output file: an RGB PNG, or with --raw the clause 11.4 planar bytes ('-' for stdout)")
    p.add_argument("--raw", action="store_true",
                   help="write the canonical planar bytes of clause 11.4 (R, G, B planes, uint8) instead of PNG")
    p.add_argument("--trace-dir", metavar="DIR", default=None,
                   help="write every stage tensor of clause 11.3 as DIR/STAGE.npy")
    _add_model_option(p)
    p.add_argument("--literal", action="store_true",
                   help="decode with the literal normative functions alone (slow; same result)")
    p.add_argument("--band-rows", type=positive_int, default=FastOptions.band_rows, metavar="N",
                   help=f"fast path: synthesis band height in output rows (default {FastOptions.band_rows}; "
                        "does not change the result)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    p.set_defaults(func=_cmd_decode)


# --- info ---------------------------------------------------------------------------------

def stream_info(stream: bytes, store: ModelStore) -> dict:
    """Header fields (clause 6.1, checks 1 to 5 of 6.2) and the model's availability;
    no payload is decoded."""
    header = parse_header(stream)
    hz, wz, hy, wy = padded_sizes(header.width, header.height)
    info = {"header": header.as_dict(),
            "padded": {"hz": hz, "wz": wz, "hy": hy, "wy": wy}}
    model_info: dict = {"id": header.model_id.hex()}
    try:
        model = store.get(header.model_id)
    except UnknownModel:
        model_info.update(available=False, status="unknown")
    except ModelError as exc:
        model_info.update(available=False, status="invalid", error=_one_line(exc))
    else:
        model_info.update(available=True, status="ok", profile=model.header["profile"],
                          num_rates=model.num_rates, latent_channels=model.latent_channels,
                          hyper_channels=model.hyper_channels, path=str(model.path),
                          rate_index_valid=header.rate_index < model.num_rates)
    info["model"] = model_info
    return info


def _cmd_info(args) -> int:
    stream = _read_input(args.input)
    info = stream_info(stream, _model_store(args.model))
    info = {"file": args.input, **info}
    if args.json:
        print(json.dumps(info, indent=1))
        return EXIT_OK
    print(f"file: {args.input}")
    for key, value in info["header"].items():
        print(f"{key}: {value}")
    p = info["padded"]
    print(f"latent: {p['hy']}x{p['wy']} positions, hyper-latent: {p['hz']}x{p['wz']} positions")
    m = info["model"]
    if m["available"]:
        rate = "" if m["rate_index_valid"] else ", rate index out of range"
        print(f"model: {m['id']} available ({m['path']}), profile {m['profile']}, "
              f"num_rates {m['num_rates']}{rate}")
    elif m["status"] == "unknown":
        print(f"model: {m['id']} not available")
    else:
        print(f"model: {m['id']} invalid: {m['error']}")
    return EXIT_OK


def _add_info(subparsers) -> None:
    p = subparsers.add_parser("info", help="print a bitstream's header and whether its model is available",
                              description="Print the header of bitstream IN (clause 6.1) without decoding "
                                          "its payloads.")
    p.add_argument("input", metavar="IN", help="bitstream file ('-' for stdin)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_model_option(p)
    p.set_defaults(func=_cmd_info)


# --- check --------------------------------------------------------------------------------

def _cmd_check(args) -> int:
    try:
        return run_check(args)
    except (CheckUsageError, ManifestError) as exc:
        raise UsageError(str(exc)) from None


def _add_check(subparsers) -> None:
    p = subparsers.add_parser("check", help="check a decoder against the conformance vectors (clause 11.5)",
                              description="Check refdec, another decoder (--decoder) or outputs made elsewhere "
                                          "(--outputs) against a conformance vector set (spec clause 11.5). "
                                          "A line is printed as each vector finishes; the evidence of every "
                                          "vector that does not pass is kept. Exit status 0 only when every "
                                          "vector passes, 1 otherwise, 2 on a usage error or an invalid vector "
                                          "set, 130 on Ctrl-C (the partial reports are written).")
    add_arguments(p)
    p.set_defaults(func=_cmd_check)


# --- entry point --------------------------------------------------------------------------

SUBCOMMANDS = [_add_decode, _add_info, _add_check]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog=PROG, description="Reference integer-only decoder of the refdec learned image codec.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def _error(message: str) -> int:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_INVALID


def main(argv=None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as exc:
        return _error(str(exc))
    except RefdecError as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(_os_error_message(exc))
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else _error(str(exc.code)))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
