"""Clause 8 (range decoder) against annex A.2 (range encoder): round trips, exact payload
length, the first-byte-zero invariant and carry propagation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdec.errors import InvalidRangeState, PayloadTruncated, TrailingPayloadBytes
from refdec.range_decoder import RangeDecoder
from refdec.generators.range_encoder import MASK32, RangeEncoder

ONE = 1 << 16


# --- helpers -----------------------------------------------------------------------------

def random_cdf(rng, n: int, ones: float = 0.3) -> list[int]:
    """C(0 .. n-1) of n symbols with frequencies >= 1 totalling 2^16; about `ones` of them are 1."""
    is_one = rng.random(n) < ones
    is_one[rng.integers(0, n)] = False  # at least one symbol carries the rest of the mass
    weights = np.where(is_one, 0.0, rng.exponential(1.0, n) ** 3)
    rest = ONE - n
    extra = np.floor(weights / weights.sum() * rest).astype(np.int64)
    extra[np.argmax(weights)] += rest - extra.sum()
    freq = 1 + extra
    assert freq.min() >= 1 and freq.sum() == ONE
    return [0] + np.cumsum(freq)[:-1].tolist()


def draw_symbols(rng, cdf, count):
    """Half by the CDF's own probabilities, half uniformly (so that frequency-1 symbols occur)."""
    n = len(cdf)
    freq = np.diff(cdf + [ONE])
    by_prob = rng.choice(n, size=count, p=freq / ONE)
    uniform = rng.integers(0, n, size=count)
    return np.where(rng.random(count) < 0.5, by_prob, uniform).tolist()


def encode(items) -> bytes:
    enc = RangeEncoder()
    for cdf, j in items:
        enc.encode_symbol(cdf, len(cdf), j)
    data = enc.finish()
    assert enc.out[0] == 0 and bytes(enc.out[1:]) == data
    return data


def decode_all(data, items, check_state=True):
    dec = RangeDecoder(data)
    out = []
    for cdf, _ in items:
        out.append(dec.decode_symbol(cdf, len(cdf)))
        if check_state:  # clause 8.1 ranges hold after every step of a valid stream
            assert (1 << 24) <= dec.range <= MASK32 and 0 <= dec.value < dec.range
    return dec, out


class ReferenceEncoder:
    """Annex A.2 transcribed literally (independent of refdec.generators.range_encoder)."""

    def __init__(self):
        self.low, self.range, self.cache, self.pending, self.out = 0, 2 ** 32 - 1, 0, 0, []

    def encode(self, c0, c1):
        r = self.range >> 16
        self.low = self.low + r * c0
        self.range = r * (c1 - c0)
        while self.range < 2 ** 24:
            self.range = self.range << 8
            self.shift_low()

    def shift_low(self):
        if self.low < 0xFF000000 or self.low >= 2 ** 32:
            carry = self.low >> 32
            self.out.append((self.cache + carry) & 0xFF)
            self.out.extend([(0xFF + carry) & 0xFF] * self.pending)
            self.pending = 0
            self.cache = (self.low >> 24) & 0xFF
        else:
            self.pending = self.pending + 1
        self.low = (self.low << 8) & (2 ** 32 - 1)

    def flush(self):
        for _ in range(5):
            self.shift_low()
        assert self.out[0] == 0
        return bytes(self.out[1:])


class ReferenceDecoder:
    """Clause 8.2 to 8.5 transcribed literally; errors are returned as class names."""

    def __init__(self, payload):
        self.b, self.L = payload, len(payload)
        self.V, self.R, self.P = int.from_bytes(payload[:4], "big"), 2 ** 32 - 1, 4

    def decode_symbol(self, C, n):
        C = list(C[:n]) + [2 ** 16]
        r = self.R >> 16
        v = self.V // r
        if v >= 2 ** 16:
            return "InvalidRangeState"
        j = max(i for i in range(n) if C[i] <= v)
        self.V = self.V - r * C[j]
        self.R = r * (C[j + 1] - C[j])
        while self.R < 2 ** 24:
            if self.P == self.L:
                return "PayloadTruncated"
            self.V, self.R, self.P = (self.V << 8) + self.b[self.P], self.R << 8, self.P + 1
        return j


