"""Clause 7 end to end: the latent-domain encoder (annex A.1) against the decoder.

decode() runs the wavefront order of clause 7.5 with per-wavefront batches and banded
synthesis; encoder.forward_integer() computes every stage of clause 11.3 over whole tensors.
Agreement of the two on every stage checks the coding order, the causal mask and the bands.
"""

from __future__ import annotations


import numpy as np
import pytest

from refdec.constants import NUM_MIXTURES, Y_MAX
from refdec import constants
from refdec.generators import encoder as encoder_module
from refdec.architecture import causal_mask, padded_sizes
from refdec.arith import clip3, round2
from refdec.decoder import decode
from refdec.model_file import ModelStore
from refdec.generators.encoder import EncodeError, encode_latents, forward_integer
from refdec.entropy import MixtureParameters, coding_window, cumulative_frequencies, mixture_parameters
from refdec.errors import LatentOutOfRange
from refdec.latent import wavefronts
from refdec.generators.random_model import random_latents
from refdec.fast import FastOptions
from refdec.fast.entropy import context_taps
from refdec.fast.synthesis import synthesis
from refdec.synthesis import inverse_gain
from refdec.tables import INV_SCALE, PHI, SCALE_Q

SIZES = [(1, 1), (16, 16), (64, 64), (65, 64), (100, 37), (37, 100), (130, 200)]


def expected_shapes(model, width, height):
    hz, wz, hy, wy = padded_sizes(width, height)
    cy, cz, nk = model.latent_channels, model.hyper_channels, NUM_MIXTURES
    shapes = {"z_hat": (cz, hz, wz), "y_hat": (cy, hy, wy), "synthesis_input": (cy, hy, wy),
              "window.lo": (cy, hy, wy), "window.hi": (cy, hy, wy), "image": (3, height, width),
              "synthesis.6": (3, 16 * hy, 16 * wy), "hyper_synthesis.2": (None, hy, wy)}
    for name in ("mixture.weights", "mixture.means", "mixture.scale_index"):
        shapes[name] = (nk, cy, hy, wy)
    for name in ("context.3", "context.5", "context.7", "gather.0", "gather.6"):
        shapes[name] = (None, hy, wy)
    shapes["gather.6"] = (3 * nk * cy, hy, wy)
    return shapes


def check_round_trip(model, z, y, rate, width, height):
    stream = encode_latents(model, z, y, rate, width, height)
    decoded = decode(stream, model, trace=True)
    stages = decoded.stages
    assert np.array_equal(stages["z_hat"], z)
    assert np.array_equal(stages["y_hat"], y)
    want = forward_integer(model, z, y, rate, width, height)
    assert set(stages) == set(want)
    for name, value in want.items():
        assert stages[name].dtype == np.int32
        assert stages[name].shape == value.shape, name
        assert np.array_equal(stages[name], value), f"stage {name} differs"
    for name, shape in expected_shapes(model, width, height).items():
        assert all(a is None or a == b for a, b in zip(shape, stages[name].shape)), (name, stages[name].shape)
    assert decoded.image.dtype == np.uint8 and decoded.image.shape == (3, height, width)
    assert np.array_equal(decoded.image, stages["image"])
    assert (decoded.header.width, decoded.header.height, decoded.header.rate_index) == (width, height, rate)
    return stream, decoded


@pytest.mark.parametrize("width, height", SIZES)
def test_round_trip_sizes(small_model, width, height):
    z, y = random_latents(small_model, width, height, seed=width * 1000 + height)
    stream, decoded = check_round_trip(small_model, z, y, 1, width, height)
    # Without a trace the decoder uses its default bands; the image is the same.
    assert np.array_equal(decode(stream, small_model).image, decoded.image)


@pytest.mark.parametrize("width, height", [(16, 16), (100, 37), (37, 100)])
def test_round_trip_w8a16(small_model_w8, width, height):
    assert small_model_w8.header["profile"] == "W8A16"
    assert np.abs(small_model_w8.layers["gather.3"].weight).max() <= 127
    z, y = random_latents(small_model_w8, width, height, seed=5)
    check_round_trip(small_model_w8, z, y, 0, width, height)


