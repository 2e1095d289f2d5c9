"""Bitstream syntax and semantics of spec clause 6.1 and 6.2 (header checks 1 to 5)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .constants import MAGIC, MAX_HEIGHT, MAX_PIXELS, MAX_WIDTH, RC_INIT_BYTES, VERSION
from .errors import (BadMagic, DimensionsTooLarge, PayloadPastEnd, PayloadTooShort, ReservedFieldSet,
                     TrailingData, TruncatedHeader, UnsupportedVersion, ZeroDimension)
from .clauses import clause, informative

HEADER_SIZE = 27
# Clause 6.1: magic, version, flags, width, height, rate_index, model_id, z_length, y_length; big-endian.
HEADER_LAYOUT = struct.Struct(">4sBBHHB8sII")
assert HEADER_LAYOUT.size == HEADER_SIZE


@dataclass(frozen=True)
class Header:
    """The fields of the clause 6.1 header (the magic is checked, not kept)."""

    version: int
    flags: int
    width: int
    height: int
    rate_index: int
    model_id: bytes
    z_length: int
    y_length: int

    @property
    def z_offset(self) -> int:
        return HEADER_SIZE

    @property
    def y_offset(self) -> int:
        return HEADER_SIZE + self.z_length

    @informative("the fields for `refdec info --json`")
    def as_dict(self) -> dict:
        return {"version": self.version, "flags": self.flags, "width": self.width, "height": self.height,
                "rate_index": self.rate_index, "model_id": self.model_id.hex(),
                "z_length": self.z_length, "y_length": self.y_length,
                "total_length": HEADER_SIZE + self.z_length + self.y_length}


@clause("6.2", "Semantics and checks")
def parse_header(stream: bytes) -> Header:
    """The clause 6.1 syntax and the clause 6.2 checks 1 to 5, in that order."""
    if len(stream) < HEADER_SIZE:
        raise TruncatedHeader(f"stream has {len(stream)} bytes, the header needs {HEADER_SIZE}", offset=len(stream))
    magic, version, flags, width, height, rate, model_id, z_len, y_len = HEADER_LAYOUT.unpack_from(stream)
    if magic != MAGIC:
        raise BadMagic(f"magic is {magic!r}, expected {MAGIC!r}", offset=0)
    if version != VERSION:
        raise UnsupportedVersion(f"version {version}, this decoder implements version {VERSION}", offset=4)
    if flags != 0:
        raise ReservedFieldSet(f"flags byte is {flags:#04x}, must be 0", offset=5)
    if width == 0 or height == 0:
        raise ZeroDimension(f"width x height is {width} x {height}", offset=6 if width == 0 else 8)
    if width > MAX_WIDTH or height > MAX_HEIGHT or width * height > MAX_PIXELS:
        field_offset = 8 if width <= MAX_WIDTH and height > MAX_HEIGHT else 6  # informative: the field at fault
        raise DimensionsTooLarge(f"{width} x {height} exceeds the limits of clause 5.2 "
                                 f"({MAX_WIDTH} x {MAX_HEIGHT}, {MAX_PIXELS} samples)", offset=field_offset)
    if z_len < RC_INIT_BYTES or y_len < RC_INIT_BYTES:
        which, off = ("z_length", 19) if z_len < RC_INIT_BYTES else ("y_length", 23)  # informative: message
        raise PayloadTooShort(f"{which} is {z_len if which == 'z_length' else y_len}, at least {RC_INIT_BYTES} needed",
                              offset=off)
    end = HEADER_SIZE + z_len + y_len
    if end > len(stream):
        raise PayloadPastEnd(f"payloads end at byte {end} but the stream has {len(stream)} bytes", offset=len(stream))
    if end < len(stream):
        raise TrailingData(f"{len(stream) - end} bytes after the y payload", offset=end)
    return Header(version, flags, width, height, rate, model_id, z_len, y_len)
