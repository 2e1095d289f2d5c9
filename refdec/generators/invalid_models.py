"""Informative: deliberately invalid model files for the conformance vectors (clause 9.4, 9.5).

Not part of the decoding process. invalid_models(base) derives, from the bytes of a valid model
file, one small model file per distinct check of clause 9 as refdec.model_file implements it: the
container and the .npy members (clause 9.1), the header (clause 9.2), the member list (clause
9.3), the shapes (clauses 5.1, 5.2 and 9.4 item 2), the values (clause 9.4 item 3) and the
accumulator bound (clause 9.5). Each file has exactly one flaw, and each comes with the error
class that refdec.model_file.parse_model raises for it; invalid_models() checks this itself.

tiny_base_model() is the valid model they are meant to be derived from: the smallest channel
counts the architecture of clause 5.1 allows, with integer-formula parameters (no random numbers,
no floating point), so that the files stay small (a few kB each) and their bytes depend only on
this module and the zlib of serialize_model.

Every output is deterministic: the same base bytes give byte-identical files in the same order.
Container-level corruptions are written as raw ZIP bytes (fixed timestamps, raw deflate at level 9
as serialize_model); header- and array-level ones go through serialize_model.
"""

from __future__ import annotations

import copy
import io
import json
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from ..constants import ACT16_MAX, CONTEXT_INPUT_MAX, MAX_INV_GAIN_SHIFT, NUM_MIXTURES, Z_MAX
from ..architecture import BY_NAME, CONTEXT, GATHER, HYPER_SYNTHESIS, LAYER_NAMES, LAYERS, OUTPUT_LAYER, SYNTHESIS, \
    causal_mask
from ..errors import ALL_ERRORS, ModelError
from ..model_file import JSON_INT_EXACT_DIGITS, MAX_CHANNELS, MAX_HEADER_BYTES, MAX_INV_GAIN, MAX_JSON_DEPTH, \
    MAX_MEMBER_BYTES, MAX_MEMBERS, MAX_RATES, MAX_SHIFT, MAX_TOTAL_MEMBER_BYTES, MAX_Z_COUNT, NPY_MAGIC, PROFILES, \
    ZIP64_EXTRA as ZIP64_EXTRA_ID, max_deflated_size, parse_model
from .model_writer import _npy_bytes, model_arrays, serialize_model

FORMAT = "ModelFormatError"
SHAPE = "ModelShapeError"
VALUE = "ModelValueError"
ACCUMULATOR = "AccumulatorOverflowRisk"

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


@dataclass(frozen=True)
class InvalidModel:
    """One deliberately invalid model file and the error class refdec reports for it."""

    name: str  # short slug, unique: lowercase letters, digits, hyphens
    data: bytes  # the model file
    expected_error: str  # the refdec error class name (clause 11.2)
    clause: str  # the most specific spec clause the file violates
    description: str  # one line: what is wrong and where


# --- the tiny valid base model ----------------------------------------------------------------

TINY_LATENT_CHANNELS = 1  # C_y
TINY_HYPER_CHANNELS = 2  # C_z: two z channels, so that one z_cdf row has padding (clause 9.3)
TINY_NUM_RATES = 2
TINY_CLIP = 4095
# Factorised prior of z: per channel (z_lo, z_count, C(0 .. n_w)); the shorter row is padded with 65536.
TINY_Z = ((-1, 3, (0, 8192, 57344, 65000)), (-2, 5, (0, 4096, 16384, 49152, 61440, 65024)))


def _delivered_channels(cy: int) -> dict[str, int]:
    """Channels each layer delivers to the next (after depth-to-space): 1 everywhere except
    gather.6 (3 K C_y, clause 5.1) and synthesis.6 (3)."""
    outs = {name: 1 for name in LAYER_NAMES}
    outs[GATHER[-1].name] = 3 * NUM_MIXTURES * cy
    outs[OUTPUT_LAYER] = 3
    return outs


def input_channels(cy: int, cz: int, delivered: dict[str, int]) -> dict[str, int]:
    """The input channels of every layer (clause 5.1's chains: the hyper synthesis from C_z, the
    context from C_y, the gather from the hyper output and the context outputs concatenated, the
    synthesis from C_y), given the channels each layer delivers after depth-to-space."""
    inputs = {}
    for net, first in ((HYPER_SYNTHESIS, cz), (SYNTHESIS, cy)):
        for spec in net:
            inputs[spec.name], first = first, delivered[spec.name]
    for spec in CONTEXT:
        inputs[spec.name] = cy
    c = delivered[HYPER_SYNTHESIS[-1].name] + sum(delivered[s.name] for s in CONTEXT)
    for spec in GATHER:
        inputs[spec.name], c = c, delivered[spec.name]
    return inputs


def formula_layer(spec, index: int, out: int, inputs: int, top: int = 30):
    """Informative: weight (out, inputs, k, k), bias and shift (out,) of the layer at `index` of
    LAYERS from integer formulas (int64, weights in -top .. top, the causal mask applied to the
    context layers): the parameters of the generated models, the same bytes everywhere."""
    shape = (out, inputs, spec.kernel, spec.kernel)
    flat = np.arange(int(np.prod(shape)), dtype=np.int64)
    weight = ((flat * 37 + 11 * index) % (2 * top + 1) - top).reshape(shape)
    if spec.network == "context":
        weight = weight * causal_mask(spec.kernel)
    o = np.arange(out, dtype=np.int64)
    return weight, (o * 97 + 13 * index) % 2001 - 1000, 4 + (o + index) % 5


def tiny_base_model() -> bytes:
    """Informative: a valid model file (W16A16) with the smallest channel counts of clause 5.1:
    C_y = 1, C_z = 2, one channel between all layers (4 weight outputs for the D2S layers),
    R = 2. Parameters come from integer formulas, so the bytes are the same everywhere."""
    cy, cz = TINY_LATENT_CHANNELS, TINY_HYPER_CHANNELS
    delivered = _delivered_channels(cy)
    in_channels = input_channels(cy, cz, delivered)

    arrays = {}
    for index, spec in enumerate(LAYERS):
        out = delivered[spec.name] * (4 if spec.depth_to_space else 1)
        weight, bias, shift = formula_layer(spec, index, out, in_channels[spec.name])
        if spec.name == OUTPUT_LAYER:  # output around mid-grey
            shift[:] = 6
            bias[:] = 128 << 6
        arrays[f"{spec.name}.weight"] = weight.astype(np.int16)
        arrays[f"{spec.name}.bias"] = bias.astype(np.int32)
        arrays[f"{spec.name}.shift"] = shift.astype(np.uint8)
    rates, channels = np.arange(TINY_NUM_RATES)[:, None], np.arange(cy)[None, :]
    arrays["inv_gain"] = (4096 + 1024 * rates + 7 * channels).astype(np.int32)
    width = max(n for _, n, _ in TINY_Z) + 1
    arrays["z_lo"] = np.array([lo for lo, _, _ in TINY_Z], dtype=np.int32)
    arrays["z_count"] = np.array([n for _, n, _ in TINY_Z], dtype=np.int32)
    arrays["z_cdf"] = np.array([list(row) + [65536] * (width - len(row)) for _, _, row in TINY_Z], dtype=np.int32)

    clip = {name: TINY_CLIP for name in LAYER_NAMES}
    clip[OUTPUT_LAYER] = 255
    header = {
        "format": "refdec-model", "format_version": 1, "profile": "W16A16", "weight_bits": 16,
        "latent_channels": cy, "hyper_channels": cz, "num_rates": TINY_NUM_RATES, "inv_gain_shift": 12,
        "synthesis_input_clip": TINY_CLIP, "clip": clip,
        "description": "tiny base model of the invalid model files (refdec.invalid_models)",
        "provenance": {"generator": "refdec.invalid_models.tiny_base_model"},  # the name when the vectors were made
        "act_exponents": {name: (0 if name == OUTPUT_LAYER else 8) for name in LAYER_NAMES},
    }
    data = serialize_model(header, arrays)
    parse_model(data, where="tiny_base_model()")  # valid by construction; raises otherwise
    return data


# --- raw ZIP and .npy writing -----------------------------------------------------------------

DOS_DATE_1980 = (0 << 9) | (1 << 5) | 1  # 1980-01-01
DOS_TIME_0 = 0


@dataclass(frozen=True)
class _Entry:
    """One ZIP member as written by _zip: name, uncompressed data, and deliberate corruptions
    (the defaults write a correct deflated member)."""

    name: str
    data: bytes
    declared_size: int | None = None  # uncompressed size written in the headers (default: the real one)
    crc_xor: int = 0  # XORed into the CRC-32 written in the headers
    corrupt_stream: bool = False  # first byte of the deflate stream set to a reserved block type
    method: int = 8  # compression method in both records: 0 writes the data stored, any other deflates it
    flags: int | None = None  # general-purpose flags in both records (default 0, or 0x800 for a non-ASCII name)
    payload_edit: tuple = ()  # ("cut", n): the last n compressed bytes left out; ("append", bytes)
    local: tuple = ()  # (field, value) written into the local header instead: signature, name, crc, sizes
    # (compressed, uncompressed), extra, extra_len
    central: tuple = ()  # (field, value) written into the central record instead: signature, extra, comment,
    # comment_len (the length written, default that of comment)
    crc_of: bytes | None = None  # the CRC-32 written is that of these bytes (default: of data)
    compressed_delta: int = 0  # added to the compressed size in both records
    payload: bytes | None = None  # the compressed data as written (default: made from data by the method)
    crc: int | None = None  # the CRC-32 written (default: computed)


