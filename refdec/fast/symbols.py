"""Accelerated symbol decoding (spec clause 7.10 with the range decoder of clause 8 inlined)."""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from ..range_decoder import PROB_ONE, RANGE_BOTTOM, RangeDecoder
from ..symbols import decode_escape, decode_value
from .registry import accelerates, clause_of


def decode_values(decoder: RangeDecoder, cdf, offsets, los, n_ws, limit: int) -> list:
    """Clause 7.10 DecodeValue for a sequence of elements, with clause 8.3 inlined.

    Element e has the cumulative frequencies cdf[offsets[e] + j] = C(j) for
    j = 0 .. n_ws[e], followed by cdf[offsets[e] + n_ws[e] + 1] = 2^16, and the
    window [los[e], los[e] + n_ws[e] - 1] (offsets, los, n_ws: int64 arrays). The decoder's state lives in local
    variables while window symbols are decoded; it is written back before an
    escape (decoded by refdec.symbols.decode_escape), before raising an error, and at the end,
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
            append(decode_escape(decoder, lo, lo + n_w - 1, limit))
            rng, value, pos = decoder.range, decoder.value, decoder.pos
    decoder.range, decoder.value, decoder.pos = rng, value, pos
    return out


@clause_of("7.10")
def decode_elements(decoder: RangeDecoder, rows: list, lo: np.ndarray, hi: np.ndarray, limit: int):
    """The literal reference of decode_elements_inlined: DecodeValue (clause 7.10) for each element in
    order, element e with the cumulative frequencies rows[e] = C(0 .. n_w); returns the values and
    the decoder's final state (R, V, P)."""
    values = [decode_value(decoder, [int(c) for c in row], len(row) - 1, int(a), int(b), limit)
              for row, a, b in zip(rows, lo, hi)]
    return values, (decoder.range, decoder.value, decoder.pos)


@accelerates(decode_elements, exactness="the same integer operations on Python ints; the state lives in locals "
                                        "and is written back before an escape, an error and the end")
def decode_elements_inlined(decoder: RangeDecoder, rows: list, lo: np.ndarray, hi: np.ndarray, limit: int):
    """decode_elements by decode_values, on the flat CDF layout that refdec/fast/entropy.py produces."""
    n_ws = np.array([len(row) - 1 for row in rows], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_ws + 2)[:-1]]).astype(np.int64)
    cdf = np.concatenate([np.append(np.asarray(row, dtype=np.int64), PROB_ONE) for row in rows]).astype(np.int32)
    values = decode_values(decoder, memoryview(cdf), offsets, np.asarray(lo, dtype=np.int64), n_ws, limit)
    return values, (decoder.range, decoder.value, decoder.pos)
