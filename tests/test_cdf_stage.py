"""The cdf.sum stage of clause 11.3 (clause 7.9): a fault in the coding CDFs or the tables is named at
clause 7.9, not at y_hat, and every decoder of the project computes the stage alike."""

from __future__ import annotations

import numpy as np
import pytest

import refdec.entropy
from refdec.conformance.diagnosis import diagnose_trace
from refdec.decoder import decode
from refdec.generators.encoder import encode_latents, forward_integer
from refdec.generators.random_model import random_latents


@pytest.fixture(scope="module")
def case(small_model):
    z, y = random_latents(small_model, 37, 65, seed=5, y_scale=6.0)
    return z, y, encode_latents(small_model, z, y, 2, 37, 65)


def test_every_path_computes_the_stage_alike(small_model, case):
    z, y, stream = case
    fast = decode(stream, small_model, trace=True).stages
    literal = decode(stream, small_model, fast=False, trace=True).stages
    forward = forward_integer(small_model, z, y, 2, 37, 65)
    assert np.array_equal(fast["cdf.sum"], literal["cdf.sum"])
    assert np.array_equal(fast["cdf.sum"], forward["cdf.sum"])
    # C(0) = 0 and every step at least 1: the sum is at least n_w (n_w + 1) / 2.
    n_w = fast["window.hi"].astype(np.int64) - fast["window.lo"] + 1
    assert np.all(fast["cdf.sum"] >= n_w * (n_w + 1) // 2)
    torch = pytest.importorskip("torch")  # noqa: F841
    from refcodec import int_decoder

    _, stages = int_decoder.decode(stream, small_model, trace=True)
    assert np.array_equal(stages["cdf.sum"], fast["cdf.sum"])


@pytest.mark.parametrize("entry", [2048 + 40, 2048 - 300])
def test_a_table_fault_is_named_at_clause_7_9(small_model, case, monkeypatch, entry):
    """One entry of the Gaussian CDF table (clause 10.1) off by one: the first diverging stage is
    cdf.sum (clause 7.9), before y_hat; the windows (7.9) and mixture parameters (7.8) still agree."""
    _, _, stream = case
    golden = decode(stream, small_model, fast=False, trace=True).stages
    wrong = refdec.entropy.PHI.copy()
    wrong[entry] += 1
    monkeypatch.setattr(refdec.entropy, "PHI", wrong)
    got = decode(stream, small_model, fast=False, trace=True).stages  # desynchronised, but no error here
    diagnosis = diagnose_trace(golden, got)
    assert diagnosis is not None
    assert diagnosis["stage"] == "cdf.sum" and diagnosis["clause"] == "7.9", diagnosis["text"]
    assert "window.lo" not in diagnosis["diverging_stages"] and "mixture.means" not in diagnosis["diverging_stages"]
