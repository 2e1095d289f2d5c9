"""Informative: the range encoder of spec annex A.2 (LZMA-style carry propagation).

Not part of the decoding process. Its output is exactly what the clause 8
decoder reads: 4 bytes at initialisation plus one per renormalisation shift.
"""

from __future__ import annotations

PROB_ONE = 1 << 16
RANGE_BOTTOM = 1 << 24
MASK32 = 0xFFFFFFFF


class RangeEncoder:
    def __init__(self):
        self.low = 0
        self.range = MASK32
        self.cache = 0
        self.pending = 0
        self.out = bytearray()

    def encode(self, start: int, end: int) -> None:
        """Code the symbol interval [start, end) of 2^16."""
        if not 0 <= start < end <= PROB_ONE:
            raise ValueError(f"invalid symbol interval [{start}, {end})")
        r = self.range >> 16
        self.low += r * start
        self.range = r * (end - start)
        while self.range < RANGE_BOTTOM:
            self.range <<= 8
            self._shift_low()

    def encode_symbol(self, cdf, n: int, j: int) -> None:
        """Code symbol j of n with cumulative frequencies cdf[0..n-1] (cdf[n] = 2^16)."""
        self.encode(cdf[j], cdf[j + 1] if j + 1 < n else PROB_ONE)

    def write_bit(self, bit: int) -> None:
        self.encode(bit << 15, (bit + 1) << 15)

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low > MASK32:
            carry = self.low >> 32
            self.out.append((self.cache + carry) & 0xFF)
            self.out.extend([(0xFF + carry) & 0xFF] * self.pending)
            self.pending = 0
            self.cache = (self.low >> 24) & 0xFF
        else:
            self.pending += 1
        self.low = (self.low << 8) & MASK32

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift_low()
        if self.out[0] != 0:  # the first byte never receives a carry
            raise AssertionError("range encoder: first byte is not zero")
        return bytes(self.out[1:])
