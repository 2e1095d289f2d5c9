"""Non-normative: a vector set and its manifest (spec clauses 11.5.1 and 11.5.2, schema in
spec/manifest.schema.json): loading, validation, file verification, and the set's README."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import constants
from ..architecture import LAYERS
from ..errors import ALL_ERRORS
from ..stages import STAGE_ORDER
from .hashes import sha256_hex


MANIFEST_FORMAT = "refdec-conformance-vectors"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"

STATES = ("pass", "fail", "error", "timeout")
KINDS = ("valid", "invalid")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MODEL_ID = re.compile(r"^[0-9a-f]{16}$")
_CLAUSE = re.compile(r"^(?:\d+|[A-Z])(?:\.\d+)*$")
_VECTOR_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


class ManifestError(ValueError):
    """A vector set whose manifest is malformed or whose files do not match their hashes (clause 11.5.2)."""



def dumps_canonical(obj) -> str:
    """Informative: the JSON text of manifests and reports: sorted keys, one-space indent, ASCII."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"


def _rel_path_ok(p) -> bool:
    if not isinstance(p, str) or not p or "\\" in p:
        return False
    pp = PurePosixPath(p)
    return not pp.is_absolute() and ".." not in pp.parts


def validate_manifest(data) -> list[str]:
    """Clause 11.5.2: every problem of a manifest (an empty list when it is valid).

    Checks the structure that spec/manifest.schema.json describes plus what a schema cannot
    say: unique ids, known subsets and models, the full set of clause 11.3 stages."""
    p: list[str] = []

    def need(obj, key, types, where):
        if not isinstance(obj, dict) or key not in obj:
            p.append(f"{where}: missing {key!r}")
            return None
        v = obj[key]
        if not isinstance(v, types) or (isinstance(v, bool) and types is not bool):
            p.append(f"{where}.{key}: wrong type {type(v).__name__}")
            return None
        return v

    def sha(obj, key, where):
        v = need(obj, key, str, where)
        if v is not None and not _SHA256.match(v):
            p.append(f"{where}.{key}: not a lowercase hex SHA-256")

    def rel(obj, key, where):
        v = need(obj, key, str, where)
        if v is not None and not _rel_path_ok(v):
            p.append(f"{where}.{key}: {v!r} is not a relative path inside the vector set")

    if not isinstance(data, dict):
        return ["manifest: not a JSON object"]
    if data.get("format") != MANIFEST_FORMAT:
        p.append(f"manifest.format: expected {MANIFEST_FORMAT!r}")
    if data.get("manifest_version") != MANIFEST_VERSION:
        p.append(f"manifest.manifest_version: {data.get('manifest_version')!r}, this tool reads version "
                 f"{MANIFEST_VERSION}")
    if data.get("bitstream_version") != constants.VERSION:
        p.append(f"manifest.bitstream_version: {data.get('bitstream_version')!r}, expected {constants.VERSION}")
    need(data, "generator", dict, "manifest")
    order = need(data, "stage_order", list, "manifest")
    if order is not None and order != STAGE_ORDER:
        p.append("manifest.stage_order: not the clause 11.3 stage names in decoding order")
    subsets = need(data, "subsets", dict, "manifest") or {}
    for name, desc in subsets.items():
        if not _VECTOR_ID.match(name) or not isinstance(desc, str):
            p.append(f"manifest.subsets.{name}: bad subset name or description")
    models = need(data, "models", dict, "manifest") or {}
    for name, m in models.items():
        w = f"manifest.models.{name}"
        if not isinstance(m, dict):
            p.append(f"{w}: not an object")
            continue
        rel(m, "file", w)
        sha(m, "sha256", w)
        mid = need(m, "model_id", str, w)
        if mid is not None and not _MODEL_ID.match(mid):
            p.append(f"{w}.model_id: not 16 lowercase hex digits")
        need(m, "valid", bool, w)
        need(m, "description", str, w)
    vectors = need(data, "vectors", list, "manifest")
    if vectors is None:
        return p
    if not vectors:
        p.append("manifest.vectors: empty")
    seen = set()
    for i, v in enumerate(vectors):
        w = f"manifest.vectors[{i}]"
        if not isinstance(v, dict):
            p.append(f"{w}: not an object")
            continue
        vid = need(v, "id", str, w)
        if vid is not None:
            w = f"vector {vid}"
            if not _VECTOR_ID.match(vid):
                p.append(f"{w}: id must match {_VECTOR_ID.pattern}")
            if vid in seen:
                p.append(f"{w}: duplicate id")
            seen.add(vid)
        kind = need(v, "kind", str, w)
        if kind is not None and kind not in KINDS:
            p.append(f"{w}.kind: {kind!r} is not valid or invalid")
        need(v, "purpose", str, w)
        for key in ("features", "clauses", "look_at", "subsets"):
            lst = need(v, key, list, w)
            if lst is None:
                continue
            if not all(isinstance(x, str) for x in lst):
                p.append(f"{w}.{key}: not a list of strings")
                continue
            if key in ("clauses", "look_at"):
                p.extend(f"{w}.{key}: {c!r} is not a clause number" for c in lst if not _CLAUSE.match(c))
            if key == "subsets":
                p.extend(f"{w}.subsets: {s!r} is not declared in manifest.subsets" for s in lst
                         if s not in subsets)
        bs = need(v, "bitstream", dict, w)
        if bs is not None:
            rel(bs, "file", w + ".bitstream")
            sha(bs, "sha256", w + ".bitstream")
            need(bs, "bytes", int, w + ".bitstream")
        mod = need(v, "model", dict, w)
        if mod is not None:
            rel(mod, "file", w + ".model")
            sha(mod, "sha256", w + ".model")
            name = need(mod, "name", str, w + ".model")
            if name is not None:
                if name not in models:
                    p.append(f"{w}.model.name: {name!r} is not in manifest.models")
                elif models[name].get("sha256") != mod.get("sha256") or models[name].get("file") != mod.get("file"):
                    p.append(f"{w}.model: file or sha256 differ from manifest.models.{name}")
        if kind == "valid":
            g = need(v, "golden", dict, w)
            if g is not None:
                rel(g, "file", w + ".golden")
                sha(g, "sha256", w + ".golden")
                sha(g, "samples_sha256", w + ".golden")
                for key in ("width", "height"):
                    val = need(g, key, int, w + ".golden")
                    if val is not None and not 1 <= val <= 8192:
                        p.append(f"{w}.golden.{key}: {val} outside clause 5.2")
            st = need(v, "stages", dict, w)
            if st is not None:
                if set(st) != set(STAGE_ORDER):
                    missing, unknown = sorted(set(STAGE_ORDER) - set(st)), sorted(set(st) - set(STAGE_ORDER))
                    p.append(f"{w}.stages: expected exactly the clause 11.3 stages (missing {missing}, "
                             f"unknown {unknown})")
                for name, s in st.items():
                    ws = f"{w}.stages.{name}"
                    sha(s, "sha256", ws)
                    shape = need(s, "shape", list, ws)
                    if shape is not None and not all(isinstance(n, int) and n >= 0 for n in shape):
                        p.append(f"{ws}.shape: not a list of non-negative integers")
            if "expected_error" in v:
                p.append(f"{w}: a valid vector has no expected_error")
        elif kind == "invalid":
            err = need(v, "expected_error", str, w)
            if err is not None and err not in ALL_ERRORS:
                p.append(f"{w}.expected_error: {err!r} is not a clause 11.2 error class")
            for key in ("golden", "stages"):
                if key in v:
                    p.append(f"{w}: an invalid vector has no {key}")
    return p


