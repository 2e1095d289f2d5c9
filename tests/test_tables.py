"""Clause 10: the normative tables, their digests, and the generator of annex A.3."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from refdec import tables
from refdec.tables import INV_SCALE, PHI, SCALE_Q, TABLE_DIGESTS

from conftest import REFDEC_DIR, SPEC_DIR, TOOLS_DIR

TABLE_FILES = ("gaussian_cdf.txt", "scale_q.txt", "inv_scale.txt")


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def make_tables():
    spec = importlib.util.spec_from_file_location("make_tables", TOOLS_DIR / "make_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def spec_digests():
    """file name -> digest, as written in spec/10-tables.md."""
    text = (SPEC_DIR / "10-tables.md").read_text()
    found = dict(re.findall(r"file `([a-z_]+\.txt)`, SHA-256\s*`([0-9a-f]{64})`", text))
    return found


def test_make_tables_regenerates_files_byte_for_byte(tmp_path):
    out = tmp_path / "tables"
    proc = subprocess.run([sys.executable, str(TOOLS_DIR / "make_tables.py"), str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(TABLE_FILES)
    for name in TABLE_FILES:
        assert (out / name).read_bytes() == (REFDEC_DIR / "tables" / name).read_bytes(), name


def test_table_file_format():
    """One decimal integer per line, each line ending in a line feed (clause 10)."""
    for name in TABLE_FILES:
        data = (REFDEC_DIR / "tables" / name).read_bytes()
        assert data.endswith(b"\n") and b"\r" not in data
        lines = data.decode("ascii").split("\n")[:-1]
        assert all(re.fullmatch(r"-?(0|[1-9][0-9]*)", line) for line in lines), name


def test_spec_states_every_digest(spec_digests):
    assert set(spec_digests) == set(TABLE_FILES)


@pytest.mark.parametrize("name", TABLE_FILES)
def test_digests_agree(spec_digests, name):
    """Clause 10: the file's digest, the spec's digest and refdec.tables.TABLE_DIGESTS are one value."""
    actual = _sha(REFDEC_DIR / "tables" / name)
    assert actual == spec_digests[name]
    assert actual == TABLE_DIGESTS[name]


def test_loader_rejects_a_modified_table(monkeypatch):
    monkeypatch.setitem(tables.TABLE_DIGESTS, "scale_q.txt", "0" * 64)
    with pytest.raises(RuntimeError, match="corrupt"):
        tables._load("scale_q.txt")


def test_phi_table():
    """Clause 10.1: PHI[0 .. 4096], PHI[0] = 0, PHI[2048] = 32768, PHI[4096] = 65536, non-decreasing."""
    assert PHI.shape == (4097,)
    assert PHI[0] == 0 and PHI[2048] == 32768 and PHI[4096] == 65536
    assert np.all(np.diff(PHI) >= 0)
    # Symmetry of the normal CDF survives rounding away from the exact-tie case.
    assert np.all(PHI + PHI[::-1] == 65536)
    for i in (-2048, -600, -256, -1, 0, 1, 100, 256, 512, 2047):
        assert PHI[i + 2048] == round(65536 * 0.5 * math.erfc(-(i / 256) / math.sqrt(2)))


def test_scale_tables():
    """Clause 10.2: stated end values, monotone, and consistent with sigma_k = 0.11 * 2^(k/16)."""
    assert SCALE_Q.shape == (160,) and INV_SCALE.shape == (160,)
    assert SCALE_Q[0] == 28 and SCALE_Q[159] == 27613
    assert INV_SCALE[0] == 37236 and INV_SCALE[159] == 38
    assert np.all(np.diff(SCALE_Q) >= 0) and np.all(np.diff(INV_SCALE) <= 0)
    # SCALE_Q (units 2^-8) times INV_SCALE (units 2^-12) is about 2^20.
    prod = SCALE_Q * INV_SCALE / float(1 << 20)
    assert np.all(np.abs(prod - 1) < 0.05)


def test_table_bounds_used_by_clause_7_9():
    """The bounds that clause 7.9 derives from the tables."""
    assert SCALE_Q.max() == 27613
    assert (6 * int(SCALE_Q.max()) + 2) >> 2 == 41420          # largest span
    assert (1 << 15) * int(INV_SCALE.max()) < 1 << 31            # |u| < 2^31


def test_generator_functions_match_annex_a3(make_tables):
    assert make_tables.gaussian_cdf_table() == PHI.tolist()
    assert make_tables.scale_q_table() == SCALE_Q.tolist()
    assert make_tables.inv_scale_table() == INV_SCALE.tolist()
    assert make_tables.render([1, -2, 30]) == "1\n-2\n30\n"


def test_the_clip_of_d_never_changes_phi():
    """Clause 7.9's note: every |d| >= 2^15 - 1 reaches a saturated PHI entry at every scale index,
    so the Clip3 of d (and a bound of 2^15 - 1 or 2^16 instead of 2^15) gives the same Phi; it is
    there for the 32-bit width of u. The mutation harness's equivalence arguments rest on this."""
    from refdec.arith import round2
    from refdec.constants import MEAN_DIFF_MAX

    half = len(PHI) // 2
    varying = np.nonzero((PHI != PHI[0]) & (PHI != PHI[-1]))[0] - half
    assert (varying.min(), varying.max()) == (-1107, 1107)  # the figures of the note
    inv = INV_SCALE.astype(np.int64)
    for d in (MEAN_DIFF_MAX - 1, MEAN_DIFF_MAX, 2 * MEAN_DIFF_MAX, 70000):
        above, below = round2(d * inv, 10), round2(-d * inv, 10)
        assert above.min() >= 1216 and below.max() <= -1216
        assert (PHI[np.minimum(above, half) + half] == PHI[-1]).all()
        assert (PHI[np.maximum(below, -half) + half] == PHI[0]).all()
    # Below 2^15 - 1 the bound matters: 2^14 leaves the largest scale index unsaturated.
    assert round2((MEAN_DIFF_MAX // 2) * inv, 10).min() <= 1107


def test_a_window_of_129_values_is_unchanged_by_centring():
    """Clause 7.9's note: hi - lo = 128 gives the same window whether or not it is centred."""
    from refdec.arith import round2

    for lo in range(-1200, 1200, 7):
        hi = lo + 128
        centre = round2(lo + hi, 1)
        assert (centre - 64, centre + 64) == (lo, hi)


def test_inv_scale_0_plus_one_reads_the_same_phi():
    """The mutation harness's argument for its hand fault INV_SCALE[0] + 1 (results/mutation/
    equivalent.json): at scale index 0 every d of clause 7.9 reads the same PHI entry with either
    value, so no stream can tell them apart."""
    from refdec.arith import round2
    from refdec.constants import MEAN_DIFF_MAX

    d = np.arange(-MEAN_DIFF_MAX, MEAN_DIFF_MAX + 1, dtype=np.int64)
    half = len(PHI) // 2

    def phi_read(inv: int) -> np.ndarray:
        return PHI[np.clip(round2(d * inv, 10), -half, half) + half]

    assert np.array_equal(phi_read(int(INV_SCALE[0])), phi_read(int(INV_SCALE[0]) + 1))
