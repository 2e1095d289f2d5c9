"""Generate the normative tables of spec clause 10 (informative: the formulas).

The tables themselves, committed under refdec/tables/, are the normative data;
this script documents how they were made and tests/test_tables.py checks that
it reproduces them byte for byte.

    python tools/make_tables.py [OUT_DIR]
"""

import math
import sys
from pathlib import Path

SCALE_MIN = 0.11
STEPS_PER_OCTAVE = 16
NUM_SCALES = 160


def sigma(k):
    return SCALE_MIN * 2.0 ** (k / STEPS_PER_OCTAVE)


def gaussian_cdf_table():
    """PHI[i + 2048] = round(2^16 * Phi(i / 256)), i = -2048 .. 2048."""
    return [round(65536 * 0.5 * math.erfc(-(i / 256) / math.sqrt(2))) for i in range(-2048, 2049)]


def scale_q_table():
    """SCALE_Q[k] = round(2^8 * sigma_k)."""
    return [round(256 * sigma(k)) for k in range(NUM_SCALES)]


def inv_scale_table():
    """INV_SCALE[k] = round(2^12 / sigma_k)."""
    return [round(4096 / sigma(k)) for k in range(NUM_SCALES)]


TABLES = {
    "gaussian_cdf.txt": gaussian_cdf_table,
    "scale_q.txt": scale_q_table,
    "inv_scale.txt": inv_scale_table,
}


def render(values):
    return "".join(f"{v}\n" for v in values)


def main(argv):
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "refdec" / "tables"
    out.mkdir(parents=True, exist_ok=True)
    for name, make in TABLES.items():
        (out / name).write_text(render(make()))
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main(sys.argv)
