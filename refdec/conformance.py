"""Non-normative: conformance vectors and their manifest (spec clause 11.5), the canonical hashes
of clause 11.4, sample comparison and failure analysis, and the reports of `refdec check`.

The manifest (clause 11.5.2, schema in spec/manifest.schema.json) lists every vector of a
vector set (clause 11.5.1). This module loads and validates it, hashes stage tensors and
decoded samples exactly as clause 11.4 says, compares a decoder's samples with the golden
ones, finds the first diverging stage of a trace in decoding order (clause 11.5.4) and
writes the text, JSON and JUnit XML reports of clause 11.5.5. Running decoders is
refdec/check.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from . import constants as K
from .architecture import CONTEXT, GATHER, HYPER_SYNTHESIS, SYNTHESIS
from .errors import ALL_ERRORS

MANIFEST_FORMAT = "refdec-conformance-vectors"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
REPORT_FORMAT = "refdec-check-report"
REPORT_VERSION = 1

# Clause 11.3 stage names, grouped by the phase of clause 7.1 that computes them.
PRE_LATENT_STAGES = ["z_hat"] + [s.name for s in HYPER_SYNTHESIS]
LATENT_STAGES = ([s.name for s in CONTEXT] + [s.name for s in GATHER]
                 + ["mixture.weights", "mixture.means", "mixture.scale_index", "window.lo", "window.hi", "y_hat"])
POST_LATENT_STAGES = ["synthesis_input"] + [s.name for s in SYNTHESIS] + ["image"]
STAGE_ORDER = PRE_LATENT_STAGES + LATENT_STAGES + POST_LATENT_STAGES

# The clause of 7 that defines each stage (clause 11.3 table): where to look when it diverges.
STAGE_CLAUSE = {"z_hat": "7.3", "mixture.weights": "7.8", "mixture.means": "7.8", "mixture.scale_index": "7.8",
                "window.lo": "7.9", "window.hi": "7.9", "y_hat": "7.10", "synthesis_input": "7.11",
                "image": "7.13"}
STAGE_CLAUSE.update({s.name: "7.4" for s in HYPER_SYNTHESIS})
STAGE_CLAUSE.update({s.name: "7.6" for s in CONTEXT})
STAGE_CLAUSE.update({s.name: "7.7" for s in GATHER})
STAGE_CLAUSE.update({s.name: "7.12" for s in SYNTHESIS})

STATES = ("pass", "fail", "error", "timeout")
KINDS = ("valid", "invalid")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MODEL_ID = re.compile(r"^[0-9a-f]{16}$")
_CLAUSE = re.compile(r"^(?:\d+|[A-Z])(?:\.\d+)*$")
_VECTOR_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


class ManifestError(ValueError):
    """A vector set whose manifest is malformed or whose files do not match their hashes (clause 11.5.2)."""


# --- Clause 11.4: canonical bytes and hashes ------------------------------------------------

def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_stage(tensor) -> np.ndarray:
    """Clause 11.4: a stage tensor as a C-order array of signed 32-bit little-endian integers."""
    a = np.asarray(tensor)
    if a.dtype.kind not in "iub":
        if a.dtype.kind != "f" or not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"stage tensor of dtype {a.dtype} has non-integer elements")
    if a.size and (a.min() < -(1 << 31) or a.max() >= (1 << 31)):
        raise ValueError("stage tensor has elements outside the signed 32-bit range")
    # No copy when the tensor is already int32 in C order (a traced decode's stages are).
    return np.ascontiguousarray(a, dtype="<i4")


def stage_hash(tensor) -> str:
    """Clause 11.4: the SHA-256 of a stage tensor's canonical bytes (hashed in place, without a copy)."""
    return hashlib.sha256(memoryview(_canonical_stage(tensor)).cast("B")).hexdigest()


