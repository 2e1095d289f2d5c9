"""Symbol decoding with the escape path (spec clause 7.10)."""

from __future__ import annotations

from bisect import bisect_right

from .errors import EscapeTooLong, LatentOutOfRange
from .range_decoder import PROB_ONE, RANGE_BOTTOM, RangeDecoder

MAX_ESCAPE_PREFIX = 14


def decode_value(decoder: RangeDecoder, cdf, n_w: int, lo: int, hi: int, limit: int) -> int:
    """Clause 7.10 DecodeValue: a window symbol, or the escape symbol and an Exp-Golomb payload."""
    j = decoder.decode_symbol(cdf, n_w + 1)
    if j < n_w:
        return lo + j
    return _decode_escape(decoder, lo, hi, limit)


def _decode_escape(decoder: RangeDecoder, lo: int, hi: int, limit: int) -> int:
    """Clause 7.10, escape branch: side bit, unary prefix k <= 14, k suffix bits."""
    read_bit = decoder.read_bit
    side = read_bit()
    k = 0
    while read_bit():
        k += 1
        if k > MAX_ESCAPE_PREFIX:
            raise EscapeTooLong(f"escape prefix longer than {MAX_ESCAPE_PREFIX}",
                                offset=decoder.base + decoder.pos)
    v = 1
    for _ in range(k):
        v = 2 * v + read_bit()
    m = v - 1
    value = hi + 1 + m if side else lo - 1 - m
    if abs(value) > limit:
        raise LatentOutOfRange(f"escaped value {value} beyond +-{limit}", offset=decoder.base + decoder.pos)
    return value


def decode_values(decoder: RangeDecoder, cdf, offsets, los, n_ws, limit: int) -> list:
    """Non-normative: clause 7.10 DecodeValue for a sequence of elements, with clause 8.3 inlined.

    Element e has the cumulative frequencies cdf[offsets[e] + j] = C(j) for
    j = 0 .. n_ws[e], followed by cdf[offsets[e] + n_ws[e] + 1] = 2^16, and the
    window [los[e], los[e] + n_ws[e] - 1] (offsets, los, n_ws: int64 arrays). The decoder's state lives in local
    variables while window symbols are decoded; it is written back before an
    escape (decoded by _decode_escape), before raising an error, and at the end,
    so the results and errors are those of decode_value.
    """
    data, length = decoder.data, decoder.length
    rng, value, pos = decoder.range, decoder.value, decoder.pos
    prob_one, bottom = PROB_ONE, RANGE_BOTTOM
    out = []
    append = out.append
    # Per element, in cdf's indices: the end of the search (symbols 0 .. n_w, the escape
    # included) and the value of index 0 minus one (the symbol j is found as index + 1).
    ends = (offsets + n_ws + 1).tolist()
    bases = (los - offsets - 1).tolist()
    for off, end, base in zip(offsets.tolist(), ends, bases):
        # DecodeSymbol(C, n_w + 1), clause 8.3.
        r = rng >> 16
        v = value // r
        if v >= prob_one:
            decoder.range, decoder.value, decoder.pos = rng, value, pos
            raise decoder.invalid_state(v)
        after = bisect_right(cdf, v, off, end)  # index of symbol j, plus one
        start = cdf[after - 1]
        value -= r * start
        rng = r * (cdf[after] - start)
        while rng < bottom:
            if pos == length:
                decoder.range, decoder.value, decoder.pos = rng, value, pos
                raise decoder.truncated()
            value = (value << 8) | data[pos]
            rng <<= 8
            pos += 1
        if after < end:  # a window symbol: the value lo + j
            append(base + after)
        else:  # the escape symbol j = n_w
            decoder.range, decoder.value, decoder.pos = rng, value, pos
            lo, n_w = base + off + 1, end - off - 1
            append(_decode_escape(decoder, lo, lo + n_w - 1, limit))
            rng, value, pos = decoder.range, decoder.value, decoder.pos
    decoder.range, decoder.value, decoder.pos = rng, value, pos
    return out
