"""The model-parameter file of spec clause 9: loading and validation.

parse_model runs the checks of clause 9.4 in its order and reports the first failure:

1. format [ModelFormatError]: the ZIP records (clause 9.1.1), the header member (clauses 9.1.2,
   9.1.3 and 9.2), every other member's .npy header with its dtype and number of dimensions
   (clauses 9.1.3 and 9.3) and every member's data and CRC-32 (clause 9.1.2);
2. shapes [ModelShapeError]: the channel limits of clause 5.2, then shape consistency;
3. values [ModelValueError];
4. the accumulator bound of clause 9.5 [AccumulatorOverflowRisk].

What it costs is bounded by the file, not by what the file declares (clause 9.1.4): nothing is
inflated before the ZIP records pass (sizes, names, methods, flags, local against central
records); of the members other than header.npy only the .npy header is inflated before the
shapes are checked; inflation is streamed in pieces of 1 MiB and stopped at the declared
size; CRC-32s are verified without keeping the data when a shape error is to be reported;
arrays are built, and converted to int64, only once the shapes pass.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import (ACCUMULATOR_LIMIT, ACT16_MAX, CONTEXT_INPUT_MAX, MAX_CHANNELS, MAX_INV_GAIN_SHIFT, MAX_RATES,
                        MAX_SHIFT, NUM_MIXTURES, Z_MAX)
from .architecture import BY_NAME, CONTEXT, GATHER, HYPER_SYNTHESIS, LAYER_NAMES, OUTPUT_LAYER, SYNTHESIS, causal_mask
from .clauses import clause, informative
from .errors import AccumulatorOverflowRisk, ModelFormatError, ModelShapeError, ModelValueError, UnknownModel

# Clause 9.1.1: container limits, checked from the ZIP records before anything is inflated.
MAX_MEMBERS = 256  # central-directory records
MAX_MEMBER_BYTES = 1 << 28  # one member, uncompressed
MAX_TOTAL_MEMBER_BYTES = 1 << 29  # all members together, uncompressed
MAX_HEADER_BYTES = 1 << 20  # the member header.npy, uncompressed
# A member of u bytes has at most u + (u >> DEFLATE_GROWTH_SHIFT) + DEFLATE_GROWTH_BYTES compressed
# bytes: more than zlib writes at its default settings, and it bounds the file by its members.
DEFLATE_GROWTH_SHIFT = 10
DEFLATE_GROWTH_BYTES = 1024
MAX_MODEL_FILE_BYTES = (1 << 29) + (1 << 24)  # informative: larger than any valid file (clause 9.1's note)
# Clause 9.1.3 and 9.2.
NPY_MAGIC = b"\x93NUMPY"
NPY_PREAMBLE = 10  # magic, version, HEADER_LEN
MAX_JSON_DEPTH = 32
# Clause 5.2 and 9.2 to 9.4: limits of the header fields and arrays.
MAX_INV_GAIN = 65536
MAX_Z_COUNT = 1024
REQUIRED_KEYS = ("format", "format_version", "profile", "weight_bits", "latent_channels", "hyper_channels",
                 "num_rates", "inv_gain_shift", "synthesis_input_clip", "clip")
OPTIONAL_KEYS = ("description", "provenance", "act_exponents")
HEADER_KEYS = set(REQUIRED_KEYS) | set(OPTIONAL_KEYS)
INTEGER_KEYS = ("format_version", "weight_bits", "latent_channels", "hyper_channels", "num_rates",
                "inv_gain_shift", "synthesis_input_clip")
PROFILES = {"W16A16": 16, "W8A16": 8}
# Clause 9.1.3: the descr strings allowed for each dtype of clause 9.3 (and nothing else).
DESCRS = {np.dtype(np.uint8): ("|u1", "<u1"), np.dtype(np.int8): ("|i1", "<i1"),
          np.dtype(np.int16): ("<i2",), np.dtype(np.int32): ("<i4",)}
# Reading (not a limit): streamed inflation and file hashing work in pieces of this size.
CHUNK = 1 << 20


@dataclass(eq=False)
class Layer:
    """One layer of clause 5.1 as loaded: the clause 9.3 arrays (int64) and its clip bound (clause 9.2)."""

    name: str
    weight: np.ndarray  # int64 (out, in, k, k)
    bias: np.ndarray  # int64 (out,)
    shift: np.ndarray  # int64 (out,)
    clip: int
    kernel: int
    depth_to_space: bool
    leaky: bool


@dataclass(eq=False)
class Model:
    """A model file that passed clause 9.4: header (clause 9.2), arrays (clause 9.3), model id (clause 9.1)."""

    header: dict
    layers: dict[str, Layer]
    inv_gain: np.ndarray  # int64 (R, C_y)
    z_lo: np.ndarray
    z_count: np.ndarray
    z_cdf: np.ndarray
    model_id: bytes
    path: str = ""

    @property
    def latent_channels(self) -> int:
        return self.header["latent_channels"]

    @property
    def hyper_channels(self) -> int:
        return self.header["hyper_channels"]

    @property
    def num_rates(self) -> int:
        return self.header["num_rates"]


@clause("9.1", "Container")
def model_id_of(data: bytes) -> bytes:
    """Clause 9.1: the first 8 bytes of the SHA-256 digest of the file."""
    return hashlib.sha256(data).digest()[:8]


@informative("formats a value from the file for an error message")
def _show(value) -> str:
    """Informative: a value from the file for an error message, kept to one short line (a long
    string or list is cut, a huge integer is named by its size)."""
    if isinstance(value, tuple):
        inner = ", ".join(_show(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if type(value) is int and value.bit_length() > 64:
        return f"{'-' if value < 0 else ''}<{value.bit_length()}-bit integer>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- Clause 9.1.1: ZIP records ---------------------------------------------------------------

EOCD = struct.Struct("<IHHHHIIH")  # end of central directory record, 22 bytes
CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory record, 46 bytes + name, extra, comment
LOCAL = struct.Struct("<IHHHHHIIIHH")  # local file header, 30 bytes + name, extra
EOCD_SIGNATURE, CENTRAL_SIGNATURE, LOCAL_SIGNATURE = 0x06054B50, 0x02014B50, 0x04034B50
STORED, DEFLATED = 0, 8
ALLOWED_FLAGS = 0x0806  # bits 1 and 2 (deflate options) and 11 (UTF-8 names)
ZIP64_EXTRA = 0x0001
ZIP64_SIZES = 0xFFFFFFFF


@dataclass(frozen=True)
class _Record:
    """Clause 9.1.1: one member as its ZIP records give it."""

    name: str
    method: int
    crc: int
    size: int  # uncompressed bytes (central record)
    start: int  # offset of the compressed data in the file
    length: int  # compressed bytes


@clause("9.3", "Arrays")
def _member_specs(profile: str) -> list[tuple[str, np.dtype, int]]:
    """Clause 9.3: (member name, dtype, number of dimensions) of every array, in table order."""
    wdtype = np.dtype(np.int16 if PROFILES[profile] == 16 else np.int8)
    specs = []
    for name in LAYER_NAMES:
        specs += [(f"{name}.weight", wdtype, 4), (f"{name}.bias", np.dtype(np.int32), 1),
                  (f"{name}.shift", np.dtype(np.uint8), 1)]
    specs += [("inv_gain", np.dtype(np.int32), 2), ("z_lo", np.dtype(np.int32), 1),
              ("z_count", np.dtype(np.int32), 1), ("z_cdf", np.dtype(np.int32), 2)]
    return specs


# Clause 9.1.1 and 9.3: the member names, in table order (header.npy first).
MEMBER_NAMES = ("header.npy",) + tuple(f"{name}.npy" for name, _, _ in _member_specs("W16A16"))


@clause("9.1.1", "ZIP records")
def max_deflated_size(member_size: int) -> int:
    """Clause 9.1.1: the most compressed bytes a member of `member_size` uncompressed bytes may have."""
    return member_size + (member_size >> DEFLATE_GROWTH_SHIFT) + DEFLATE_GROWTH_BYTES


@clause("9.1.1", "ZIP records")
def _zip_records(data, where: str) -> dict[str, _Record]:
    """Clause 9.1.1: the end record, the central directory and every local header, checked
    against each other and against the limits before anything is inflated. Returns the members
    by name."""

    def bad(message):
        return ModelFormatError(f"{message} (clause 9.1.1)", where=where)

    end = len(data) - EOCD.size
    if end < 0 or EOCD.unpack_from(data, end)[0] != EOCD_SIGNATURE or EOCD.unpack_from(data, end)[7] != 0:
        raise bad("not a ZIP archive: its last 22 bytes are not an end-of-central-directory record "
                  "without comment")
    _, disk, cd_disk, count_here, count, cd_size, cd_offset, _ = EOCD.unpack_from(data, end)
    if disk or cd_disk or count_here != count:
        raise bad("a ZIP archive split over several disks")
    if count > MAX_MEMBERS:
        raise bad(f"{count} members, at most {MAX_MEMBERS} allowed")
    if cd_offset + cd_size != end:
        raise bad(f"the central directory ({cd_size} bytes at offset {cd_offset}) does not end where the "
                  f"end-of-central-directory record begins (offset {end})")
    records: dict[str, _Record] = {}
    pos, next_local, total = cd_offset, 0, 0
    for i in range(count):
        if pos + CENTRAL.size > end or CENTRAL.unpack_from(data, pos)[0] != CENTRAL_SIGNATURE:
            raise bad(f"central-directory record {i} is missing or malformed")
        (_, _, _, flags, method, _, _, crc, length, member_size, name_len, extra_len, comment_len, disk_start, _, _,
         local) = CENTRAL.unpack_from(data, pos)
        raw_name = bytes(data[pos + CENTRAL.size: pos + CENTRAL.size + name_len])
        pos += CENTRAL.size + name_len + extra_len + comment_len
        if pos > end:
            raise bad(f"central-directory record {i} runs past the central directory")
        name = raw_name.decode("utf-8", "replace")
        what = f"member {_show(name)}"
        if not name.endswith(".npy"):
            raise bad(f"{what} is not a .npy file")
        if name not in MEMBER_NAMES:
            raise bad(f"unexpected {what}: not a member of clause 9.3")
        if name in records:
            raise bad(f"duplicate member names [{_show(name)}]")
        if flags & 1:
            raise bad(f"{what} is encrypted")
        if flags & 8:
            raise bad(f"{what} has a data descriptor (general-purpose flag bit 3)")
        if flags & ~ALLOWED_FLAGS:
            raise bad(f"{what} has general-purpose flags 0x{flags:04x}; only bits 1, 2 and 11 are allowed")
        if method not in (STORED, DEFLATED):
            raise bad(f"{what} has compression method {method}; only 0 (stored) and 8 (deflate) are allowed")
        if member_size > MAX_MEMBER_BYTES:
            raise bad(f"{what} is {member_size} bytes, at most {MAX_MEMBER_BYTES} allowed")
        if name == "header.npy" and member_size > MAX_HEADER_BYTES:
            raise bad(f"{what} is {member_size} bytes, at most {MAX_HEADER_BYTES} allowed")
        total += member_size
        if total > MAX_TOTAL_MEMBER_BYTES:
            raise bad(f"the members are more than {MAX_TOTAL_MEMBER_BYTES} bytes together")
        if method == STORED and length != member_size:
            raise bad(f"{what} is stored with {length} compressed and {member_size} uncompressed bytes")
        if length > max_deflated_size(member_size):
            raise bad(f"{what} has {length} compressed bytes for {member_size} uncompressed, at most "
                      f"{max_deflated_size(member_size)} allowed")
        if disk_start or local != next_local:
            raise bad(f"{what}: its local header is at offset {local}, expected {next_local} (members follow "
                      "one another from the start of the file, in central-directory order)")
        start = _local_header(data, local, cd_offset, raw_name, (flags, method, crc, length, member_size), bad)
        next_local = start + length
        if next_local > cd_offset:
            raise bad(f"{what}: its data runs into the central directory")
        records[name] = _Record(name, method, crc, member_size, start, length)
    if pos != end:
        raise bad(f"the central directory has {end - pos} bytes after its {count} records")
    if next_local != cd_offset:
        raise bad(f"{cd_offset - next_local} bytes between the last member and the central directory")
    for name in MEMBER_NAMES:
        if name not in records:
            raise bad(f"member {name} is missing")
    return records


@clause("9.1.1", "ZIP records")
def _local_header(data, local: int, cd_offset: int, raw_name: bytes, central: tuple, bad) -> int:
    """Clause 9.1.1: the local header at `local` repeats the central record's name, flags, method,
    CRC-32 and sizes (the sizes may instead be 0xFFFFFFFF with a ZIP64 extra field that holds
    them). Returns the offset of the member's compressed data."""
    name = _show(raw_name.decode("utf-8", "replace"))
    if local + LOCAL.size > cd_offset or LOCAL.unpack_from(data, local)[0] != LOCAL_SIGNATURE:
        raise bad(f"member {name}: no local header at offset {local}")
    _, _, flags, method, _, _, crc, length, size, name_len, extra_len = LOCAL.unpack_from(data, local)
    start = local + LOCAL.size + name_len + extra_len
    if start > cd_offset:
        raise bad(f"member {name}: its local header runs into the central directory")
    if bytes(data[local + LOCAL.size: local + LOCAL.size + name_len]) != raw_name:
        raise bad(f"member {name}: its local header names another member")
    if (length, size) == (ZIP64_SIZES, ZIP64_SIZES):
        extra = data[local + LOCAL.size + name_len: start]
        p = 0
        while p + 4 <= len(extra) and struct.unpack_from("<H", extra, p)[0] != ZIP64_EXTRA:
            p += 4 + struct.unpack_from("<H", extra, p + 2)[0]
        if p + 4 > len(extra) or struct.unpack_from("<H", extra, p + 2)[0] < 16 or p + 20 > len(extra):
            raise bad(f"member {name}: local sizes 0xFFFFFFFF without a ZIP64 extra field holding them")
        size, length = struct.unpack_from("<QQ", extra, p + 4)
    if (flags, method, crc, length, size) != central:
        raise bad(f"member {name}: its local header and its central-directory record disagree "
                  "(flags, method, CRC-32 or sizes)")
    return start