def sample_bytes(image) -> bytes:
    """Clause 11.4: decoded samples (3, H, W) as uint8, planar R, G, B, row by row."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"decoded image has shape {a.shape}, expected (3, H, W)")
    return np.ascontiguousarray(a, dtype=np.uint8).tobytes()


def sample_hash(image) -> str:
    """Clause 11.4: the image hash."""
    return sha256_hex(sample_bytes(image))


# --- Images: golden PNGs, raw planar outputs, difference images -------------------------------

def png_bytes(image) -> bytes:
    """Informative: a (3, H, W) uint8 image as an 8-bit RGB PNG with fixed settings (zlib level 9,
    no ancillary chunks, no timestamp), so that the same samples always give the same bytes."""
    from PIL import Image

    hwc = np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(hwc).save(buf, format="PNG", compress_level=9, optimize=False)
    return buf.getvalue()


class OutputError(ValueError):
    """A decoder output that cannot be read as the samples of clause 11.4."""


def read_png(path) -> np.ndarray:
    """An 8-bit RGB PNG as (3, H, W) uint8; anything else raises OutputError."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise OutputError(f"{Path(path).name} is {im.format or 'not an image'}, not PNG")
            if im.mode != "RGB":
                raise OutputError(f"{Path(path).name} is a PNG of mode {im.mode}, expected 8-bit RGB")
            im.load()
            return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
    except OutputError:
        raise
    except Exception as exc:  # Pillow raises many types for damaged files
        raise OutputError(f"{Path(path).name} cannot be read as PNG ({exc.__class__.__name__}: {exc})") from None


def read_raw(path, width: int, height: int) -> np.ndarray:
    """Clause 11.4 raw planar bytes (3 x H x W uint8) as (3, H, W); a wrong size raises OutputError."""
    data = Path(path).read_bytes()
    if len(data) != 3 * width * height:
        raise OutputError(f"{Path(path).name} has {len(data)} bytes, clause 11.4 planar {width}x{height} "
                          f"needs {3 * width * height}")
    return np.frombuffer(data, dtype=np.uint8).reshape(3, height, width).copy()


def read_output(path, width: int, height: int) -> np.ndarray:
    """A decoder output: .rgb is raw planar (clause 11.4), anything else PNG."""
    if Path(path).suffix.lower() == ".rgb":
        return read_raw(path, width, height)
    return read_png(path)


