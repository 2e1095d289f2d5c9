"""Symbol decoding with the escape path (spec clause 7.10)."""

from __future__ import annotations

from .errors import EscapeTooLong, LatentOutOfRange
from .range_decoder import RangeDecoder

MAX_ESCAPE_PREFIX = 14


def decode_value(decoder: RangeDecoder, cdf, n_w: int, lo: int, hi: int, limit: int) -> int:
    """Clause 7.10 DecodeValue: a window symbol, or the escape symbol and an Exp-Golomb payload."""
    j = decoder.decode_symbol(cdf, n_w + 1)
    if j < n_w:
        return lo + j
    return _decode_escape(decoder, lo, hi, limit)


def _decode_escape(decoder: RangeDecoder, lo: int, hi: int, limit: int) -> int:
    """Clause 7.10, escape branch: side bit, unary prefix k <= 14, k suffix bits."""
    side = decoder.read_bit()
    k = 0
    while decoder.read_bit():
        k += 1
        if k > MAX_ESCAPE_PREFIX:
            raise EscapeTooLong(f"escape prefix longer than {MAX_ESCAPE_PREFIX}",
                                offset=decoder.base + decoder.pos)
    v = 1
    for _ in range(k):
        v = 2 * v + decoder.read_bit()
    m = v - 1
    value = hi + 1 + m if side else lo - 1 - m
    if abs(value) > limit:
        raise LatentOutOfRange(f"escaped value {value} beyond +-{limit}", offset=decoder.base + decoder.pos)
    return value
