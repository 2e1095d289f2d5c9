"""Clause 5.2's allocation bounds are those that its limits and the padding of clause 5.4 give."""

from __future__ import annotations

import re

from conftest import SPEC_DIR
from refdec.constants import MAX_HEIGHT, MAX_WIDTH
from refdec import constants
from refdec.architecture import padded_sizes


def _largest_grid():
    """(Hz * Wz, W, H) of the image with the most hyper-latent positions within clause 5.2: for each
    number of positions a, b, the smallest width and height that reach it (64 a - 63, 64 b - 63)."""
    best = (0, 0, 0)
    for a in range(1, MAX_WIDTH // 64 + 1):
        for b in range(1, MAX_HEIGHT // 64 + 1):
            w, h = 64 * a - 63, 64 * b - 63
            if w * h <= constants.MAX_PIXELS and a * b > best[0]:
                best = (a * b, w, h)
    return best


def test_clause_5_2_states_the_bounds_of_the_limits():
    text = (SPEC_DIR / "05-architecture.md").read_text()
    clause = text[text.index("## 5.2"): text.index("## 5.3")]
    positions, w, h = _largest_grid()
    hz, wz, hy, wy = padded_sizes(w, h)
    assert (positions, hz * wz, hy * wy) == (8375, 8375, 134000)
    assert f"`Hz * Wz = {positions}`" in clause
    assert f"`W x H = {w} x {h}`" in clause and f"`Wz = {wz}` and `Hz = {hz}`" in clause
    assert f"`16 * {positions} = {16 * positions}`" in clause
    assert f"`4096 * {positions} = {4096 * positions}`" in clause
    largest = padded_sizes(MAX_WIDTH, MAX_HEIGHT)
    assert "`Hz <= 128` and `Wz <= 128`" in clause and largest[:2] == (128, 128)
    assert "`Hy`, `Wy <= 512`" in clause and largest[2:] == (512, 512)
    # The example of the text: 8192 x 4096 (2^25 samples) has 8192 hyper-latent positions.
    hz, wz, _, _ = padded_sizes(8192, 4096)
    assert hz * wz == 8192 and "`8192 x 4096` has 8192" in clause
    # The bounds that clause 5.2 once gave (2048 hyper-latent, 131072 latent positions) are gone.
    assert not re.search(r"at most `2\^25 / 256 = 131072` latent positions", clause)
    assert "`2048` hyper-latent" not in clause


def test_no_image_within_the_limits_exceeds_the_bounds():
    """Every width and height up to the limits (a sample per 64: the counts change only there)."""
    worst = 0
    for w in list(range(1, MAX_WIDTH + 1, 64)) + [MAX_WIDTH]:
        for h in list(range(1, MAX_HEIGHT + 1, 64)) + [MAX_HEIGHT]:
            if w * h <= constants.MAX_PIXELS:
                hz, wz, _, _ = padded_sizes(w, h)
                worst = max(worst, hz * wz)
    assert worst == _largest_grid()[0] == 8375
