"""Non-normative: failure analysis of spec clause 11.5.4: sample statistics of a decoded image
against the golden one, and the first diverging stage of a trace in decoding order."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import constants as K
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
    if "expected_shape" in cmp:
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


