"""Non-normative: `refdec check`, the check procedure of spec clause 11.5.3.

    refdec check [VECTORS] [--decoder "CMD {in} {out}"] [--outputs DIR] [--trace-dir DIR]
                 [--subset NAME]... [-j N] [--json FILE] [--junit FILE] [--timeout S]

Three ways to obtain a decoder's results for every vector of a vector set (clause 11.5.1):

* neither --decoder nor --outputs: refdec itself decodes each stream in-process;
* --decoder: a command is run once per vector, without a shell: the template is split with
  shlex.split and the placeholders {in}, {out}, {trace}, {model}, {models}, {id} are
  substituted in each word;
* --outputs DIR: outputs made elsewhere, DIR/<id>.png or DIR/<id>.rgb (clause 11.4 planar).

Each vector ends in one state of clause 11.5.3: pass (the decoder did what clause 11.1
requires: the exact samples of a valid stream, or rejection of an invalid one), fail, error or
timeout. A vector that
does not pass is analysed as clause 11.5.4 says (sample statistics, a difference image, and
with a trace the first diverging stage). The exit status is 0 only when every vector passes,
1 otherwise, 2 for a usage error or a vector set that fails its manifest (clause 11.5.2).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..stages import STAGE_ORDER
from .diagnosis import compare_samples, describe_samples, diagnose_hashes, diagnose_trace
from .hashes import sample_hash, sha256_hex, stage_hash
from .images import OutputError, difference_image, png_bytes, read_output, read_png
from .manifest import Manifest, ManifestError, load_manifest, verify_files
from .reports import Result, json_report, junit_report, text_report
from .traces import load_trace
from ..decoder import decode
from ..model_file import ModelStore
from ..errors import ALL_ERRORS, RefdecError

PLACEHOLDERS = ("in", "out", "trace", "model", "models", "id")
DEFAULT_TIMEOUT = 300.0
STDERR_TAIL = 2000
_ERROR_NAME = re.compile(r"\b(" + "|".join(sorted(ALL_ERRORS, key=len, reverse=True)) + r")\b")


class CheckUsageError(ValueError):
    """A command line that the check procedure cannot run (exit status 2)."""


@dataclass
class CheckOptions:
    """Non-normative: what `refdec check` was asked to do (clause 11.5.3)."""

    decoder: str | None = None
    outputs: Path | None = None
    trace_dir: Path | None = None
    subsets: list = field(default_factory=list)
    jobs: int = 1
    timeout: float | None = DEFAULT_TIMEOUT
    out_format: str = "png"
    work_dir: Path | None = None
    diff_dir: Path | None = None

    @property
    def mode(self) -> str:
        return "decoder" if self.decoder else "outputs" if self.outputs else "refdec"


def parse_decoder_template(template: str) -> list[str]:
    """Clause 11.5.3: the decoder command as words (shlex.split); it must name {in} and {out}."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise CheckUsageError(f"--decoder: cannot split {template!r}: {exc}") from None
    if not words:
        raise CheckUsageError("--decoder: empty command")
    joined = "\0".join(words)
    for ph in ("{in}", "{out}"):
        if ph not in joined:
            raise CheckUsageError(f"--decoder: the command must contain {ph} (placeholders: "
                                  + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + ")")
    return words


def substitute(words: list[str], values: dict) -> list[str]:
    """Replace every {name} of `values` in every word; nothing else is interpreted (no shell)."""
    out = []
    for w in words:
        for key, val in values.items():
            w = w.replace("{" + key + "}", str(val))
        out.append(w)
    return out


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return text[-STDERR_TAIL:]


def reported_error(stderr: str) -> str | None:
    """The first clause 11.2 error class named in a decoder's stderr (informative)."""
    m = _ERROR_NAME.search(stderr or "")
    return m.group(1) if m else None