def _deflate(data: bytes) -> bytes:
    """Raw deflate at level 9, as zipfile (and so serialize_model) writes it."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _zip(entries: list[_Entry], before: bytes = b"", gap: bytes = b"", cd_tail: bytes = b"", eocd=()) -> bytes:
    """Raw ZIP bytes: members in the given order (deflated unless an entry says otherwise), fixed
    timestamps, no extras. before: bytes ahead of the first local header (offsets account for
    them); gap: bytes between the last member and the central directory; cd_tail: bytes after the
    last central record, counted in the central directory's size; eocd: (field, value) pairs
    written into the end record instead (disk, cd_offset_delta, comment, count_delta)."""
    out, central = bytearray(before), bytearray()
    for e in entries:
        name = e.name.encode("utf-8")
        flags = (0 if e.name.isascii() else 0x800) if e.flags is None else e.flags
        payload = bytearray(e.payload if e.payload is not None else e.data if e.method == 0 else _deflate(e.data))
        if e.corrupt_stream:
            payload[0] = 0xFF  # BFINAL = 1, BTYPE = 11 (reserved): an invalid deflate stream
        for op, arg in e.payload_edit:
            payload = payload[:-arg] if op == "cut" else payload + arg
        crc = (zlib.crc32(e.data if e.crc_of is None else e.crc_of) if e.crc is None else e.crc) ^ e.crc_xor
        size = len(e.data) if e.declared_size is None else e.declared_size
        offset = len(out)
        length = len(payload) + e.compressed_delta
        loc = dict(signature=0x04034B50, name=name, crc=crc, sizes=(length, size), extra=b"")
        loc.update(e.local)
        cen = dict(signature=0x02014B50, extra=b"", comment=b"")
        cen.update(e.central)
        out += struct.pack("<IHHHHHIIIHH", loc["signature"], 20, flags, e.method, DOS_TIME_0, DOS_DATE_1980,
                           loc["crc"], *loc["sizes"], len(loc["name"]), loc.get("extra_len", len(loc["extra"])))
        out += loc["name"] + loc["extra"] + payload
        central += struct.pack("<IHHHHHHIIIHHHHHII", cen["signature"], (3 << 8) | 20, 20, flags, e.method, DOS_TIME_0,
                               DOS_DATE_1980, crc, length, size, len(name), len(cen["extra"]),
                               cen.get("comment_len", len(cen["comment"])), 0, 0, 0o644 << 16, offset) \
            + name + cen["extra"] + cen["comment"]
    out += gap
    central += cd_tail
    end = dict(disk=0, cd_offset_delta=0, comment=b"", count_delta=0)
    end.update(eocd)
    count = len(entries) + end["count_delta"]
    eocd_bytes = struct.pack("<IHHHHIIH", 0x06054B50, end["disk"], 0, count, count, len(central),
                             len(out) + end["cd_offset_delta"], len(end["comment"])) + end["comment"]
    return bytes(out + central + eocd_bytes)


def _npy(meta: str | bytes, data: bytes, version: bytes = b"\x01\x00", newline: bytes = b"\n") -> bytes:
    """A .npy member with a hand-written header (padded as numpy pads it) and raw data."""
    head = meta.encode("latin-1") if isinstance(meta, str) else meta
    head += b" " * (-(10 + len(head) + 1) % 64) + newline
    return NPY_MAGIC + version + struct.pack("<H", len(head)) + head + data


def _meta(descr, shape, fortran_order=False, **extra) -> str:
    """The header dict of a .npy member, in numpy's spelling."""
    d = {"descr": descr, "fortran_order": fortran_order, "shape": shape, **extra}
    return repr(d)


def _members_of(data: bytes) -> list[tuple[str, bytes]]:
    """(name, uncompressed bytes) of a ZIP file's members, in archive order."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


# --- the base model and its variants ----------------------------------------------------------

class _Base:
    """A valid model file's bytes, members, header and arrays, and ways to write variants."""

    def __init__(self, data: bytes):
        self.data = data
        model = parse_model(data, where="base model")
        self.header = model.header
        self.arrays = model_arrays(model)
        self.members = _members_of(data)
        self.cy, self.cz, self.rates = model.latent_channels, model.hyper_channels, model.num_rates
        self.profile = self.header["profile"]

    def h(self) -> dict:
        return copy.deepcopy(self.header)

    def a(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.arrays.items()}

    def out(self, layer: str) -> int:
        return self.arrays[f"{layer}.weight"].shape[0]

    def file(self, header: dict | None = None, arrays: dict | None = None) -> bytes:
        """serialize_model of the (modified) header and arrays."""
        return serialize_model(self.header if header is None else header, self.arrays if arrays is None else arrays)

    def member(self, filename: str) -> bytes:
        return dict(self.members)[filename]

    def with_members(self, replace: dict[str, bytes] | None = None, drop=(), add=()) -> bytes:
        """Raw ZIP of the base members with some replaced, dropped or added (at the end)."""
        replace = replace or {}
        entries = [_Entry(n, replace.get(n, d)) for n, d in self.members if n not in drop]
        return _zip(entries + [e if isinstance(e, _Entry) else _Entry(*e) for e in add])

    def with_entry(self, filename: str, **corruption) -> bytes:
        """Raw ZIP of the base members with one member's ZIP entry corrupted."""
        return _zip([_Entry(n, d, **corruption) if n == filename else _Entry(n, d) for n, d in self.members])

    def header_text(self, header) -> str:
        """The header JSON as serialize_model writes it."""
        return json.dumps(header, sort_keys=True, indent=1)

    def with_header_bytes(self, raw: bytes) -> bytes:
        """The base with header.npy holding exactly these bytes (1-D uint8)."""
        return self.with_members({"header.npy": _npy_bytes(np.frombuffer(raw, dtype=np.uint8))})

    def with_header_json(self, header, raw: dict[str, str] | None = None) -> bytes:
        """The base with this header; raw maps a string value "@@key@@" in it to literal JSON text."""
        text = self.header_text(header)
        for marker, literal in (raw or {}).items():
            assert text.count(json.dumps(marker)) == 1, marker
            text = text.replace(json.dumps(marker), literal)
        return self.with_header_bytes(text.encode("utf-8"))

    def with_profile(self, profile: str) -> tuple[dict, dict]:
        """(header, arrays) of the base converted to a profile: weights in its dtype, clipped to its
        symmetric range (which keeps every check of clause 9.4 and the bound of clause 9.5)."""
        bits = PROFILES[profile]
        wmax = (1 << (bits - 1)) - 1
        header, arrays = self.h(), self.a()
        header["profile"], header["weight_bits"] = profile, bits
        for name in LAYER_NAMES:
            w = arrays[f"{name}.weight"].astype(np.int64)
            arrays[f"{name}.weight"] = np.clip(w, -wmax, wmax).astype(np.int16 if bits == 16 else np.int8)
        return header, arrays


def _pad_axis(arr: np.ndarray, axis: int, size: int, value=0) -> np.ndarray:
    """arr cut or padded (with value) to this size along axis."""
    if arr.shape[axis] >= size:
        return np.take(arr, range(size), axis=axis)
    pad = [(0, 0)] * arr.ndim
    pad[axis] = (0, size - arr.shape[axis])
    return np.pad(arr, pad, constant_values=value)


ZIP64_SIZES = 0xFFFFFFFF
TIMESTAMP_EXTRA = struct.pack("<HHBI", 0x5455, 5, 1, 0)  # an extended-timestamp extra field (9 bytes)


def _wide_members(b: _Base, width: int = MAX_CHANNELS) -> list[tuple[str, bytes]]:
    """The members of a valid model: the base with gather.1 and gather.2 widened to `width` outputs
    with zero weights (2048: gather.2.weight.npy is 2048 x 2048 int16, 8 MiB inflated, a member
    larger than the pieces in which refdec inflates, clause 9.1.2). The added channels are 0 at
    every position, so the model decodes every stream as the base does."""
    header, arrays = b.h(), b.a()
    for layer in ("gather.1", "gather.2"):
        for part in ("weight", "bias", "shift"):
            arrays[f"{layer}.{part}"] = _pad_axis(arrays[f"{layer}.{part}"], 0, width)
    for layer in ("gather.2", "gather.3"):
        arrays[f"{layer}.weight"] = _pad_axis(arrays[f"{layer}.weight"], 1, width)
    data = b.file(header, arrays)
    parse_model(data, where="wide base model")  # valid; raises otherwise
    return _members_of(data)


# --- clause 9.1: container ---------------------------------------------------------------------