def test_round_trip_every_rate_index(small_model):
    z, y = random_latents(small_model, 64, 64, seed=11)
    inputs = set()
    for rate in range(small_model.num_rates):
        _, decoded = check_round_trip(small_model, z, y, rate, 64, 64)
        inputs.add(decoded.stages["synthesis_input"].tobytes())
    assert len(inputs) == small_model.num_rates  # the rate point really selects a gain vector


def test_round_trip_reference_channels(reference_model):
    z, y = random_latents(reference_model, 64, 64, seed=2)
    check_round_trip(reference_model, z, y, 3, 64, 64)


def test_round_trip_through_model_store(small_model_file, tmp_path):
    data, model = small_model_file
    (tmp_path / "m.npz").write_bytes(data)
    z, y = random_latents(model, 37, 20, seed=4)
    stream = encode_latents(model, z, y, 2, 37, 20)
    assert stream[11:19] == model.model_id
    a = decode(stream, ModelStore([tmp_path])).image
    b = decode(stream, model).image
    assert np.array_equal(a, b)


# --- banded synthesis (clause 7.12) -----------------------------------------------------------

@pytest.mark.parametrize("width, height", [(130, 200), (37, 100), (16, 16)])
def test_banded_synthesis_equals_single_band(small_model, width, height):
    z, y = random_latents(small_model, width, height, seed=9)
    stream = encode_latents(small_model, z, y, 0, width, height)
    _, _, hy, _ = padded_sizes(width, height)
    whole = decode(stream, small_model, fast=FastOptions(band_rows=16 * hy)).image
    for band_rows in (16, 48, 5, 16 * hy - 1):
        assert np.array_equal(decode(stream, small_model, fast=FastOptions(band_rows=band_rows)).image, whole), band_rows


def test_banded_synthesis_every_band_height(small_model):
    """The fast synthesis directly, every split of a 64-row output, full S7 (not only the crop)."""
    _, y = random_latents(small_model, 70, 50, seed=13)
    y = y[:, :4, :]  # 4 latent rows -> 64 output rows
    s0 = inverse_gain(small_model, y, 0)
    whole = synthesis(small_model, s0, options=FastOptions(band_rows=64))
    for band_rows in (1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63):
        assert np.array_equal(synthesis(small_model, s0, options=FastOptions(band_rows=band_rows)), whole), band_rows


# --- escape path (clause 7.10) and latent ranges (clause 5.3) --------------------------------

def test_escape_values_round_trip(small_model):
    width, height = 100, 37
    z, y = random_latents(small_model, width, height, seed=21)
    cy, hy, wy = y.shape
    rng = np.random.default_rng(21)
    # Large values anywhere (they reach the context through Clip3(-255, 255, .)).
    idx = rng.integers(0, y.size, size=40)
    y.flat[idx] = rng.choice([5000, -5000, Y_MAX, -Y_MAX, Y_MAX - 1, -Y_MAX + 1, 256, -256], size=40)
    z.flat[0], z.flat[-1] = constants.Z_MAX, -constants.Z_MAX
    z.flat[1] = 5000
    # At the last position nothing depends on the value: put every channel just outside its window
    # (m = 0) and at Exp-Golomb boundaries (m = 2^k - 1, 2^k - 2).
    f = forward_integer(small_model, z, y, 0, width, height)
    lo, hi = f["window.lo"][:, -1, -1], f["window.hi"][:, -1, -1]
    for c in range(cy):
        kind = c % 4
        y[c, -1, -1] = [lo[c] - 1, hi[c] + 1, hi[c] + 1 + (2 ** (3 + c) - 1), lo[c] - 1 - (2 ** (2 + c) - 2)][kind]
    assert np.abs(y).max() == Y_MAX and np.abs(z).max() == constants.Z_MAX
    stream, decoded = check_round_trip(small_model, z, y, 0, width, height)
    assert decoded.stages["y_hat"][:, -1, -1].tolist() == y[:, -1, -1].tolist()


