"""The range decoder of spec clause 8: 32-bit state, 16-bit frequencies, byte renormalisation."""

from __future__ import annotations

from bisect import bisect_right

from .constants import PROB_BITS, RC_INIT_BYTES, RC_TOP
from .clauses import clause
from .errors import InvalidRangeState, PayloadTruncated, TrailingPayloadBytes

PROB_ONE = 1 << PROB_BITS  # 2^16: the frequencies of every DecodeSymbol total this
RANGE_BOTTOM = RC_TOP  # 2^24: Renormalise shifts bytes in while R is below it
BIT_CDF = (0, PROB_ONE >> 1)  # clause 8.4: C(0) = 0, C(1) = 2^15


class RangeDecoder:
    """State (R, V, P) of clause 8.1 over one payload.

    `base` is the payload's offset in the stream, used only to report byte offsets.
    """

    __slots__ = ("data", "length", "base", "range", "value", "pos")

    @clause("8.2", "Initialisation")
    def __init__(self, payload: bytes, base: int = 0):
        """V = the first 4 bytes big-endian, R = 2^32 - 1, P = 4."""
        self.data = payload
        self.length = len(payload)
        self.base = base
        self.value = int.from_bytes(payload[:RC_INIT_BYTES], "big")
        self.range = 0xFFFFFFFF
        self.pos = RC_INIT_BYTES

    @clause("8.3", "DecodeSymbol")
    def decode_symbol(self, C, n: int) -> int:
        """One of n symbols with cumulative frequencies C(0 .. n-1), C(n) = 2^16."""
        r = self.range >> 16
        v = self.value // r
        if v >= PROB_ONE:
            raise self.invalid_state(v)
        j = bisect_right(C, v, 0, n) - 1  # the largest j in 0 .. n - 1 with C(j) <= v (C increases)
        start = C[j]
        end = C[j + 1] if j + 1 < n else PROB_ONE
        self.value = self.value - r * start
        self.range = r * (end - start)
        self.renormalise()
        return j

    @clause("8.3", "DecodeSymbol")
    def renormalise(self) -> None:
        """Renormalise: shift in payload bytes while R < 2^24."""
        while self.range < RANGE_BOTTOM:
            if self.pos == self.length:
                raise self.truncated()
            self.value = (self.value << 8) + self.data[self.pos]
            self.range = self.range << 8
            self.pos = self.pos + 1

    @clause("8.4", "ReadBit")
    def read_bit(self) -> int:
        """An equiprobable bit."""
        return self.decode_symbol(BIT_CDF, 2)

    @clause("8.5", "End of payload")
    def finish(self) -> None:
        """Every byte of the payload must have been read."""
        if self.pos != self.length:
            raise TrailingPayloadBytes(f"{self.length - self.pos} bytes left after the payload's last symbol",
                                       offset=self.base + self.pos)

    @clause("8.3", "DecodeSymbol")
    def invalid_state(self, v: int) -> InvalidRangeState:
        """The error for a code value v >= 2^16, at the current position."""
        return InvalidRangeState(f"code value {v} >= 2^16: outside the coded interval", offset=self.base + self.pos)

    @clause("8.3", "DecodeSymbol")
    def truncated(self) -> PayloadTruncated:
        """The error for a renormalisation past the payload's end."""
        return PayloadTruncated("the range decoder needs a byte past the end of the payload",
                                offset=self.base + self.pos)
