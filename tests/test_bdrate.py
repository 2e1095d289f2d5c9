"""BD-rate implementation against closed-form cases."""

import math

import numpy as np
import pytest

pytest.importorskip("scipy")
from refcodec.bdrate import bd_rate  # noqa: E402

RATES = [0.1, 0.2, 0.4, 0.8, 1.6]
PSNRS = [28.0, 30.5, 33.0, 35.2, 37.9]


def test_identical_curves_give_zero():
    assert abs(bd_rate(RATES, PSNRS, RATES, PSNRS)) < 1e-9


@pytest.mark.parametrize("factor", [0.5, 0.9, 1.1, 2.0])
def test_constant_rate_factor_is_recovered_exactly(factor):
    # Scaling every rate by a factor shifts log-rate by a constant: BD-rate = factor - 1.
    got = bd_rate(RATES, PSNRS, [r * factor for r in RATES], PSNRS)
    assert got == pytest.approx((factor - 1) * 100, abs=1e-9)


def test_sign_better_codec_is_negative():
    better = [p + 1.0 for p in PSNRS]  # same rates, +1 dB
    assert bd_rate(RATES, PSNRS, RATES, better) < 0
    assert bd_rate(RATES, better, RATES, PSNRS) > 0


def test_point_order_does_not_matter():
    order = [3, 0, 4, 1, 2]
    a = bd_rate(RATES, PSNRS, [r * 0.8 for r in RATES], PSNRS)
    b = bd_rate([RATES[i] for i in order], [PSNRS[i] for i in order],
                [RATES[i] * 0.8 for i in order], [PSNRS[i] for i in order])
    assert a == pytest.approx(b)


def test_no_overlap_is_nan():
    assert math.isnan(bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS]))
    assert math.isnan(bd_rate(RATES[:1], PSNRS[:1], RATES, PSNRS))


def test_against_numerical_integration():
    # Piecewise-linear log-rate curves are reproduced by PCHIP exactly between knots for
    # two-point curves: compare with a direct trapezoid integral of the same lines.
    ra, pa = [0.2, 0.8], [30.0, 36.0]
    rt, pt = [0.15, 0.7], [29.0, 37.0]
    lo, hi = 30.0, 36.0
    grid = np.linspace(lo, hi, 20001)
    la = np.interp(grid, pa, np.log10(ra))
    lt = np.interp(grid, pt, np.log10(rt))
    expected = (10 ** (np.trapezoid(lt - la, grid) / (hi - lo)) - 1) * 100
    assert bd_rate(ra, pa, rt, pt) == pytest.approx(expected, rel=1e-6)