@dataclass
class Manifest:
    """Non-normative: a loaded vector set (clause 11.5.1): its folder and manifest data."""

    root: Path
    data: dict
    path: Path = None

    @property
    def vectors(self) -> list[dict]:
        return self.data["vectors"]

    def file(self, rel: str) -> Path:
        return self.root / PurePosixPath(rel)

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def select(self, names=None) -> list[dict]:
        """The vectors of the named subsets (clause 11.5.2), in manifest order.

        A name is a subset of manifest.subsets, `all`, `valid`, `invalid`, or a vector id or
        fnmatch pattern of ids; no names means all vectors."""
        if not names:
            return list(self.vectors)
        from fnmatch import fnmatchcase

        chosen = set()
        for name in names:
            hit = False
            for v in self.vectors:
                if (name == "all" or name == v["kind"] or name in v["subsets"] or fnmatchcase(v["id"], name)):
                    chosen.add(v["id"])
                    hit = True
            if not hit:
                known = ", ".join(sorted(set(self.data.get("subsets", {})) | {"all", "valid", "invalid"}))
                raise ManifestError(f"subset {name!r} matches no vector (subsets: {known}; or a vector id)")
        return [v for v in self.vectors if v["id"] in chosen]


def load_manifest(path) -> Manifest:
    """Clause 11.5.2: read and validate a manifest (a vector folder or its manifest.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not JSON ({exc})") from None
    problems = validate_manifest(data)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ManifestError(f"{path}: invalid manifest: " + "; ".join(problems[:5]) + more)
    return Manifest(path.parent, data, path)


def verify_files(manifest: Manifest, vectors) -> list[str]:
    """Clause 11.5.2: every file a vector names exists and has its sha256; returns the problems."""
    problems = []
    cache: dict = {}
    for v in vectors:
        refs = [("bitstream", v["bitstream"]), ("model", v["model"])]
        if v["kind"] == "valid":
            refs.append(("golden", v["golden"]))
        for what, ref in refs:
            f = manifest.file(ref["file"])
            if f not in cache:
                try:
                    cache[f] = sha256_hex(f.read_bytes())
                except OSError as exc:
                    cache[f] = f"unreadable: {exc.strerror or exc}"
            if cache[f] != ref["sha256"]:
                why = cache[f] if cache[f].startswith("unreadable") else "sha256 differs from the manifest"
                problems.append(f"vector {v['id']}: {what} file {ref['file']}: {why}")
    return problems


# --- Clause 11.5.3: the vector set is not changed by a run ------------------------------------------

def file_sha256(path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


def _inside(path: Path, roots) -> bool:
    for r in roots:
        try:
            path.relative_to(r)
            return True
        except ValueError:
            pass
    return False


def snapshot_folder(manifest: Manifest, exclude=()) -> dict:
    """Clause 11.5.3: every file of a vector set folder before a run: relative path -> [size,
    mtime_ns, sha256]. The sha256 of a file the manifest names is the manifest's (verified before
    the run, clause 11.5.2); the other files (the manifest itself, README.md) are hashed here.
    Folders in `exclude` (report or trace folders a user put inside the set) are left out."""
    root = manifest.root.resolve()
    excl = [Path(e).resolve() for e in exclude]
    known = {}
    for v in manifest.vectors:
        for key in ("bitstream", "model", "golden"):
            if key in v:
                known[v[key]["file"]] = v[key]["sha256"]
    for m in manifest.data.get("models", {}).values():
        known[m["file"]] = m["sha256"]
    snap = {}
    for p in sorted(root.rglob("*")):
        if _inside(p.resolve(), excl) or not (p.is_file() or p.is_symlink()):
            continue
        rel = p.relative_to(root).as_posix()
        try:
            st = p.stat()
            sha = known.get(rel) or file_sha256(p)
        except OSError:
            continue
        snap[rel] = [st.st_size, st.st_mtime_ns, sha]
    return snap


def folder_changes(manifest: Manifest, before: dict, exclude=()) -> dict:
    """Clause 11.5.3: what a run changed in the vector set folder: {"intact", "changed", "added",
    "removed"} (relative paths). A file whose size or time changed is hashed again; it counts as
    changed only if its bytes differ."""
    after = {}
    root = manifest.root.resolve()
    excl = [Path(e).resolve() for e in exclude]
    for p in sorted(root.rglob("*")):
        if _inside(p.resolve(), excl) or not (p.is_file() or p.is_symlink()):
            continue
        try:
            st = p.stat()
        except OSError:
            continue
        after[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    changed = []
    for rel, (size, mtime, sha) in before.items():
        if rel in after and after[rel] != (size, mtime):
            try:
                same = file_sha256(root / rel) == sha
            except OSError:
                same = False
            if not same:
                changed.append(rel)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    return {"intact": not (changed or added or removed), "changed": changed, "added": added, "removed": removed}


# Clause 11.5.3 for an implementer, in the README and in every vector set's README (readme_text).
WRAPPING = """\
## Wrapping your decoder

