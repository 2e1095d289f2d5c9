"""Bjontegaard delta rate (informative evaluation tool).

The Bjontegaard metric with piecewise cubic Hermite interpolation (PCHIP) of
log10(rate) as a function of PSNR, integrated over the PSNR interval that both
curves cover; the variant used by JVET's common test conditions. Tested in
tests/test_bdrate.py against closed-form cases.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import PchipInterpolator


def _integral(psnr, rate, lo, hi):
    order = np.argsort(psnr)
    p, r = np.asarray(psnr, dtype=np.float64)[order], np.log10(np.asarray(rate, dtype=np.float64))[order]
    f = PchipInterpolator(p, r)
    return f.integrate(lo, hi)


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test) -> float:
    """Average rate difference of test vs anchor at equal PSNR, in percent (negative: test is better).

    Needs at least 2 points per curve with strictly increasing PSNR after sorting
    and an overlapping PSNR interval; returns nan otherwise.
    """
    if len(rate_anchor) < 2 or len(rate_test) < 2:
        return math.nan
    if len(set(psnr_anchor)) != len(psnr_anchor) or len(set(psnr_test)) != len(psnr_test):
        return math.nan
    lo = max(min(psnr_anchor), min(psnr_test))
    hi = min(max(psnr_anchor), max(psnr_test))
    if hi <= lo:
        return math.nan
    avg_anchor = _integral(psnr_anchor, rate_anchor, lo, hi) / (hi - lo)
    avg_test = _integral(psnr_test, rate_test, lo, hi) / (hi - lo)
    return float((10 ** (avg_test - avg_anchor) - 1) * 100)