# --- Clause 9.1.2: member data ---------------------------------------------------------------

class _Archive:
    """Clause 9.1.2: the members of a model file whose ZIP records passed, read on demand."""

    @clause("9.1.1", "ZIP records")
    def __init__(self, data, where: str):
        self.view = memoryview(data)
        self.where = where
        self.records = _zip_records(self.view, where)
        self.verified: set[str] = set()

    @clause("9.1.2", "Member data")
    def _pieces(self, name: str):
        """Clause 9.1.2: the member's uncompressed bytes in pieces of at most CHUNK bytes: a stored
        member's data as it is; a deflate stream inflated piece by piece and stopped as soon as it
        gives more than the declared size. The stream must end exactly with its compressed data."""
        rec = self.records[name]
        data = self.view[rec.start: rec.start + rec.length]
        if rec.method == STORED:
            for i in range(0, rec.length, CHUNK):
                yield data[i: i + CHUNK]
            return
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        pos = produced = 0
        while not inflater.eof:
            if inflater.unconsumed_tail:
                piece = inflater.unconsumed_tail
            else:
                piece = data[pos: pos + CHUNK]
                pos += len(piece)
            try:
                out = inflater.decompress(piece, CHUNK)
            except zlib.error as exc:
                raise self.bad(name, f"its deflate data is corrupt ({exc})") from None
            if not out and not piece:
                raise self.bad(name, "its deflate stream ends before its last block")
            produced += len(out)
            if produced > rec.size:
                raise self.bad(name, f"it inflates to more than its declared {rec.size} bytes")
            yield out
        if inflater.unused_data or pos < rec.length:
            raise self.bad(name, "bytes follow the end of its deflate stream")

    @clause("9.1.2", "Member data")
    def bad(self, name: str, message: str) -> ModelFormatError:
        """Clause 9.1.2: the error for a member whose data is not what its records declare."""
        return ModelFormatError(f"member {name}: {message} (clause 9.1.2)", where=self.where)

    @clause("9.1.2", "Member data")
    def prefix(self, name: str, count: int) -> bytes:
        """Clause 9.1.2: the member's first `count` bytes (fewer if it is shorter), inflating no
        more than that; the rest of the member is verified by read()."""
        out = bytearray()
        for piece in self._pieces(name):
            out += piece[: count - len(out)]
            if len(out) >= count:
                break
        return bytes(out)

    @clause("9.1.2", "Member data")
    def read(self, name: str, keep: bool = True):
        """Clause 9.1.2: the member's whole data (None unless keep), which must have exactly the
        declared size and CRC-32."""
        rec = self.records[name]
        out = bytearray(rec.size) if keep else None
        got = crc = 0
        for piece in self._pieces(name):
            if keep:
                out[got: got + len(piece)] = piece
            crc = zlib.crc32(piece, crc)
            got += len(piece)
        if got != rec.size:
            raise self.bad(name, f"it inflates to {got} bytes, its ZIP records declare {rec.size}")
        if crc != rec.crc:
            raise self.bad(name, f"CRC-32 {crc:08x} of its data, its ZIP records declare {rec.crc:08x}")
        self.verified.add(name)
        return out

    @clause("9.1.2", "Member data")
    def verify_all(self) -> None:
        """Clause 9.1.2 (and 9.4 item 1): every member's data and CRC-32, without keeping it."""
        for name in MEMBER_NAMES:
            if name not in self.verified:
                self.read(name, keep=False)


