"""Non-normative: `refdec check`, the check procedure of spec clause 11.5.3.

    refdec check [VECTORS] [--decoder "CMD {in} {out} {model}"] [--outputs DIR] [--trace-dir DIR]
                 [--subset NAME]... [--list] [-j N] [--json FILE] [--junit FILE] [--timeout S]
                 [--evidence-dir DIR] [--keep-all] [--fail-fast] [--strict-errors] [-q]

Three ways to obtain a decoder's results for every vector of a vector set (clause 11.5.1):

* neither --decoder nor --outputs: refdec itself decodes each stream (in this process, or with
  -j N in N worker processes of one BLAS thread each);
* --decoder: a command is run once per vector, without a shell, on read-only copies of the
  stream and model in a scratch folder (processes.py says how a misbehaving command is bounded);
* --outputs DIR: outputs made elsewhere, DIR/<id>.png or DIR/<id>.rgb (clause 11.4 planar).

Each vector ends in one state of clause 11.5.3: pass, fail, error or timeout; a line is printed
as each vector finishes. Everything that can be checked before the first vector runs is checked
first (usage errors: exit 2). The evidence of every vector that does not pass (the decoder's output,
the difference image, its stderr tail, its trace) is kept in a folder that the summary names. An
interrupt (Ctrl-C, SIGTERM) ends every process the check started and writes the partial reports.
Exit status: 0 when every selected vector passes and the vector folder is unchanged, 1 otherwise,
2 for a usage error or a vector set that fails its manifest (clause 11.5.2), 130 on an interrupt
(143 on SIGTERM).
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..stages import LATENT_STAGES, STAGE_ORDER, Recorder
from .diagnosis import compare_samples, describe_samples, diagnose_hashes, hash_diagnosis
from .hashes import sample_hash, sha256_hex
from .images import OutputError, difference_image, png_bytes, read_output, read_png
from .manifest import Manifest, ManifestError, file_sha256, folder_changes, load_manifest, snapshot_folder, verify_files
from .processes import DRAIN_SECONDS, kill_all, run_command, signal_name
from .progress import TerminalProgress
from .reports import Result, json_report, junit_report, result_text, summary, summary_lines
from .traces import TraceError, scan_trace, stage_file_hash, write_trace
from ..decoder import decode
from ..model_file import ModelStore
from ..errors import ALL_ERRORS, RefdecError

PLACEHOLDERS = ("in", "out", "trace", "model", "models", "id")
TIMEOUT_BASE = 30.0          # seconds, every vector
TIMEOUT_PER_MP = 60.0        # seconds per megapixel of the vector's image (clause 11.5.3)
STDERR_TAIL = 2000
EVIDENCE_COPY_LIMIT = 256 << 20     # an output larger than this is not copied into the evidence
EVIDENCE_TRACE_LIMIT = 64 << 20     # nor a scratch trace larger than this (--trace-dir keeps any)
SHELL_STATUSES = range(126, 193)   # 126/127: cannot run / not found; 128+N: ended by signal N
EXIT_INTERRUPTED = 130
_ERROR_NAME = re.compile(r"\b(" + "|".join(sorted(ALL_ERRORS, key=len, reverse=True)) + r")\b")
_REPO_VECTORS = Path(__file__).resolve().parents[2] / "vectors"


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
    timeout: float | None = None          # None: TIMEOUT_BASE + TIMEOUT_PER_MP per megapixel
    out_format: str = "png"
    evidence_dir: Path | None = None
    keep_all: bool = False
    fail_fast: bool = False
    strict_errors: bool = False
    quiet: bool = False
    # set by the run
    thread_env: dict | None = None     # -j N > 1: BLAS/OpenMP thread counts given to decoders
    scratch: Path | None = None
    run_tag: str | None = None

    @property
    def mode(self) -> str:
        return "decoder" if self.decoder else "outputs" if self.outputs else "refdec"

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> "CheckOptions":
        paths = ("outputs", "trace_dir", "evidence_dir", "scratch")
        return cls(**{k: (Path(v) if k in paths and v is not None else v) for k, v in d.items()})


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


def reported_error(first_line: str) -> str | None:
    """Clause 11.5.3: the error class a decoder reports: the first clause 11.2 class name, as a
    word, on the first non-empty line of its standard error."""
    m = _ERROR_NAME.search(first_line or "")
    return m.group(1) if m else None


def vector_megapixels(manifest: Manifest, vec: dict) -> float:
    """The image size a vector asks a decoder to decode: the golden image of a valid vector; for an
    invalid one the size its header declares when the header passes clause 6.2, else 0."""
    if vec["kind"] == "valid":
        return vec["golden"]["width"] * vec["golden"]["height"] / 1e6
    from ..bitstream import parse_header

    try:
        with open(manifest.file(vec["bitstream"]["file"]), "rb") as f:
            h = parse_header(f.read(64))
        return h.width * h.height / 1e6
    except (RefdecError, OSError, ValueError):
        return 0.0


def vector_timeout(opts: CheckOptions, manifest: Manifest, vec: dict) -> float:
    """Clause 11.5.3: --timeout, else TIMEOUT_BASE + TIMEOUT_PER_MP per megapixel."""
    if opts.timeout is not None:
        return opts.timeout
    return round(TIMEOUT_BASE + TIMEOUT_PER_MP * vector_megapixels(manifest, vec), 1)


# --- read-only copies of a decoder's inputs ------------------------------------------------------

def _make_writable(path: Path) -> None:
    for p in [path, *path.rglob("*")] if path.exists() else []:
        try:
            if not p.is_symlink():
                os.chmod(p, (stat.S_IRWXU if p.is_dir() else stat.S_IRUSR | stat.S_IWUSR))
        except OSError:
            pass


def remove_tree(path: Path) -> None:
    """rmtree that also removes what was made read-only (the input copies, a decoder's chmods)."""
    if path.exists():
        _make_writable(path)
        shutil.rmtree(path, ignore_errors=True)


class Inputs:
    """Non-normative (clause 11.5.3): the streams and models a decoder is given are copies in a
    scratch folder, read-only; after each run they are compared with what they were (size and
    time, then bytes), and a copy the decoder changed or removed is an error and is restored."""

    def __init__(self, manifest: Manifest, root: Path, files: dict):
        self.manifest, self.root, self.files = manifest, Path(root), files

    @classmethod
    def create(cls, manifest: Manifest, root: Path, vectors) -> "Inputs":
        rels = {v["bitstream"]["file"]: v["bitstream"]["sha256"] for v in vectors}
        rels.update({v["model"]["file"]: v["model"]["sha256"] for v in vectors})
        known = {m["file"]: m["sha256"] for m in manifest.data.get("models", {}).values()}
        if manifest.models_dir.is_dir():     # {models} is the whole folder
            for p in manifest.models_dir.rglob("*"):
                if p.is_file():
                    rel = p.relative_to(manifest.root).as_posix()
                    rels.setdefault(rel, known.get(rel))
        self = cls(manifest, root, {})
        for rel, sha in sorted(rels.items()):
            self._copy(rel)
            self.files[rel] = self._record(rel, sha or file_sha256(self.root / rel))
        self._seal()
        return self

    def _seal(self) -> None:
        for d in [self.root, *[p for p in self.root.rglob("*") if p.is_dir() and not p.is_symlink()]]:
            os.chmod(d, 0o555)

    def _copy(self, rel: str) -> None:
        dst = self.root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.manifest.file(rel), dst)
        os.chmod(dst, 0o444)

    def _record(self, rel: str, sha: str) -> list:
        st = (self.root / rel).stat()
        return [st.st_size, st.st_mtime_ns, sha]

    def path(self, rel: str) -> Path:
        return self.root / rel

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def verify(self) -> list[str]:
        """The copies that changed, were removed or were added since the last look, each restored."""
        lock = open(self.root.parent / "inputs.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            bad = []
            for rel, rec in self.files.items():
                p = self.root / rel
                try:
                    st = p.stat()
                except OSError:
                    bad.append(rel)
                    continue
                if (st.st_size, st.st_mtime_ns) != tuple(rec[:2]) or stat.S_IMODE(st.st_mode) != 0o444:
                    try:
                        same = file_sha256(p) == rec[2] and stat.S_IMODE(st.st_mode) == 0o444
                    except OSError:
                        same = False
                    if same:
                        rec[:2] = [st.st_size, st.st_mtime_ns]
                    else:
                        bad.append(rel)
            added = [p for p in self.root.rglob("*") if not p.is_dir()
                     and p.relative_to(self.root).as_posix() not in self.files]
            for rel in bad:
                p = self.root / rel
                _make_writable(p.parent)
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                self._copy(rel)
                self.files[rel] = self._record(rel, self.files[rel][2])
            for p in added:
                _make_writable(p.parent)
                p.unlink(missing_ok=True)
                bad.append(p.relative_to(self.root).as_posix() + " (added)")
            if bad:
                self._seal()
            return bad
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def to_json(self) -> dict:
        return {"root": str(self.root), "files": self.files}

    @classmethod
    def from_json(cls, manifest: Manifest, d: dict) -> "Inputs":
        return cls(manifest, Path(d["root"]), d["files"])


# --- one vector --------------------------------------------------------------------------------------

def _unique(seq):
    out = []
    for x in seq:
        if x not in out:
            out.append(x)
    return out


def prepare(manifest: Manifest, vectors) -> None:
    """Clause 11.5.2: file hashes, and every golden PNG holds the samples of its samples_sha256
    (ManifestError otherwise)."""
    problems = verify_files(manifest, vectors)
    for v in vectors:
        if v["kind"] != "valid" or any(f"vector {v['id']}:" in p for p in problems):
            continue
        g = v["golden"]
        try:
            img = read_png(manifest.file(g["file"]), g["width"], g["height"])
        except OutputError as exc:
            problems.append(f"vector {v['id']}: golden {exc}")
            continue
        if sample_hash(img) != g["samples_sha256"]:
            problems.append(f"vector {v['id']}: golden PNG samples do not match samples_sha256")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ManifestError("vector set does not match its manifest: " + "; ".join(problems[:5]) + more)


class Checker:
    """Non-normative: runs the clause 11.5.3 procedure for the vectors of one manifest."""

    def __init__(self, manifest: Manifest, options: CheckOptions, inputs: Inputs | None = None):
        self.manifest = manifest
        self.opts = options
        self._stores: dict = {}
        self.words = parse_decoder_template(options.decoder) if options.decoder else None
        self.uses_trace = self.words is not None and "{trace}" in "\0".join(self.words)
        self.inputs = inputs
        self.progress: TerminalProgress | None = None  # shown while refdec decodes in this process

    def prepare(self, vectors) -> None:
        prepare(self.manifest, vectors)

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
        details = {k: v for k, v in details.items() if v is not None}
        details.setdefault("notes", [])
        if vec["kind"] == "invalid":
            details.setdefault("expected_error", vec["expected_error"])
        diag = details.get("diagnosis")
        look = _unique(([diag["clause"]] if diag else []) + list(vec["look_at"]))
        return Result(vec["id"], vec["kind"], state, message, purpose=vec["purpose"], look_at=look, details=details)

    def _store(self, vec) -> ModelStore:
        """The vector's model file (clause 11.5.2 `model`: the model given to the decoder), hashed and
        parsed once per process."""
        rel = vec["model"]["file"]
        if rel not in self._stores:
            self._stores[rel] = ModelStore([self.manifest.file(rel)])
        return self._stores[rel]

    def _golden(self, vec) -> np.ndarray:
        g = vec["golden"]
        return read_png(self.manifest.file(g["file"]), g["width"], g["height"])

    # --- evidence (clause 11.5.4) ---------------------------------------------------------------
    def _keeps(self, res: Result) -> bool:
        return self.opts.evidence_dir is not None and (res.state != "pass" or self.opts.keep_all)

    def _evidence_dir(self, vec) -> Path:
        d = self.opts.evidence_dir / vec["id"]
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _keep(self, vec, res: Result, output: Path | None = None, image=None, done=None, trace: Path | None = None):
        """Keep what shows why a vector did not pass (or, with --keep-all, passed); the vector's
        evidence folder is made only when there is something to keep."""
        if not self._keeps(res):
            return res
        notes = res.details.setdefault("notes", [])
        if output is not None and output.is_file() and output.stat().st_size > 0:
            size = output.stat().st_size
            if size <= EVIDENCE_COPY_LIMIT:
                kept = self._evidence_dir(vec) / f"output{output.suffix}"
                shutil.copyfile(output, kept)
                res.details["output"] = str(kept)
            else:
                notes.append(f"the output ({size} bytes) is too large to keep")
        elif image is not None:
            kept = self._evidence_dir(vec) / "output.png"
            kept.write_bytes(png_bytes(image))
            res.details["output"] = str(kept)
        if done is not None:
            for name, cap in (("stdout", done.stdout), ("stderr", done.stderr)):
                if cap.total:
                    cut = f"[{cap.total - len(cap.tail)} earlier bytes not kept]\n".encode() \
                        if cap.total > len(cap.tail) else b""
                    (self._evidence_dir(vec) / f"{name}.txt").write_bytes(cut + cap.tail)
        if trace is not None and trace.is_dir() and any(trace.iterdir()):
            size = sum(p.stat().st_size for p in trace.iterdir() if p.is_file())
            if size <= EVIDENCE_TRACE_LIMIT:
                dst = self._evidence_dir(vec) / "trace"
                remove_tree(dst)
                shutil.move(str(trace), str(dst))
                if res.details.get("trace"):
                    res.details["trace"]["dir"] = str(dst)
            else:
                notes.append(f"the trace ({size >> 20} MiB) is not kept; --trace-dir DIR keeps traces")
        if (self.opts.evidence_dir / vec["id"]).is_dir():
            res.details["evidence"] = str(self.opts.evidence_dir / vec["id"])
        return res

    # --- refdec itself --------------------------------------------------------------------------
    def _check_refdec(self, vec) -> Result:
        stream = self.manifest.file(vec["bitstream"]["file"]).read_bytes()
        expected = vec.get("expected_error")
        try:
            if self.progress is not None:
                self.progress.prefix = f"  decoding {vec['id']}: "
            decoded = decode(stream, self._store(vec), trace=True,
                             record=Recorder(on_progress=self.progress) if self.progress is not None else None)
        except RefdecError as exc:
            if vec["kind"] == "invalid":
                cls = "expected" if exc.name == expected else "other"
                if cls == "expected":
                    return self._result(vec, "pass", f"rejected: {exc}", reported_error=exc.name, error_class=cls)
                return self._keep(vec, self._result(vec, "fail", f"rejected with {exc.name}, expected {expected}: {exc}",
                                                    reported_error=exc.name, error_class=cls))
            return self._keep(vec, self._result(vec, "error", f"refdec rejected a valid stream: {exc}",
                                                reported_error=exc.name))
        if self.opts.trace_dir is not None:
            write_trace(decoded.stages, self.opts.trace_dir / vec["id"])
        if vec["kind"] == "invalid":
            return self._keep(vec, self._result(vec, "fail", f"decoded an invalid stream (expected {expected})"),
                              image=decoded.image)
        diag = diagnose_hashes(vec["stages"], decoded.stages)
        trace = {"dir": str(self.opts.trace_dir / vec["id"]) if self.opts.trace_dir else None,
                 "stages": len(decoded.stages), "partial": False, "latent_wavefronts": None}
        res = self._judge(vec, decoded.image, diag, [], trace, {})
        return self._keep(vec, res, image=decoded.image)

    # --- a decoder command ---------------------------------------------------------------------
    def _check_decoder(self, vec) -> Result:
        vid = vec["id"]
        vdir = self.opts.scratch / "run" / vid
        remove_tree(vdir)
        vdir.mkdir(parents=True)
        out = vdir / f"{vid}.{self.opts.out_format}"
        trace = None
        if self.uses_trace:
            if self.opts.trace_dir is not None:
                trace = self.opts.trace_dir / vid
                trace.mkdir(parents=True, exist_ok=True)
                for name in STAGE_ORDER + ["partial"]:    # stale files of an earlier run would be compared
                    (trace / f"{name}.{'json' if name == 'partial' else 'npy'}").unlink(missing_ok=True)
            else:
                trace = vdir / "trace"
                trace.mkdir()
        elif self.opts.trace_dir is not None:
            trace = self.opts.trace_dir / vid
        stream = self.inputs.path(vec["bitstream"]["file"])
        model = self.inputs.path(vec["model"]["file"])
        values = {"in": stream.resolve(), "out": out.resolve(), "trace": trace.resolve() if trace is not None else "",
                  "id": vid, "model": model.resolve(), "models": self.inputs.models_dir.resolve()}
        argv = substitute(self.words, values)
        timeout = vector_timeout(self.opts, self.manifest, vec)
        env = dict(os.environ, **(self.opts.thread_env or {}))
        env.update(REFDEC_VECTOR_ID=vid, REFDEC_MODEL=str(values["model"]), REFDEC_MODEL_DIR=str(values["models"]))
        tag = f"{self.opts.run_tag}-{vid}" if self.opts.run_tag else None
        try:
            done = run_command(argv, timeout, env, tag=tag)
        except OSError as exc:
            return self._result(vec, "error", f"cannot run {argv[0]!r}: {exc.strerror or exc}", command=argv,
                                timeout_s=timeout)
        changed = self.inputs.verify()
        rc = done.returncode
        reported = reported_error(done.stderr.first_line())
        notes = []
        if done.leftovers:
            notes.append(f"{done.leftovers} process(es) the decoder left running were killed")
        if done.held_pipes:
            notes.append(f"a process the decoder left behind held its output open; the checker stopped reading "
                         f"{DRAIN_SECONDS:g} s after the decoder exited")
        common = {"exit_code": rc, "signal": signal_name(done.signal) if done.signal else None,
                  "stderr_tail": done.stderr.text_tail(STDERR_TAIL) or None, "stdout_bytes": done.stdout.total,
                  "stderr_bytes": done.stderr.total, "command": argv, "timeout_s": timeout,
                  "reported_error": reported, "notes": notes}
        produced = out.is_file() and out.stat().st_size > 0
        if changed:
            res = self._result(vec, "error", "the decoder changed its read-only inputs (restored): "
                               + ", ".join(changed[:5]), **common)
        elif done.timed_out:
            res = self._with_trace(vec, self._result(vec, "timeout", f"no result within {timeout:g} s; "
                                                     "its process group was killed", **common), trace)
        elif done.signal:
            res = self._with_trace(vec, self._result(vec, "error", f"decoder killed by {common['signal']} "
                                                     "(a signal is never a rejection)", **common), trace)
        elif rc in SHELL_STATUSES:
            res = self._with_trace(vec, self._result(vec, "error", f"decoder exited with status {rc}: what a shell "
                                                     "reports for a command that cannot run (126, 127) or that a "
                                                     "signal ended (128 + N); never a rejection", **common), trace)
        elif vec["kind"] == "invalid":
            res = self._judge_invalid(vec, rc, produced, reported, common)
        elif rc != 0:
            res = self._with_trace(vec, self._result(vec, "error", f"decoder exited with status {rc}", **common), trace)
        elif not produced:
            what = "an empty output (0 bytes: no output)" if out.is_file() else "no output"
            res = self._with_trace(vec, self._result(vec, "error", f"decoder exited 0 but wrote {what}", **common),
                                   trace)
        else:
            res = self._judge_file(vec, out, trace, common)
        res.seconds = done.seconds
        scratch_trace = trace if trace is not None and self.opts.trace_dir is None else None
        self._keep(vec, res, output=out, done=done, trace=scratch_trace)
        info = res.details.get("trace")
        if scratch_trace is not None and info and info.get("dir") == str(scratch_trace):
            info["dir"] = None                 # a scratch trace of a vector that passed is not kept
        remove_tree(vdir)
        return res

    def _judge_invalid(self, vec, rc, produced, reported, common) -> Result:
        expected = vec["expected_error"]
        if rc == 0:
            return self._result(vec, "fail", f"accepted an invalid stream (exit 0; expected {expected})", **common)
        if produced:
            return self._result(vec, "fail", f"exited with status {rc} but wrote an output (expected {expected})",
                                **common)
        cls = "expected" if reported == expected else "other" if reported else "none"
        said = f"reported {reported}" if reported else "named no error class"
        if cls != "expected" and self.opts.strict_errors:
            return self._result(vec, "fail", f"rejected (exit {rc}) but {said}; expected {expected} "
                                "(--strict-errors)", error_class=cls, **common)
        if cls != "expected":
            common["notes"].append(f"the first line of stderr names {reported or 'no clause 11.2 class'}; expected "
                                   f"{expected} (a failure with --strict-errors)")
        return self._result(vec, "pass", f"rejected (exit {rc}, {said}; expected {expected})", error_class=cls,
                            **common)

    # --- outputs made elsewhere ------------------------------------------------------------------
    def _check_outputs(self, vec) -> Result:
        cands = [self.opts.outputs / f"{vec['id']}.png", self.opts.outputs / f"{vec['id']}.rgb"]
        found = [p for p in cands if p.is_file() and p.stat().st_size > 0]
        empty = [p for p in cands if p.is_file() and p.stat().st_size == 0]
        trace = self.opts.trace_dir / vec["id"] if self.opts.trace_dir is not None else None
        notes = [f"{p.name} is empty (0 bytes): no output" for p in empty]
        if vec["kind"] == "invalid":
            if found:
                return self._result(vec, "fail", f"an output exists for an invalid stream: {found[0].name} "
                                                 f"(expected {vec['expected_error']})", output=str(found[0]), notes=notes)
            return self._result(vec, "pass", f"no output (expected {vec['expected_error']})", notes=notes)
        if not found:
            res = self._result(vec, "error", f"no output {cands[0].name} or {cands[1].name}", notes=notes)
            return self._keep(vec, self._with_trace(vec, res, trace))
        if len(found) > 1:
            notes.append(f"both {cands[0].name} and {cands[1].name} exist; {cands[0].name} was compared")
        res = self._judge_file(vec, found[0], trace, {"output": str(found[0]), "notes": notes})
        if self._keeps(res) and (self.opts.evidence_dir / vec["id"]).is_dir():      # the difference image
            res.details["evidence"] = str(self.opts.evidence_dir / vec["id"])
        return res

    # --- judging ---------------------------------------------------------------------------------
    def _judge_file(self, vec, path: Path, trace: Path | None, common: dict) -> Result:
        g = vec["golden"]
        try:
            image = read_output(path, g["width"], g["height"])
        except OutputError as exc:
            return self._with_trace(vec, self._result(vec, "fail", str(exc), **common), trace)
        diag, notes, info = self._trace_analysis(vec, trace) if trace is not None else (None, [], None)
        common = dict(common)
        common["notes"] = list(common.get("notes") or []) + notes
        return self._judge(vec, image, diag, [], info, common)

    def _judge(self, vec, image: np.ndarray, diag, notes, trace_info, common) -> Result:
        common = dict(common or {})
        notes = list(common.pop("notes", []) or []) + list(notes)
        golden = self._golden(vec)
        cmp = compare_samples(golden, image)
        diff_path = None
        details = dict(samples=cmp, diagnosis=diag, notes=notes, trace=trace_info, **common)
        if not cmp["equal"]:
            if "first" in cmp:
                f = cmp["first"]
                short = (f"{cmp['differing_samples']}/{cmp['total_samples']} samples differ, max |diff| "
                         f"{cmp['max_abs_diff']}, first at channel {f['channel']}, row {f['row']}, "
                         f"column {f['column']}")
                if self.opts.evidence_dir is not None:
                    diff_path = self._evidence_dir(vec) / "diff.png"
                    diff_path.write_bytes(png_bytes(difference_image(golden, image)))
                    details["diff_image"] = str(diff_path)
            else:
                short = describe_samples(cmp)
            return self._result(vec, "fail", f"samples differ: {short}", **details)
        if diag is not None:
            return self._result(vec, "fail", f"samples match, but the trace differs: {diag['stage']}", **details)
        traced = " and trace" if trace_info is not None and trace_info.get("stages") else ""
        return self._result(vec, "pass", f"samples{traced} match (sha256 {vec['golden']['samples_sha256'][:12]})",
                            **details)

    def _with_trace(self, vec, res: Result, trace: Path | None) -> Result:
        """An error, a timeout or an unreadable output still gets a stage diagnosis when a (partial)
        trace exists (clause 11.5.4)."""
        if vec["kind"] != "valid" or trace is None or not trace.is_dir():
            return res
        diag, notes, info = self._trace_analysis(vec, trace)
        res.details["trace"] = info
        if diag:
            res.details["diagnosis"] = diag
            res.look_at = _unique([diag["clause"]] + res.look_at)
        res.details.setdefault("notes", []).extend(notes)
        return res

    def _trace_analysis(self, vec, trace_dir: Path):
        """Clause 11.5.4: the stage files' hashes first (streamed); the golden stage tensors only
        for a trace that differs or is partial, in a helper process. -> (diagnosis, notes, info)."""
        t = scan_trace(trace_dir)
        info = t.as_dict()
        notes = [t.problems["partial.json"]] if "partial.json" in t.problems else []
        if t.empty:
            return None, notes, info
        stages = vec["stages"]
        hashed, problems = {}, {}
        for name in t.complete_stages():
            try:
                hashed[name] = stage_file_hash(t.files[name])
            except (TraceError, OSError) as exc:
                problems[name] = str(exc)
        partial_latent = [n for n in LATENT_STAGES if n in t.files] if t.partial else []
        present = set(t.files)
        hash_diag = hash_diagnosis(stages, hashed, problems, present=present)
        missing = [n for n in STAGE_ORDER if n not in present]
        if t.partial:
            hy, wy = stages["y_hat"]["shape"][-2:]
            total = (wy - 1) + 4 * (hy - 1) + 1
            notes.append(f"partial trace: {len(t.files)} stages, latent stages valid in {t.latent_wavefronts} of "
                         f"{total} wavefronts")
        elif missing and len(missing) < len(STAGE_ORDER):
            notes.append(f"trace lacks {len(missing)} of {len(STAGE_ORDER)} stages")
        if hash_diag is None and not partial_latent:
            return None, notes, info
        compare = [n for n in (hash_diag["diverging_stages"] if hash_diag else []) if n not in problems]
        compare = [n for n in STAGE_ORDER if n in set(compare) | set(partial_latent)]
        diag, more = self._golden_diagnosis(vec, trace_dir, compare, problems,
                                            t.latent_wavefronts if t.partial else None)
        notes += more
        if diag is None:
            diag = hash_diag
            if hash_diag is None and t.partial:
                notes.append("the partial trace equals the golden stages wherever it was computed")
        if diag is not None:
            diag["missing_stages"] = missing
            hashed_bad = hash_diag["diverging_stages"] if hash_diag else []
            diag["diverging_stages"] = [n for n in STAGE_ORDER if n in set(hashed_bad) | set(diag["diverging_stages"])]
        return diag, notes, info

    def _golden_diagnosis(self, vec, trace_dir, compare, problems, latent_wavefronts):
        """Element detail from refdec's golden stages, computed in a helper process (golden.py)."""
        scratch = self.opts.scratch if self.opts.scratch is not None else Path(tempfile.gettempdir())
        scratch.mkdir(parents=True, exist_ok=True)
        fd, req_path = tempfile.mkstemp(prefix=f"golden-{vec['id']}-", suffix=".json", dir=scratch)
        req = {"stream": str(self.manifest.file(vec["bitstream"]["file"]).resolve()),
               "models": str(self.manifest.file(vec["model"]["file"]).resolve()), "trace": str(Path(trace_dir).resolve()),
               "stages": vec["stages"], "compare": compare, "problems": problems,
               "latent_wavefronts": latent_wavefronts}
        with os.fdopen(fd, "w") as f:
            json.dump(req, f)
        from .workers import worker_env

        env = worker_env()                     # this refdec, one BLAS thread
        tag = f"{self.opts.run_tag}-golden-{vec['id']}" if self.opts.run_tag else None
        limit = max(300.0, 4 * vector_timeout(self.opts, self.manifest, vec))
        try:
            done = run_command([sys.executable, "-m", "refdec.conformance.golden", req_path], limit, env, tag=tag)
            reply = json.loads(done.stdout.tail.decode().strip().splitlines()[-1]) if done.returncode == 0 else None
        except (OSError, ValueError, IndexError):
            reply, done = None, None
        finally:
            os.unlink(req_path)
        if reply is None:
            last = (done.stderr.text_tail(300).strip().splitlines() or [f"exit status {done.returncode}"])[-1] \
                if done is not None else ""
            why = "timed out" if done is not None and done.timed_out else (
                f"failed ({last})" if done is not None else "could not run")
            return None, [f"the element-wise analysis {why}; stage hashes only"]
        return reply["diagnosis"], reply["notes"]


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


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


def default_vectors() -> Path:
    """`vectors/` in the current folder, else the repository's vectors/ next to the refdec package;
    CheckUsageError saying what to pass when there is neither (an installed refdec)."""
    for cand in (Path("vectors"), _REPO_VECTORS):
        if (cand / "manifest.json").is_file():
            return cand
    raise CheckUsageError("no vector folder given, and neither ./vectors nor the repository's vectors/ holds a "
                          "manifest.json: pass the folder of a vector set, e.g. 'refdec check path/to/vectors' "
                          "(the vectors/ folder of the refdec repository)")


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `refdec check` (clause 11.5.3)."""
    p.add_argument("vectors", nargs="?", metavar="VECTORS", default=None,
                   help="vector folder or its manifest.json (default: ./vectors, else the repository's vectors/)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--decoder", metavar="CMD",
                     help="decoder command run once per vector, without a shell; placeholders {in} {out} "
                          "(required), {model} (the vector's model file), {trace} {models} {id}")
    src.add_argument("--outputs", metavar="DIR", type=Path,
                     help="outputs made elsewhere: DIR/<vector id>.png or DIR/<vector id>.rgb (clause 11.4 planar)")
    p.add_argument("--trace-dir", metavar="DIR", type=Path, default=None,
                   help="traces (clause 11.3) in DIR/<vector id>/STAGE.npy: read with --outputs, written by the "
                        "decoder as {trace} with --decoder, written by refdec when it checks itself")
    p.add_argument("--subset", metavar="NAME", action="append", default=[],
                   help="check only this subset (a manifest subset, all, valid, invalid, or a vector id or "
                        "pattern); repeatable; --list shows them")
    p.add_argument("--list", action="store_true", help="print the subsets (with counts) and the vectors, and exit")
    p.add_argument("-j", "--jobs", metavar="N", type=positive_int, default=1,
                   help="vectors checked at once, each in a worker process (refdec itself: at most the usable cores)")
    p.add_argument("--json", metavar="FILE", type=Path, default=None,
                   help="write the JSON report (spec/report.schema.json)")
    p.add_argument("--junit", metavar="FILE", type=Path, default=None, help="write a JUnit XML report")
    p.add_argument("--timeout", metavar="S", type=_positive_float, default=None,
                   help=f"seconds per decoder run (--decoder only; default {TIMEOUT_BASE:g} s + "
                        f"{TIMEOUT_PER_MP:g} s per megapixel of the vector's image)")
    p.add_argument("--out-format", choices=("png", "rgb"), default="png",
                   help="what {out} is: an RGB PNG (default) or clause 11.4 raw planar bytes")
    p.add_argument("--evidence-dir", "--diff-dir", "--work-dir", dest="evidence_dir", metavar="DIR", type=Path,
                   default=None,
                   help="keep the evidence of every vector that does not pass in DIR/<id>/ (output, diff.png, "
                        "stderr.txt, trace/); default: refdec-check-<UTC time>/ next to the --json or --junit "
                        "report, else in the current folder, made only when needed")
    p.add_argument("--keep-all", action="store_true", help="keep the outputs of passing vectors too")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first vector that does not pass")
    p.add_argument("--strict-errors", action="store_true",
                   help="a rejection that names another error class than expected (or none) fails")
    p.add_argument("-q", "--quiet", action="store_true", help="print only vectors that do not pass, and the summary")


def options_from_args(args) -> CheckOptions:
    if args.outputs is not None and not args.outputs.is_dir():
        raise CheckUsageError(f"--outputs: {args.outputs} is not a folder")
    if args.decoder is not None:
        parse_decoder_template(args.decoder)
    return CheckOptions(decoder=args.decoder, outputs=args.outputs, trace_dir=args.trace_dir,
                        subsets=list(args.subset), jobs=args.jobs, timeout=args.timeout,
                        out_format=args.out_format, evidence_dir=args.evidence_dir, keep_all=args.keep_all,
                        fail_fast=args.fail_fast, strict_errors=args.strict_errors, quiet=args.quiet)


# --- checks before the first vector (clause 11.5.3) --------------------------------------------------

def check_decoder_command(words: list[str]) -> None:
    """The command exists and can be executed (one usage error instead of one error per vector)."""
    exe = words[0]
    if any("{" + p + "}" in exe for p in PLACEHOLDERS):
        return
    if os.sep in exe or (os.altsep and os.altsep in exe):
        p = Path(exe)
        if not p.exists():
            raise CheckUsageError(f"--decoder: {exe} does not exist")
        if p.is_dir() or not os.access(p, os.X_OK):
            raise CheckUsageError(f"--decoder: {exe} is not an executable file")
    elif shutil.which(exe) is None:
        raise CheckUsageError(f"--decoder: command {exe!r} not found on PATH")


def _writable_dir(path: Path, what: str, create: bool) -> None:
    """`path` is (or can be made) a writable folder."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise CheckUsageError(f"{what}: cannot write in {probe}")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckUsageError(f"{what}: cannot create {path}: {exc.strerror or exc}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise CheckUsageError(f"{what}: cannot write in {path}")


def _open_report(path: Path, what: str, created: list) -> None:
    if path.is_dir():
        raise CheckUsageError(f"{what}: {path} is a folder")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as exc:
        raise CheckUsageError(f"{what}: cannot write {path}: {exc.strerror or exc}") from None
    if not existed:
        created.append(path)


def listing(manifest: Manifest, vectors) -> str:
    """--list: the subsets with their counts, then the vectors (id, kind, size or expected error, subsets)."""
    allv = manifest.vectors
    lines = [f"vector set {manifest.path}: {len(allv)} vectors, {sum(v['kind'] == 'valid' for v in allv)} valid, "
             f"{sum(v['kind'] == 'invalid' for v in allv)} invalid", "", "subsets (--subset NAME):"]
    subsets = dict(manifest.data.get("subsets", {}))
    rows = [(name, sum(name in v["subsets"] for v in allv), desc) for name, desc in sorted(subsets.items())]
    rows += [("all", len(allv), "every vector"), ("valid", sum(v["kind"] == "valid" for v in allv), "valid streams"),
             ("invalid", sum(v["kind"] == "invalid" for v in allv), "invalid streams")]
    w = max(len(r[0]) for r in rows)
    lines += [f"  {name:<{w}}  {n:4d}  {desc}" for name, n, desc in rows]
    lines += ["  (or a vector id, or a pattern of ids such as 'err-*')", "",
              f"vectors ({len(vectors)}{' selected' if len(vectors) != len(allv) else ''}):"]
    iw = max(len(v["id"]) for v in vectors) if vectors else 8
    for v in vectors:
        what = (f"{v['golden']['width']}x{v['golden']['height']}" if v["kind"] == "valid" else v["expected_error"])
        lines.append(f"  {v['id']:<{iw}}  {v['kind']:<7}  {what:<24}  {', '.join(v['subsets'])}")
    return "\n".join(lines) + "\n"


# --- a run ----------------------------------------------------------------------------------------

def _utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def peak_rss_mib() -> float | None:
    """This process's peak resident memory in MiB: VmHWM of /proc/self/status on Linux (getrusage's
    ru_maxrss keeps the parent's peak across fork and exec), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / (1 << 20 if sys.platform == "darwin" else 1024), 1)


class _Interrupted(KeyboardInterrupt):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class CheckSession:
    """Non-normative: one run of `refdec check` over the selected vectors: live lines, the
    interrupt, the scratch folder, the vector folder's verification and the reports."""

    def __init__(self, manifest: Manifest, opts: CheckOptions, vectors, out, json_path=None, junit_path=None):
        self.manifest, self.opts, self.vectors, self.out = manifest, opts, vectors, out
        self.json_path, self.junit_path = json_path, junit_path
        self.results: dict = {}
        self.progress: TerminalProgress | None = None
        self.width = min(max([len(v["id"]) for v in vectors] + [8]), 48)

    def _print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.clear()
        self.out.write(text + "\n")
        self.out.flush()

    def _on_result(self, res: Result) -> bool:
        """Print a finished vector; False to stop (--fail-fast)."""
        self.results[res.id] = res
        k, n = len(self.results), len(self.vectors)
        elapsed = time.monotonic() - self.t0
        if not (self.opts.quiet and res.state == "pass"):
            counter = f"[{k:>{len(str(n))}}/{n}] {int(elapsed) // 60:d}:{int(elapsed) % 60:02d} "
            self._print(counter + result_text(res, self.width).replace("\n", "\n" + " " * len(counter)))
        return not (self.opts.fail_fast and res.state != "pass")

    def _describe(self) -> str:
        o = self.opts
        if o.mode == "decoder":
            t = f"timeout {o.timeout:g} s" if o.timeout else f"timeout {TIMEOUT_BASE:g} s + {TIMEOUT_PER_MP:g} s/MP"
            what = f"decoder {o.decoder!r}, {t}"
        elif o.mode == "outputs":
            what = f"outputs in {o.outputs}"
        else:
            what = "refdec" + (" (in-process)" if o.jobs == 1 else "")
        sub = f" (subsets {', '.join(o.subsets)})" if o.subsets else ""
        jobs = f", {o.jobs} jobs" if o.jobs > 1 else ""
        n = len(self.vectors)
        return f"refdec check: {n} vector{'' if n == 1 else 's'}{sub} of {self.manifest.path}, {what}{jobs}"

    def execute(self) -> int:
        opts = self.opts
        self.start_wall, self.t0 = time.time(), time.monotonic()
        self._print(self._describe())
        excluded = [p for p in (opts.evidence_dir, opts.trace_dir, self.json_path, self.junit_path) if p is not None]
        snapshot = snapshot_folder(self.manifest, excluded)
        opts.scratch = Path(tempfile.mkdtemp(prefix="refdec-check-scratch-"))
        opts.run_tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        interrupted = None
        handlers = {}
        try:
            try:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    handlers[sig] = signal.signal(sig, self._raise_interrupt)
            except ValueError:   # not the main thread: no handlers (KeyboardInterrupt still works)
                handlers = {}
            inputs = Inputs.create(self.manifest, opts.scratch / "inputs", self.vectors) \
                if opts.mode == "decoder" else None
            if opts.jobs > 1 and len(self.vectors) > 1:
                from .workers import THREAD_VARS, run_in_workers

                opts.thread_env = {k: os.environ.get(k, "1") for k in THREAD_VARS}   # the user's choice wins
                run_in_workers(self.manifest, opts, inputs, self.vectors, self._on_result)
            else:
                checker = Checker(self.manifest, opts, inputs)
                if opts.mode == "refdec" and self.out.isatty():
                    checker.progress = self.progress = TerminalProgress(self.out)
                for vec in self.vectors:
                    if not self._on_result(checker.check(vec)):
                        break
        except KeyboardInterrupt as exc:
            interrupted = getattr(exc, "signum", signal.SIGINT)
        finally:
            for sig in handlers:                         # no second interrupt while the reports are written
                signal.signal(sig, signal.SIG_IGN)
            kill_all(opts.run_tag)
            remove_tree(opts.scratch)
        try:
            return self._finish(snapshot, excluded, interrupted)
        finally:
            for sig, h in handlers.items():
                signal.signal(sig, h)

    @staticmethod
    def _raise_interrupt(signum, frame):
        raise _Interrupted(signum)

    def _finish(self, snapshot, excluded, interrupted) -> int:
        opts = self.opts
        elapsed = time.monotonic() - self.t0
        folder = folder_changes(self.manifest, snapshot, excluded)
        results = [self.results[v["id"]] for v in self.vectors if v["id"] in self.results]
        not_run = [v for v in self.vectors if v["id"] not in self.results]
        counts = summary(results, self.vectors, folder["intact"])
        evidence = opts.evidence_dir if opts.evidence_dir is not None and opts.evidence_dir.is_dir() \
            and any(opts.evidence_dir.iterdir()) else None
        if interrupted:
            self._print(f"refdec check: interrupted ({signal_name(interrupted)}) after {len(results)} of "
                        f"{len(self.vectors)} vectors; every process the check started has been ended")
        not_passed = [r for r in results if r.state != "pass"]
        for line in summary_lines(counts, elapsed, interrupted is not None, folder,
                                  str(evidence) if evidence else None, not_passed):
            self._print(line)
        meta = {"tool": {"name": "refdec", "version": _version()}, "created": _utc(self.start_wall),
                "finished": _utc(time.time()), "interrupted": interrupted is not None,
                "interrupt_signal": signal_name(interrupted) if interrupted else None,
                "manifest": str(self.manifest.path), "manifest_sha256": snapshot.get("manifest.json", [0, 0, None])[2]
                or sha256_hex(self.manifest.path.read_bytes()),
                "mode": opts.mode, "decoder": opts.decoder, "outputs": str(opts.outputs) if opts.outputs else None,
                "trace_dir": str(opts.trace_dir) if opts.trace_dir else None,
                "evidence_dir": str(evidence) if evidence else None, "subsets": list(opts.subsets),
                "jobs": opts.jobs, "strict_errors": opts.strict_errors, "fail_fast": opts.fail_fast,
                "keep_all": opts.keep_all,
                "timeout": {"fixed_s": opts.timeout, "base_s": None if opts.timeout else TIMEOUT_BASE,
                            "per_megapixel_s": None if opts.timeout else TIMEOUT_PER_MP},
                "seconds": round(elapsed, 3), "checker_peak_rss_mib": peak_rss_mib(),
                "vectors_folder": folder, "not_run": [v["id"] for v in not_run]}
        written = []
        if self.json_path is not None:
            self.json_path.write_text(json_report(results, meta, counts))
            written.append(f"JSON {self.json_path}")
        if self.junit_path is not None:
            self.junit_path.write_bytes(junit_report(results, seconds=elapsed, not_run=not_run,
                                                     interrupted=interrupted is not None, folder=folder))
            written.append(f"JUnit {self.junit_path}")
        if written:
            self._print(f"  reports{' (partial)' if interrupted or not_run else ''}: {', '.join(written)}")
        if interrupted:
            return 128 + int(interrupted)
        return 0 if counts["all_pass"] else 1


def _version() -> str:
    from .. import __version__

    return __version__


def run(args, stdout=None) -> int:
    """`refdec check`: 0 when every selected vector passes, 1 otherwise, 128 + N on signal N
    (CheckUsageError and ManifestError are the caller's exit-2 path)."""
    stdout = stdout or sys.stdout
    opts = options_from_args(args)
    manifest = load_manifest(args.vectors if args.vectors is not None else default_vectors())
    vectors = manifest.select(opts.subsets)
    if args.list:
        stdout.write(listing(manifest, vectors))
        return 0
    if opts.mode == "refdec" and opts.jobs > usable_cpus():
        opts.jobs = usable_cpus()
    if opts.decoder:
        check_decoder_command(parse_decoder_template(opts.decoder))
    created: list = []
    try:
        for path, what in ((args.json, "--json"), (args.junit, "--junit")):
            if path is not None:
                _open_report(path, what, created)
        if opts.evidence_dir is None:
            base = next((p.parent for p in (args.json, args.junit) if p is not None), Path("."))
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            opts.evidence_dir = base / f"refdec-check-{stamp}"
            _writable_dir(opts.evidence_dir, "evidence folder", create=False)
        else:
            _writable_dir(opts.evidence_dir, "--evidence-dir", create=True)
        if opts.trace_dir is not None and opts.mode != "outputs":
            _writable_dir(opts.trace_dir, "--trace-dir", create=True)
        elif opts.trace_dir is not None and not opts.trace_dir.is_dir():
            raise CheckUsageError(f"--trace-dir: {opts.trace_dir} is not a folder")
        prepare(manifest, vectors)
    except (CheckUsageError, ManifestError):
        for p in created:
            p.unlink(missing_ok=True)
        raise
    return CheckSession(manifest, opts, vectors, stdout, args.json, args.junit).execute()