`refdec check --decoder "CMD"` runs CMD once per vector, without a shell: the template is split
into words as a POSIX shell would, then these placeholders are replaced in every word:

| placeholder | what |
|---|---|
| `{in}` | the bitstream (required) |
| `{out}` | the file to write: an 8-bit RGB PNG, or with `--out-format rgb` the raw planar bytes of clause 11.4 (required) |
| `{model}` | the vector's model file (clause 9); without it your decoder is not given the model the stream names. A decoder handed a model file still compares its digest with the stream's `model_id` (clause 6.2) |
| `{models}` | the folder of all the set's model files |
| `{trace}` | a folder for a trace, one `STAGE.npy` per stage of clause 11.3 (optional; with `--trace-dir DIR` it is `DIR/ID`) |
| `{id}` | the vector's id |

Streams and models are read-only copies in a scratch folder; the command also finds
`REFDEC_VECTOR_ID`, `REFDEC_MODEL` and `REFDEC_MODEL_DIR` in its environment. What the
checker expects (clause 11.5.3):

* A valid stream: write `{out}` and exit 0.
* An invalid stream: write nothing (a 0-byte `{out}` counts as nothing), exit with a status from
  1 to 125 (or 193 to 255) through `exit()`, and name the clause 11.2 error class on the first
  line of stderr, e.g. `mydec: error: BadMagic: magic is RDEX`. Death by a signal (a crash), or
  the statuses 126 to 192 that a shell reports for a command that cannot run or that a signal
  ended, is an `error`, never a rejection. A rejection that names another class, or none, passes
  with a note and is counted in the summary; with `--strict-errors` it fails.