def test_largest_codable_values(small_model):
    """Every element at +-Y_MAX, every z at +-Z_MAX: the longest escapes (prefix 14 at most)."""
    z, y = random_latents(small_model, 16, 16, seed=1)
    rng = np.random.default_rng(0)
    y = np.where(rng.random(y.shape) < 0.5, Y_MAX, -Y_MAX)
    z = np.where(rng.random(z.shape) < 0.5, constants.Z_MAX, -constants.Z_MAX)
    check_round_trip(small_model, z, y, 0, 16, 16)


@pytest.mark.parametrize("which, value", [("y", Y_MAX + 1), ("y", -Y_MAX - 1), ("y", 10 ** 6),
                                          ("z", constants.Z_MAX + 1), ("z", -constants.Z_MAX - 1)])
def test_encoder_rejects_values_beyond_limits(small_model, which, value):
    z, y = random_latents(small_model, 16, 16, seed=1)
    (y if which == "y" else z).flat[-1] = value
    with pytest.raises(EncodeError):
        encode_latents(small_model, z, y, 0, 16, 16)


@pytest.mark.parametrize("which", ["y", "z"])
def test_decoder_rejects_escape_beyond_limit(small_model, monkeypatch, which):
    """An escape that codes Y_MAX + 1 (Z_MAX + 1) is LatentOutOfRange (clause 7.10)."""
    z, y = random_latents(small_model, 16, 16, seed=1)
    (y if which == "y" else z).flat[0] = Y_MAX + 1
    monkeypatch.setattr(encoder_module, "Y_MAX", 10 ** 6)  # the encoder only; the decoder keeps the limits
    monkeypatch.setattr(encoder_module, "Z_MAX", 10 ** 6)
    stream = encode_latents(small_model, z, y, 0, 16, 16)
    with pytest.raises(LatentOutOfRange):
        decode(stream, small_model)


def test_encoder_rejects_bad_shapes_and_rate(small_model):
    z, y = random_latents(small_model, 16, 16)
    with pytest.raises(EncodeError):
        encode_latents(small_model, z, y[:, :-1], 0, 16, 16)
    with pytest.raises(EncodeError):
        encode_latents(small_model, z[:-1], y, 0, 16, 16)
    with pytest.raises(EncodeError):
        encode_latents(small_model, z, y, small_model.num_rates, 16, 16)


# --- coding order (clause 7.5) --------------------------------------------------------------------

@pytest.mark.parametrize("hy, wy", [(1, 1), (4, 4), (4, 12), (12, 4), (9, 5), (8, 37)])
def test_wavefront_order(hy, wy):
    order = []
    for t, (ys, xs) in enumerate(wavefronts(hy, wy)):
        assert len(ys) > 0
        assert np.all(xs + 4 * ys == t) and np.all(np.diff(ys) > 0)
        order += list(zip(ys.tolist(), xs.tolist()))
    assert t == (wy - 1) + 4 * (hy - 1)
    assert sorted(order) == [(a, b) for a in range(hy) for b in range(wy)]


def test_context_taps_are_on_earlier_wavefronts():
    taps = context_taps()
    assert len(taps) == int(causal_mask(7).sum()) == 24
    assert all(dx + 4 * dy < 0 for dy, dx in taps)
    for k in constants.CONTEXT_KERNELS:
        m, p = causal_mask(k), k // 2
        for ky in range(k):
            for kx in range(k):
                assert m[ky, kx] == (ky < p or (ky == p and kx < p))


# --- clauses 7.8 and 7.9 against a literal scalar transcription ---------------------------------

