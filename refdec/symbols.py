"""Symbol decoding with the escape path (spec clause 7.10)."""

from __future__ import annotations


from .clauses import clause
from .constants import MAX_ESCAPE_PREFIX
from .errors import EscapeTooLong, LatentOutOfRange
from .range_decoder import RangeDecoder


@clause("7.10", "Symbol decoding and the escape path")
def decode_value(decoder: RangeDecoder, C, n_w: int, lo: int, hi: int, limit: int) -> int:
    """DecodeValue(C, n_w, lo, hi, LIMIT): a window symbol, or the escape symbol and an Exp-Golomb payload."""
    j = decoder.decode_symbol(C, n_w + 1)
    if j < n_w:
        return lo + j
    return decode_escape(decoder, lo, hi, limit)


@clause("7.10", "Symbol decoding and the escape path")
def decode_escape(decoder: RangeDecoder, lo: int, hi: int, limit: int) -> int:
    """The escape branch of DecodeValue: side bit, unary prefix k <= 14, k suffix bits."""
    side = decoder.read_bit()                 # 0: below the window, 1: above
    k = 0
    while decoder.read_bit() == 1:
        k = k + 1
        if k > MAX_ESCAPE_PREFIX:
            raise EscapeTooLong(f"escape prefix longer than {MAX_ESCAPE_PREFIX}",
                                offset=decoder.base + decoder.pos)
    v = 1
    for _ in range(k):
        v = 2 * v + decoder.read_bit()
    m = v - 1                                 # Exp-Golomb order 0
    value = lo - 1 - m if side == 0 else hi + 1 + m
    if abs(value) > limit:
        raise LatentOutOfRange(f"escaped value {value} beyond +-{limit}", offset=decoder.base + decoder.pos)
    return value
