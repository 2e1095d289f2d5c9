"""Bitstream syntax and semantics of spec clause 6.1 and 6.2 (header checks 1 to 5)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import constants as K
from .errors import (BadMagic, DimensionsTooLarge, PayloadPastEnd, PayloadTooShort, ReservedFieldSet,
                     TrailingData, TruncatedHeader, UnsupportedVersion, ZeroDimension)
from .marks import informative

HEADER_SIZE = 27
_LAYOUT = struct.Struct(">4sBBHHB8sII")
assert _LAYOUT.size == HEADER_SIZE


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

    @informative
    def as_dict(self) -> dict:
        """Informative: the fields for `refdec info --json`."""
        return {"version": self.version, "flags": self.flags, "width": self.width, "height": self.height,
                "rate_index": self.rate_index, "model_id": self.model_id.hex(),
                "z_length": self.z_length, "y_length": self.y_length,
                "total_length": HEADER_SIZE + self.z_length + self.y_length}


def parse_header(stream: bytes) -> Header:
    """Clause 6.1 syntax and the clause 6.2 checks 1 to 5, in that order."""
    if len(stream) < HEADER_SIZE:
        raise TruncatedHeader(f"stream has {len(stream)} bytes, the header needs {HEADER_SIZE}", offset=len(stream))
    magic, version, flags, width, height, rate, model_id, z_len, y_len = _LAYOUT.unpack_from(stream)
    if magic != K.MAGIC:
        raise BadMagic(f"magic is {magic!r}, expected {K.MAGIC!r}", offset=0)
    if version != K.VERSION:
        raise UnsupportedVersion(f"version {version}, this decoder implements version {K.VERSION}", offset=4)
    if flags != 0:
        raise ReservedFieldSet(f"flags byte is {flags:#04x}, must be 0", offset=5)
    if width == 0 or height == 0:
        raise ZeroDimension(f"width x height is {width} x {height}", offset=6 if width == 0 else 8)
    if width > K.MAX_WIDTH or height > K.MAX_HEIGHT or width * height > K.MAX_PIXELS:
        field_offset = 8 if width <= K.MAX_WIDTH and height > K.MAX_HEIGHT else 6  # the field at fault
        raise DimensionsTooLarge(f"{width} x {height} exceeds the limits of clause 5.2 "
                                 f"({K.MAX_WIDTH} x {K.MAX_HEIGHT}, {K.MAX_PIXELS} samples)", offset=field_offset)
    if z_len < 4 or y_len < 4:
        which, off = ("z_length", 19) if z_len < 4 else ("y_length", 23)
        raise PayloadTooShort(f"{which} is {z_len if which == 'z_length' else y_len}, at least 4 needed", offset=off)
    end = HEADER_SIZE + z_len + y_len
    if end > len(stream):
        raise PayloadPastEnd(f"payloads end at byte {end} but the stream has {len(stream)} bytes", offset=len(stream))
    if end < len(stream):
        raise TrailingData(f"{len(stream) - end} bytes after the y payload", offset=end)
    return Header(version, flags, width, height, rate, model_id, z_len, y_len)


@informative
def write_header(header: Header) -> bytes:
    """Informative: the 27 header bytes of clause 6.1."""
    return _LAYOUT.pack(K.MAGIC, header.version, header.flags, header.width, header.height,
                        header.rate_index, header.model_id, header.z_length, header.y_length)