def _container(b: _Base):
    yield ("zip-not-an-archive", b.member("header.npy"), "9.1",
           "a bare .npy file (the base's header.npy) instead of a ZIP archive")
    yield ("zip-truncated", b.data[: len(b.data) // 2], "9.1",
           "the first half of the base file: no ZIP end-of-central-directory record")
    empty = _npy_bytes(np.zeros(0, dtype=np.uint8))
    pads = [(f"pad.{i:03d}.npy", empty) for i in range(MAX_MEMBERS + 1 - len(b.members))]
    yield ("zip-too-many-members", b.with_members(add=pads), "9.1",
           f"{MAX_MEMBERS + 1} members (the base's {len(b.members)} and {len(pads)} empty pad.NNN.npy), "
           f"at most {MAX_MEMBERS} allowed")
    name = "synthesis.6.bias.npy"
    other = b.arrays["synthesis.6.bias"] + 1
    entries = []
    for n, d in b.members:
        entries.append(_Entry(n, d))
        if n == name:
            entries.append(_Entry(n, _npy_bytes(other)))
    yield ("zip-duplicate-member", _zip(entries), "9.1",
           f"member {name} twice (the second copy with other values); member names must be unique")
    yield ("zip-non-npy-member", b.with_members(add=[("README.txt", b"tiny base model\n")]), "9.1",
           "an extra member README.txt that is not a .npy file")
    yield ("zip-member-too-large", b.with_entry("gather.0.weight.npy", declared_size=MAX_MEMBER_BYTES + 1), "9.1",
           f"member gather.0.weight.npy declares {MAX_MEMBER_BYTES + 1} uncompressed bytes (2^28 + 1) in its "
           "ZIP headers; the limit is checked before any member is read")
    yield ("zip-bad-crc", b.with_entry("z_cdf.npy", crc_xor=0xFFFFFFFF), "9.1",
           "member z_cdf.npy: the CRC-32 in its ZIP headers does not match its data")
    yield ("zip-corrupt-deflate", b.with_entry("inv_gain.npy", corrupt_stream=True), "9.1",
           "member inv_gain.npy: its deflate stream starts with a reserved block type (cannot be decompressed)")

    # Clause 9.1.1: the records, checked against each other before anything is inflated.
    first, last = b.members[0][0], b.members[-1][0]

    def zipped(changes=None, **archive):
        changes = changes or {}
        return _zip([_Entry(n, d, **changes.get(n, {})) for n, d in b.members], **archive)

    yield ("zip-archive-comment", zipped(eocd=(("comment", b"model"),)), "9.1.1",
           "the end-of-central-directory record has a 5-byte archive comment: it is not the last 22 bytes")
    yield ("zip-multi-disk", zipped(eocd=(("disk", 1),)), "9.1.1", "the end record's disk number is 1 (a split archive)")
    yield ("zip-central-directory-offset", zipped(eocd=(("cd_offset_delta", 1),)), "9.1.1",
           "the end record places the central directory one byte after where it is")
    yield ("zip-central-record-signature", zipped({first: dict(central=(("signature", 0x02014B51),))}), "9.1.1",
           f"the central-directory record of {first} has a wrong signature")
    yield ("zip-central-record-past-end", zipped({last: dict(central=(("comment_len", 1000),))}), "9.1.1",
           f"the central-directory record of {last} announces a 1000-byte comment, past the central directory")
    yield ("zip-central-directory-trailing-bytes", zipped(cd_tail=bytes(8)), "9.1.1",
           "8 zero bytes after the last central-directory record, counted in the central directory's size")
    yield ("zip-gap-before-central-directory", zipped(gap=bytes(8)), "9.1.1",
           "8 zero bytes between the last member's data and the central directory (offsets consistent)")
    yield ("zip-bytes-before-first-member", zipped(before=b"RDEC"), "9.1.1",
           "4 bytes before the first local header, as a self-extracting stub (every offset accounts for them)")
    for slug, flags, what in (("encrypted", 0x0001, "bit 0 (encrypted; the data is not)"),
                              ("data-descriptor", 0x0008, "bit 3 (data descriptor; there is none)"),
                              ("unknown-flag", 0x0010, "bit 4 (reserved)")):
        yield (f"zip-{slug}", zipped({"z_count.npy": dict(flags=flags)}), "9.1.1",
               f"member z_count.npy has general-purpose flag {what} set in both records")
    yield ("zip-method-bzip2", zipped({"z_count.npy": dict(method=12)}), "9.1.1",
           "member z_count.npy has compression method 12 (bzip2) in both records (its data is deflate)")
    yield ("zip-stored-sizes-differ", zipped({"z_lo.npy": dict(method=0, declared_size=len(b.member("z_lo.npy")) + 1)}),
           "9.1.1", "member z_lo.npy is stored (method 0) with an uncompressed size one more than its compressed size")
    four = [name for name, _ in b.members[:4]]
    yield ("zip-members-too-large-together", zipped({n: dict(declared_size=MAX_MEMBER_BYTES) for n in four}), "9.1.1",
           f"members {', '.join(four)} declare 2^28 bytes each (one member's limit): more than 2^30 together")
    header_raw = b.member("header.npy")
    text = b.header_text(b.header).encode("utf-8")
    yield ("zip-header-too-large", b.with_header_bytes(text + b" " * (1 << 20)), "9.1.1",
           "header.npy holds the JSON text followed by 2^20 spaces (valid JSON): more than 2^20 bytes")
    yield ("zip-data-into-central-directory", zipped({last: dict(compressed_delta=16)}), "9.1.1",
           f"member {last} declares a compressed size 16 bytes longer than its data, reaching into the central "
           "directory")
    yield ("zip-local-signature", zipped({"gather.0.bias.npy": dict(local=(("signature", 0x04034B51),))}), "9.1.1",
           "the local header of gather.0.bias.npy has a wrong signature")
    yield ("zip-local-extra-past-central-directory", zipped({first: dict(local=(("extra_len", 0xFFFF),))}), "9.1.1",
           f"the local header of {first} announces a 65535-byte extra field, past the central directory")
    yield ("zip-local-name-differs", zipped({"gather.1.bias.npy": dict(local=(("name", b"gather.1.bias.npx"),))}),
           "9.1.1", "the local header of gather.1.bias.npy names gather.1.bias.npx")
    yield ("zip-local-crc-differs", zipped({"gather.1.bias.npy": dict(local=(("crc", 0),))}), "9.1.1",
           "the local header of gather.1.bias.npy has CRC-32 0, its central record the right one")
    name = "synthesis.0.bias.npy"
    size, length = len(b.member(name)), len(_deflate(b.member(name)))
    yield ("zip-local-zip64-missing", zipped({name: dict(local=(("sizes", (ZIP64_SIZES, ZIP64_SIZES)),))}), "9.1.1",
           f"the local header of {name} has sizes 0xFFFFFFFF (as NumPy writes them) but no ZIP64 extra field")
    zip64 = struct.pack("<HHQQ", 1, 16, size + 1, length)
    yield ("zip-local-zip64-sizes-differ",
           zipped({name: dict(local=(("sizes", (ZIP64_SIZES, ZIP64_SIZES)), ("extra", TIMESTAMP_EXTRA + zip64)))}), "9.1.1",
           f"the local header of {name} has sizes 0xFFFFFFFF and a ZIP64 extra field (after a timestamp field) "
           "whose uncompressed size is one more than the central record's")

    # Clause 9.1.2: the data, inflated and checked against the records.
    yield ("zip-stored-bad-crc", zipped({"z_lo.npy": dict(method=0, crc_xor=1)}), "9.1.2",
           "member z_lo.npy is stored (method 0) with a wrong CRC-32 in both records")
    yield ("zip-deflate-truncated", zipped({"z_lo.npy": dict(payload_edit=(("cut", 3),))}), "9.1.2",
           "member z_lo.npy: the last 3 bytes of its deflate stream are left out (sizes consistent)")
    yield ("zip-deflate-trailing-bytes", zipped({"z_lo.npy": dict(payload_edit=(("append", bytes(4)),))}), "9.1.2",
           "member z_lo.npy: 4 zero bytes after the end of its deflate stream, inside its compressed size")
    yield ("zip-size-larger-than-data", zipped({"header.npy": dict(declared_size=len(header_raw) + 1)}), "9.1.2",
           "member header.npy declares one byte more than its deflate stream gives")
    wide = _wide_members(b)
    name = "gather.2.weight.npy"
    yield ("zip-inflates-past-declared-size",
           _zip([_Entry(n, d + bytes(4), declared_size=len(d), crc_of=d) if n == name else _Entry(n, d)
                 for n, d in wide]), "9.1.2",
           f"the base with gather.1 and gather.2 widened to 2048 outputs (zero weights; {name} is 8 MiB): the "
           f"deflate stream of {name} gives 4 bytes more than its records declare")


# --- clause 9.1: .npy members ------------------------------------------------------------------

def _npy_members(b: _Base):
    def member(name, raw):
        return b.with_members({f"{name}.npy": raw})

    def arr(name):
        return b.arrays[name]

    def data(name):
        return np.ascontiguousarray(arr(name)).tobytes()

    def npy(name, descr=None, shape=None, payload=None, **kw):
        a = arr(name)
        return _npy(_meta(a.dtype.str if descr is None else descr, a.shape if shape is None else shape, **kw),
                    data(name) if payload is None else payload)

    raw = b.member("gather.3.bias.npy")
    yield ("npy-bad-magic", member("gather.3.bias", b"\x93numpy" + raw[6:]), "9.1",
           "member gather.3.bias.npy starts with \\x93numpy instead of the .npy magic \\x93NUMPY")
    yield ("npy-empty-member", member("synthesis.0.shift", b""), "9.1",
           "member synthesis.0.shift.npy is empty (0 bytes, no .npy magic)")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr("inv_gain"), version=(2, 0), allow_pickle=False)
    yield ("npy-version-2", member("inv_gain", buf.getvalue()), "9.1",
           "member inv_gain.npy in .npy format version 2.0; only version 1.0 is allowed")
    yield ("npy-truncated-header", member("z_lo", b.member("z_lo.npy")[:30]), "9.1",
           "member z_lo.npy cut after 30 bytes, inside the .npy header its length field announces")
    a = arr("hyper_synthesis.2.bias")
    yield ("npy-malformed-header",
           member("hyper_synthesis.2.bias", _npy(_meta(a.dtype.str, a.shape)[:-1], data("hyper_synthesis.2.bias"))),
           "9.1", "member hyper_synthesis.2.bias.npy: .npy header dict without its closing brace")
    a = arr("context.3.bias")
    yield ("npy-header-not-dict",
           member("context.3.bias", _npy(repr((a.dtype.str, False, a.shape)), data("context.3.bias"))), "9.1",
           "member context.3.bias.npy: .npy header is a tuple, not a dict")
    a = arr("context.5.bias")
    yield ("npy-header-missing-key",
           member("context.5.bias", _npy(repr({"descr": a.dtype.str, "shape": a.shape}), data("context.5.bias"))),
           "9.1", "member context.5.bias.npy: .npy header without the key fortran_order")
    yield ("npy-header-extra-key", member("context.7.bias", npy("context.7.bias", version=1)), "9.1",
           "member context.7.bias.npy: .npy header with an extra key 'version'")
    yield ("npy-shape-list", member("gather.1.bias", npy("gather.1.bias", shape=list(arr("gather.1.bias").shape))),
           "9.1", "member gather.1.bias.npy: .npy shape written as a list, not a tuple")
    yield ("npy-shape-huge-empty", member("z_cdf", npy("z_cdf", shape=(0, 2**62), payload=b"")), "9.1",
           "member z_cdf.npy: .npy shape (0, 2^62), no elements but a dimension above 2^28")
    yield ("npy-shape-negative", member("gather.2.shift", npy("gather.2.shift", shape=(-1,))), "9.1",
           "member gather.2.shift.npy: .npy shape (-1,)")
    n = arr("gather.3.shift").shape[0]
    yield ("npy-shape-not-integer", member("gather.3.shift", npy("gather.3.shift", shape=(float(n),))), "9.1",
           f"member gather.3.shift.npy: .npy shape ({float(n)},) with a float dimension")
    yield ("npy-fortran-order-not-bool", member("synthesis.1.bias", npy("synthesis.1.bias", fortran_order=0)),
           "9.1", "member synthesis.1.bias.npy: .npy fortran_order is the integer 0, not False")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asfortranarray(arr("synthesis.6.weight")), version=(1, 0), allow_pickle=False)
    yield ("npy-fortran-order", member("synthesis.6.weight", buf.getvalue()), "9.1",
           "member synthesis.6.weight.npy stored in Fortran order (fortran_order True, data in column-major order)")
    yield ("npy-descr-list", member("gather.5.bias", npy("gather.5.bias", descr=[("b", "<i4")])), "9.1",
           "member gather.5.bias.npy: .npy descr is a structured-dtype list [('b', '<i4')]")
    yield ("npy-unknown-dtype", member("gather.6.bias", npy("gather.6.bias", descr="<i3")), "9.1",
           "member gather.6.bias.npy: .npy descr '<i3' is not a dtype")
    n = arr("gather.4.shift").shape[0]
    yield ("npy-object-dtype", member("gather.4.shift", npy("gather.4.shift", descr="|O", payload=bytes(8 * n))),
           "9.1", "member gather.4.shift.npy: object array (descr '|O'), which would need unpickling")
    yield ("npy-structured-dtype", member("gather.0.bias", npy("gather.0.bias", descr="<i2,<i2")), "9.1",
           "member gather.0.bias.npy: .npy descr '<i2,<i2' (a structured dtype written as a string)")
    yield ("npy-subarray-dtype", member("gather.1.shift", npy("gather.1.shift", descr="(1,)|u1")), "9.1",
           "member gather.1.shift.npy: .npy descr '(1,)|u1' (a sub-array dtype)")
    swapped = arr("z_count").astype(">i4").tobytes()
    yield ("npy-big-endian", member("z_count", npy("z_count", descr=">i4", payload=swapped)), "9.1",
           "member z_count.npy stored big-endian (descr '>i4', data byte-swapped)")
    yield ("npy-native-byte-order", member("synthesis.2.bias", npy("synthesis.2.bias", descr="=i4")), "9.1",
           "member synthesis.2.bias.npy: .npy descr '=i4' (native byte order, not explicitly little-endian)")
    yield ("npy-no-byte-order", member("hyper_synthesis.2.weight", npy("hyper_synthesis.2.weight", descr="|i2")),
           "9.1", "member hyper_synthesis.2.weight.npy: .npy descr '|i2' (no byte order for a 2-byte type)")
    yield ("npy-truncated-data", member("synthesis.6.weight", b.member("synthesis.6.weight.npy")[:-1]), "9.1",
           "member synthesis.6.weight.npy: the last data byte is missing")
    yield ("npy-trailing-data", member("gather.4.bias", npy("gather.4.bias", payload=data("gather.4.bias") + bytes(4))),
           "9.1.3", "member gather.4.bias.npy: 4 zero bytes after the data its shape needs")
    n = arr("gather.5.shift").shape[0]
    for slug, text, what in (
            ("npy-header-duplicate-key", f"{{'descr': '|u1', 'descr': '|u1', 'shape': ({n},)}}", "the key descr twice"),
            ("npy-shape-not-tuple", f"{{'descr': '|u1', 'fortran_order': False, 'shape': {n}}}",
             f"shape {n}, an integer, not a tuple"),
            ("npy-shape-one-without-comma", f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({n})}}",
             f"shape ({n}) without the comma of a 1-tuple"),
            ("npy-shape-string-element", f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({n}, 'a')}}",
             f"shape ({n}, 'a') with a string element"),
            ("npy-header-missing-comma", f"{{'descr': '|u1' 'fortran_order': False, 'shape': ({n},)}}",
             "no comma between the descr and fortran_order entries")):
        yield (slug, member("gather.5.shift", _npy(text, data("gather.5.shift"))), "9.1.3",
               f"member gather.5.shift.npy: .npy header {what}")
    yield ("npy-header-no-newline", member("gather.5.shift", _npy(_meta("|u1", (n,)), data("gather.5.shift"), newline=b" ")),
           "9.1.3", "member gather.5.shift.npy: .npy header padded with spaces to its end, without the final newline")