def difference_image(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Informative (clause 11.5.4): (3, H, W) uint8: the golden image dimmed to a quarter of its
    brightness in grey, and every differing sample position in red, brighter for larger differences."""
    exp = expected.astype(np.int32)
    diff = np.abs(got.astype(np.int32) - exp).max(axis=0)
    grey = (exp.sum(axis=0) // 12).astype(np.uint8)
    out = np.stack([grey, grey, grey])
    mask = diff > 0
    if mask.any():
        top = int(diff.max())
        red = 128 + (127 * diff[mask]) // top
        out[0][mask] = red.astype(np.uint8)
        out[1][mask] = 0
        out[2][mask] = 0
    return out


def compare_samples(expected: np.ndarray, got: np.ndarray) -> dict:
    """Clause 11.5.4: sample statistics of a decoded image against the golden one.

    Both are (3, H, W) uint8. Returns {"equal": bool, ...}; for unequal images of the same
    size: the number and share of differing samples, the largest absolute difference, the
    PSNR of `got` against `expected` and the first differing sample in clause 11.4 order.
    """
    if expected.shape != got.shape:
        return {"equal": False, "shape": list(got.shape), "expected_shape": list(expected.shape)}
    d = got.astype(np.int16) - expected.astype(np.int16)
    nz = d != 0
    n = int(np.count_nonzero(nz))
    if n == 0:
        return {"equal": True}
    first = np.unravel_index(int(np.flatnonzero(nz.ravel())[0]), nz.shape)
    c, y, x = (int(v) for v in first)
    mse = float(np.mean(d.astype(np.float64) ** 2))
    return {
        "equal": False,
        "differing_samples": n,
        "total_samples": int(d.size),
        "share": n / d.size,
        "differing_pixels": int(np.count_nonzero(nz.any(axis=0))),
        "max_abs_diff": int(np.abs(d).max()),
        "psnr_db": round(10 * math.log10(255.0 ** 2 / mse), 4),
        "first": {"channel": c, "row": y, "column": x, "expected": int(expected[c, y, x]),
                  "got": int(got[c, y, x])},
    }


def describe_samples(cmp: dict) -> str:
    """One line for the text report (clause 11.5.5)."""
    if cmp.get("equal"):
        return "samples equal"
    if "expected_shape" in cmp:
        es, gs = cmp["expected_shape"], cmp["shape"]
        return f"output is {gs[2]}x{gs[1]} ({gs[0]} planes), expected {es[2]}x{es[1]}"
    f = cmp["first"]
    return (f"{cmp['differing_samples']}/{cmp['total_samples']} samples differ ({100 * cmp['share']:.3g}%), "
            f"max |diff| {cmp['max_abs_diff']}, PSNR {cmp['psnr_db']:.2f} dB, first at channel {f['channel']}, "
            f"row {f['row']}, column {f['column']} (expected {f['expected']}, got {f['got']})")


# --- Clause 11.5.4: first diverging stage -------------------------------------------------

def load_trace(directory) -> tuple[dict, dict]:
    """A trace folder (clause 11.3: one STAGE.npy per stage) -> ({stage: array}, {stage: problem}).

    Only clause 11.3 names are read; a file that cannot be read is reported as a problem."""
    directory = Path(directory)
    stages, problems = {}, {}
    for name in STAGE_ORDER:
        p = directory / f"{name}.npy"
        if not p.is_file():
            continue
        try:
            stages[name] = np.load(p, allow_pickle=False)
        except Exception as exc:
            problems[name] = f"cannot be read ({exc.__class__.__name__}: {exc})"
    return stages, problems


def _as_int(a: np.ndarray):
    """The array as int64, or None if it holds anything but integers."""
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        return a.astype(np.int64)
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        return a.astype(np.int64)
    return None


def index_text(stage: str, index) -> str:
    """'channel 17, position (4, 9)' for (C, H, W) stages, with the component first for (K, C, H, W)."""
    idx = [int(i) for i in index]
    if len(idx) == 3:
        return f"channel {idx[0]}, position ({idx[1]}, {idx[2]})"
    if len(idx) == 4:
        return f"component {idx[0]}, channel {idx[1]}, position ({idx[2]}, {idx[3]})"
    return f"index {tuple(idx)}"


@dataclass
class _StageDiff:
    name: str
    problem: str | None = None        # shape / dtype / unreadable: no element detail
    mask: np.ndarray | None = None     # element-wise difference
    count: int = 0
    total: int = 0


def _stage_diffs(expected: dict, got: dict, problems: dict) -> dict:
    diffs = {}
    for name in STAGE_ORDER:
        if name in problems:
            diffs[name] = _StageDiff(name, problem=problems[name])
            continue
        if name not in got or name not in expected:
            continue
        e = np.asarray(expected[name], dtype=np.int64)
        g = _as_int(got[name])
        if g is None:
            diffs[name] = _StageDiff(name, problem=f"has non-integer elements (dtype {np.asarray(got[name]).dtype})")
        elif g.shape != e.shape:
            diffs[name] = _StageDiff(name, problem=f"has shape {tuple(g.shape)}, expected {tuple(e.shape)}")
        else:
            mask = g != e
            n = int(np.count_nonzero(mask))
            if n:
                diffs[name] = _StageDiff(name, mask=mask, count=n, total=int(mask.size))
    return diffs


def _first_in_phase(names, diffs):
    for name in names:
        if name in diffs:
            d = diffs[name]
            if d.problem is not None:
                return name, None, None
            return name, tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(d.mask.ravel())[0]),
                                                                d.mask.shape)), None
    return None


def _first_in_latent(diffs):
    """Clause 11.5.4: the latent stages are computed wavefront by wavefront (clause 7.5); the first
    divergence is at the smallest wavefront t = x + 4 y, and within it in stage order, then by
    increasing y, then by the leading (component, channel) index."""
    best = None
    for order, name in enumerate(LATENT_STAGES):
        d = diffs.get(name)
        if d is None:
            continue
        if d.problem is not None:
            key = (-1, order)
            if best is None or key < best[0]:
                best = (key, name, None, None)
            continue
        idx = np.argwhere(d.mask)                       # C order: leading dims, y, x
        t = idx[:, -1] + K.WAVEFRONT_SLOPE * idx[:, -2]
        tmin = int(t.min())
        key = (tmin, order)
        if best is None or key < best[0]:
            sel = idx[t == tmin]
            # within the wavefront: increasing y, then the leading indices in C order
            keys = [sel[:, i] for i in range(sel.shape[1] - 2)][::-1] + [sel[:, -2]]
            first = sel[np.lexsort(keys)[0]] if sel.shape[1] > 2 else sel[0]
            best = (key, name, tuple(int(v) for v in first), tmin)
    if best is None:
        return None
    return best[1], best[2], best[3]


def diagnose_trace(expected: dict, got: dict, problems: dict | None = None) -> dict | None:
    """Clause 11.5.4: the first diverging stage of a trace `got` against the golden stage tensors
    `expected` (both {clause 11.3 name: array}), in decoding order, and its first differing element.

    Returns None when every stage present in `got` equals the golden one; else a dict with
    "stage", "index" (tuple or None), "expected", "got", "wavefront", "clause", "text",
    "diverging_stages" (all differing stages in clause 11.3 order) and "missing_stages".
    """
    problems = problems or {}
    diffs = _stage_diffs(expected, got, problems)
    missing = [n for n in STAGE_ORDER if n not in got and n not in problems]
    if not diffs:
        return None
    found = (_first_in_phase(PRE_LATENT_STAGES, diffs) or _first_in_latent(diffs)
             or _first_in_phase(POST_LATENT_STAGES, diffs))
    name, index, wavefront = found
    d = diffs[name]
    result = {"method": "elements", "stage": name, "clause": STAGE_CLAUSE[name], "index": None,
              "expected": None, "got": None, "wavefront": wavefront,
              "differing_elements": d.count if d.problem is None else None,
              "total_elements": d.total if d.problem is None else None,
              "diverging_stages": [n for n in STAGE_ORDER if n in diffs], "missing_stages": missing}
    if d.problem is not None:
        result["text"] = f"{name} {d.problem} (clause {STAGE_CLAUSE[name]})"
        return result
    e = int(np.asarray(expected[name])[index])
    g = int(_as_int(got[name])[index])
    result.update(index=list(index), expected=e, got=g)
    where = f", wavefront {wavefront}" if wavefront is not None else ""
    result["text"] = (f"{name} differs at {index_text(name, index)}: expected {e}, got {g} "
                      f"({d.count} of {d.total} elements differ{where}; see clause {STAGE_CLAUSE[name]})")
    return result


def diagnose_hashes(stage_hashes: dict, got: dict, problems: dict | None = None) -> dict | None:
    """Clause 11.5.4 without golden tensors: compare each traced stage's clause 11.4 hash and shape
    with the manifest; the first differing stage in clause 11.3 order, without element detail."""
    problems = problems or {}
    bad = []
    reasons = {}
    for name in STAGE_ORDER:
        if name in problems:
            bad.append(name)
            reasons[name] = problems[name]
            continue
        if name not in got or name not in stage_hashes:
            continue
        want = stage_hashes[name]
        a = np.asarray(got[name])
        if list(a.shape) != list(want["shape"]):
            bad.append(name)
            reasons[name] = f"has shape {tuple(a.shape)}, expected {tuple(want['shape'])}"
            continue
        try:
            h = stage_hash(a)
        except ValueError as exc:
            bad.append(name)
            reasons[name] = str(exc)
            continue
        if h != want["sha256"]:
            bad.append(name)
            reasons[name] = "differs (clause 11.4 hash)"
    if not bad:
        return None
    name = bad[0]
    return {"method": "hashes", "stage": name, "clause": STAGE_CLAUSE[name], "index": None, "expected": None,
            "got": None, "wavefront": None, "differing_elements": None, "total_elements": None,
            "diverging_stages": bad, "missing_stages": [n for n in STAGE_ORDER if n not in got and n not in problems],
            "text": f"{name} {reasons[name]} (first in clause 11.3 order; no golden tensors for element detail; "
                    f"see clause {STAGE_CLAUSE[name]})"}


# --- Clause 11.5.2: the manifest --------------------------------------------------------------

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
    if data.get("bitstream_version") != K.VERSION:
        p.append(f"manifest.bitstream_version: {data.get('bitstream_version')!r}, expected {K.VERSION}")
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


# --- Clause 11.5.1: the README of a vector set --------------------------------------------------

def readme_text(data: dict) -> str:
    """Informative: the README of a vector set, generated from its manifest: one line per vector."""
    gen = data["generator"]
    lines = [
        "# refdec conformance vectors",
        "",
        f"Generated from `{MANIFEST_NAME}` (manifest version {data['manifest_version']}, bitstream version "
        f"{data['bitstream_version']}) by `{gen.get('command', 'python -m refcodec.make_vectors')}`; do not edit.",
        "Spec clause 11.5 describes the vector set, the manifest and the check procedure.",
        "",
        "Check a decoder:",
        "",
        "```",
        "refdec check VECTORS                                   # refdec itself",
        "refdec check VECTORS --decoder \"CMD {in} {out}\"        # any decoder, one run per vector",
        "refdec check VECTORS --outputs DIR                     # outputs made elsewhere: DIR/<id>.png or .rgb",
        "```",
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

        for name, st in st_model["layers"].items():
            bound = st["channel_bound"]
            share = st["accumulator_peak"] / bound if bound else 0.0
            lines.append(f"| {name} | {st['accumulator_peak']} | {st['peak_over_2^31']:.4f} | {share:.4f} | "
                         f"`{st['vector']}` | {clamp(st, 'low')} | {clamp(st, 'high')} |")
        mix = st_model.get("mixture", {})
        if mix:
            lines += ["", "Mixture parameters (clause 7.8): " + "; ".join(
                f"{key.replace('_', ' ')} {v['value']} in {v['vectors']} vectors" for key, v in sorted(mix.items())) + "."]
    return "\n".join(lines) + "\n"


# --- Clause 11.5.5: reports ------------------------------------------------------------------

@dataclass
class Result:
    """Non-normative: the outcome of one vector (clause 11.5.3 states)."""

    id: str
    kind: str
    state: str
    message: str
    seconds: float = 0.0
    purpose: str = ""
    look_at: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {"id": self.id, "kind": self.kind, "state": self.state, "message": self.message,
             "seconds": round(self.seconds, 3), "purpose": self.purpose, "look_at": list(self.look_at)}
        d.update(self.details)
        return d


def summary(results) -> dict:
    counts = {s: 0 for s in STATES}
    for r in results:
        counts[r.state] += 1
    counts["total"] = len(results)
    return counts


def text_report(results, header: str = "", seconds: float | None = None, quiet: bool = False) -> str:
    """Clause 11.5.5: the text report: one line per vector, details for every vector that did not
    pass, and a summary line."""
    lines = [header] if header else []
    width = max([len(r.id) for r in results] + [8])
    for r in results:
        if quiet and r.state == "pass":
            continue
        lines.append(f"{r.state.upper():<8}{r.id:<{width}}  {r.seconds:7.2f} s  {r.message}")
        if r.state == "pass":
            continue
        d = r.details
        if d.get("samples") and "first" in d["samples"]:
            lines.append(f"{'':8}samples: {describe_samples(d['samples'])}")
        if d.get("diff_image"):
            lines.append(f"{'':8}difference image: {d['diff_image']}")
        if d.get("diagnosis"):
            lines.append(f"{'':8}first diverging stage: {d['diagnosis']['text']}")
        for note in d.get("notes", []):
            lines.append(f"{'':8}note: {note}")
        if d.get("stderr_tail"):
            tail = d["stderr_tail"].strip().splitlines()[-3:]
            lines += [f"{'':8}stderr: {t}" for t in tail]
        if r.look_at:
            word = "clause" if len(r.look_at) == 1 else "clauses"
            lines.append(f"{'':8}if this fails, look at: {word} {', '.join(r.look_at)}")
    s = summary(results)
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    verdict = "all pass" if s["pass"] == s["total"] else "NOT all pass"
    lines.append(f"summary: {s['pass']} pass, {s['fail']} fail, {s['error']} error, {s['timeout']} timeout "
                 f"of {s['total']} vectors{took}: {verdict}")
    return "\n".join(lines) + "\n"


def json_report(results, meta: dict) -> str:
    """Clause 11.5.5: the JSON report."""
    doc = {"format": REPORT_FORMAT, "report_version": REPORT_VERSION, **meta,
           "summary": summary(results), "results": [r.as_dict() for r in results]}
    return dumps_canonical(doc)


def junit_report(results, suite: str = "refdec-conformance", seconds: float = 0.0) -> bytes:
    """Clause 11.5.5: JUnit XML: one testcase per vector; fail is a <failure>, error and timeout an
    <error>."""
    s = summary(results)
    root = ET.Element("testsuites", name=suite, tests=str(s["total"]), failures=str(s["fail"]),
                      errors=str(s["error"] + s["timeout"]), time=f"{seconds:.3f}")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(s["total"]), failures=str(s["fail"]),
                       errors=str(s["error"] + s["timeout"]), skipped="0", time=f"{seconds:.3f}")
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.{r.kind}", name=r.id, time=f"{r.seconds:.3f}")
        if r.state == "pass":
            continue
        body = text_report([r]).rsplit("\nsummary:", 1)[0]
        tag = "failure" if r.state == "fail" else "error"
        el = ET.SubElement(tc, tag, message=r.message[:500], type=r.state)
        el.text = body
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
