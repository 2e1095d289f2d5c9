"""Non-normative: failure analysis of spec clause 11.5.4: sample statistics of a decoded image
against the golden one, and the first diverging stage of a trace in decoding order."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..constants import WAVEFRONT_SLOPE
from ..stages import LATENT_STAGES, POST_LATENT_STAGES, PRE_LATENT_STAGES, STAGE_CLAUSE, STAGE_ORDER
from .hashes import stage_hash


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
    if cmp.get("expected_shape"):
        es, gs = cmp["expected_shape"], cmp["shape"]
        return f"output is {gs[2]}x{gs[1]} ({gs[0]} planes), expected {es[2]}x{es[1]}"
    f = cmp["first"]
    return (f"{cmp['differing_samples']}/{cmp['total_samples']} samples differ ({100 * cmp['share']:.3g}%), "
            f"max |diff| {cmp['max_abs_diff']}, PSNR {cmp['psnr_db']:.2f} dB, first at channel {f['channel']}, "
            f"row {f['row']}, column {f['column']} (expected {f['expected']}, got {f['got']})")



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
    mask: np.ndarray | None = None     # latent stages: element-wise difference (wavefront order)
    first: tuple | None = None         # other stages: the first differing index in C order
    count: int = 0
    total: int = 0


def wavefront_mask(shape, valid_wavefronts: int) -> np.ndarray:
    """Clause 11.5.4: the positions (y, x) of a latent stage whose values a partial trace holds,
    x + 4 y < N, broadcast over the leading dimensions of `shape`."""
    h, w = shape[-2], shape[-1]
    t = np.arange(w)[None, :] + WAVEFRONT_SLOPE * np.arange(h)[:, None]
    return np.broadcast_to(t < valid_wavefronts, shape)


def _latent_diff(name, e, g, valid_wavefronts):
    gi = _as_int(g)
    if gi is None:
        return _StageDiff(name, problem=f"has non-integer elements (dtype {np.asarray(g).dtype})")
    mask = gi != np.asarray(e, dtype=np.int64)
    total = int(mask.size)
    if valid_wavefronts is not None:
        valid = wavefront_mask(mask.shape, valid_wavefronts)
        mask &= valid
        total = int(np.count_nonzero(valid))
    n = int(np.count_nonzero(mask))
    return _StageDiff(name, mask=mask, count=n, total=total) if n else None


def _plain_diff(name, e, g):
    """Element-wise, one leading index at a time (a synthesis stage of a large image is hundreds of
    megabytes: never converted whole)."""
    if np.ndim(g) < 2:
        parts = [((), e, g)]
    else:
        parts = (((i,), e[i], g[i]) for i in range(g.shape[0]))
    n, first = 0, None
    for lead, ep, gp in parts:
        gi = _as_int(np.asarray(gp))
        if gi is None:
            return _StageDiff(name, problem=f"has non-integer elements (dtype {np.asarray(g).dtype})")
        m = gi != np.asarray(ep, dtype=np.int64)
        c = int(np.count_nonzero(m))
        if c and first is None:
            first = lead + tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(m.ravel())[0]), m.shape))
        n += c
    return _StageDiff(name, first=first, count=n, total=int(np.prod(g.shape))) if n else None


def _stage_diffs(expected: dict, got: dict, problems: dict, valid_wavefronts=None) -> dict:
    diffs = {}
    for name in STAGE_ORDER:
        if name in problems:
            diffs[name] = _StageDiff(name, problem=problems[name])
            continue
        if name not in got or name not in expected:
            continue
        e, g = expected[name], got[name]
        if tuple(np.shape(g)) != tuple(np.shape(e)):
            diffs[name] = _StageDiff(name, problem=f"has shape {tuple(np.shape(g))}, expected {tuple(np.shape(e))}")
            continue
        if name in LATENT_STAGES:
            d = _latent_diff(name, e, g, valid_wavefronts)
        else:
            d = _plain_diff(name, e, g)
        if d is not None:
            diffs[name] = d
    return diffs


def _first_in_phase(names, diffs):
    for name in names:
        if name in diffs:
            d = diffs[name]
            return name, d.first, None
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
        t = idx[:, -1] + WAVEFRONT_SLOPE * idx[:, -2]
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


def diagnose_trace(expected: dict, got: dict, problems: dict | None = None,
                   valid_wavefronts: int | None = None) -> dict | None:
    """Clause 11.5.4: the first diverging stage of a trace `got` against the golden stage tensors
    `expected` (both {clause 11.3 name: array}), in decoding order, and its first differing element.

    With `valid_wavefronts` N (a partial trace, clause 11.5.4), the latent stages are compared only
    at the positions (y, x) with x + 4 y < N; positions never decoded are never differences.

    Returns None when every stage present in `got` equals the golden one; else a dict with
    "stage", "index" (list or None), "expected", "got", "wavefront", "clause", "text",
    "diverging_stages" (all differing stages in clause 11.3 order), "missing_stages" and
    "latent_wavefronts" (N, or None for a complete trace).
    """
    problems = problems or {}
    diffs = _stage_diffs(expected, got, problems, valid_wavefronts)
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
              "diverging_stages": [n for n in STAGE_ORDER if n in diffs], "missing_stages": missing,
              "latent_wavefronts": valid_wavefronts}
    partial = f"; partial trace, {valid_wavefronts} latent wavefronts" if valid_wavefronts is not None else ""
    if d.problem is not None:
        result["text"] = f"{name} {d.problem} (clause {STAGE_CLAUSE[name]}{partial})"
        return result
    e = int(np.asarray(expected[name])[index])
    g = int(np.asarray(got[name])[index])
    result.update(index=list(index), expected=e, got=g)
    where = f", wavefront {wavefront}" if wavefront is not None else ""
    result["text"] = (f"{name} differs at {index_text(name, index)}: expected {e}, got {g} "
                      f"({d.count} of {d.total} elements differ{where}{partial}; see clause {STAGE_CLAUSE[name]})")
    return result


def hash_diagnosis(stage_hashes: dict, hashed: dict, problems: dict | None = None,
                   present=None, note: str = "") -> dict | None:
    """Clause 11.5.4 without golden tensors: each traced stage's shape and clause 11.4 hash,
    `hashed` = {name: (shape, sha256)}, against the manifest's `stage_hashes`; the first differing
    stage in clause 11.3 order, without element detail (None when none differs). `present` is
    every stage the trace holds (default: those of `hashed` and `problems`)."""
    problems = dict(problems or {})
    present = set(hashed) | set(problems) if present is None else set(present) | set(problems)
    bad, reasons = [], {}
    for name in STAGE_ORDER:
        if name in problems:
            bad.append(name)
            reasons[name] = problems[name]
            continue
        if name not in hashed or name not in stage_hashes:
            continue
        shape, digest = hashed[name]
        want = stage_hashes[name]
        if list(shape) != list(want["shape"]):
            bad.append(name)
            reasons[name] = f"has shape {tuple(shape)}, expected {tuple(want['shape'])}"
        elif digest != want["sha256"]:
            bad.append(name)
            reasons[name] = "differs (clause 11.4 hash)"
    if not bad:
        return None
    name = bad[0]
    return {"method": "hashes", "stage": name, "clause": STAGE_CLAUSE[name], "index": None, "expected": None,
            "got": None, "wavefront": None, "differing_elements": None, "total_elements": None,
            "diverging_stages": bad, "missing_stages": [n for n in STAGE_ORDER if n not in present],
            "latent_wavefronts": None,
            "text": f"{name} {reasons[name]} (first in clause 11.3 order; {note or 'no element detail'}; "
                    f"see clause {STAGE_CLAUSE[name]})"}


def diagnose_hashes(stage_hashes: dict, got: dict, problems: dict | None = None) -> dict | None:
    """Clause 11.5.4 without golden tensors: compare each traced stage's clause 11.4 hash and shape
    with the manifest; the first differing stage in clause 11.3 order, without element detail."""
    problems = dict(problems or {})
    hashed = {}
    for name, a in got.items():
        try:
            hashed[name] = (tuple(np.shape(a)), stage_hash(a))
        except ValueError as exc:
            problems[name] = str(exc)
    return hash_diagnosis(stage_hashes, hashed, problems, present=set(got),
                          note="no golden tensors for element detail")