# --- Clause 9.1.3: array members (.npy) --------------------------------------------------------

@dataclass(frozen=True)
class _Npy:
    """Clause 9.1.3: a member's .npy header: its descr string, its shape, where its data starts."""

    name: str
    descr: str
    shape: tuple
    offset: int


NPY_CHAR = rb"[\x20\x21\x23-\x26\x28-\x5b\x5d-\x7e]"  # printable ASCII but ' " and backslash
NPY_TOKEN = re.compile(rb" *(?:([{}():,])|'(" + NPY_CHAR + rb"*)'|\"(" + NPY_CHAR + rb"*)\"|(False|True)|(0|[1-9][0-9]*))")


@clause("9.1.3", "Array members")
def _npy_tokens(text: bytes):
    """Clause 9.1.3: the tokens of a .npy header text (without its final newline), or None when
    it holds anything else: punctuation, quoted strings of printable ASCII without quote or
    backslash, False, True, decimal integers; spaces before, between and after them."""
    text = text.rstrip(b" ")
    tokens, pos = [], 0
    while pos < len(text):
        m = NPY_TOKEN.match(text, pos)
        if m is None:
            return None
        punct, single, double, word, number = m.groups()
        string = single if single is not None else double
        tokens.append(("p", punct.decode()) if punct else ("s", string.decode()) if string is not None else
                      ("w", word.decode()) if word else ("i", int(number) if len(number) <= 4000 else 10 ** 4000))
        pos = m.end()
    return tokens