* Traces: when `{trace}` is given, write the stage tensors; when decoding fails part-way, write
  the stages computed so far and `partial.json` (clause 11.5.4): the checker still names the
  first diverging stage.
* Timeouts: each run may take 30 s plus 60 s per megapixel of the vector's image (`--timeout S`
  sets one limit for all); then its process group is killed, and anything it left running.

Start with `--list` (the subsets and the vectors), then `--subset quick`, then everything;
`--fail-fast` stops at the first vector that does not pass, and the evidence of every vector that
does not pass (your output, the difference image, your stderr, your trace) stays in the folder
that the summary names (`--evidence-dir`; `--keep-all` keeps passing outputs too).
"""

# --- Clause 11.5.1: the README of a vector set --------------------------------------------------

def _mutation_lines(data: dict) -> list[str]:
    """The mutation score that tools/mutate.py measured on this set (statistics.mutation), if any."""
    m = data.get("statistics", {}).get("mutation")
    if not m:
        return []
    return ["", f"Mutation score on {m['date']} (`python tools/mutate.py`, {m['path']} path): {m['score']}% of the "
            f"non-equivalent mutants of refdec's normative modules are killed by this set ({m['killed']} killed, "
            f"{m['equivalent']} equivalent, {m.get('untestable', 0)} untestable within the set's size and time "
            f"budget, {m['open']} open, of {m['mutants']}); every survivor and why it is equivalent or untestable: "
            f"`{m['survivors']}`."]


# The README lists layers in decoding order (clause 5.1); the manifest's JSON keys are sorted.
LAYER_ORDER = {spec.name: i for i, spec in enumerate(LAYERS)}


def readme_text(data: dict) -> str:
    """Informative: the README of a vector set, generated from its manifest: one line per vector."""
    gen = data["generator"]
    lines = [
        "# refdec conformance vectors",
        "",
        f"Generated from `{MANIFEST_NAME}` (manifest version {data['manifest_version']}, bitstream version "
        f"{data['bitstream_version']}) by `{gen.get('command', 'python -m refcodec.make_vectors')}`; do not edit.",
        "Spec clause 11.5 describes the vector set, the manifest and the check procedure.",
        *_mutation_lines(data),
        "",
        "Check a decoder:",
        "",
        "```",
        "refdec check VECTORS --list                                  # the subsets (with counts) and the vectors",
        "refdec check VECTORS                                         # refdec itself",
        "refdec check VECTORS --decoder \"CMD {in} {out} {model}\"      # any decoder, one run per vector",
        "refdec check VECTORS --outputs DIR                           # outputs made elsewhere: DIR/<id>.png or .rgb",
        "```",
        "",
        *WRAPPING.splitlines(),
        "",
        "## Models",
        "",
        "| name | file | model id | valid | description |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(data["models"], key=lambda n: (not data["models"][n]["valid"], n)):
        m = data["models"][name]
        lines.append(f"| {name} | `{m['file']}` | `{m['model_id']}` | {'yes' if m['valid'] else 'no'} | "
                     f"{m['description']} |")
    for kind, title in (("valid", "Valid streams"), ("invalid", "Invalid streams")):
        vs = [v for v in data["vectors"] if v["kind"] == kind]
        if not vs:
            continue
        lines += ["", f"## {title} ({len(vs)})", ""]
        if kind == "valid":
            lines += ["| id | purpose | if this fails, look at |", "|---|---|---|"]
        else:
            lines += ["| id | purpose | expected error | if this fails, look at |", "|---|---|---|---|"]
        for v in vs:
            look = ("clause " if len(v["look_at"]) == 1 else "clauses ") + ", ".join(v["look_at"])
            if kind == "valid":
                lines.append(f"| `{v['id']}` | {v['purpose']} | {look} |")
            else:
                lines.append(f"| `{v['id']}` | {v['purpose']} | `{v['expected_error']}` | {look} |")
    stats = data.get("statistics")
    for model_name, st_model in sorted((stats or {}).get("models", {}).items()):
        lines += ["", f"## What the valid vectors of {model_name} reach", "",
                  "Per layer, the largest accumulator (clause 4.5) over the model's valid vectors, as a share of",
                  "the 2^31 limit and of the clause 9.5 bound of the output channel where it occurs, and how many",
                  "vectors reach the layer's lower and upper clamp (-A and A; 0 and 255 for the output layer);",
                  "\"never\" marks a clamp that no input can reach with this model's weights and shifts.", "",
                  "| layer | largest accumulator | of 2^31 | of the channel's bound | in vector | clamp low | clamp high |",
                  "|---|---|---|---|---|---|---|"]

        def clamp(st, side):
            if st.get(f"clamp_{side}_possible") is False:
                return "never"
            return str(st[f"clamp_{side}_vectors"])

        layers = sorted(st_model["layers"].items(), key=lambda item: LAYER_ORDER.get(item[0], len(LAYER_ORDER)))
        for name, st in layers:
            bound = st["channel_bound"]
            share = st["accumulator_peak"] / bound if bound else 0.0
            lines.append(f"| {name} | {st['accumulator_peak']} | {st['peak_over_2^31']:.4f} | {share:.4f} | "
                         f"`{st['vector']}` | {clamp(st, 'low')} | {clamp(st, 'high')} |")
        mix = st_model.get("mixture", {})
        if mix:
            lines += ["", "Mixture parameters (clause 7.8): " + "; ".join(
                f"{key.replace('_', ' ')} {v['value']} in {v['vectors']} vectors" for key, v in sorted(mix.items())) + "."]
    return "\n".join(lines) + "\n"


