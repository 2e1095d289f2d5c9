"""Cross-check of the independent PyTorch decoder (refcodec.int_decoder) against refdec.

Streams are made with refdec's informative helpers (random_model, random_latents,
encode_latents); both decoders must give the same image and the same clause 11.3 stage
tensors, or the same clause 11.2 error class for invalid streams.
"""

import pytest

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402

import refdec  # noqa: E402
from refdec import errors as E  # noqa: E402
from refdec.bitstream import HEADER_SIZE, Header, parse_header  # noqa: E402
from refdec.generators.encoder import write_header  # noqa: E402
from refdec.generators.encoder import encode_latents, encode_z  # noqa: E402
from refdec.generators.random_model import random_latents, random_model  # noqa: E402
from refdec.generators.range_encoder import RangeEncoder  # noqa: E402

from refcodec import int_decoder as TD  # noqa: E402

STAGE_NAMES = (
    ["z_hat", "hyper_synthesis.0", "hyper_synthesis.1", "hyper_synthesis.2", "context.3", "context.5",
     "context.7"] + [f"gather.{i}" for i in range(7)]
    + ["mixture.weights", "mixture.means", "mixture.scale_index", "window.lo", "window.hi", "cdf.sum", "y_hat",
       "synthesis_input"] + [f"synthesis.{i}" for i in range(7)] + ["image"]
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The wavefront loop runs many tiny matrix products; on a busy machine intra-op threads
    # only add contention. Restored afterwards.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def small():
    return random_model(7)[1]


@pytest.fixture(scope="module")
def small_w8():
    return random_model(11, profile="W8A16")[1]


def _stream(model, w, h, rate=0, seed=0, y=None, z=None, **kw):
    z0, y0 = random_latents(model, w, h, seed=seed, **kw)
    z = z0 if z is None else z
    y = y0 if y is None else y
    return encode_latents(model, z, y, rate, w, h), z, y


def _same_as_refdec(stream, model, z=None, y=None):
    ref = refdec.decode(stream, model, trace=True)
    image, stages = TD.decode(stream, model, trace=True)
    assert image.dtype == np.uint8 and image.shape == ref.image.shape
    assert np.array_equal(image, ref.image)
    assert set(stages) == set(ref.stages) == set(STAGE_NAMES)
    for name in STAGE_NAMES:
        assert stages[name].dtype == np.int32, name
        assert stages[name].shape == ref.stages[name].shape, name
        assert np.array_equal(stages[name], ref.stages[name]), name
    if y is not None:
        assert np.array_equal(stages["y_hat"], y)
        assert np.array_equal(stages["z_hat"], z)
    # Untraced decode gives the same image.
    plain, empty = TD.decode(stream, model)
    assert np.array_equal(plain, image) and empty == {}
    return stages


def _expect_same_error(stream, model):
    """Both decoders reject the stream with the same class, or both decode it identically."""
    try:
        ref = refdec.decode(stream, model, trace=True)
    except E.RefdecError as exc:
        with pytest.raises(E.RefdecError) as info:
            TD.decode(stream, model)
        assert type(info.value) is type(exc), (info.value, exc)
        return type(exc)
    image, stages = TD.decode(stream, model, trace=True)
    assert np.array_equal(image, ref.image)
    for name in STAGE_NAMES:
        assert np.array_equal(stages[name], ref.stages[name]), name
    return None


# --- clause 4 operators -----------------------------------------------------------------

def test_operators():
    x = torch.tensor([-3, 3, -1, -2, 5, -5], dtype=torch.int64)
    assert TD.round2(x, 1).tolist() == [-1, 2, 0, -1, 3, -2]           # clause 4.2 examples
    assert (torch.tensor([-1], dtype=torch.int64) >> 1).item() == -1    # arithmetic shift
    n = torch.tensor([0, 1, 2, 3, 0, 4], dtype=torch.int64)
    expect = [v if s == 0 else (v + (1 << (s - 1))) >> s for v, s in zip(x.tolist(), n.tolist())]
    assert TD.round2(x, n).tolist() == expect
    acc = torch.tensor([[-17, 17, -16, 0]], dtype=torch.int64)
    s = torch.tensor([[1]], dtype=torch.int64)
    assert TD.requant(acc, s, True).tolist() == [[(-17 + 8) >> 4, (17 + 1) >> 1, (-16 + 8) >> 4, 0]]
    assert TD.requant(acc, s, False).tolist() == [[(-17 + 1) >> 1, 9, -8, 0]]
    t = torch.arange(4 * 3 * 2 * 5, dtype=torch.int64).reshape(12, 2, 5)
    d = TD.depth_to_space(t)
    assert torch.equal(d, torch.nn.functional.pixel_shuffle(t.unsqueeze(0), 2)[0])
    assert d[1, 2 * 1 + 1, 2 * 3 + 0].item() == t[4 * 1 + 2 * 1 + 0, 1, 3].item()


def test_wavefront_order():
    for hy, wy in [(4, 4), (8, 12), (12, 4), (4, 16)]:
        seen = []
        for t in range(wy - 1 + 4 * (hy - 1) + 1):
            ys, xs = TD.wavefront_positions(t, hy, wy)
            assert ys == sorted(ys) and all(x + 4 * y == t for y, x in zip(ys, xs))
            seen += list(zip(ys, xs))
        assert len(seen) == hy * wy
        assert sorted(seen) == [(y, x) for y in range(hy) for x in range(wy)]


# --- decoding cross-checks ---------------------------------------------------------------

@pytest.mark.parametrize("w,h,rate", [(1, 1, 0), (16, 16, 1), (100, 37, 3), (130, 200, 5)])
def test_sizes_match_refdec(small, w, h, rate):
    stream, z, y = _stream(small, w, h, rate=rate, seed=w + h)
    stages = _same_as_refdec(stream, small, z, y)
    assert stages["image"].shape == (3, h, w)
    # forward_stages (whole tensors, no wavefronts) gives the same stage tensors.
    fwd = TD.forward_stages(small, z, y, rate, w, h)
    for name in STAGE_NAMES:
        assert np.array_equal(fwd[name], stages[name]), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_refdec(small):
    stream, z, y = _stream(small, 100, 37, rate=2, seed=8, y_scale=30.0)
    ref = refdec.decode(stream, small, trace=True)
    image, stages = TD.decode(stream, small, device="cuda", trace=True)
    assert np.array_equal(image, ref.image)
    for name in STAGE_NAMES:
        assert np.array_equal(stages[name], ref.stages[name]), name
    fwd = TD.forward_stages(small, z, y, 2, 100, 37, device="cuda")
    for name in STAGE_NAMES:
        assert np.array_equal(fwd[name], ref.stages[name]), name


def test_w8a16_profile(small_w8):
    assert small_w8.header["profile"] == "W8A16"
    stream, z, y = _stream(small_w8, 70, 90, rate=2, seed=5)
    _same_as_refdec(stream, small_w8, z, y)


def test_all_rate_indices(small):
    z, y = random_latents(small, 20, 12, seed=9)
    for r in range(small.num_rates):
        stream = encode_latents(small, z, y, r, 20, 12)
        _same_as_refdec(stream, small, z, y)


def test_escape_path(small):
    w, h = 40, 70
    z, y = random_latents(small, w, h, seed=13, y_scale=40.0, z_scale=30.0)
    rng = np.random.default_rng(1)
    for arr, lim in ((y, refdec.constants.Y_MAX), (z, refdec.constants.Z_MAX)):
        flat = arr.reshape(-1)
        idx = rng.choice(flat.size, size=max(4, flat.size // 10), replace=False)
        flat[idx] = rng.integers(-4000, 4001, size=idx.size)
        flat[idx[0]], flat[idx[1]] = lim, -lim                 # the extremes of clause 5.3
        flat[idx[2]], flat[idx[3]] = 300, -300                 # beyond the 9-bit context clip
    stream = encode_latents(small, z, y, 4, w, h)
    stages = _same_as_refdec(stream, small, z, y)
    lo, hi = stages["window.lo"], stages["window.hi"]
    assert ((y < lo) | (y > hi)).sum() > 10                    # the escape path was used


def test_wide_windows(small):
    """Large scale indices give windows wider than 128 before centring (clause 7.9)."""
    _, model = random_model(3, scale_offset=2200, mean_spread=600.0)
    stream, z, y = _stream(model, 33, 65, rate=1, seed=2, y_scale=200.0)
    stages = _same_as_refdec(stream, model, z, y)
    assert (stages["window.hi"] - stages["window.lo"] == 128).any()


# --- errors (clause 11.2) ---------------------------------------------------------------

def _with_header(stream, body=None, **changes):
    """The stream's header with some fields changed, followed by ``body`` (default: its payloads)."""
    h = parse_header(stream)
    body = stream[HEADER_SIZE:] if body is None else body
    fields = dict(version=h.version, flags=h.flags, width=h.width, height=h.height, rate_index=h.rate_index,
                  model_id=h.model_id, z_length=h.z_length, y_length=h.y_length)
    fields.update(changes)
    return write_header(Header(**fields)) + body


def test_header_errors(small):
    stream, _, _ = _stream(small, 16, 16)
    cases = {
        E.TruncatedHeader: stream[:20],
        E.BadMagic: b"RDEX" + stream[4:],
        E.UnsupportedVersion: _with_header(stream, version=2),
        E.ReservedFieldSet: _with_header(stream, flags=1),
        E.ZeroDimension: _with_header(stream, width=0),
        E.DimensionsTooLarge: _with_header(stream, width=8192, height=8192),
        E.PayloadTooShort: _with_header(stream, z_length=3),
        E.PayloadPastEnd: stream[:-1],
        E.TrailingData: stream + b"\0",
        E.UnknownModel: _with_header(stream, model_id=bytes(8)),
        E.RateIndexOutOfRange: _with_header(stream, rate_index=small.num_rates),
    }
    for cls, bad in cases.items():
        with pytest.raises(cls):
            TD.decode(bad, small)
        assert _expect_same_error(bad, small) is cls


def test_payload_errors(small):
    stream, _, _ = _stream(small, 16, 16, seed=4)
    h = parse_header(stream)
    # Extra byte in each payload: TrailingPayloadBytes (or an earlier error).
    body = stream[HEADER_SIZE:]
    zl = h.z_length
    extended_z = _with_header(stream, body[:zl] + b"\x00" + body[zl:], z_length=zl + 1)
    extended_y = _with_header(stream, body + b"\x00", y_length=h.y_length + 1)
    assert _expect_same_error(extended_y, small) is E.TrailingPayloadBytes
    assert _expect_same_error(extended_z, small) is E.TrailingPayloadBytes
    # Truncated payloads: the range decoder runs out of bytes (clause 8.3).
    for cut in (1, 2, 5):
        shortened = _with_header(stream, body[:-cut], y_length=h.y_length - cut)
        assert _expect_same_error(shortened, small) is E.PayloadTruncated
    shortened_z = _with_header(stream, body[:zl - 1] + body[zl:], z_length=zl - 1)
    assert _expect_same_error(shortened_z, small) is E.PayloadTruncated
    # Random corruption: the same outcome from both decoders.
    rng = np.random.default_rng(0)
    outcomes = set()
    for trial in range(40):
        b = bytearray(stream)
        pos = int(rng.integers(HEADER_SIZE, len(b)))
        mode = trial % 4
        if mode == 0:
            b[pos] = int(rng.integers(0, 256))
        elif mode == 1:
            b[pos:] = b"\xff" * (len(b) - pos)
        elif mode == 2:
            b[pos:] = bytes(len(b) - pos)
        else:
            b[pos:] = rng.integers(0, 256, len(b) - pos).astype(np.uint8).tobytes()
        outcomes.add(_expect_same_error(bytes(b), small))
    assert {E.TrailingPayloadBytes, E.InvalidRangeState} <= outcomes


def _z_escape_stream(model, bits):
    """A stream whose first z symbol is the escape symbol followed by the given bits."""
    enc = RangeEncoder()
    n_w = int(model.z_count[0])
    cdf = model.z_cdf[0, : n_w + 1].tolist()
    enc.encode_symbol(cdf, n_w + 1, n_w)
    for bit in bits:
        enc.write_bit(bit)
    z_payload = enc.finish()
    y_payload = bytes(8)
    h = Header(1, 0, 16, 16, 0, model.model_id, len(z_payload), len(y_payload))
    return write_header(h) + z_payload + y_payload


def test_escape_errors(small):
    too_long = _z_escape_stream(small, [1] + [1] * 15)
    assert _expect_same_error(too_long, small) is E.EscapeTooLong
    # k = 14, all ones: m = 2^15 - 2, beyond Z_MAX on either side.
    out_of_range = _z_escape_stream(small, [1] + [1] * 14 + [0] + [1] * 14)
    assert _expect_same_error(out_of_range, small) is E.LatentOutOfRange
    below = _z_escape_stream(small, [0] + [1] * 14 + [0] + [1] * 14)
    assert _expect_same_error(below, small) is E.LatentOutOfRange


def test_y_latent_out_of_range(small):
    w, h = 16, 16
    z, y = random_latents(small, w, h, seed=1)
    z_payload = encode_z(small, z)
    # The first y element (position (0, 0), channel 0): its window from the decoder's model.
    cdf, lo, hi = TD.cumulative_tables(small, np.zeros_like(y), z)
    lo0, hi0 = int(lo[0, 0, 0]), int(hi[0, 0, 0])
    enc = RangeEncoder()
    n_w = hi0 - lo0 + 1
    enc.encode_symbol(cdf[0, 0, 0, : n_w + 1].tolist(), n_w + 1, n_w)
    for bit in [0] + [1] * 14 + [0] + [1] * 14:
        enc.write_bit(bit)
    y_payload = enc.finish()
    hd = Header(1, 0, w, h, 0, small.model_id, len(z_payload), len(y_payload))
    stream = write_header(hd) + z_payload + y_payload
    assert _expect_same_error(stream, small) is E.LatentOutOfRange


def test_symbol_intervals_match_full_tables(small):
    """The encoder's two-entry lookup equals the clause 7.9 tables, escapes included."""
    z, y = random_latents(small, 48, 40, seed=5)
    y = y * 9          # wide values: many escapes on both sides
    cdf, lo, hi = TD.cumulative_tables(small, y, z)
    symbol, start, end, lo2, hi2 = TD.symbol_intervals(small, y, z)
    np.testing.assert_array_equal(lo2, lo)
    np.testing.assert_array_equal(hi2, hi)
    n_w = hi - lo + 1
    expected_symbol = np.where((y >= lo) & (y <= hi), y - lo, n_w)
    np.testing.assert_array_equal(symbol, expected_symbol)
    assert (symbol == n_w).any() and (symbol < n_w).any()
    np.testing.assert_array_equal(start, np.take_along_axis(cdf, symbol[..., None], -1)[..., 0])
    np.testing.assert_array_equal(end, np.take_along_axis(cdf, (symbol + 1)[..., None], -1)[..., 0])
