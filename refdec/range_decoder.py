"""The range decoder of spec clause 8: 32-bit state, 16-bit frequencies, byte renormalisation."""

from __future__ import annotations

from bisect import bisect_right

from .errors import InvalidRangeState, PayloadTruncated, TrailingPayloadBytes

PROB_ONE = 1 << 16
RANGE_BOTTOM = 1 << 24
BIT_CDF = (0, 1 << 15)


class RangeDecoder:
    """State (R, V, P) of clause 8.1 over one payload.

    `base` is the payload's offset in the stream, used only to report byte offsets.
    """

    __slots__ = ("data", "length", "base", "range", "value", "pos")

    def __init__(self, payload: bytes, base: int = 0):
        """Clause 8.2: V = first 4 bytes big-endian, R = 2^32 - 1, P = 4."""
        self.data = payload
        self.length = len(payload)
        self.base = base
        self.value = int.from_bytes(payload[:4], "big")
        self.range = 0xFFFFFFFF
        self.pos = 4

    def decode_symbol(self, cdf, n: int) -> int:
        """Clause 8.3: decode one of n symbols with cumulative frequencies cdf[0..n-1]."""
        r = self.range >> 16
        v = self.value // r
        if v >= PROB_ONE:
            raise self.invalid_state(v)
        j = bisect_right(cdf, v, 0, n) - 1
        start = cdf[j]
        end = cdf[j + 1] if j + 1 < n else PROB_ONE
        self.value -= r * start
        self.range = r * (end - start)
        self.renormalise()
        return j

    def renormalise(self) -> None:
        """Clause 8.3, Renormalise: shift in payload bytes while R < 2^24."""
        while self.range < RANGE_BOTTOM:
            if self.pos == self.length:
                raise self.truncated()
            self.value = (self.value << 8) | self.data[self.pos]
            self.range <<= 8
            self.pos += 1

    def read_bit(self) -> int:
        """Clause 8.4: an equiprobable bit."""
        return self.decode_symbol(BIT_CDF, 2)

    def finish(self) -> None:
        """Clause 8.5: every byte of the payload must have been read."""
        if self.pos != self.length:
            raise TrailingPayloadBytes(f"{self.length - self.pos} bytes left after the payload's last symbol",
                                       offset=self.base + self.pos)

    def invalid_state(self, v: int) -> InvalidRangeState:
        """Non-normative: the clause 8.3 error for a code value v >= 2^16, at the current position."""
        return InvalidRangeState(f"code value {v} >= 2^16: outside the coded interval", offset=self.base + self.pos)

    def truncated(self) -> PayloadTruncated:
        """Non-normative: the clause 8.3 error for a renormalisation past the payload's end."""
        return PayloadTruncated("the range decoder needs a byte past the end of the payload",
                                offset=self.base + self.pos)