@clause("9.1.3", "Array members")
def _npy_header(raw: bytes, member_size: int, filename: str, where: str) -> _Npy:
    """Clause 9.1.3: the .npy preamble and header dictionary of a member from its first bytes:
    magic, version 1.0, HEADER_LEN, then exactly the keys descr (a string), fortran_order (False)
    and shape (a tuple of integers), ending in a newline. Python literals are not evaluated."""

    def bad(message):
        return ModelFormatError(f"member {filename}: {message} (clause 9.1.3)", where=where)

    if len(raw) < NPY_PREAMBLE or raw[:6] != NPY_MAGIC:
        raise bad("not a .npy array (no .npy magic)")
    if raw[6:8] != b"\x01\x00":
        raise bad(f".npy format version {raw[6]}.{raw[7]}; only version 1.0 is allowed")
    end = NPY_PREAMBLE + struct.unpack_from("<H", raw, 8)[0]
    if member_size < end:
        raise bad("truncated .npy header")
    text = raw[NPY_PREAMBLE:end]
    tokens = _npy_tokens(text[:-1]) if text.endswith(b"\n") else None
    entries = _npy_entries(tokens) if tokens else None
    if entries is None:
        raise bad("malformed .npy header (a dictionary of descr, fortran_order and shape expected)")
    descr, fortran_order, shape = entries["descr"], entries["fortran_order"], entries["shape"]
    if fortran_order != "False":
        raise bad("array in Fortran order; C order (fortran_order False) is required")
    return _Npy(name=filename[:-4], descr=descr, shape=shape, offset=end)


@clause("9.1.3", "Array members")
def _npy_entries(tokens: list) -> dict | None:
    """Clause 9.1.3: the header dictionary from its tokens: '{', three entries KEY ':' VALUE
    separated by ',' (an optional ',' after the last), '}'; the keys descr (value a string),
    fortran_order (False or True) and shape (a tuple of integers: '(' ')', '(' N ',' ')', or
    two or more integers separated by ',' with an optional ',' after the last), each once."""
    if tokens[0] != ("p", "{") or tokens[-1] != ("p", "}"):
        return None
    entries, i = {}, 1
    while i < len(tokens) - 1:
        key = tokens[i]
        if key[0] != "s" or key[1] not in ("descr", "fortran_order", "shape") or key[1] in entries \
                or tokens[i + 1] != ("p", ":"):
            return None
        i += 2
        if key[1] == "shape":
            if tokens[i] != ("p", "("):
                return None
            dims, i = [], i + 1
            while tokens[i][0] == "i":
                dims.append(tokens[i][1])
                if tokens[i + 1] == ("p", ","):
                    i += 1
                elif tokens[i + 1] != ("p", ")") or len(dims) == 1:
                    return None
                i += 1
            if tokens[i] != ("p", ")"):
                return None
            entries["shape"] = tuple(dims)
        elif tokens[i][0] != ("s" if key[1] == "descr" else "w"):
            return None
        else:
            entries[key[1]] = tokens[i][1]
        i += 1
        if tokens[i] == ("p", ","):
            i += 1
        elif i != len(tokens) - 1:
            return None
    return entries if len(entries) == 3 else None