def run_command(argv: list[str], timeout: float | None, env: dict | None = None):
    """Run one decoder command without a shell: (returncode or None on timeout, stdout, stderr, seconds).

    The command runs in its own process group so that a timeout ends it and its children."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, start_new_session=(os.name == "posix"))
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err, time.perf_counter() - start
    except subprocess.TimeoutExpired:
        try:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError):
            pass
        out, err = proc.communicate()
        return None, out, err, time.perf_counter() - start


class Checker:
    """Non-normative: runs the clause 11.5.3 procedure for the vectors of one manifest."""

    def __init__(self, manifest: Manifest, options: CheckOptions):
        self.manifest = manifest
        self.opts = options
        self.store = ModelStore([manifest.models_dir]) if manifest.models_dir.is_dir() else ModelStore()
        self.words = parse_decoder_template(options.decoder) if options.decoder else None
        self.work_dir: Path | None = options.work_dir
        self.trace_root: Path | None = options.trace_dir
        self._golden: dict = {}

    # --- preparation --------------------------------------------------------------------------
    def prepare(self, vectors) -> None:
        """Clause 11.5.2: file hashes, and every golden PNG holds the samples of its samples_sha256."""
        problems = verify_files(self.manifest, vectors)
        for v in vectors:
            if v["kind"] != "valid":
                continue
            try:
                img = read_png(self.manifest.file(v["golden"]["file"]))
            except OutputError as exc:
                problems.append(f"vector {v['id']}: golden {exc}")
                continue
            if sample_hash(img) != v["golden"]["samples_sha256"]:
                problems.append(f"vector {v['id']}: golden PNG samples do not match samples_sha256")
            g = v["golden"]
            if img.shape != (3, g["height"], g["width"]):
                problems.append(f"vector {v['id']}: golden PNG is {img.shape[2]}x{img.shape[1]}, manifest says "
                                f"{g['width']}x{g['height']}")
            self._golden[v["id"]] = img
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise ManifestError("vector set does not match its manifest: " + "; ".join(problems[:5]) + more)

    # --- per vector -----------------------------------------------------------------------------
    def check(self, vec: dict) -> Result:
        start = time.perf_counter()
        try:
            if self.opts.mode == "refdec":
                res = self._check_refdec(vec)
            elif self.opts.mode == "decoder":
                res = self._check_decoder(vec)
            else:
                res = self._check_outputs(vec)
        except Exception as exc:  # the tool itself must report, never crash on one vector
            res = self._result(vec, "error", f"check failed: {exc.__class__.__name__}: {exc}")
        if not res.seconds:
            res.seconds = time.perf_counter() - start
        return res

    def _result(self, vec, state, message, **details) -> Result:
        details = {k: v for k, v in details.items() if v not in (None, [], {})}
        if vec["kind"] == "invalid":
            details.setdefault("expected_error", vec["expected_error"])
        return Result(vec["id"], vec["kind"], state, message, purpose=vec["purpose"], look_at=vec["look_at"],
                      details=details)

    def _stream(self, vec) -> bytes:
        return self.manifest.file(vec["bitstream"]["file"]).read_bytes()

    def _check_refdec(self, vec) -> Result:
        stream = self._stream(vec)
        expected = vec.get("expected_error")
        try:
            decoded = decode(stream, self.store, trace=True)
        except RefdecError as exc:
            if vec["kind"] == "invalid":
                if exc.name == expected:
                    return self._result(vec, "pass", f"rejected: {exc}", reported_error=exc.name)
                return self._result(vec, "fail", f"rejected with {exc.name}, expected {expected}: {exc}",
                                    reported_error=exc.name)
            return self._result(vec, "error", f"refdec rejected a valid stream: {exc}", reported_error=exc.name)
        if vec["kind"] == "invalid":
            return self._result(vec, "fail", f"decoded an invalid stream (expected {expected})")
        return self._judge(vec, decoded.image, trace=(decoded.stages, {}), trace_source="refdec")

    def _trace_dir(self, vec) -> Path | None:
        return self.trace_root / vec["id"] if self.trace_root is not None else None

    def _check_decoder(self, vec) -> Result:
        work = self.work_dir
        out = work / f"{vec['id']}.{self.opts.out_format}"
        if out.exists():
            out.unlink()
        trace = self._trace_dir(vec)
        if trace is not None and "{trace}" in "\0".join(self.words):
            trace.mkdir(parents=True, exist_ok=True)
            for name in STAGE_ORDER:  # stale files of an earlier run would be compared
                (trace / f"{name}.npy").unlink(missing_ok=True)
        values = {"in": self.manifest.file(vec["bitstream"]["file"]).resolve(), "out": out.resolve(),
                  "trace": trace.resolve() if trace is not None else "", "id": vec["id"],
                  "model": self.manifest.file(vec["model"]["file"]).resolve(),
                  "models": self.manifest.models_dir.resolve()}
        argv = substitute(self.words, values)
        env = dict(os.environ, REFDEC_VECTOR_ID=vec["id"], REFDEC_MODEL=str(values["model"]),
                   REFDEC_MODEL_DIR=str(values["models"]))
        try:
            rc, _, err, secs = run_command(argv, self.opts.timeout, env)
        except OSError as exc:
            return self._result(vec, "error", f"cannot run {argv[0]!r}: {exc.strerror or exc}")
        stderr = _tail(err)
        produced = out.is_file() and out.stat().st_size > 0
        reported = reported_error(stderr)
        common = {"exit_code": rc, "stderr_tail": stderr or None, "command": argv}
        if rc is None:
            res = self._result(vec, "timeout", f"no result within {self.opts.timeout:g} s", **common)
        elif vec["kind"] == "invalid":
            res = self._judge_invalid(vec, rc, produced, reported, common)
        elif rc != 0:
            res = self._with_trace(vec, self._result(vec, "error", f"decoder exited with status {rc}", **common),
                                   trace)
        elif not produced:
            res = self._with_trace(vec, self._result(vec, "error", "decoder exited 0 but wrote no output",
                                                     **common), trace)
        else:
            res = self._judge_file(vec, out, trace, common)
        res.seconds = secs
        return res

    def _judge_invalid(self, vec, rc, produced, reported, common) -> Result:
        expected = vec["expected_error"]
        notes = []
        if reported and reported != expected:
            notes.append(f"the decoder's message names {reported}, clause 11.2 expects {expected} (informative)")
        if rc == 0:
            return self._result(vec, "fail", f"accepted an invalid stream (exit 0; expected {expected})",
                                reported_error=reported, notes=notes, **common)
        if produced:
            return self._result(vec, "fail", f"exited with status {rc} but wrote an output (expected {expected})",
                                reported_error=reported, notes=notes, **common)
        said = f", reported {reported}" if reported else ""
        return self._result(vec, "pass", f"rejected (exit {rc}{said}; expected {expected})",
                            reported_error=reported, notes=notes, **common)

    def _check_outputs(self, vec) -> Result:
        cands = [self.opts.outputs / f"{vec['id']}.png", self.opts.outputs / f"{vec['id']}.rgb"]
        found = [p for p in cands if p.is_file()]
        trace = self._trace_dir(vec)
        if vec["kind"] == "invalid":
            if found:
                return self._result(vec, "fail", f"an output exists for an invalid stream: {found[0].name} "
                                                 f"(expected {vec['expected_error']})")
            return self._result(vec, "pass", f"no output (expected {vec['expected_error']})")
        if not found:
            return self._with_trace(vec, self._result(vec, "error", f"no output {cands[0].name} or {cands[1].name}"),
                                    trace)
        notes = []
        if len(found) > 1:
            notes.append(f"both {cands[0].name} and {cands[1].name} exist; {cands[0].name} was compared")
        return self._judge_file(vec, found[0], trace, {"output": str(found[0]), "notes": notes})

    def _judge_file(self, vec, path: Path, trace: Path | None, common: dict) -> Result:
        g = vec["golden"]
        try:
            image = read_output(path, g["width"], g["height"])
        except OutputError as exc:
            return self._with_trace(vec, self._result(vec, "fail", str(exc), **common), trace)
        got_trace = None
        if trace is not None and trace.is_dir():
            got_trace = load_trace(trace)
            if not got_trace[0] and not got_trace[1]:
                got_trace = None
        return self._judge(vec, image, got_trace, "decoder", common)

    def _with_trace(self, vec, res: Result, trace: Path | None) -> Result:
        """An error or unreadable output still gets a stage diagnosis when a (partial) trace exists."""
        if vec["kind"] != "valid" or trace is None or not trace.is_dir():
            return res
        got, problems = load_trace(trace)
        if got or problems:
            diag, notes = self._diagnose(vec, got, problems, "decoder")
            if diag:
                res.details["diagnosis"] = diag
            if notes:
                res.details.setdefault("notes", []).extend(notes)
        return res

    def _diagnose(self, vec, got, problems, source):
        """Clause 11.5.4: golden stage tensors from refdec, used only after their hashes are confirmed
        against the manifest; otherwise a hash-only comparison."""
        notes = []
        if source == "refdec":
            return diagnose_hashes(vec["stages"], got, problems), notes
        try:
            golden = decode(self._stream(vec), self.store, trace=True).stages
        except RefdecError as exc:
            golden = None
            notes.append(f"refdec cannot decode this vector ({exc}); stage hashes only")
        if golden is not None:
            bad = [n for n in STAGE_ORDER if n not in golden or stage_hash(golden[n]) != vec["stages"][n]["sha256"]]
            if bad:
                notes.append(f"refdec's stage tensors differ from the manifest ({', '.join(bad[:3])}); "
                             "stage hashes only")
                golden = None
        if golden is None:
            return diagnose_hashes(vec["stages"], got, problems), notes
        return diagnose_trace(golden, got, problems), notes

    def _judge(self, vec, image: np.ndarray, trace=None, trace_source="decoder", common=None) -> Result:
        common = dict(common or {})
        notes = list(common.pop("notes", []) or [])
        golden = self._golden[vec["id"]]
        cmp = compare_samples(golden, image)
        diag = None
        if trace is not None:
            diag, more = self._diagnose(vec, trace[0], trace[1], trace_source)
            notes += more
            if trace_source != "refdec" and trace[0] is not None:
                missing = [n for n in STAGE_ORDER if n not in trace[0] and n not in trace[1]]
                if missing and len(missing) < len(STAGE_ORDER):
                    notes.append(f"trace lacks {len(missing)} of {len(STAGE_ORDER)} stages")
        diff_path = None
        if not cmp["equal"] and "expected_shape" not in cmp and self.opts.diff_dir is not None:
            self.opts.diff_dir.mkdir(parents=True, exist_ok=True)
            diff_path = self.opts.diff_dir / f"{vec['id']}.diff.png"
            diff_path.write_bytes(png_bytes(difference_image(golden, image)))
        details = dict(samples=cmp, diagnosis=diag, notes=notes,
                       diff_image=str(diff_path) if diff_path else None, **common)
        if not cmp["equal"]:
            if "first" in cmp:
                f = cmp["first"]
                short = (f"{cmp['differing_samples']}/{cmp['total_samples']} samples differ, max |diff| "
                         f"{cmp['max_abs_diff']}, first at channel {f['channel']}, row {f['row']}, "
                         f"column {f['column']}")
            else:
                short = describe_samples(cmp)
            return self._result(vec, "fail", f"samples differ: {short}", **details)
        if diag is not None:
            return self._result(vec, "fail", f"samples match, but the trace differs: {diag['stage']}", **details)
        traced = " and trace" if trace is not None else ""
        details.pop("samples")
        return self._result(vec, "pass", f"samples{traced} match (sha256 {vec['golden']['samples_sha256'][:12]})",
                            **details)

    # --- all vectors --------------------------------------------------------------------------------
    def run(self, vectors) -> list[Result]:
        self.prepare(vectors)
        tmp = None
        try:
            if self.opts.mode == "decoder":
                if self.work_dir is None:
                    tmp = tempfile.TemporaryDirectory(prefix="refdec-check-")
                    self.work_dir = Path(tmp.name)
                self.work_dir.mkdir(parents=True, exist_ok=True)
                if self.trace_root is None and "{trace}" in "\0".join(self.words):
                    self.trace_root = self.work_dir / "trace"
            if self.opts.jobs > 1 and len(vectors) > 1:
                with ThreadPoolExecutor(max_workers=self.opts.jobs) as pool:
                    return list(pool.map(self.check, vectors))
            return [self.check(v) for v in vectors]
        finally:
            if tmp is not None:
                tmp.cleanup()


# --- command line -----------------------------------------------------------------------------

def positive_int(text: str) -> int:
    """Non-normative: argparse type for integers >= 1 ."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def default_vectors() -> Path:
    """`vectors/` in the current folder, else the one next to the refdec package."""
    here = Path("vectors")
    if (here / "manifest.json").is_file():
        return here
    return Path(__file__).resolve().parents[1] / "vectors"


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `refdec check` (clause 11.5.3)."""
    p.add_argument("vectors", nargs="?", metavar="VECTORS", default=None,
                   help="vector folder or its manifest.json (default: ./vectors, else the repository's vectors/)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--decoder", metavar="CMD",
                     help="decoder command run once per vector, without a shell; placeholders {in} {out} "
                          "(required), {trace} {model} {models} {id}")
    src.add_argument("--outputs", metavar="DIR", type=Path,
                     help="outputs made elsewhere: DIR/<vector id>.png or DIR/<vector id>.rgb (clause 11.4 planar)")
    p.add_argument("--trace-dir", metavar="DIR", type=Path, default=None,
                   help="traces (clause 11.3) in DIR/<vector id>/STAGE.npy; with --decoder {trace} is DIR/<id>")
    p.add_argument("--subset", metavar="NAME", action="append", default=[],
                   help="check only this subset (a manifest subset, all, valid, invalid, or a vector id or "
                        "pattern); repeatable")
    p.add_argument("-j", "--jobs", metavar="N", type=positive_int, default=1, help="vectors checked at once")
    p.add_argument("--json", metavar="FILE", type=Path, default=None, help="write the JSON report")
    p.add_argument("--junit", metavar="FILE", type=Path, default=None, help="write a JUnit XML report")
    p.add_argument("--timeout", metavar="S", type=_positive_float, default=DEFAULT_TIMEOUT,
                   help=f"seconds per decoder run (--decoder only; default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--out-format", choices=("png", "rgb"), default="png",
                   help="what {out} is: an RGB PNG (default) or clause 11.4 raw planar bytes")
    p.add_argument("--work-dir", metavar="DIR", type=Path, default=None,
                   help="keep the decoder's outputs here (default: a temporary folder)")
    p.add_argument("--diff-dir", metavar="DIR", type=Path, default=None,
                   help="where difference images go (default: next to the --json, else the --junit report)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only vectors that do not pass, and the summary")


def options_from_args(args) -> CheckOptions:
    diff_dir = args.diff_dir
    if diff_dir is None:
        for report in (args.json, args.junit):
            if report is not None:
                diff_dir = report.resolve().parent
                break
    if args.outputs is not None and not args.outputs.is_dir():
        raise CheckUsageError(f"--outputs: {args.outputs} is not a folder")
    return CheckOptions(decoder=args.decoder, outputs=args.outputs, trace_dir=args.trace_dir,
                        subsets=list(args.subset), jobs=args.jobs, timeout=args.timeout,
                        out_format=args.out_format, work_dir=args.work_dir, diff_dir=diff_dir)


def run(args, stdout=None) -> int:
    """`refdec check`: 0 when every selected vector passes, 1 otherwise (CheckUsageError and
    ManifestError are the caller's exit-2 path)."""
    stdout = stdout or sys.stdout
    opts = options_from_args(args)
    manifest = load_manifest(args.vectors if args.vectors is not None else default_vectors())
    vectors = manifest.select(opts.subsets)
    checker = Checker(manifest, opts)
    start = time.perf_counter()
    results = checker.run(vectors)
    elapsed = time.perf_counter() - start
    what = {"refdec": "refdec (in-process)", "decoder": f"decoder {opts.decoder!r}",
            "outputs": f"outputs in {opts.outputs}"}[opts.mode]
    header = f"refdec check: {len(vectors)} vectors of {manifest.path}, {what}"
    stdout.write(text_report(results, header, elapsed, quiet=args.quiet))
    stdout.flush()
    meta = {"manifest": str(manifest.path), "manifest_sha256": sha256_hex(manifest.path.read_bytes()),
            "mode": opts.mode, "decoder": opts.decoder, "outputs": str(opts.outputs) if opts.outputs else None,
            "trace_dir": str(opts.trace_dir) if opts.trace_dir else None, "subsets": opts.subsets,
            "seconds": round(elapsed, 3)}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json_report(results, meta))
    if args.junit is not None:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_bytes(junit_report(results, seconds=elapsed))
    return 0 if all(r.state == "pass" for r in results) else 1