def literal_element(logit, mean, raw):
    """Clauses 7.8 and 7.9 for one element, in Python ints: (w, sidx, lo, hi, C(0 .. n_w))."""
    nk = 3
    sidx = [clip3(0, 159, round2(r, 4)) for r in raw]
    m = max(logit)
    e = [max(1, 256 + lg - m) for lg in logit]
    total = sum(e)
    w = [1 + (ek * (2 ** 14 - nk)) // total for ek in e]
    span = [round2(6 * int(SCALE_Q[s]), 2) for s in sidx]
    lo = min(round2(mean[k] - span[k], 6) for k in range(nk))
    hi = max(round2(mean[k] + span[k], 6) for k in range(nk))
    if hi - lo > 128:
        centre = round2(lo + hi, 1)
        lo, hi = centre - 64, centre + 64
    n_w = hi - lo + 1
    n = n_w + 1
    M = []
    for j in range(n_w + 1):
        b = (lo + j) * 64 - 32
        acc = 0
        for k in range(nk):
            d = clip3(-2 ** 15, 2 ** 15, b - mean[k])
            u = d * int(INV_SCALE[sidx[k]])
            assert abs(u) < 2 ** 31
            i = clip3(-2048, 2048, round2(u, 10))
            acc += w[k] * int(PHI[i + 2048])
        M.append(acc >> 14)
    C = []
    for j in range(n_w + 1):
        D = M[j] - M[0]
        assert D * n < 2 ** 24
        C.append(j + D - ((D * n + 65535) >> 16))
    return w, sidx, lo, hi, C


def _random_params(rng, count, extreme):
    """(count, 3 K) gather outputs for C_y = 1: logits, means, raw scale indices."""
    bound = 32767
    if extreme:
        pick = lambda size: rng.choice([-bound, -bound + 1, -1, 0, 1, bound - 1, bound], size=size)  # noqa: E731
        return np.concatenate([pick((count, 3)), pick((count, 3)), pick((count, 3))], axis=1)
    logits = rng.integers(-600, 600, size=(count, 3))
    means = rng.integers(-3000, 3000, size=(count, 3))
    raw = rng.integers(-40, 2600, size=(count, 3))
    return np.concatenate([logits, means, raw], axis=1)


@pytest.mark.parametrize("extreme", [False, True])
def test_entropy_model_matches_literal_clauses(extreme):
    rng = np.random.default_rng(int(extreme))
    params = _random_params(rng, 300, extreme)
    mix = mixture_parameters(params, 1)
    lo, hi = coding_window(mix)
    cdf = cumulative_frequencies(mix, lo, hi)
    for e in range(len(params)):
        p = params[e].tolist()
        w, sidx, lo_e, hi_e, C = literal_element(p[0:3], p[3:6], p[6:9])
        assert mix.weights[e].tolist() == w
        assert mix.scale_index[e].tolist() == sidx
        assert mix.means[e].tolist() == p[3:6]
        assert (int(lo[e]), int(hi[e])) == (lo_e, hi_e)
        assert cdf[e, : len(C)].tolist() == C
        # The claims of clauses 7.8 and 7.9.
        assert min(w) >= 1 and sum(w) <= 2 ** 14
        n_w = hi_e - lo_e + 1
        assert 1 <= n_w <= 129 and abs(lo_e) <= 1160 and abs(hi_e) <= 1160
        assert C[0] == 0 and all(b - a >= 1 for a, b in zip(C, C[1:])) and 65536 - C[-1] >= 1


def test_mixture_parameter_layout():
    """P[a * K * C_y + k * C_y + c]: logits, means, scales; elements position-major, channel-minor."""
    cy, nk = 2, 3
    pos = 2
    params = np.zeros((pos, 3 * nk * cy), dtype=np.int64)
    for p in range(pos):
        for a in range(3):
            for k in range(nk):
                for c in range(cy):
                    params[p, a * nk * cy + k * cy + c] = 1000 * a + 100 * k + 10 * c + p
    mix = mixture_parameters(params, cy)
    for p in range(pos):
        for c in range(cy):
            e = p * cy + c
            assert mix.means[e].tolist() == [1000 + 100 * k + 10 * c + p for k in range(nk)]
            assert mix.scale_index[e].tolist() == [
                clip3(0, 159, round2(2000 + 100 * k + 10 * c + p, 4)) for k in range(nk)]
    assert isinstance(mix, MixtureParameters)