@clause("9.1.3", "Array members")
def _npy_check(npy: _Npy, dtype: np.dtype, ndim: int, member_size: int, where: str) -> None:
    """Clause 9.1.3 and 9.3: the member's descr is one of those of its dtype, it has `ndim`
    dimensions, each at most 2^28, and its data fills the rest of the member exactly."""

    def bad(message):
        return ModelFormatError(f"member {npy.name}.npy: {message} (clause 9.1.3, 9.3)", where=where)

    if npy.descr not in DESCRS[dtype]:
        order = npy.descr[:1]
        if order == ">":
            raise bad(f"big-endian dtype {_show(npy.descr)}; little-endian ('<') is required")
        if npy.descr[1:] in (d[1:] for d in DESCRS[dtype]) and order in ("=", "|", ""):
            raise bad(f"dtype {_show(npy.descr)} without an explicit little-endian byte order '<'")
        raise bad(f"dtype {_show(npy.descr)}; {' or '.join(map(repr, DESCRS[dtype]))} ({dtype.name}) expected")
    if len(npy.shape) != ndim:
        raise bad(f"{len(npy.shape)}-D, {ndim}-D {dtype.name} expected")
    if any(d > MAX_MEMBER_BYTES for d in npy.shape):
        raise bad(f".npy shape {_show(npy.shape)} has a dimension above 2^28")
    need = math.prod(npy.shape) * dtype.itemsize
    if member_size - npy.offset != need:
        raise bad(f"shape {_show(npy.shape)} needs {need} bytes of data, the member has {member_size - npy.offset}")


@clause("9.1.3", "Array members")
def _npy_array(data: bytearray, npy: _Npy, dtype: np.dtype) -> np.ndarray:
    """Clause 9.1.3: the array of a checked member from its data (C order, little-endian), as int64."""
    count = math.prod(npy.shape)
    return np.frombuffer(data, dtype=dtype.newbyteorder("<"), count=count, offset=npy.offset
                         ).reshape(npy.shape).astype(np.int64)


# --- Clause 9.2: header ----------------------------------------------------------------------

@clause("9.2", "Header")
def _json_object(pairs, where):
    """Clause 9.2: a JSON object without duplicate keys (at any level)."""
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ModelFormatError(f"duplicate key {_show(key)} in the header JSON (clause 9.2)", where=where)
        obj[key] = value
    return obj


@clause("9.2", "Header")
def _json_constant(name, where):
    """Clause 9.2: NaN and Infinity are not JSON."""
    raise ModelFormatError(f"header JSON contains {name}, which is not JSON", where=where)


JSON_INT_EXACT_DIGITS = 4000  # below Python's default int-from-string limit (4300 digits)


@clause("9.2", "Header")
def _json_int(text: str) -> int:
    """Clause 9.2: a JSON integer of any length is an integer. Up to 4000 digits it is converted
    exactly; a longer one is beyond every range of clause 9.4 (and of clause 5.2), so it is
    represented by +-10^4000, which fails exactly the checks that the true value fails (and
    avoids Python's limit on converting long digit strings, which would be a ValueError)."""
    if len(text) - text.startswith("-") <= JSON_INT_EXACT_DIGITS:
        return int(text)
    return -(10 ** JSON_INT_EXACT_DIGITS) if text.startswith("-") else 10 ** JSON_INT_EXACT_DIGITS