# --- clause 9.2: header ------------------------------------------------------------------------

def _header(b: _Base):
    text = b.header_text(b.header)
    yield ("header-missing", b.with_members(drop=("header.npy",)), "9.2", "no member header.npy")
    raw = text.encode("utf-8")
    yield ("header-wrong-dtype", b.with_members({"header.npy": _npy(_meta("|i1", (len(raw),)), raw)}), "9.2",
           "header.npy holds the JSON bytes as int8 (descr '|i1'), not uint8")
    yield ("header-wrong-ndim", b.with_members({"header.npy": _npy(_meta("|u1", (1, len(raw))), raw)}), "9.2",
           f"header.npy is a 2-D uint8 array of shape (1, {len(raw)}), not 1-D")
    yield ("header-empty", b.with_header_bytes(b""), "9.2", "header.npy is an empty array (no JSON text)")
    yield ("header-npy-data-longer", b.with_members({"header.npy": _npy(_meta("|u1", (len(raw) - 1,)), raw)}), "9.1.3",
           "header.npy: its .npy shape is one byte shorter than its data (the JSON's closing brace is left over)")
    yield ("header-utf8-bom", b.with_header_bytes(b"\xef\xbb\xbf" + raw), "9.2",
           "header JSON preceded by a UTF-8 byte order mark")
    h = b.h()
    nested: dict = {}
    for _ in range(MAX_JSON_DEPTH - 1):
        nested = {"n": nested}
    h["provenance"] = nested
    yield ("header-json-too-deep", b.with_header_json(h), "9.2",
           f"header provenance is {MAX_JSON_DEPTH} nested objects: depth {MAX_JSON_DEPTH + 1} with the header object, "
           f"at most {MAX_JSON_DEPTH} allowed")
    h = b.h()
    h["description"] = "@@surrogate@@"
    yield ("header-unpaired-surrogate", b.with_header_json(h, {"@@surrogate@@": '"\\ud800"'}), "9.2",
           "header description is the JSON string \"\\ud800\", an unpaired surrogate escape")
    h = b.h()
    h["description"] = "caf\u00e9"
    yield ("header-not-utf8", b.with_header_bytes(json.dumps(h, sort_keys=True, indent=1, ensure_ascii=False)
                                                  .encode("latin-1")), "9.2",
           "header JSON in Latin-1, not UTF-8: byte 0xE9 in the description 'caf\u00e9'")
    yield ("header-not-json", b.with_header_bytes(raw[: len(raw) // 2]), "9.2",
           "header JSON cut in the middle (not JSON)")
    yield ("header-json-deep", b.with_header_bytes(b"[" * 100000), "9.2",
           "header is 100000 unclosed '[' (not JSON; nested deeper than JSON parsers' recursion limits)")
    lines = text.split("\n")
    dup = lines[:1] + [f' "num_rates": {b.rates},'] + lines[1:]
    yield ("header-duplicate-key", b.with_header_bytes("\n".join(dup).encode()), "9.2",
           "header JSON has the key num_rates twice (with the same value)")
    at = lines.index(' "clip": {')
    dup = lines[: at + 1] + [f'  "{OUTPUT_LAYER}": 255,'] + lines[at + 1:]
    yield ("header-duplicate-clip-key", b.with_header_bytes("\n".join(dup).encode()), "9.2",
           f"header JSON has the key {OUTPUT_LAYER} twice inside clip (with the same value)")
    h = b.h()
    h["inv_gain_shift"] = float("nan")
    yield ("header-nan", b.with_header_json(h), "9.2", "header field inv_gain_shift is NaN, which is not JSON")
    yield ("header-not-object", b.with_header_bytes(json.dumps([b.header], sort_keys=True, indent=1).encode()),
           "9.2", "header JSON is an array holding the header object, not an object")
    h = b.h()
    h["comment"] = "not a header key"
    yield ("header-unknown-key", b.with_header_json(h), "9.2", "header has an unknown key 'comment'")
    h = b.h()
    del h["inv_gain_shift"]
    yield ("header-missing-key", b.with_header_json(h), "9.2", "header without the required key inv_gain_shift")
    for key, value, what in (("format", 1, "the integer 1"), ("profile", 16, "the integer 16"),
                             ("description", None, "null")):
        h = b.h()
        h[key] = value
        yield (f"header-{key}-not-string", b.with_header_json(h), "9.2", f"header field {key} is {what}, not a string")
    for key, literal in (("format_version", "1.0"), ("weight_bits", "true"), ("latent_channels", f'"{b.cy}"'),
                         ("hyper_channels", f"{b.cz}.0"), ("num_rates", f"{b.rates}e0"), ("inv_gain_shift", "null"),
                         ("synthesis_input_clip", f"{b.header['synthesis_input_clip']}.0")):
        h = b.h()
        h[key] = f"@@{key}@@"
        yield (f"header-{key.replace('_', '-')}-not-integer", b.with_header_json(h, {f"@@{key}@@": literal}),
               "9.2", f"header field {key} is {literal}, not an integer (no fraction, no exponent, not a bool)")
    h = b.h()
    h["clip"] = [h["clip"][name] for name in LAYER_NAMES]
    yield ("header-clip-not-object", b.with_header_json(h), "9.2",
           "header field clip is an array of the 20 clips, not an object")
    h = b.h()
    del h["clip"]["gather.3"]
    yield ("header-clip-missing-layer", b.with_header_json(h), "9.2", "header clip has no entry for gather.3")
    h = b.h()
    h["clip"]["gather.7"] = h["clip"]["gather.6"]
    yield ("header-clip-extra-layer", b.with_header_json(h), "9.2",
           "header clip has an entry for gather.7, which is not a layer")
    h = b.h()
    h["clip"]["synthesis.3"] = str(h["clip"]["synthesis.3"])
    yield ("header-clip-not-integer", b.with_header_json(h), "9.2",
           f"header clip of synthesis.3 is the string {h['clip']['synthesis.3']!r}, not an integer")
    h = b.h()
    h["provenance"] = "refdec.invalid_models"
    yield ("header-provenance-not-object", b.with_header_json(h), "9.2",
           "header field provenance is a string, not an object")
    h = b.h()
    h["act_exponents"] = [8] * len(LAYER_NAMES)
    yield ("header-act-exponents-not-object", b.with_header_json(h), "9.2",
           "header field act_exponents is an array, not an object")
    h = b.h()
    h["act_exponents"] = {name: 8 for name in LAYER_NAMES}
    h["act_exponents"]["gather.2"] = "@@exponent@@"
    yield ("header-act-exponents-not-integer", b.with_header_json(h, {"@@exponent@@": "8.5"}), "9.2",
           "header act_exponents of gather.2 is 8.5, not an integer")
    h = b.h()
    h["format"] = "refdec-model-v2"
    yield ("header-format", b.with_header_json(h), "9.2", "header format is 'refdec-model-v2', not 'refdec-model'")
    h = {key: value for key, value in b.h().items() if key not in ("description", "provenance", "act_exponents")}
    h["format_version"] = 2
    yield ("header-format-version", b.with_header_json(h), "9.2",
           "header format_version is 2, only 1 is supported (header with the required keys only)")
    h = b.h()
    h["profile"] = h["profile"].lower()
    yield ("header-profile-unknown", b.with_header_json(h), "9.2",
           f"header profile {h['profile']!r} (profile names are case-sensitive)")


# --- clause 9.3: the member list --------------------------------------------------------------

def _member_list(b: _Base):
    arrays = b.a()
    del arrays["z_cdf"]
    yield ("member-missing", b.file(arrays=arrays), "9.3", "no member z_cdf.npy")
    arrays = b.a()
    arrays["gather.2.bias"] = arrays["gather.2.bias"].astype(np.int64)
    yield ("member-wrong-dtype", b.file(arrays=arrays), "9.3", "gather.2.bias stored as int64, not int32")
    arrays = b.a()
    arrays["synthesis.4.shift"] = arrays["synthesis.4.shift"][:, None]
    yield ("member-wrong-ndim", b.file(arrays=arrays), "9.3",
           f"synthesis.4.shift stored 2-D with shape {arrays['synthesis.4.shift'].shape}, not 1-D")
    other = "W8A16" if b.profile == "W16A16" else "W16A16"
    h = b.h()
    h["profile"], h["weight_bits"] = other, PROFILES[other]
    wdtype = b.arrays[f"{LAYER_NAMES[0]}.weight"].dtype.name
    yield ("member-weight-dtype-profile", b.file(header=h), "9.3",
           f"header profile {other} (weight_bits {PROFILES[other]}) but the weights stored as {wdtype}")
    arrays = b.a()
    arrays["extra"] = np.zeros(1, dtype=np.int32)
    yield ("member-extra", b.file(arrays=arrays), "9.3", "an extra member extra.npy (a valid int32 array)")


# --- clause 9.4 item 2: shapes -----------------------------------------------------------------

def _shapes(b: _Base):
    h = b.h()
    h["latent_channels"] = 0
    yield ("shape-latent-channels-zero", b.file(header=h), "5.2", "header latent_channels = 0 (arrays unchanged)")
    h = b.h()
    h["hyper_channels"] = MAX_CHANNELS + 1
    yield ("shape-hyper-channels-too-many", b.file(header=h), "5.2",
           f"header hyper_channels = {MAX_CHANNELS + 1} (arrays unchanged)")

    # C_y = 228, consistent everywhere: gather.6 then has 3*K*228 = 2052 outputs (clause 5.2: C_y <= 227).
    cy = 228
    h, arrays = b.h(), b.a()
    h["latent_channels"] = cy
    for spec in CONTEXT:
        arrays[f"{spec.name}.weight"] = _pad_axis(arrays[f"{spec.name}.weight"], 1, cy)
    arrays["synthesis.0.weight"] = _pad_axis(arrays["synthesis.0.weight"], 1, cy)
    arrays["inv_gain"] = _pad_axis(arrays["inv_gain"], 1, cy, value=int(arrays["inv_gain"][0, 0]))
    g6 = GATHER[-1].name
    for part in ("weight", "bias", "shift"):
        arrays[f"{g6}.{part}"] = _pad_axis(arrays[f"{g6}.{part}"], 0, 3 * NUM_MIXTURES * cy)
    yield ("shape-latent-channels-228", b.file(h, arrays), "5.2",
           f"C_y = {cy} with every shape consistent: {g6} has 3*K*C_y = {3 * NUM_MIXTURES * cy} outputs, "
           f"more than {MAX_CHANNELS}")

    def resize_outputs(layer, nxt, size):
        arrays = b.a()
        for part in ("weight", "bias", "shift"):
            arrays[f"{layer}.{part}"] = _pad_axis(arrays[f"{layer}.{part}"], 0, size)
        arrays[f"{nxt}.weight"] = _pad_axis(arrays[f"{nxt}.weight"], 1, size)
        return b.file(arrays=arrays)

    yield ("shape-layer-outputs-too-many", resize_outputs("gather.1", "gather.2", MAX_CHANNELS + 1), "5.2",
           f"gather.1 has {MAX_CHANNELS + 1} outputs (extra ones zero; gather.2 has as many inputs)")
    yield ("shape-layer-outputs-zero", resize_outputs("gather.1", "gather.2", 0), "5.2",
           "gather.1 has 0 outputs (weight, bias, shift empty; gather.2 has 0 inputs)")

    def with_weight_inputs(layer, inputs):
        arrays = b.a()
        arrays[f"{layer}.weight"] = _pad_axis(arrays[f"{layer}.weight"], 1, inputs)
        return b.file(arrays=arrays)

    arrays = b.a()
    arrays["context.5.weight"] = arrays["context.5.weight"][:, :, :3, :3]
    yield ("shape-kernel", b.file(arrays=arrays), "9.4", "context.5.weight has a 3x3 kernel, not 5x5")
    yield ("shape-hyper-synthesis-0-inputs", with_weight_inputs("hyper_synthesis.0", b.cz + 1), "9.4",
           f"hyper_synthesis.0 has {b.cz + 1} inputs, C_z + 1")
    yield ("shape-context-inputs", with_weight_inputs("context.7", b.cy + 1), "9.4",
           f"context.7 has {b.cy + 1} inputs, C_y + 1")
    g0_in = b.arrays["gather.0.weight"].shape[1] - b.out("context.7")
    yield ("shape-gather-0-inputs", with_weight_inputs("gather.0", g0_in), "9.4",
           f"gather.0 has {g0_in} inputs, as if context.7 were left out of its input concatenation")
    yield ("shape-synthesis-0-inputs", with_weight_inputs("synthesis.0", b.cy + 1), "9.4",
           f"synthesis.0 has {b.cy + 1} inputs, C_y + 1")
    s2_in = b.out("synthesis.1")
    yield ("shape-layer-inputs-d2s", with_weight_inputs("synthesis.2", s2_in), "9.4",
           f"synthesis.2 has {s2_in} inputs: the outputs of synthesis.1 before depth-to-space, not after")
    arrays = b.a()
    arrays["gather.3.bias"] = _pad_axis(arrays["gather.3.bias"], 0, b.out("gather.3") + 1)
    yield ("shape-bias-length", b.file(arrays=arrays), "9.4",
           f"gather.3.bias has {b.out('gather.3') + 1} entries, one more than gather.3's outputs")
    arrays = b.a()
    arrays["synthesis.4.shift"] = _pad_axis(arrays["synthesis.4.shift"], 0, b.out("synthesis.4") // 4)
    yield ("shape-shift-length", b.file(arrays=arrays), "9.4",
           f"synthesis.4.shift has {b.out('synthesis.4') // 4} entries: the channels after depth-to-space, "
           f"not the {b.out('synthesis.4')} outputs")
    out = b.out("hyper_synthesis.1") + 2
    arrays = b.a()
    for part in ("weight", "bias", "shift"):
        arrays[f"hyper_synthesis.1.{part}"] = _pad_axis(arrays[f"hyper_synthesis.1.{part}"], 0, out)
    yield ("shape-d2s-not-multiple-of-4", b.file(arrays=arrays), "9.4",
           f"hyper_synthesis.1 (depth-to-space) has {out} outputs, not a multiple of 4")
    out = 3 * 2 * b.cy
    arrays = b.a()
    for part in ("weight", "bias", "shift"):
        arrays[f"gather.6.{part}"] = _pad_axis(arrays[f"gather.6.{part}"], 0, out)
    yield ("shape-gather-6-outputs", b.file(arrays=arrays), "9.4",
           f"gather.6 has {out} outputs, 3*2*C_y as for 2 mixture components, not 3*K*C_y with K = 3")
    arrays = b.a()
    for part in ("weight", "bias", "shift"):
        a = arrays[f"{OUTPUT_LAYER}.{part}"]
        arrays[f"{OUTPUT_LAYER}.{part}"] = np.concatenate([a, a[-1:]])
    yield ("shape-synthesis-6-outputs", b.file(arrays=arrays), "9.4",
           f"{OUTPUT_LAYER} has 4 outputs (a copy of the last added), not 3")
    arrays = b.a()
    if b.rates != b.cy:
        arrays["inv_gain"] = np.ascontiguousarray(arrays["inv_gain"].T)
        what = f"stored transposed, shape ({b.cy}, {b.rates}) = (C_y, R)"
    else:
        arrays["inv_gain"] = _pad_axis(arrays["inv_gain"], 0, b.rates + 1, value=int(arrays["inv_gain"][0, 0]))
        what = f"with R + 1 = {b.rates + 1} rows"
    yield ("shape-inv-gain", b.file(arrays=arrays), "9.4", f"inv_gain {what}, not (R, C_y) = ({b.rates}, {b.cy})")
    for name, size in (("z_lo", b.cz - 1 if b.cz > 1 else 2), ("z_count", b.cz + 1)):
        arrays = b.a()
        arrays[name] = _pad_axis(arrays[name], 0, size, value=int(arrays[name][-1]))
        yield (f"shape-{name.replace('_', '-')}", b.file(arrays=arrays), "9.4",
               f"{name} has {size} entries, C_z = {b.cz}")
    arrays = b.a()
    n = arrays["z_cdf"].shape[1]
    arrays["z_cdf"] = _pad_axis(arrays["z_cdf"], 1, n + 1, value=65536)
    yield ("shape-z-cdf", b.file(arrays=arrays), "9.4",
           f"z_cdf has {n + 1} columns (one more padding column), not max(z_count) + 1 = {n}")


# --- clause 9.4 item 3: values -----------------------------------------------------------------

def _values(b: _Base):
    h = b.h()
    h["weight_bits"] = 24 - PROFILES[b.profile]
    yield ("value-weight-bits", b.file(header=h), "9.2",
           f"header weight_bits {h['weight_bits']} with profile {b.profile}")
    for rates in (0, MAX_RATES + 1):
        h, arrays = b.h(), b.a()
        h["num_rates"] = rates
        arrays["inv_gain"] = np.resize(arrays["inv_gain"], (rates, b.cy))
        yield (f"value-num-rates-{rates}", b.file(h, arrays), "9.2",
               f"header num_rates {rates} (inv_gain has {rates} rows), outside 1..{MAX_RATES}")
    h = b.h()
    h["inv_gain_shift"] = MAX_INV_GAIN_SHIFT + 1
    yield ("value-inv-gain-shift", b.file(header=h), "9.2",
           f"header inv_gain_shift {MAX_INV_GAIN_SHIFT + 1}, outside 0..{MAX_INV_GAIN_SHIFT}")
    h = b.h()
    h["inv_gain_shift"] = "@@big@@"
    yield ("value-inv-gain-shift-huge", b.with_header_json(h, {"@@big@@": "1" + "0" * 4000}), "9.2",
           "header inv_gain_shift = 10^4000 (a 4001-digit JSON integer), outside 0..27")
    h = b.h()
    h["synthesis_input_clip"] = ACT16_MAX + 1
    yield ("value-synthesis-input-clip", b.file(header=h), "9.2",
           f"header synthesis_input_clip {ACT16_MAX + 1}, outside 1..{ACT16_MAX}")
    h = b.h()
    h["synthesis_input_clip"] = "@@big@@"
    yield ("value-synthesis-input-clip-huge", b.with_header_json(h, {"@@big@@": "-" + "9" * 5000}), "9.2",
           "header synthesis_input_clip = -(10^5000 - 1) (a 5000-digit negative JSON integer), outside 1..32767")
    h = b.h()
    h["clip"]["gather.4"] = 0
    yield ("value-clip-zero", b.file(header=h), "9.2", f"header clip of gather.4 is 0, outside 1..{ACT16_MAX}")
    h = b.h()
    h["clip"][OUTPUT_LAYER] = h["clip"]["synthesis.5"]
    yield ("value-output-clip", b.file(header=h), "9.2",
           f"header clip of {OUTPUT_LAYER} is {h['clip'][OUTPUT_LAYER]}, not 255")
    for profile in ("W16A16", "W8A16"):
        h, arrays = b.with_profile(profile)
        if profile != b.profile:
            parse_model(b.file(h, arrays), where=f"base model as {profile}")  # the converted base is valid
        w = arrays["gather.2.weight"]
        w.flat[0] = np.iinfo(w.dtype).min
        yield (f"value-weight-{w.dtype.name}-min", b.file(h, arrays), "9.4",
               f"{profile} model with gather.2.weight[0, 0, 0, 0] = {np.iinfo(w.dtype).min}, "
               f"outside the symmetric range +-{np.iinfo(w.dtype).max}")
    arrays = b.a()
    arrays["gather.5.shift"][0] = MAX_SHIFT + 1
    yield ("value-shift", b.file(arrays=arrays), "9.3", f"gather.5.shift[0] = {MAX_SHIFT + 1}, outside 0..{MAX_SHIFT}")
    for slug, value in (("negative", -1), ("too-large", MAX_INV_GAIN + 1)):
        arrays = b.a()
        arrays["inv_gain"][-1, -1] = value
        yield (f"value-inv-gain-{slug}", b.file(arrays=arrays), "9.3",
               f"inv_gain[{b.rates - 1}, {b.cy - 1}] = {value}, outside 0..{MAX_INV_GAIN}")
    for layer, ky, kx, where in (("context.3", 1, 1, "the centre tap (the current position)"),
                                 ("context.5", 2, 3, "right of the centre in the centre row")):
        arrays = b.a()
        arrays[f"{layer}.weight"][0, 0, ky, kx] = 1
        yield (f"value-causal-mask-{layer.replace('.', '-')}", b.file(arrays=arrays), "5.1",
               f"{layer}.weight[0, 0, {ky}, {kx}] = 1: non-zero at {where}, outside the causal mask")

    counts = b.arrays["z_count"].astype(np.int64)
    n_max = int(counts.max())

    def with_z(count_at=None, row_edit=None, lo_at=None):
        arrays = b.a()
        z_count, z_cdf, z_lo = arrays["z_count"].astype(np.int64), arrays["z_cdf"].astype(np.int64), arrays["z_lo"]
        if count_at is not None:
            c, n = count_at
            z_count[c] = n
            width = int(z_count.max()) + 1
            z_cdf = _pad_axis(z_cdf, 1, width, value=65536)
            z_cdf[c] = 65536
            z_cdf[c, : n + 1] = np.arange(n + 1) * (65535 // max(n, 1))
        if row_edit is not None:
            row_edit(z_cdf)
        if lo_at is not None:
            z_lo[lo_at[0]] = lo_at[1]
        arrays["z_count"], arrays["z_cdf"] = z_count.astype(np.int32), z_cdf.astype(np.int32)
        return b.file(arrays=arrays)

    c_min, c_max = int(np.argmin(counts)), int(np.argmax(counts))
    yield ("value-z-count-zero", with_z(count_at=(c_min, 0)), "9.3", f"z_count[{c_min}] = 0, outside 1..{MAX_Z_COUNT}")
    yield ("value-z-count-too-large", with_z(count_at=(c_max, MAX_Z_COUNT + 1)), "9.3",
           f"z_count[{c_max}] = {MAX_Z_COUNT + 1} (with a valid z_cdf row), outside 1..{MAX_Z_COUNT}")

    def edit(c, index, value):
        def apply(z_cdf):
            z_cdf[c, index] = value if value is not None else z_cdf[c, index - 1]
        return apply

    yield ("value-z-cdf-first", with_z(row_edit=edit(c_max, 0, 1)), "9.4", f"z_cdf[{c_max}][0] = 1, not 0")
    yield ("value-z-cdf-not-increasing", with_z(row_edit=edit(c_max, n_max, None)), "9.4",
           f"z_cdf[{c_max}][{n_max}] = z_cdf[{c_max}][{n_max - 1}]: the last window symbol has frequency 0")
    yield ("value-z-cdf-total", with_z(row_edit=edit(c_max, n_max, 65536)), "9.4",
           f"z_cdf[{c_max}][{n_max}] = 65536 (C(n_w) must be at most 65535)")
    padded = [c for c in range(b.cz) if counts[c] < n_max]
    if padded:  # only a base with z_count not all equal has padding entries
        c = padded[0]
        yield ("value-z-cdf-padding", with_z(row_edit=edit(c, n_max, 65535)), "9.4",
               f"z_cdf[{c}][{n_max}] = 65535 after C(n_w) (z_count[{c}] = {counts[c]}): padding must be 65536")
    yield ("value-z-window-low", with_z(lo_at=(0, -Z_MAX - 1)), "9.4",
           f"z_lo[0] = {-Z_MAX - 1}: the z window starts below -Z_MAX")
    lo = Z_MAX - int(counts[c_max]) + 2
    yield ("value-z-window-high", with_z(lo_at=(c_max, lo)), "9.4",
           f"z_lo[{c_max}] = {lo} with z_count {counts[c_max]}: the z window ends at Z_MAX + 1")


# --- clause 9.5: accumulator bound -------------------------------------------------------------

def _accumulator(b: _Base):
    arrays = b.a()
    arrays["gather.6.bias"][0] = -(1 << 31)
    yield ("accumulator-bias-int32-min", b.file(arrays=arrays), "9.5",
           "gather.6.bias[0] = -2^31: |b| alone reaches 2^31")

    # Output channel 0 of one layer at exactly sum|W| * in_max + |b| = 2^31 (one less is valid),
    # every other channel of the layer with zero weights; in_max by the rule of clause 9.5.
    top = ACT16_MAX

    def exact(layer, what, set_in_max, suffix=""):
        h, arrays = b.h(), b.a()
        in_max = set_in_max(h)
        w = np.zeros_like(arrays[f"{layer}.weight"])
        spec = BY_NAME[layer]
        w[0] = causal_mask(spec.kernel) if spec.network == "context" else 1
        arrays[f"{layer}.weight"] = w
        taps = int(np.abs(w[0].astype(np.int64)).sum())
        bias = (1 << 31) - taps * in_max
        arrays[f"{layer}.bias"][0] = bias - 1
        parse_model(b.file(h, arrays), where=f"{layer} at 2^31 - 1")  # one below the bound is valid
        arrays[f"{layer}.bias"][0] = bias
        return (f"accumulator-{layer.replace('.', '-').replace('_', '-')}{suffix}", b.file(h, arrays), "9.5",
                f"{layer} channel 0: {taps} weights of 1, in_max = {in_max} ({what}), bias {bias}: "
                f"sum|W|*in_max + |b| = 2^31 exactly")

    def fixed(value):
        return lambda h: value

    def clip_of(layer):
        def setup(h):
            h["clip"][layer] = top
            return top
        return setup

    def synthesis_input(h):
        h["synthesis_input_clip"] = top
        return top

    yield exact("hyper_synthesis.0", "the clipped z_hat", fixed(CONTEXT_INPUT_MAX))
    yield exact("context.7", "the clipped y_hat", fixed(CONTEXT_INPUT_MAX))
    yield exact("gather.0", "the largest of the clips of hyper_synthesis.2 and context.3/5/7; clip of context.5 "
                f"raised to {top}", clip_of("context.5"))
    yield exact("gather.0", "the largest of the clips of hyper_synthesis.2 and context.3/5/7; clip of "
                f"hyper_synthesis.2 raised to {top}", clip_of("hyper_synthesis.2"), "-hyper-clip")
    yield exact("synthesis.0", f"synthesis_input_clip, raised to {top}", synthesis_input)
    yield exact("synthesis.3", f"the clip of synthesis.2, raised to {top}", clip_of("synthesis.2"))


# --- all of them --------------------------------------------------------------------------------

GROUPS = ((_container, FORMAT), (_npy_members, FORMAT), (_header, FORMAT), (_member_list, FORMAT),
          (_shapes, SHAPE), (_values, VALUE), (_accumulator, ACCUMULATOR))  # clause 9.4 items 1 to 4


def invalid_models(base: bytes) -> list[InvalidModel]:
    """Informative: the invalid model files derived from a valid model file's bytes, in a fixed
    order. Each is checked here: parse_model(data, where=name) must raise exactly its
    expected_error (otherwise a RuntimeError names the entry)."""
    b = _Base(base)
    models = [InvalidModel(name=name, data=data, expected_error=error, clause=clause, description=description)
              for group, error in GROUPS for name, data, clause, description in group(b)]
    check(models)
    return models


def check(models: list[InvalidModel]) -> None:
    """Every entry well-formed (unique slug, known error, one-line description) and rejected by
    parse_model with exactly its expected error, in one line."""
    seen = set()
    for m in models:
        if not SLUG.fullmatch(m.name) or m.name in seen:
            raise RuntimeError(f"invalid model {m.name!r}: name is not a unique slug")
        seen.add(m.name)
        if m.expected_error not in ALL_ERRORS or "\n" in m.description:
            raise RuntimeError(f"invalid model {m.name!r}: bad expected_error or description")
        try:
            parse_model(m.data, where=m.name)
        except ModelError as exc:
            if type(exc).__name__ != m.expected_error:
                raise RuntimeError(f"invalid model {m.name!r}: expected {m.expected_error}, parse_model raised {exc}") \
                    from exc
            if "\n" in str(exc):
                raise RuntimeError(f"invalid model {m.name!r}: error message is not one line: {exc!r}") from exc
        except Exception as exc:  # noqa: BLE001 - a crash is a mismatch too
            raise RuntimeError(f"invalid model {m.name!r}: expected {m.expected_error}, parse_model crashed with "
                               f"{type(exc).__name__}: {exc}") from exc
        else:
            raise RuntimeError(f"invalid model {m.name!r}: accepted by parse_model, expected {m.expected_error}")


# --- boundary and single-fault models (refcodec.make_vectors, issue 20) ---------------------------
#
# One past each limit of clauses 5.2 and 9.4 that the groups above do not reach, and single-fault
# versions of files that the groups above make with a second flaw: each file here breaks one rule
# and passes every other check of clause 9.4 (refcodec.make_vectors verifies it by switching that
# check off). Kept apart from the groups above, which other work extends.

def _boundary_format(b: _Base):
    raw = bytearray(b.member("inv_gain.npy"))
    raw[6:8] = b"\x01\x01"
    yield ("npy-version-1-1", b.with_members({"inv_gain.npy": bytes(raw)}), "9.1",
           "member inv_gain.npy marked .npy format version 1.1 (its layout that of 1.0); only 1.0 is allowed")
    h = b.h()
    h["provenance"] = {"generator": "refdec.invalid_models", "value": "@@nan@@"}
    yield ("header-nan-in-provenance", b.with_header_json(h, {"@@nan@@": "NaN"}), "9.2",
           "NaN inside the informative provenance object, where any JSON value is allowed: NaN is not JSON")
    h = b.h()
    h["weight_bits"] = "@@bits@@"
    yield ("header-weight-bits-16-0", b.with_header_json(h, {"@@bits@@": f"{b.header['weight_bits']}.0"}), "9.2",
           f"header weight_bits is {b.header['weight_bits']}.0, equal to the profile's bits but not an integer")


def _boundary_format_edges(b: _Base):
    """Format faults next to an edge that the valid variants sit on (valid_variants)."""
    yield ("zip-21-bytes", b.data[:21], "9.1.1",
           "the first 21 bytes of the base file: shorter than the 22-byte end-of-central-directory record")
    name = "synthesis.0.bias.npy"
    data = b.member(name)
    length = len(_deflate(data))
    # A ZIP64 field announcing 15 data bytes (fewer than the 16 of the two sizes), whose 16th byte,
    # the first of the next field (id 0xCA00, no data), completes the compressed size.
    zip64 = struct.pack("<HHQQ", ZIP64_EXTRA_ID, 15, len(data), length)[:-1] + struct.pack("<HH", 0xCA00, 0)
    assert length < 1 << 56
    yield ("zip-local-zip64-field-15-bytes",
           b.with_entry(name, local=(("sizes", (ZIP64_SIZES, ZIP64_SIZES)), ("extra", zip64))), "9.1.1",
           f"the local header of {name} has sizes 0xFFFFFFFF and a ZIP64 extra field of 15 data bytes, one short of "
           "the two 8-byte sizes (the byte after it, read as the 16th, would give the right sizes)")
    yield ("zip-central-record-cut", _zip([_Entry(n, d) for n, d in b.members], eocd=(("count_delta", 1),),
                                          cd_tail=struct.pack("<IHHH", 0x02014B50, 20, 20, 0)), "9.1.1",
           f"the end record counts {len(b.members) + 1} members; the last central record is cut after 10 bytes, "
           "12 bytes before the end record")
    member = _npy(_meta("|u1", (MAX_MEMBER_BYTES + 1 - 128,)), bytes(MAX_MEMBER_BYTES + 1 - 128))
    assert len(member) == MAX_MEMBER_BYTES + 1
    yield ("zip-member-2-28-plus-1-bytes", b.with_members({"gather.0.shift.npy": member}), "9.1.1",
           "member gather.0.shift.npy of 2^28 + 1 bytes uncompressed (real zeros, its .npy header consistent), one "
           "past the largest allowed")
    n = b.arrays["gather.5.shift"].shape[0]
    raw = np.ascontiguousarray(b.arrays["gather.5.shift"]).tobytes()
    yield ("npy-header-two-commas",
           b.with_members({"gather.5.shift.npy": _npy(f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({n},), ,}}",
                                                      raw)}), "9.1.3",
           "member gather.5.shift.npy: .npy header with two commas after its last entry")
    yield ("npy-header-duplicate-key-four-entries",
           b.with_members({"gather.5.shift.npy": _npy(f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({n},), "
                                                      f"'descr': '|u1', }}", raw)}), "9.1.3",
           "member gather.5.shift.npy: .npy header with all three keys and descr a second time (four entries)")
    digits = "1" + "0" * 4300  # 4301 digits: past Python's default limit for converting digit strings
    yield ("npy-shape-4301-digits", b.with_members({"gather.5.shift.npy": _npy(
               f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({digits},), }}", bytes(40000))}), "9.1.3",
           "member gather.5.shift.npy: .npy shape (10^4300,), a dimension of 4301 digits (beyond 2^28), with 40000 "
           "data bytes")
    name = "synthesis.0.bias.npy"
    cut = TIMESTAMP_EXTRA + struct.pack("<HHQQ", ZIP64_EXTRA_ID, 16, len(b.member(name)), 0)[:-1]
    yield ("zip-local-zip64-field-cut", b.with_entry(name, local=(("sizes", (ZIP64_SIZES, ZIP64_SIZES)), ("extra", cut))),
           "9.1.1",
           f"the local header of {name} has sizes 0xFFFFFFFF and a ZIP64 field announcing 16 data bytes, of which "
           "the extra area holds 15")
    stray = TIMESTAMP_EXTRA + b"\x01\x00\x10"
    yield ("zip-local-extra-3-stray-bytes",
           b.with_entry(name, local=(("sizes", (ZIP64_SIZES, ZIP64_SIZES)), ("extra", stray))), "9.1.1",
           f"the local header of {name} has sizes 0xFFFFFFFF and an extra area of a timestamp field and 3 bytes, too "
           "few for a field header: no ZIP64 field")
    stray = TIMESTAMP_EXTRA + b"\xca\x00\x10"
    yield ("zip-local-extra-3-stray-bytes-other-id",
           b.with_entry(name, local=(("sizes", (ZIP64_SIZES, ZIP64_SIZES)), ("extra", stray))), "9.1.1",
           f"the local header of {name} has sizes 0xFFFFFFFF and an extra area of a timestamp field and 3 bytes "
           "starting with the id 0x00CA: too few for a field header, no ZIP64 field (a scan that takes 3 bytes "
           "for a header reads past the area)")
    name, data = max(b.members, key=lambda member: len(member[1]))
    assert len(data) >= 1 << 9  # u >> 9 > u >> 10: a limit of u / 2^9 would accept it
    yield ("zip-deflate-1-byte-past-bound", _deflated_past_bound(b.members, name, 1), "9.1.1",
           f"member {name} ({len(data)} bytes) deflated as empty blocks and then its data: one compressed byte more "
           f"than its uncompressed size allows ({max_deflated_size(len(data))})")
    yield ("npy-header-key-misspelled",
           b.with_members({"gather.5.shift.npy": _npy(f"{{'descr': '|u1', 'fortran-order': False, 'shape': ({n},), }}",
                                                      raw)}), "9.1.3",
           "member gather.5.shift.npy: .npy header with the keys descr, fortran-order (a hyphen) and shape")


def _boundary_header_edges(b: _Base):
    """Format faults of clause 9.2 where any value is allowed around them."""
    h = b.h()
    h["provenance"] = {"generator": "refdec.invalid_models", "@@key@@": 1}
    yield ("header-unpaired-surrogate-in-key", b.with_header_json(h, {"@@key@@": '"\\ud800"'}), "9.2",
           "header provenance has the key \"\\ud800\", an unpaired surrogate escape, where any key is allowed: keys "
           "are strings and must be Unicode text too")


def _boundary_order(b: _Base):
    """The order of clause 9.4's items: a format fault (item 1) reported before a shape fault (item 2)."""
    arrays = b.a()
    arrays["z_lo"] = arrays["z_lo"][:1]
    members = _members_of(b.file(arrays=arrays))
    entries = [_Entry(n, d, crc_xor=1) if n == "synthesis.6.weight.npy" else _Entry(n, d) for n, d in members]
    yield ("zip-bad-crc-and-shape-error", _zip(entries), "9.4",
           "member synthesis.6.weight.npy with a wrong CRC-32 (item 1 of clause 9.4) and z_lo of one entry for "
           f"C_z = {b.cz} (item 2): the format fault is reported, and its member is read only after the shapes")


def _boundary_shape_edges(b: _Base):
    """Shape faults in a member that sits at a limit of clause 9.1.1 or 9.1.3."""
    count = (MAX_MEMBER_BYTES - 128) // 2  # a 128-byte .npy preamble and header, then int16 data
    member = _npy(_meta("<i2", (1, 1, 1, count)), bytes(2 * count))
    assert len(member) == MAX_MEMBER_BYTES
    yield ("zip-member-2-28-bytes", b.with_members({"gather.0.weight.npy": member}), "9.4",
           f"member gather.0.weight.npy of exactly 2^28 bytes uncompressed, the largest allowed (clause 9.1.1): "
           f"int16 zeros of shape (1, 1, 1, {count}), the wrong shape for gather.0")
    yield ("npy-shape-dimension-2-28", b.with_members({"z_cdf.npy": _npy(_meta("<i4", (0, MAX_MEMBER_BYTES)), b"")}),
           "9.4", f"member z_cdf.npy of shape (0, 2^28): no elements, a dimension at the limit of 2^28 (clause 9.1.3), "
           f"the wrong shape for C_z = {b.cz} rows")


TOTAL_FILLED_MEMBERS = ("gather.0.shift.npy", "gather.1.shift.npy", "gather.2.shift.npy", "gather.3.shift.npy")


def _members_totalling(b: _Base, total: int) -> bytes:
    """The base with the members TOTAL_FILLED_MEMBERS replaced by uint8 zeros of plausible .npy
    headers (the wrong shapes), sized so that all members together are `total` bytes uncompressed,
    none over 2^28."""
    rest = sum(len(d) for n, d in b.members if n not in TOTAL_FILLED_MEMBERS)
    sizes = [(total - rest) // len(TOTAL_FILLED_MEMBERS)] * len(TOTAL_FILLED_MEMBERS)
    sizes[-1] += total - rest - sum(sizes)
    replace = {}
    for name, size in zip(TOTAL_FILLED_MEMBERS, sizes):
        count = size - len(_npy(_meta("|u1", (size,)), b""))
        replace[name] = _npy(_meta("|u1", (count,)), bytes(count))
        assert len(replace[name]) == size <= MAX_MEMBER_BYTES
    data = b.with_members(replace)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sum(info.file_size for info in zf.infolist()) == total
    return data


def _boundary_total_size(b: _Base):
    """The limit on all members together (clause 9.1.1), from its records: no model within clause 5.2
    reaches it, so a file at it has a wrong shape, and a file past it has one as well."""
    names = ", ".join(TOTAL_FILLED_MEMBERS)
    yield ("zip-members-2-29-bytes-together", _members_totalling(b, MAX_TOTAL_MEMBER_BYTES), "9.4",
           f"members of exactly 2^29 bytes together uncompressed, the most allowed (clause 9.1.1): {names} are "
           "uint8 zeros of about 2^27 bytes each, the wrong shape for a shift")


def _boundary_total_size_past(b: _Base):
    names = ", ".join(TOTAL_FILLED_MEMBERS)
    yield ("zip-members-2-29-plus-1-bytes-together", _members_totalling(b, MAX_TOTAL_MEMBER_BYTES + 1), "9.1.1",
           f"members of 2^29 + 1 bytes together uncompressed, one past the most allowed: {names} are uint8 zeros "
           "of about 2^27 bytes each (the wrong shape for a shift, which the limit reports before inflating)")


def _boundary_shapes(b: _Base):
    for cz, what in ((MAX_CHANNELS + 1, "one past 2048"), (0, "below 1")):
        h, arrays = b.h(), b.a()
        h["hyper_channels"] = cz
        arrays["hyper_synthesis.0.weight"] = _pad_axis(arrays["hyper_synthesis.0.weight"], 1, cz)
        for name in ("z_lo", "z_count"):
            arrays[name] = _pad_axis(arrays[name], 0, cz, value=int(arrays[name][-1]))
        arrays["z_cdf"] = np.concatenate([arrays["z_cdf"]] + [arrays["z_cdf"][-1:]] * max(0, cz - b.cz))[:cz]
        yield (f"shape-hyper-channels-{cz}", b.file(h, arrays), "5.2",
               f"C_z = {cz} ({what}, clause 5.2) with every shape consistent: hyper_synthesis.0 has {cz} inputs, "
               f"z_lo, z_count and z_cdf {cz} rows")


def _boundary_values(b: _Base):
    h = b.h()
    h["inv_gain_shift"] = -1
    yield ("value-inv-gain-shift-negative", b.file(header=h), "9.2", "header inv_gain_shift -1, outside 0..27")
    h = b.h()
    h["synthesis_input_clip"] = 0
    yield ("value-synthesis-input-clip-zero", b.file(header=h), "9.2",
           f"header synthesis_input_clip 0, outside 1..{ACT16_MAX}")
    h = b.h()
    h["clip"]["gather.3"] = ACT16_MAX + 1
    yield ("value-clip-32768", b.file(header=h), "9.2",
           f"header clip of gather.3 is {ACT16_MAX + 1}, one past {ACT16_MAX}")
    counts = b.arrays["z_count"].astype(np.int64)
    c = int(np.argmin(counts))
    if counts[c] < counts.max():  # a padded row: its first padding entry, C(n_w + 1), not 65536
        arrays = b.a()
        arrays["z_cdf"][c, counts[c] + 1] = 65535
        yield ("value-z-cdf-first-padding", b.file(arrays=arrays), "9.4",
               f"z_cdf[{c}][{counts[c] + 1}] = 65535, the first padding entry after C(n_w) (z_count[{c}] = "
               f"{counts[c]}): padding must be 65536")
    arrays = b.a()
    arrays["context.7.weight"][0, 0, 6, 0] = 1
    yield ("value-causal-mask-context-7-below", b.file(arrays=arrays), "5.1",
           "context.7.weight[0, 0, 6, 0] = 1: non-zero in the last kernel row, below the current position")
    counts = b.arrays["z_count"].astype(np.int64)
    c = int(np.argmax(counts))
    arrays = b.a()
    arrays["z_cdf"][c, 1] = 0
    yield ("value-z-cdf-first-frequency-zero", b.file(arrays=arrays), "9.4",
           f"z_cdf[{c}][1] = 0 = z_cdf[{c}][0]: the first window symbol has frequency 0")


BOUNDARY_GROUPS = ((_boundary_format, FORMAT), (_boundary_format_edges, FORMAT), (_boundary_header_edges, FORMAT),
                   (_boundary_order, FORMAT),
                   (_boundary_shapes, SHAPE),
                   (_boundary_shape_edges, SHAPE), (_boundary_total_size, SHAPE),
                   (_boundary_total_size_past, FORMAT), (_boundary_values, VALUE))


def boundary_invalid_models(base: bytes) -> list[InvalidModel]:
    """Informative: the boundary and single-fault invalid model files derived from a valid model
    file's bytes, checked as invalid_models() checks its own."""
    b = _Base(base)
    models = [InvalidModel(name=name, data=data, expected_error=error, clause=clause, description=description)
              for group, error in BOUNDARY_GROUPS for name, data, clause, description in group(b)]
    check(models)
    return models


# --- valid variants at the edges of clauses 9.1 and 9.2 (refcodec.make_vectors, issue 20) -------
#
# Valid model files with the tiny base model's parameters, written in the unusual but allowed ways
# of clauses 9.1 and 9.2, each at the limit of a rule: a decoder must accept them and decode the
# tiny base model's stream to the same image. A decoder that rejects one has a rule too strict.

@dataclass(frozen=True)
class ValidVariant:
    """A valid model file with the tiny base model's parameters, written at the edges of the rules."""

    name: str  # slug, unique
    data: bytes
    clause: str
    description: str



def _zip_variant(b: _Base) -> bytes:
    """Every member with general-purpose flags 0x0806 (bits 1, 2 and 11, the allowed ones), the
    members alternately stored and deflated, every local header with sizes 0xFFFFFFFF and an extra
    area of a timestamp field and then a ZIP64 field of exactly 16 data bytes ending the area, every
    central record with an extra field and a comment; header.npy is a multiple of 256 bytes long
    (its ZIP64 size field has a zero low byte)."""
    text = b.header_text(b.header).encode("utf-8")
    preamble = len(_npy_bytes(np.frombuffer(text, dtype=np.uint8))) - len(text)
    text += b" " * (-(preamble + len(text)) % 256)
    header = _npy_bytes(np.frombuffer(text, dtype=np.uint8))
    assert len(header) % 256 == 0
    entries = []
    for index, (name, data) in enumerate(b.members):
        data = header if name == "header.npy" else data
        method = 0 if index % 2 else 8
        length = len(data) if method == 0 else len(_deflate(data))
        zip64 = struct.pack("<HHQQ", ZIP64_EXTRA_ID, 16, len(data), length)
        entries.append(_Entry(name, data, method=method, flags=0x0806,
                              local=(("sizes", (ZIP64_SIZES, ZIP64_SIZES)), ("extra", TIMESTAMP_EXTRA + zip64)),
                              central=(("extra", TIMESTAMP_EXTRA), ("comment", f"member {index}".encode()))))
    return _zip(entries)


def _npy_variant(b: _Base) -> bytes:
    """Every array member's .npy header in another allowed spelling (clause 9.1.3): keys in
    another order, double quotes, spaces around the tokens, a comma after the last entry or none,
    '<u1' for the shifts; one header padded to the largest HEADER_LEN, 65535."""
    replace = {}
    for index, (name, data) in enumerate(b.members):
        if name == "header.npy":
            continue
        a = b.arrays[name[:-4]]
        descr = "<u1" if a.dtype == np.uint8 else a.dtype.str
        dims = ", ".join(str(d) for d in a.shape) + ("," if a.ndim == 1 else "")
        text = (f'{{ "shape" : ( {dims} ) , "fortran_order" : False , "descr" : "{descr}" , }}' if index % 2 else
                f"{{'fortran_order': False, 'descr': '{descr}', 'shape': ({dims})}}")
        raw = np.ascontiguousarray(a).tobytes()
        if name == "z_lo.npy":  # no padding: the header text ends "}\n" at any length
            head = text.encode("latin-1") + b"\n"
            replace[name] = NPY_MAGIC + b"\x01\x00" + struct.pack("<H", len(head)) + head + raw
        elif name == "z_cdf.npy":  # HEADER_LEN = 65535: the header text padded with spaces
            head = text.encode("latin-1") + b" " * (0xFFFF - len(text) - 1) + b"\n"
            replace[name] = NPY_MAGIC + b"\x01\x00" + struct.pack("<H", len(head)) + head + raw
        else:
            replace[name] = _npy(text, raw)
    return b.with_members(replace)


def _header_variant(b: _Base) -> bytes:
    """header.npy of exactly MAX_HEADER_BYTES bytes (the JSON padded with spaces), its JSON nested
    exactly MAX_JSON_DEPTH deep (provenance), with integers of JSON_INT_EXACT_DIGITS and one more
    digits where any value is allowed (provenance), and a UTF-8 description beyond ASCII."""
    h = b.h()
    nested: dict = {"end": True}
    for _ in range(MAX_JSON_DEPTH - 3):  # the header, provenance and these 30 objects: 32 deep
        nested = {"n": nested}
    h["provenance"] = {"deep": nested, "long": "@@long@@", "longer": "@@longer@@"}
    h["description"] = "tiny base model, header at the limits of clause 9.2 — größte Tiefe"
    text = b.header_text(h)
    for marker, digits in (("@@long@@", JSON_INT_EXACT_DIGITS), ("@@longer@@", JSON_INT_EXACT_DIGITS + 1)):
        text = text.replace(json.dumps(marker), "9" * digits)
    raw = text.encode("utf-8")
    preamble = len(_npy_bytes(np.zeros(MAX_HEADER_BYTES, dtype=np.uint8))) - MAX_HEADER_BYTES
    raw += b" " * (MAX_HEADER_BYTES - preamble - len(raw))
    data = b.with_header_bytes(raw)
    assert len(_npy_bytes(np.frombuffer(raw, dtype=np.uint8))) == MAX_HEADER_BYTES
    return data


EMPTY_STORED_BLOCK = b"\x00\x00\x00\xff\xff"  # BFINAL 0, BTYPE 00 (stored), LEN 0, NLEN 0xFFFF


def _empty_fixed_then_stored(fixed: int) -> bytes:
    """`fixed` empty fixed-Huffman blocks (BFINAL 0, BTYPE 01, end-of-block code 0000000: 10 bits
    each) closed by an empty stored block, whose LEN and NLEN start at the next byte boundary."""
    bits = [0, 1, 0] + [0] * 7  # BFINAL, BTYPE 01 (least significant bit first), code 256
    stream = bits * fixed + [0, 0, 0]  # the stored block's BFINAL and BTYPE 00
    value = sum(bit << i for i, bit in enumerate(stream))
    return value.to_bytes(-(-len(stream) // 8), "little") + b"\x00\x00\xff\xff"


# Closing groups of empty blocks of 6, 7, 13 and 9 bytes: one for each length not a multiple of 5.
_EMPTY_GROUPS = {0: b"", 1: _empty_fixed_then_stored(1), 2: _empty_fixed_then_stored(2),
                 3: _empty_fixed_then_stored(1) + _empty_fixed_then_stored(2), 4: _empty_fixed_then_stored(3)}


def _empty_deflate_blocks(length: int) -> bytes:
    """Exactly `length` bytes (at least 13) of non-final deflate blocks that inflate to nothing and
    end on a byte boundary: empty stored blocks, and one closing group for length mod 5."""
    group = _EMPTY_GROUPS[length % len(EMPTY_STORED_BLOCK)]
    out = EMPTY_STORED_BLOCK * ((length - len(group)) // len(EMPTY_STORED_BLOCK)) + group
    assert len(out) == length and zlib.decompressobj(-15).decompress(out) == b""
    return out


WIDE_OUTPUTS = 725  # gather.1 and gather.2 outputs: gather.2.weight.npy is 725 x 725 int16, just over 2^20 bytes
DEFLATE_PADDED_MEMBER = "gather.2.weight.npy"


def _deflated_past_bound(members: list[tuple[str, bytes]], name: str, past: int) -> bytes:
    """Raw ZIP of these members with member `name` deflated as empty blocks and then its deflate
    stream: `past` bytes more than the most compressed bytes its size allows (clause 9.1.1)."""
    data = dict(members)[name]
    stream = _deflate(data)
    payload = _empty_deflate_blocks(max_deflated_size(len(data)) + past - len(stream)) + stream
    return _zip([_Entry(n, d, payload=payload) if n == name else _Entry(n, d) for n, d in members])


def _empty_blocks_variant(members: list[tuple[str, bytes]]) -> bytes:
    """The widened base's members (_wide_members, WIDE_OUTPUTS) with DEFLATE_PADDED_MEMBER at the
    largest compressed size allowed, its empty blocks over 2^20 bytes: a decoder that takes a piece
    of deflate input without output for a truncated stream rejects it."""
    member = dict(members)[DEFLATE_PADDED_MEMBER]
    assert max_deflated_size(len(member)) - len(_deflate(member)) > 1 << 20  # the empty blocks
    return _deflated_past_bound(members, DEFLATE_PADDED_MEMBER, 0)


def _stored_large_variant(members: list[tuple[str, bytes]]) -> bytes:
    """The widened base's members (_wide_members, WIDE_OUTPUTS: zero weights, the same decoded
    images), every one stored: gather.2.weight.npy is stored data of more than 2^20 bytes, more
    than one piece of refdec's reading (clause 9.1.2)."""
    assert len(dict(members)["gather.2.weight.npy"]) > 1 << 20
    return _zip([_Entry(n, d, method=0) for n, d in members])


# The variants built on _wide_members: other parameters, which decode every stream as the base does.
WIDENED_VARIANTS = ("valid-deflate-empty-blocks", "valid-stored-large-member")


def valid_variants(base: bytes) -> list[ValidVariant]:
    """Informative: valid model files with the base model's parameters written at the edges of
    clauses 9.1 and 9.2. Each is checked to parse to the base model's arrays and clip bounds (the
    widened one: to decode as the base model, by make_vectors)."""
    b = _Base(base)
    wide = _wide_members(b, WIDE_OUTPUTS)
    out = [
        ValidVariant("valid-zip-variants", _zip_variant(b), "9.1.1",
                     "every member with flags 0x0806 (bits 1, 2, 11), alternately stored and deflated, local sizes "
                     "0xFFFFFFFF with a timestamp extra field and a 16-byte ZIP64 field ending the extra area, "
                     "central records with an extra field and a comment"),
        ValidVariant("valid-npy-variants", _npy_variant(b), "9.1.3",
                     ".npy headers with keys in other orders, double quotes, spaces, a comma after the last "
                     "entry or none, '<u1' shifts, and HEADER_LEN 65535 (z_cdf)"),
        ValidVariant("valid-deflate-empty-blocks", _empty_blocks_variant(wide), "9.1.1",
                     f"gather.1 and gather.2 widened to {WIDE_OUTPUTS} outputs with zero weights (decoding as the "
                     f"tiny base model); {DEFLATE_PADDED_MEMBER} deflated as empty blocks (over 1 MiB that inflates "
                     "to nothing) and then its data: exactly the most compressed bytes its size allows"),
        ValidVariant("valid-stored-large-member", _stored_large_variant(wide), "9.1.2",
                     f"every member stored; gather.1 and gather.2 widened to {WIDE_OUTPUTS} outputs with zero "
                     f"weights (decoding as the tiny base model), so gather.2.weight.npy is {WIDE_OUTPUTS} x "
                     f"{WIDE_OUTPUTS} int16: stored data of more than 2^20 bytes"),
        ValidVariant("valid-header-limits", _header_variant(b), "9.2",
                     f"header.npy of exactly 2^20 bytes (JSON and spaces), JSON nested {MAX_JSON_DEPTH} deep, "
                     f"integers of {JSON_INT_EXACT_DIGITS} and {JSON_INT_EXACT_DIGITS + 1} digits in provenance, "
                     "a non-ASCII UTF-8 description"),
    ]
    base_model = parse_model(base, where="base model")
    for v in out:
        model = parse_model(v.data, where=v.name)
        if v.name in WIDENED_VARIANTS:
            continue
        same = all(np.array_equal(getattr(model.layers[n], part), getattr(base_model.layers[n], part))
                   and model.layers[n].clip == base_model.layers[n].clip
                   for n in LAYER_NAMES for part in ("weight", "bias", "shift"))
        same = same and all(np.array_equal(getattr(model, k), getattr(base_model, k))
                            for k in ("inv_gain", "z_lo", "z_count", "z_cdf"))
        if not same or SLUG.fullmatch(v.name) is None:
            raise RuntimeError(f"valid variant {v.name}: not the base model's parameters")
    return out