# --- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", list(range(2, 131)))
def test_round_trip_every_alphabet_size(n):
    rng = np.random.default_rng(1000 + n)
    cdf = random_cdf(rng, n, ones=0.5 if n > 3 else 0.0)
    items = [(cdf, j) for j in draw_symbols(rng, cdf, 150)]
    data = encode(items)
    dec, out = decode_all(data, items)
    assert out == [j for _, j in items]
    dec.finish()
    assert dec.pos == len(data) >= 4


def test_round_trip_frequency_one_symbols():
    """Every symbol but one has frequency 1; the frequency-1 symbols are the ones coded."""
    for n in (2, 3, 17, 129, 130):
        cdf = sorted(set([0] + list(range(1, n - 1)) + [ONE - 1]))
        assert len(cdf) == n
        rng = np.random.default_rng(n)
        syms = rng.integers(0, n, size=300).tolist()
        syms[:3] = [n - 1, 0, n - 1]  # the frequency-1 top symbol [2^16 - 1, 2^16)
        items = [(cdf, j) for j in syms]
        data = encode(items)
        dec, out = decode_all(data, items)
        assert out == syms
        dec.finish()


def test_long_stream_mixed_cdfs():
    rng = np.random.default_rng(7)
    cdfs = [random_cdf(rng, int(n)) for n in rng.integers(2, 131, size=64)]
    draws = [draw_symbols(rng, cdf, 40000 // len(cdfs)) for cdf in cdfs]
    items = [(cdfs[i % len(cdfs)], draws[i % len(cdfs)][i // len(cdfs)]) for i in range(40000)]
    # Plus equiprobable bits (ReadBit, clause 8.4).
    bits = rng.integers(0, 2, size=2000).tolist()
    enc = RangeEncoder()
    for cdf, j in items:
        enc.encode_symbol(cdf, len(cdf), j)
    for b in bits:
        enc.write_bit(b)
    data = enc.finish()
    dec, out = decode_all(data, items, check_state=False)
    assert out == [j for _, j in items]
    assert [dec.read_bit() for _ in bits] == bits
    dec.finish()
    assert dec.pos == len(data)
    assert len(data) > 10000


def test_cdf_entries_after_n_are_ignored():
    """Callers pass rows longer than n (clause 7.9 batches); only C(0 .. n-1) may be read."""
    rng = np.random.default_rng(3)
    cdf = random_cdf(rng, 5)
    syms = rng.integers(0, 5, size=200).tolist()
    data = encode([(cdf, j) for j in syms])
    junk = cdf + [1, 2, 70000, 0]
    dec = RangeDecoder(data)
    assert [dec.decode_symbol(junk, 5) for _ in syms] == syms
    dec.finish()


def test_encoder_matches_annex_a2_transcription():
    rng = np.random.default_rng(11)
    for trial in range(20):
        cdf = random_cdf(rng, int(rng.integers(2, 131)))
        syms = draw_symbols(rng, cdf, int(rng.integers(0, 400)))
        ref = ReferenceEncoder()
        for j in syms:
            ref.encode(cdf[j], cdf[j + 1] if j + 1 < len(cdf) else ONE)
        assert encode([(cdf, j) for j in syms]) == ref.flush()


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=4, max_size=24), st.integers(0, 2 ** 32 - 1), st.integers(2, 130))
def test_decoder_matches_clause_8_transcription_on_any_bytes(payload, seed, n):
    """Arbitrary (mostly invalid) payloads: same symbols, same error, same position."""
    rng = np.random.default_rng(seed)
    cdf = random_cdf(rng, n)
    ref, dec = ReferenceDecoder(payload), RangeDecoder(payload, base=100)
    for _ in range(60):
        want = ref.decode_symbol(cdf, n)
        if isinstance(want, str):
            with pytest.raises((InvalidRangeState, PayloadTruncated)) as info:
                dec.decode_symbol(cdf, n)
            assert type(info.value).__name__ == want
            assert info.value.offset == 100 + ref.P
            return
        assert dec.decode_symbol(cdf, n) == want
        assert (dec.value, dec.range, dec.pos) == (ref.V, ref.R, ref.P)


# --- exact payload length (clause 8.5) ----------------------------------------------------

@pytest.mark.parametrize("seed", range(12))
def test_payload_length_is_exact(seed):
    rng = np.random.default_rng(500 + seed)
    cdf = random_cdf(rng, int(rng.integers(2, 131)))
    items = [(cdf, j) for j in draw_symbols(rng, cdf, int(rng.integers(1, 3000)))]
    data = encode(items)
    dec, _ = decode_all(data, items, check_state=False)
    dec.finish()  # every byte was read

    # One byte more: the symbols still decode, the end check fails.
    extra = data + bytes([int(rng.integers(0, 256))])
    dec, out = decode_all(extra, items, check_state=False)
    assert out == [j for _, j in items]
    with pytest.raises(TrailingPayloadBytes) as info:
        dec.finish()
    assert info.value.offset == len(data)

    # One byte less: the decoder needs the missing last byte before its last symbol is done.
    if len(data) > 4:
        with pytest.raises((PayloadTruncated, InvalidRangeState)):
            decode_all(data[:-1], items, check_state=False)


def test_truncation_reports_payload_truncated_with_offset():
    rng = np.random.default_rng(99)
    cdf = random_cdf(rng, 40)
    items = [(cdf, j) for j in draw_symbols(rng, cdf, 800)]
    data = encode(items)
    dec = RangeDecoder(data[:-1], base=27)
    with pytest.raises(PayloadTruncated) as info:
        for cdf_, _ in items:
            dec.decode_symbol(cdf_, len(cdf_))
    assert info.value.offset == 27 + len(data) - 1


def test_empty_stream_is_four_bytes():
    enc = RangeEncoder()
    data = enc.finish()
    assert data == b"\x00\x00\x00\x00"
    dec = RangeDecoder(data)
    dec.finish()
    assert dec.range == MASK32 and dec.value == 0


def test_invalid_range_state():
    """V / r >= 2^16 cannot come from the encoder (clause 8.3)."""
    dec = RangeDecoder(b"\xff\xff\xff\xff", base=50)
    with pytest.raises(InvalidRangeState) as info:
        dec.decode_symbol([0, 100], 2)
    assert info.value.offset == 54
    dec = RangeDecoder(b"\xff\xff\x00\x00")  # V == 65535 * 2^16: V / r == 2^16, just outside
    with pytest.raises(InvalidRangeState):
        dec.decode_symbol([0, 100], 2)
    dec = RangeDecoder(b"\xff\xfe\xff\xff")  # V == 65535 * 2^16 - 1: V / r == 65535, the last symbol
    assert dec.decode_symbol([0, 100], 2) == 1


def test_byte_count_is_four_plus_renormalisations():
    """Annex A.2: the payload has 4 bytes plus one per renormalisation shift."""
    rng = np.random.default_rng(5)
    cdf = random_cdf(rng, 60)
    items = [(cdf, j) for j in draw_symbols(rng, cdf, 500)]
    data = encode(items)
    shifts = 0
    rng_state = MASK32
    for cdf_, j in items:
        r = rng_state >> 16
        rng_state = r * ((cdf_[j + 1] if j + 1 < len(cdf_) else ONE) - cdf_[j])
        while rng_state < 1 << 24:
            rng_state <<= 8
            shifts += 1
    assert len(data) == 4 + shifts


# --- first byte and carries --------------------------------------------------------------

class CountingEncoder(RangeEncoder):
    """Records, for every carry out of `low`, how many pending 0xFF bytes it propagated through."""

    def __init__(self):
        super().__init__()
        self.carries: list[int] = []

    def _shift_low(self):
        if self.low > MASK32:
            self.carries.append(self.pending)
        super()._shift_low()


def _straddle(enc, width=2):
    """A symbol interval that keeps [low, low + range) across 2^32, so bytes stay pending."""
    r = enc.range >> 16
    c0 = (MASK32 - enc.low) // r
    return (c0, c0 + width) if 0 <= c0 <= ONE - width else None


def _above(enc):
    """A symbol interval entirely at or above 2^32: the carry must ripple through the pending bytes."""
    r = enc.range >> 16
    c0 = -(-((1 << 32) - enc.low) // r)
    return (c0, c0 + 1) if c0 < ONE else None


def _cdf_for(c0, c1):
    cdf = sorted({0, c0} | ({c1} if c1 < ONE else set()))
    return cdf, cdf.index(c0)


@pytest.mark.parametrize("seed, runs, straddles", [(0, 3, 40), (1, 1, 150), (2, 6, 5), (3, 10, 1)])
def test_carry_propagation_through_many_ff_bytes(seed, runs, straddles):
    rng = np.random.default_rng(seed)
    enc = CountingEncoder()
    items = []
    for _ in range(runs):
        done = 0
        while done < straddles:
            iv = _straddle(enc)
            if iv is None:
                c0 = int(rng.integers(0, ONE - 1))
                iv = (c0, c0 + 1)
            else:
                done += 1
            items.append(_cdf_for(*iv))
            enc.encode(*iv)
        iv = _above(enc)
        if iv is not None:
            items.append(_cdf_for(*iv))
            enc.encode(*iv)
        for _ in range(int(rng.integers(0, 5))):  # some ordinary symbols between runs
            c0 = int(rng.integers(0, ONE - 1))
            items.append(_cdf_for(c0, c0 + 1))
            enc.encode(c0, c0 + 1)
    data = enc.finish()
    assert enc.out[0] == 0
    assert enc.carries, "the construction must produce carries"
    assert max(enc.carries) >= min(straddles, 3)
    # A carry through k pending bytes turns k 0xFF bytes into 0x00: the run is in the output.
    k = max(enc.carries)
    assert bytes(k) in data
    dec = RangeDecoder(data)
    for cdf, j in items:
        assert dec.decode_symbol(cdf, len(cdf)) == j
    dec.finish()
    # And the annex A.2 transcription writes the same bytes.
    ref = ReferenceEncoder()
    for cdf, j in items:
        ref.encode(cdf[j], cdf[j + 1] if j + 1 < len(cdf) else ONE)
    assert ref.flush() == data


def test_pending_ff_bytes_without_carry():
    """Straddling runs that end below 2^32 flush their pending bytes as 0xFF."""
    enc = CountingEncoder()
    items = []
    c0 = 40000
    items.append(_cdf_for(c0, c0 + 1))
    enc.encode(c0, c0 + 1)
    for _ in range(30):
        iv = _straddle(enc)
        assert iv is not None
        items.append(_cdf_for(*iv))
        enc.encode(*iv)
    items.append(_cdf_for(0, 1))  # the bottom of the interval: below 2^32
    enc.encode(0, 1)
    data = enc.finish()
    assert not enc.carries
    assert b"\xff" * 20 in data
    dec = RangeDecoder(data)
    for cdf, j in items:
        assert dec.decode_symbol(cdf, len(cdf)) == j
    dec.finish()


def test_first_byte_is_always_zero():
    """Annex A.2: the first byte written never receives a carry, including for top-heavy streams."""
    rng = np.random.default_rng(17)
    for trial in range(30):
        enc = RangeEncoder()
        for _ in range(int(rng.integers(0, 200))):
            if rng.random() < 0.7:
                c0 = ONE - int(rng.integers(1, 4))  # near the top of the interval
                enc.encode(c0, ONE)
            else:
                c0 = int(rng.integers(0, ONE - 1))
                enc.encode(c0, int(rng.integers(c0 + 1, ONE + 1)))
        enc.finish()
        assert enc.out[0] == 0


def test_encoder_rejects_invalid_intervals():
    enc = RangeEncoder()
    for c0, c1 in ((5, 5), (6, 5), (-1, 3), (0, ONE + 1)):
        with pytest.raises(ValueError):
            enc.encode(c0, c1)