@clause("9.2", "Header")
def _json_depth_and_strings(value, where) -> None:
    """Clause 9.2: objects and arrays nested at most MAX_JSON_DEPTH deep (the header object is
    depth 1), and every string (keys included) Unicode text (no unpaired surrogate escape)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ModelFormatError(f"header JSON nests objects and arrays more than {MAX_JSON_DEPTH} deep "
                                       "(clause 9.2)", where=where)
            children = list(item.items()) if isinstance(item, dict) else [(None, v) for v in item]
            for key, child in children:
                if key is not None:
                    stack.append((key, depth))
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ModelFormatError(f"header JSON string {_show(item)} holds an unpaired surrogate escape "
                                       "(clause 9.2)", where=where) from None


@clause("9.2", "Header")
def _is_integer(value) -> bool:
    """Clause 9.2: a JSON number without fraction or exponent (json gives int; not bool, not float)."""
    return type(value) is int


@clause("9.2", "Header")
def _parse_header(archive: _Archive, where) -> dict:
    """Clause 9.2 and 9.4 item 1: the member header.npy (a 1-D uint8 array), JSON syntax, key
    set, types, format, format_version, profile."""
    raw = archive.read("header.npy")
    npy = _npy_header(raw, len(raw), "header.npy", where)
    if npy.descr not in DESCRS[np.dtype(np.uint8)] or len(npy.shape) != 1:
        raise ModelFormatError("header.npy must be a 1-D uint8 array (clause 9.2)", where=where)
    if len(raw) - npy.offset != npy.shape[0]:
        raise ModelFormatError(f"member header.npy: shape {_show(npy.shape)} needs {npy.shape[0]} bytes of data, "
                               f"the member has {len(raw) - npy.offset} (clause 9.1.3)", where=where)
    try:
        text = raw[npy.offset:].decode("utf-8")
        header = json.loads(text, object_pairs_hook=lambda pairs: _json_object(pairs, where), parse_int=_json_int,
                            parse_constant=lambda name: _json_constant(name, where))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelFormatError(f"header is not UTF-8 JSON ({_show(str(exc))})", where=where) from None
    if not isinstance(header, dict):
        raise ModelFormatError("header JSON must be an object", where=where)
    _json_depth_and_strings(header, where)
    unknown = sorted(set(header) - HEADER_KEYS)
    missing = sorted(set(REQUIRED_KEYS) - set(header))
    if unknown:
        raise ModelFormatError(f"unknown header keys {_show(unknown)}", where=where)
    if missing:
        raise ModelFormatError(f"missing header keys {missing}", where=where)
    # Types.
    for key in ("format", "profile", "description"):
        if key in header and not isinstance(header[key], str):
            raise ModelFormatError(f"header field {_show(key)} must be a string, found {_show(header[key])}", where=where)
    for key in INTEGER_KEYS:
        if not _is_integer(header[key]):
            raise ModelFormatError(f"header field {_show(key)} must be an integer (clause 9.2), found {_show(header[key])}",
                                   where=where)
    clips = header["clip"]
    if not isinstance(clips, dict) or set(clips) != set(LAYER_NAMES):
        raise ModelFormatError("header 'clip' must map exactly the 20 layer names of clause 5.1", where=where)
    for name in LAYER_NAMES:
        if not _is_integer(clips[name]):
            raise ModelFormatError(f"clip of {name!r} must be an integer (clause 9.2), found {_show(clips[name])}",
                                   where=where)
    if "provenance" in header and not isinstance(header["provenance"], dict):
        raise ModelFormatError(f"header field 'provenance' must be an object, found {_show(header['provenance'])}",
                               where=where)
    if "act_exponents" in header:
        exponents = header["act_exponents"]
        if not isinstance(exponents, dict):
            raise ModelFormatError(f"header field 'act_exponents' must be an object, found {_show(exponents)}",
                                   where=where)
        for key, value in exponents.items():
            if not _is_integer(value):
                raise ModelFormatError(f"act_exponents[{_show(key)}] must be an integer (clause 9.2), found {_show(value)}",
                                       where=where)
    # Values that make the file another format.
    if header["format"] != "refdec-model":
        raise ModelFormatError(f"format is {_show(header['format'])}, expected 'refdec-model'", where=where)
    if header["format_version"] != 1:
        raise ModelFormatError(f"format_version {_show(header['format_version'])} is not supported", where=where)
    if header["profile"] not in PROFILES:
        raise ModelFormatError(f"unknown profile {_show(header['profile'])}", where=where)
    return header


@clause("9.4", "Validation")
def _array_headers(archive: _Archive, header, where) -> dict[str, _Npy]:
    """Clause 9.4 item 1: the .npy header of every member of clause 9.3 with exactly its dtype
    (the profile's weight dtype) and number of dimensions, its data length matching its shape.
    Only the first bytes of each member are inflated."""
    npys = {}
    for name, dtype, ndim in _member_specs(header["profile"]):
        filename = f"{name}.npy"
        size = archive.records[filename].size
        npy = _npy_header(archive.prefix(filename, NPY_PREAMBLE + 0xFFFF), size, filename, where)
        _npy_check(npy, dtype, ndim, size, where)
        npys[name] = npy
    return npys


# --- Clause 9.4 item 2: shapes [ModelShapeError] ---------------------------------------------

@clause("9.4", "Validation")
def _expect_shape(name, shape, expected, where):
    """Clause 9.4 item 2: ModelShapeError unless the member has exactly this shape."""
    if tuple(shape) != tuple(expected):
        raise ModelShapeError(f"{name} has shape {_show(tuple(shape))}, expected {_show(tuple(expected))}", where=where)


@clause("9.4", "Validation")
def _check_shapes(header, shapes: dict[str, tuple], z_count, where):
    """Clause 9.4 item 2: C_y, C_z and every layer's outputs within clause 5.2 first, then the
    consistency of every shape. Only the .npy shapes are looked at, and the values of z_count
    (z_count() reads them) for the columns of z_cdf."""
    cy, cz = header["latent_channels"], header["hyper_channels"]
    for key in ("latent_channels", "hyper_channels"):
        if not 1 <= header[key] <= MAX_CHANNELS:
            raise ModelShapeError(f"header field {_show(key)} = {_show(header[key])} outside 1..{MAX_CHANNELS} (clause 5.2)",
                                  where=where)
    for name in LAYER_NAMES:
        out = shapes[f"{name}.weight"][0]
        if not 1 <= out <= MAX_CHANNELS:
            raise ModelShapeError(f"{name} has {out} outputs (weight dimension 0, before depth-to-space), "
                                  f"outside 1..{MAX_CHANNELS} (clause 5.2)", where=where)

    def chain(spec_list, in_channels):
        for spec in spec_list:
            out = shapes[f"{spec.name}.weight"][0]
            _expect_shape(f"{spec.name}.weight", shapes[f"{spec.name}.weight"], (out, in_channels, spec.kernel, spec.kernel),
                          where)
            _expect_shape(f"{spec.name}.bias", shapes[f"{spec.name}.bias"], (out,), where)
            _expect_shape(f"{spec.name}.shift", shapes[f"{spec.name}.shift"], (out,), where)
            if spec.depth_to_space:
                if out % 4:
                    raise ModelShapeError(f"{spec.name} has {out} outputs, not a multiple of 4 (depth-to-space)",
                                          where=where)
                out //= 4
            in_channels = out
        return in_channels

    hyper_out = chain(HYPER_SYNTHESIS, cz)
    ctx_out = sum(chain([spec], cy) for spec in CONTEXT)
    gather_out = chain(GATHER, hyper_out + ctx_out)
    if gather_out != 3 * NUM_MIXTURES * cy:
        raise ModelShapeError(f"gather.6 has {gather_out} outputs, expected 3*K*C_y = {3 * NUM_MIXTURES * cy}",
                              where=where)
    if chain(SYNTHESIS, cy) != 3:
        raise ModelShapeError(f"{OUTPUT_LAYER} must have 3 outputs", where=where)
    _expect_shape("inv_gain", shapes["inv_gain"], (header["num_rates"], cy), where)
    _expect_shape("z_lo", shapes["z_lo"], (cz,), where)
    _expect_shape("z_count", shapes["z_count"], (cz,), where)
    # z_count's values as stored (any int32; their range is item 3's): C_z >= 1 entries.
    _expect_shape("z_cdf", shapes["z_cdf"], (cz, int(z_count().max()) + 1), where)


# --- Clause 9.4 item 3: values [ModelValueError] ---------------------------------------------

@clause("9.4", "Validation")
def _check_range(what, value, lo, hi, where):
    """Clause 9.4 item 3: ModelValueError unless lo <= value <= hi."""
    if not lo <= value <= hi:
        raise ModelValueError(f"{what} = {_show(value)} outside {lo}..{hi}", where=where)


@clause("9.4", "Validation")
def _check_values(header, arrays, where):
    """Clause 9.4 item 3, in its order."""
    if header["weight_bits"] != PROFILES[header["profile"]]:
        raise ModelValueError(f"weight_bits {_show(header['weight_bits'])} does not match profile {header['profile']}",
                              where=where)
    _check_range("header field 'num_rates'", header["num_rates"], 1, MAX_RATES, where)
    _check_range("header field 'inv_gain_shift'", header["inv_gain_shift"], 0, MAX_INV_GAIN_SHIFT, where)
    _check_range("header field 'synthesis_input_clip'", header["synthesis_input_clip"], 1, ACT16_MAX, where)
    clips = header["clip"]
    for name in LAYER_NAMES:
        _check_range(f"clip of {name!r}", clips[name], 1, ACT16_MAX, where)
    if clips[OUTPUT_LAYER] != 255:
        raise ModelValueError(f"clip of {OUTPUT_LAYER} must be 255, found {clips[OUTPUT_LAYER]}", where=where)

    wmax = (1 << (header["weight_bits"] - 1)) - 1
    for name in LAYER_NAMES:
        if np.abs(arrays[f"{name}.weight"]).max(initial=0) > wmax:
            raise ModelValueError(f"{name}.weight has a value beyond +-{wmax} ({header['profile']})", where=where)
    for name in LAYER_NAMES:
        shift = arrays[f"{name}.shift"]
        if shift.min(initial=0) < 0 or shift.max(initial=0) > MAX_SHIFT:
            raise ModelValueError(f"{name}.shift has a value outside 0..{MAX_SHIFT} (max {int(shift.max())})",
                                  where=where)
    inv_gain = arrays["inv_gain"]
    if inv_gain.min(initial=0) < 0 or inv_gain.max(initial=0) > MAX_INV_GAIN:
        raise ModelValueError(f"inv_gain outside 0..{MAX_INV_GAIN}", where=where)
    for spec in CONTEXT:
        outside = ~causal_mask(spec.kernel)
        if np.any(arrays[f"{spec.name}.weight"][:, :, outside]):
            raise ModelValueError(f"{spec.name}.weight is non-zero outside the causal mask (clause 5.1)",
                                  where=where)
    z_lo, z_count, z_cdf = arrays["z_lo"], arrays["z_count"], arrays["z_cdf"]
    if z_count.min() < 1 or z_count.max() > MAX_Z_COUNT:
        raise ModelValueError(f"z_count outside 1..{MAX_Z_COUNT}", where=where)
    for c in range(len(z_count)):
        n_w, lo = int(z_count[c]), int(z_lo[c])
        row = z_cdf[c]
        if row[0] != 0 or np.any(np.diff(row[: n_w + 1]) < 1) or row[n_w] > 65535 or np.any(row[n_w + 1:] != 65536):
            raise ModelValueError(f"z_cdf row {c} is not a valid cumulative table (clause 9.4)", where=where)
        if abs(lo) > Z_MAX or abs(lo + n_w - 1) > Z_MAX:
            raise ModelValueError(f"z window of channel {c} exceeds Z_MAX", where=where)


@clause("9.5", "Accumulator bound")
def input_bounds(model_header) -> dict[str, int]:
    """Clause 9.5: in_max of every layer."""
    clip = model_header["clip"]
    bounds = {}
    for net in (HYPER_SYNTHESIS, GATHER, SYNTHESIS):
        for i, spec in enumerate(net):
            bounds[spec.name] = clip[net[i - 1].name] if i else None
    bounds[HYPER_SYNTHESIS[0].name] = CONTEXT_INPUT_MAX
    for spec in CONTEXT:
        bounds[spec.name] = CONTEXT_INPUT_MAX
    bounds[GATHER[0].name] = max(clip[s.name] for s in [HYPER_SYNTHESIS[-1], *CONTEXT])
    bounds[SYNTHESIS[0].name] = model_header["synthesis_input_clip"]
    return bounds


@clause("9.5", "Accumulator bound")
def check_accumulator_bound(layers, header, where=""):
    """Clause 9.5: sum |W| * in_max + |b| < 2^31 for every output channel of every layer."""
    for name, in_max in input_bounds(header).items():
        layer = layers[name]
        worst = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(axis=1) * in_max + np.abs(layer.bias)
        bad = np.flatnonzero(worst >= ACCUMULATOR_LIMIT)
        if bad.size:
            o = int(bad[0])
            raise AccumulatorOverflowRisk(
                f"layer {name}, output channel {o}: sum|W|*{in_max} + |b| = {int(worst[o])} >= 2^31",
                where=where)


@clause("9.4", "Validation")
def parse_model(data: bytes, where: str = "model") -> Model:
    """Clause 9.4: parse and validate a model file's bytes; the checks run in the clause's order.
    Arrays are built only once the shapes pass; a shape error is reported only once every
    member's data has passed clause 9.1.2 (item 1 comes first)."""
    archive = _Archive(data, where)
    header = _parse_header(archive, where)
    npys = _array_headers(archive, header, where)
    dtypes = {name: dtype for name, dtype, _ in _member_specs(header["profile"])}

    def read(name):
        return _npy_array(archive.read(f"{name}.npy"), npys[name], dtypes[name])

    try:
        _check_shapes(header, {name: npy.shape for name, npy in npys.items()}, lambda: read("z_count"), where)
    except ModelShapeError:
        archive.verify_all()
        raise
    arrays = {name: read(name) for name in npys}
    _check_values(header, arrays, where)
    layers = {}
    for name in LAYER_NAMES:
        spec = BY_NAME[name]
        layers[name] = Layer(
            name=name, weight=arrays[f"{name}.weight"], bias=arrays[f"{name}.bias"], shift=arrays[f"{name}.shift"],
            clip=header["clip"][name], kernel=spec.kernel, depth_to_space=spec.depth_to_space, leaky=spec.leaky,
        )
    check_accumulator_bound(layers, header, where)
    return Model(
        header=header, layers=layers, inv_gain=arrays["inv_gain"], z_lo=arrays["z_lo"], z_count=arrays["z_count"],
        z_cdf=arrays["z_cdf"], model_id=model_id_of(data), path=where,
    )


@informative("reading a file from disk: a model reaches the decoding process as the file's bytes (clause 6.2 step 6)")
def load_model(path) -> Model:
    """Informative: read a model file from disk and validate its bytes (parse_model). Only a
    regular file no larger than any valid model file is opened and read; a FIFO or device is
    refused from its status, without reading (so nothing blocks or reads without end)."""
    path = Path(path)
    try:
        fd, size = _open_model_file(path)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(size)
            if fh.read(1):
                raise ModelFormatError("file grew while it was read", where=str(path))
    except OSError as exc:
        raise ModelFormatError(f"cannot read model file ({exc.strerror})", where=str(path)) from None
    return parse_model(data, where=str(path))


@informative("opening a file: a path that cannot hold a valid model file is refused before reading (clause 6.2 step 6)")
def _open_model_file(path: Path) -> tuple[int, int]:
    """Informative: (open file descriptor, size) of a regular file of at most MAX_MODEL_FILE_BYTES
    (larger than any valid model file, clause 9.1); status checked before opening (a FIFO is
    never opened) and again on the open file."""
    where = str(path)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ModelFormatError("not a regular file (clause 6.2 step 6)", where=where)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MODEL_FILE_BYTES:
        os.close(fd)
        raise ModelFormatError(f"not a regular file of at most {MAX_MODEL_FILE_BYTES} bytes, the most a valid "
                               f"model file can have ({st.st_size} bytes, clause 9.1)", where=where)
    return fd, st.st_size


@informative("hashing for the model store: the decoder's model files are its configuration (clause 6.2 step 6)")
def file_model_id(path) -> bytes:
    """Informative: the model id (clause 9.1) of a regular file no larger than any valid model file, hashed in
    pieces of 1 MiB (memory does not grow with the file). ModelFormatError for anything else,
    told from its status before it is read."""
    fd, size = _open_model_file(Path(path))
    digest = hashlib.sha256()
    total = 0
    with os.fdopen(fd, "rb", buffering=0) as fh:
        while piece := fh.read(CHUNK):
            total += len(piece)
            if total > size:
                raise ModelFormatError("file grew while it was hashed", where=str(path))
            digest.update(piece)
    return digest.digest()[:8]


# --- Clause 6.2 check 6: the model files a decoder has ---------------------------------------

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models"


@informative("how a decoder finds its model files is its configuration (clause 6.2 step 6)")
class ModelStore:
    """Non-normative: the model files a decoder has, found by model id (clause 6.2, check 6).

    Files are hashed (in pieces, clause 9.1.4) when the store is built and parsed (validated)
    only when a stream asks for them. In a folder, the *.npz entries that cannot be model files
    (not a regular file, larger than any valid model file, unreadable) are skipped without being read and listed
    in `skipped`; a single file given by name must be one.
    """

    def __init__(self, paths=()):
        self._paths: dict[bytes, Path] = {}
        self._models: dict[bytes, Model] = {}
        self.skipped: list[tuple[Path, str]] = []
        for p in paths:
            self.add_path(p)

    def add_path(self, path) -> None:
        path = Path(path)
        if not path.is_dir():
            self._paths.setdefault(file_model_id(path), path)
            return
        for f in sorted(path.glob("*.npz")):
            try:
                model_id = file_model_id(f)
            except (ModelFormatError, OSError) as exc:
                reason = exc.message if isinstance(exc, ModelFormatError) else (exc.strerror or type(exc).__name__)
                self.skipped.append((f, reason))
            else:
                self._paths.setdefault(model_id, f)

    @informative("library use: tools and tests hand over parsed models")
    def add(self, model: Model) -> None:
        """Informative: make a parsed model available (library use: tools, tests)."""
        self._models[model.model_id] = model

    def get(self, model_id: bytes) -> Model:
        if model_id in self._models:
            return self._models[model_id]
        if model_id not in self._paths:
            ids = [k.hex() for k in sorted(set(self._paths) | set(self._models))]
            known = ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
            skipped = ""
            if self.skipped:
                f, reason = self.skipped[0]
                more = f" and {len(self.skipped) - 1} more" if len(self.skipped) > 1 else ""
                skipped = f"; skipped {f.name}: {reason}{more}"
            raise UnknownModel(f"no model file with id {model_id.hex()} (known: {known or 'none'}{skipped})", offset=11)
        model = load_model(self._paths[model_id])
        if model.model_id != model_id:  # the file changed since it was hashed
            raise UnknownModel(f"no model file with id {model_id.hex()} ({self._paths[model_id]} changed since it "
                               "was hashed)", offset=11)
        self._models[model_id] = model
        return model

    @classmethod
    @informative("the models installed with refdec: the command line's default")
    def default(cls) -> "ModelStore":
        """Informative: the models shipped with refdec (the CLI's default)."""
        return cls([DEFAULT_MODEL_DIR] if DEFAULT_MODEL_DIR.is_dir() else [])
