"""Generate a conformance vector set (spec clause 11.5) from the PyTorch implementation.

    python -m refcodec.make_vectors --out vectors/ [--model PATH ...] [--quick] [--only ID[,ID...]]
                                    [--checkpoint FLOAT.pt] [--device cpu]

For every model file (default: refdec/models/*.npz) it writes, into --out:

* ``streams/<id>.rdc``: valid streams crafted in the latent domain with refdec's informative
  encoder (refdec.generators.encoder.encode_latents): every rate index, 1x1, odd sizes, tall and wide
  strips, several hyper-latent positions, zero / extreme / wide latents and the escape path;
  and invalid streams derived from a valid one (header, model and payload errors of clause
  11.2, the payload errors crafted with refdec.generators.range_encoder.RangeEncoder);
* ``golden/<id>.png``: the samples decoded by refcodec.int_decoder (the golden decoder);
* ``models/<name>.npz``: the model files, plus deliberately invalid ones for the model-group
  errors;
* ``manifest.json`` (clause 11.5.2, sorted keys) with the clause 11.4 hashes of the samples and
  of every clause 11.3 stage tensor, and ``README.md`` generated from it.

Every golden result is cross-checked: refdec must decode each valid stream to the same samples
and the same stage tensors, and both decoders must reject each invalid stream with its
expected clause 11.2 error class; otherwise generation stops. Output is byte-reproducible:
fixed seeds, sorted JSON, PNGs from fixed Pillow settings without metadata.

``--checkpoint`` is the hook for image-domain vectors (synthetic images through the float
analysis transform of a trained model, refcodec.codec.encode_image); it is optional and
needs a float checkpoint that matches the integer model.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL

from refdec import constants as K
from refdec.architecture import causal_mask, padded_sizes
from refdec.bitstream import HEADER_SIZE
from refdec.stages import STAGE_ORDER
from refdec.conformance.hashes import sample_hash, sha256_hex, stage_hash
from refdec.conformance.images import png_bytes
from refdec.conformance.manifest import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, dumps_canonical, readme_text, validate_manifest
from refdec.model_file import ModelStore
from refdec.decoder import decode as refdec_decode
from refdec.generators.encoder import (encode_latents, encode_value, entropy_parameters, forward_integer, hyper_features,
                                       y_symbols, z_symbols)
from refdec.entropy import coding_window, mixture_parameters
from refdec.errors import ALL_ERRORS, RefdecError
from refdec.generators.invalid_models import invalid_models, tiny_base_model
from refdec.model_file import model_id_of, parse_model
from refdec.generators.random_model import random_latents
from refdec.generators.range_encoder import RANGE_BOTTOM, RangeEncoder

from . import vector_stats

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = ROOT / "refdec" / "models"
_HEADER = struct.Struct(">4sBBHHB8sII")

# Clauses every valid stream exercises (clause 11.5.2 "clauses").
COMMON_VALID_CLAUSES = ["4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "5.1", "5.4", "6.1", "6.2",
                        "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "7.7", "7.8", "7.9", "7.10", "7.11", "7.12",
                        "7.13", "8.1", "8.2", "8.3", "8.4", "8.5", "9.3", "10.1", "10.2", "11.3", "11.4"]

SUBSETS = {
    "quick": "a handful of tiny vectors for a fast smoke test",
    "rates": "one stream per rate index of the model",
    "sizes": "image sizes: 1x1, odd sizes, strips, several hyper-latent positions",
    "latents": "unusual latent values: zero, extreme, wide spread",
    "escape": "the escape path of clause 7.10",
    "accumulators": "the largest accumulator values of clause 4.5 (the bound of clause 9.5)",
    "kodak": "Kodak images through the trained float model at every rate index",
    "large": "a large image (1920x1080): many synthesis bands",
    "images": "streams of synthetic images through the trained float model",
    "header": "invalid headers (clause 6.2)",
    "model": "unknown or invalid model files (clauses 6.2, 9.4, 9.5)",
    "payload": "invalid payloads (clauses 7.10, 8.3, 8.5)",
}


def _clause_key(c: str):
    return tuple(int(p) if p.isdigit() else -1 for p in c.split("."))


def _clauses(*lists) -> list[str]:
    return sorted({c for lst in lists for c in lst}, key=_clause_key)


class GenerationError(RuntimeError):
    """The two decoders disagree, or a crafted stream does not do what it was made for."""


# --- model files --------------------------------------------------------------------------

@dataclass
class ModelEntry:
    name: str
    data: bytes
    model: object | None            # the parsed Model (None for invalid files)
    description: str
    expected_error: str | None = None
    clause: str | None = None          # invalid models: the clause the file violates

    @property
    def file(self) -> str:
        return f"models/{self.name}.npz"

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)

    @property
    def model_id(self) -> bytes:
        return model_id_of(self.data)

    def manifest_entry(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "model_id": self.model_id.hex(),
                "valid": self.model is not None, "description": self.description}

    def ref(self) -> dict:
        return {"name": self.name, "file": self.file, "sha256": self.sha256, "model_id": self.model_id.hex()}


def invalid_model_entries() -> list[ModelEntry]:
    """Model files that fail clause 9 validation, one per check of refdec.model_file, derived from
    a tiny valid model (refdec.generators.invalid_models): the model-group vectors."""
    out = []
    for m in invalid_models(tiny_base_model()):
        out.append(ModelEntry(f"invalid-{m.name}", m.data, None, m.description, m.expected_error, m.clause))
    return out


# --- latents --------------------------------------------------------------------------------

def latents_random(seed, y_scale=3.0, z_scale=2.0):
    def make(model, w, h):
        return random_latents(model, w, h, seed=seed, y_scale=y_scale, z_scale=z_scale)
    return make


def latents_zero(model, w, h):
    hz, wz, hy, wy = padded_sizes(w, h)
    return (np.zeros((model.hyper_channels, hz, wz), np.int64), np.zeros((model.latent_channels, hy, wy), np.int64))


def latents_extreme(model, w, h):
    """Every latent at +-Y_MAX / +-Z_MAX in a checkerboard: every symbol escapes with a 14-bit
    suffix, and the clips of clauses 7.4, 7.6 and 7.11 saturate."""
    hz, wz, hy, wy = padded_sizes(w, h)
    z = np.fromfunction(lambda c, y, x: np.where((c + y + x) % 2 == 0, K.Z_MAX, -K.Z_MAX),
                        (model.hyper_channels, hz, wz), dtype=np.int64)
    y = np.fromfunction(lambda c, yy, x: np.where((c + yy + x) % 2 == 0, K.Y_MAX, -K.Y_MAX),
                        (model.latent_channels, hy, wy), dtype=np.int64)
    return z.astype(np.int64), y.astype(np.int64)


def _extreme_window(layer, in_max: int, masked: bool):
    """Input window (I, k, k) that drives the output channel with the largest clause 9.5 bound to
    exactly that bound: x = s * sign(W) * in_max, s the sign of the channel's bias."""
    w = layer.weight.astype(np.int64)
    if masked:
        w = w * causal_mask(layer.kernel)
    bound = np.abs(w).reshape(w.shape[0], -1).sum(axis=1) * in_max + np.abs(layer.bias.astype(np.int64))
    ch = int(np.argmax(bound))
    s = -1 if layer.bias[ch] < 0 else 1
    return s * np.sign(w[ch]) * in_max


ACCUMULATOR_TARGETS = {  # layer -> output position (row, column) in its input grid, disjoint windows
    "hyper_synthesis.0": (1, 1), "context.7": (3, 3), "context.5": (3, 11), "context.3": (8, 3),
    "synthesis.0": (12, 12)}


def latents_accumulator_peaks(seed):
    """Latents that drive the first layer of every network (hyper_synthesis.0, the three context
    layers, synthesis.0) to the clause 9.5 bound of its worst output channel: the largest
    accumulator values these layers can ever produce. Needs 256 x 256 (16 x 16 latents)."""
    def make(model, w, h):
        z, y = random_latents(model, w, h, seed=seed)
        ctx = K.CONTEXT_INPUT_MAX
        py, px = ACCUMULATOR_TARGETS["hyper_synthesis.0"]
        z[:, py - 1: py + 2, px - 1: px + 2] = _extreme_window(model.layers["hyper_synthesis.0"], ctx, False)
        for k in K.CONTEXT_KERNELS:
            layer = model.layers[f"context.{k}"]
            win = _extreme_window(layer, ctx, True)
            py, px = ACCUMULATOR_TARGETS[layer.name]
            p = k // 2
            mask = causal_mask(k)
            for ky in range(k):
                for kx in range(k):
                    if mask[ky, kx]:
                        y[:, py + ky - p, px + kx - p] = win[:, ky, kx]
        # synthesis.0 reads S0 = Clip3(-A0, A0, Round2(y * g, G)): +-Y_MAX saturates where g allows.
        win = _extreme_window(model.layers["synthesis.0"], 1, False) * K.Y_MAX
        py, px = ACCUMULATOR_TARGETS["synthesis.0"]
        y[:, py - 1: py + 2, px - 1: px + 2] = win
        return z, y
    return make


def clamps_reached(model, z, y, rate) -> set:
    """(layer, side) of every activation clamp that the latents reach, by the whole-tensor integer
    forward pass (refdec.generators.encoder.forward_integer)."""
    w, h = 16 * y.shape[2], 16 * y.shape[1]
    stages = forward_integer(model, z, y, rate, w, h)
    out = set()
    for name in model.layers:
        layer = model.layers[name]
        lo, hi = (0, 255) if name == "synthesis.6" else (-layer.clip, layer.clip)
        t = stages[name]
        if (t == lo).any():
            out.add((name, "low"))
        if (t == hi).any():
            out.add((name, "high"))
    return out


def latents_clamp_search(seed, tries: int = 64):
    """Latents found by a seeded random search that reach as many activation clamps as possible
    (clause 4.5 Clip3 at -A and A in each layer): each candidate draws, per channel, a magnitude
    from 0 to Y_MAX (Z_MAX) and random signs; the candidate reaching the most clamps wins (ties:
    the first). Complements the crafted vectors for the clamps of the deeper layers."""
    def make(model, w, h):
        rng = np.random.default_rng(seed)
        hz, wz, hy, wy = padded_sizes(w, h)
        best, best_count = None, -1
        rate = model.num_rates - 1
        for _ in range(tries):
            levels = np.array([0, 1, 4, 16, 64, 255, 1024, K.Y_MAX])
            ym = levels[rng.integers(0, len(levels), size=(model.latent_channels, 1, 1))]
            zm = np.minimum(levels[rng.integers(0, len(levels), size=(model.hyper_channels, 1, 1))], K.Z_MAX)
            y = ym * rng.choice([-1, 1], size=(model.latent_channels, hy, wy))
            z = zm * rng.choice([-1, 1], size=(model.hyper_channels, hz, wz))
            count = len(clamps_reached(model, z, y, rate))
            if count > best_count:
                best, best_count = (z.astype(np.int64), y.astype(np.int64)), count
        return best
    return make


def _y_windows(model, z, y):
    hyper = hyper_features(model, z)
    params = entropy_parameters(model, y, hyper)
    hy, wy = y.shape[1:]
    mix = mixture_parameters(params.reshape(hy * wy, -1), model.latent_channels)
    lo, hi = coding_window(mix)
    return lo.reshape(hy, wy, -1), hi.reshape(hy, wy, -1)


def latents_escape(seed):
    """Random latents with escapes on both sides: m = 0 (just outside the window), a few
    mid-size values, and the extremes +-Y_MAX / +-Z_MAX (prefix length 14)."""
    def make(model, w, h):
        z, y = random_latents(model, w, h, seed=seed)
        cz, hz, wz = z.shape
        cy, hy, wy = y.shape
        for c in range(cz):
            lo, n = int(model.z_lo[c]), int(model.z_count[c])
            picks = [lo - 1, lo + n, K.Z_MAX, -K.Z_MAX, lo - 37, lo + n + 300]
            flat = z[c].reshape(-1)
            for i in range(min(flat.size, 1 + c % 3)):
                flat[(i * 7 + c) % flat.size] = picks[(c + i) % len(picks)]
        # Latent: positions in wavefront order; the window of a position depends only on
        # earlier wavefronts, so set values one position at a time.
        targets = [(0, 0), (1, 1), (hy - 1, wy - 1), (hy // 2, 0), (0, wy - 1)]
        for k, (py, px) in enumerate(dict.fromkeys(targets)):
            lo, hi = _y_windows(model, z, y)
            for c in range(cy):
                choice = (k + c) % 6
                y[c, py, px] = [int(hi[py, px, c]) + 1, int(lo[py, px, c]) - 1, K.Y_MAX, -K.Y_MAX,
                                int(hi[py, px, c]) + 1000, int(lo[py, px, c]) - 255][choice]
        return z, y
    return make


# --- vector specifications ----------------------------------------------------------------------

@dataclass
class ValidSpec:
    id: str
    width: int
    height: int
    rate: int
    latents: object
    purpose: str
    look_at: list
    subsets: list
    features: list = field(default_factory=list)
    stream: object = None              # image-domain vectors: a function that encodes the stream


def valid_specs(model, quick: bool) -> list[ValidSpec]:
    r_last = model.num_rates - 1
    quick_specs = [
        ValidSpec("size-1x1", 1, 1, 0, latents_random(11), "smallest image: one sample, cropped from a 64x64 synthesis",
                  ["5.4", "7.13"], ["quick", "sizes"]),
        ValidSpec("odd-65x33", 65, 33, r_last, latents_random(12),
                  "odd size over 2x1 hyper-latent positions, last rate index", ["5.4", "7.3", "7.5", "7.13"],
                  ["quick", "sizes"]),
        ValidSpec("escape-33x65", 33, 65, min(1, r_last), latents_escape(13),
                  "escape path on both sides of the window, m = 0 up to +-16383, for z and y",
                  ["7.10", "8.4", "5.3"], ["quick", "escape"]),
    ]
    if quick:
        return quick_specs
    specs = [ValidSpec(f"rate-{r:02d}-64x64", 64, 64, r, latents_random(100 + r),
                       f"rate index {r}: inverse gain vector {r}", ["7.11", "9.3"], ["rates"])
             for r in range(model.num_rates)]
    specs += quick_specs
    specs += [
        ValidSpec("odd-100x37", 100, 37, 1 % model.num_rates, latents_random(14), "odd width and height, cropping",
                  ["5.4", "7.13"], ["sizes"]),
        ValidSpec("strip-tall-1x130", 1, 130, 2 % model.num_rates, latents_random(15),
                  "one column over three hyper-latent rows", ["5.4", "7.5", "7.13"], ["sizes"]),
        ValidSpec("strip-wide-130x1", 130, 1, 3 % model.num_rates, latents_random(16),
                  "one row over three hyper-latent columns", ["5.4", "7.5", "7.13"], ["sizes"]),
        ValidSpec("strip-tall-5x200", 5, 200, 4 % model.num_rates, latents_random(17),
                  "narrow tall strip: 16 latent rows, wavefronts of one position", ["7.5", "7.6"], ["sizes"]),
        ValidSpec("hyper-2x2-128x128", 128, 128, 0, latents_random(18),
                  "2x2 hyper-latent positions: contexts across latent block borders", ["7.4", "7.5", "7.6"],
                  ["sizes"]),
        ValidSpec("hyper-2x3-129x100", 129, 100, r_last, latents_random(19),
                  "2x3 hyper-latent positions with cropping on both axes", ["5.4", "7.4", "7.12", "7.13"], ["sizes"]),
        ValidSpec("zero-latents-64x64", 64, 64, 0, latents_zero, "all latents zero: bias-only activations",
                  ["4.5", "7.12"], ["latents"]),
        ValidSpec("extreme-latents-64x64", 64, 64, r_last, latents_extreme,
                  "every latent at +-16383: 14-bit escapes, saturated clips", ["5.3", "7.4", "7.6", "7.10", "7.11"],
                  ["latents", "escape"]),
        ValidSpec("accumulator-peaks-256x256", 256, 256, r_last, latents_accumulator_peaks(21),
                  "latents crafted so that hyper_synthesis.0, context.3/5/7 and synthesis.0 each reach the "
                  "clause 9.5 bound of their worst output channel: the largest accumulators",
                  ["4.5", "9.5", "7.4", "7.6", "7.12"], ["latents", "accumulators"]),
        ValidSpec("clamp-search-64x64", 64, 64, r_last, latents_clamp_search(22),
                  "latents from a seeded random search for the most activation clamps reached (clause 4.5)",
                  ["4.4", "4.5", "7.4", "7.6", "7.7", "7.12"], ["latents"]),
        ValidSpec("wide-latents-64x64", 64, 64, min(2, r_last), latents_random(20, y_scale=60.0, z_scale=30.0),
                  "widely spread latents: many escapes, context input clip", ["7.6", "7.9", "7.10"],
                  ["latents", "escape"]),
    ]
    return specs


def measured_features(model, spec: ValidSpec, stages: dict) -> tuple[list, list]:
    """Features a valid vector exercises, measured on its golden stage tensors, and the clauses
    they add."""
    feats = {f"size-{spec.width}x{spec.height}", f"rate-index-{spec.rate}"}
    clauses = set()
    hz, wz, hy, wy = padded_sizes(spec.width, spec.height)
    feats.add(f"hyper-positions-{hz}x{wz}")
    if spec.width % 64 or spec.height % 64:
        feats.add("crop")
    if spec.width % 2 or spec.height % 2:
        feats.add("odd-size")
    z, y = stages["z_hat"].astype(np.int64), stages["y_hat"].astype(np.int64)
    lo, hi = stages["window.lo"].astype(np.int64), stages["window.hi"].astype(np.int64)
    zlo = model.z_lo.reshape(-1, 1, 1)
    zhi = zlo + model.z_count.reshape(-1, 1, 1) - 1
    if (z < zlo).any():
        feats.add("escape-z-below")
    if (z > zhi).any():
        feats.add("escape-z-above")
    if (y < lo).any():
        feats.add("escape-y-below")
    if (y > hi).any():
        feats.add("escape-y-above")
    m = np.maximum(np.maximum(lo - 1 - y, y - hi - 1), -1)
    if ((m >= 0) & (m + 1 >= 1 << 14)).any():
        feats.add("escape-prefix-14")
    if ((m == 0)).any():
        feats.add("escape-m0")
    if any(f.startswith("escape") for f in feats):
        clauses |= {"7.10", "8.4"}
    if (np.abs(z) > K.CONTEXT_INPUT_MAX).any():
        feats.add("hyper-input-clip")
    if (np.abs(y) > K.CONTEXT_INPUT_MAX).any():
        feats.add("context-input-clip")
    a0 = int(model.header["synthesis_input_clip"])
    if (np.abs(stages["synthesis_input"]) == a0).any():
        feats.add("synthesis-input-clip")
    if ((hi - lo) == 2 * K.MAX_HALF_WINDOW).any():
        feats.add("window-129")
    if (y == 0).all():
        feats.add("zero-latents")
    img = stages["image"]
    if (img == 0).any() or (img == 255).any():
        feats.add("output-clip")
    return sorted(feats), sorted(clauses)


# --- payload crafting for invalid streams -------------------------------------------------------

class CraftingEncoder(RangeEncoder):
    """Informative: RangeEncoder that can also place the code value where clause 8.3 fails."""

    def sliver(self) -> bool:
        """Put the code value in [r 2^16, R): the decoder's next DecodeSymbol finds v >= 2^16
        [InvalidRangeState]. False when the current range leaves no such values."""
        r = self.range >> 16
        width = self.range - (r << 16)
        if width <= 0:
            return False
        self.low += r << 16
        self.range = width
        while self.range < RANGE_BOTTOM:
            self.range <<= 8
            self._shift_low()
        return True

    def escape_too_long(self, cdf, n_w) -> bool:
        """Escape symbol, side bit, then 15 prefix ones [EscapeTooLong]."""
        self.encode_symbol(cdf, n_w + 1, n_w)
        for _ in range(1 + 15):
            self.write_bit(1)
        return True

    def out_of_range(self, cdf, n_w) -> bool:
        """Escape above the window with k = 14 and suffix all ones: m = 2^15 - 2 [LatentOutOfRange]."""
        self.encode_symbol(cdf, n_w + 1, n_w)
        self.write_bit(1)
        for _ in range(14):
            self.write_bit(1)
        self.write_bit(0)
        for _ in range(14):
            self.write_bit(1)
        return True


def _y_symbols(model, z, y):
    return y_symbols(model, y, entropy_parameters(model, y, hyper_features(model, z)))


def crafted_payload(symbols, at: int, action: str) -> bytes:
    """A payload that codes `symbols` correctly up to symbol `at` (or the next symbol where the
    action is possible), then does `action` there and flushes."""
    enc = CraftingEncoder()
    for i, (cdf, n_w, lo, hi, value, limit) in enumerate(symbols):
        if i >= at:
            done = {"sliver": lambda: enc.sliver(), "escape_too_long": lambda: enc.escape_too_long(cdf, n_w),
                    "out_of_range": lambda: enc.out_of_range(cdf, n_w)}[action]()
            if done:
                return enc.finish()
        encode_value(enc, cdf, n_w, lo, hi, value, limit)
    raise GenerationError(f"could not place {action} at or after symbol {at}")


def _header(stream: bytes) -> list:
    return list(_HEADER.unpack_from(stream))


def _with_header(fields, z_payload: bytes, y_payload: bytes) -> bytes:
    f = list(fields)
    f[7], f[8] = len(z_payload), len(y_payload)
    return _HEADER.pack(*f) + z_payload + y_payload


def _patched(stream: bytes, **changes) -> bytes:
    names = ["magic", "version", "flags", "width", "height", "rate_index", "model_id", "z_length", "y_length"]
    f = _header(stream)
    for k, v in changes.items():
        f[names.index(k)] = v
    return _HEADER.pack(*f) + stream[HEADER_SIZE:]


@dataclass
class InvalidSpec:
    id: str
    expected: str
    stream: bytes
    purpose: str
    look_at: list
    subsets: list
    features: list
    model: ModelEntry


def invalid_specs(base_stream: bytes, base: ModelEntry, z, y, bad_models: list, quick: bool) -> list[InvalidSpec]:
    m = base.model
    f = _header(base_stream)
    z_len = f[7]
    zp = base_stream[HEADER_SIZE: HEADER_SIZE + z_len]
    yp = base_stream[HEADER_SIZE + z_len:]
    flipped = bytes(b ^ 0xFF for b in f[6])
    n_z = int(z.size)
    n_y = int(y.size)
    H, P, M = ["header"], ["payload"], ["model"]

    def spec(id_, expected, stream, purpose, look_at, subsets, features, model=base):
        return InvalidSpec(id_, expected, stream, purpose, look_at, subsets, features, model)

    out = [
        spec("err-truncated-header", "TruncatedHeader", base_stream[:HEADER_SIZE - 1], "26-byte stream: header cut",
             ["6.2"], H + ["quick"], ["truncated-header"]),
        spec("err-bad-magic", "BadMagic", b"RDEX" + base_stream[4:], "magic RDEX", ["6.1", "6.2"], H + ["quick"],
             ["bad-magic"]),
        spec("err-unknown-model", "UnknownModel", _patched(base_stream, model_id=flipped),
             "model id of no model file (the decoder is given the stream's usual model)", ["6.2", "9.1"],
             M + ["quick"], ["unknown-model"]),
        spec(f"err-rate-index-{m.num_rates}", "RateIndexOutOfRange", _patched(base_stream, rate_index=m.num_rates),
             f"rate index {m.num_rates} = R of the model", ["6.2", "7.11"], H + ["quick"], ["rate-index"]),
        spec("err-y-trailing-payload-bytes", "TrailingPayloadBytes", _with_header(f, zp, yp + b"\x00"),
             "one byte appended to the y payload (lengths adjusted)", ["8.5"], P + ["quick"],
             ["trailing-payload-bytes", "y-payload"]),
        spec("err-z-invalid-range-state", "InvalidRangeState",
             _with_header(f, crafted_payload(z_symbols(m, z), n_z // 2, "sliver"), yp),
             "code value placed above the last symbol's interval in the middle of the z payload",
             ["8.3"], P + ["quick"], ["invalid-range-state", "z-payload"]),
    ]
    if quick:
        return out
    out += [
        spec("err-empty", "TruncatedHeader", b"", "empty stream", ["6.2"], H, ["truncated-header"]),
        spec("err-version-0", "UnsupportedVersion", _patched(base_stream, version=0), "version 0", ["6.1", "6.2"], H,
             ["version"]),
        spec("err-version-2", "UnsupportedVersion", _patched(base_stream, version=2), "version 2", ["6.1", "6.2"], H,
             ["version"]),
        spec("err-flags-01", "ReservedFieldSet", _patched(base_stream, flags=0x01), "reserved flags 0x01",
             ["6.1", "6.2"], H, ["reserved-flags"]),
        spec("err-flags-80", "ReservedFieldSet", _patched(base_stream, flags=0x80), "reserved flags 0x80",
             ["6.1", "6.2"], H, ["reserved-flags"]),
        spec("err-zero-width", "ZeroDimension", _patched(base_stream, width=0), "width 0", ["6.2", "5.2"], H,
             ["zero-dimension"]),
        spec("err-zero-height", "ZeroDimension", _patched(base_stream, height=0), "height 0", ["6.2", "5.2"], H,
             ["zero-dimension"]),
        spec("err-width-8193", "DimensionsTooLarge", _patched(base_stream, width=8193), "width 8193",
             ["5.2", "6.2"], H, ["too-large"]),
        spec("err-height-65535", "DimensionsTooLarge", _patched(base_stream, height=65535), "height 65535",
             ["5.2", "6.2"], H, ["too-large"]),
        spec("err-samples-8192x4097", "DimensionsTooLarge", _patched(base_stream, width=8192, height=4097),
             "8192 x 4097 samples: more than 2^25", ["5.2", "6.2"], H, ["too-large"]),
        spec("err-z-length-3", "PayloadTooShort", _patched(base_stream, z_length=3), "z_length 3",
             ["6.2"], H, ["payload-too-short"]),
        spec("err-y-length-0", "PayloadTooShort", _patched(base_stream, y_length=0), "y_length 0",
             ["6.2"], H, ["payload-too-short"]),
        spec("err-payload-past-end", "PayloadPastEnd", base_stream[:-1], "last byte of the stream missing",
             ["6.2"], H, ["payload-past-end"]),
        spec("err-lengths-past-end", "PayloadPastEnd", _patched(base_stream, y_length=0xFFFFFFFF),
             "y_length 2^32 - 1", ["6.2"], H, ["payload-past-end"]),
        spec("err-trailing-data", "TrailingData", base_stream + b"\x00", "one byte after the y payload",
             ["6.2"], H, ["trailing-data"]),
        spec("err-rate-index-255", "RateIndexOutOfRange", _patched(base_stream, rate_index=255), "rate index 255",
             ["6.2"], H, ["rate-index"]),
        spec("err-z-trailing-payload-bytes", "TrailingPayloadBytes", _with_header(f, zp + b"\x00", yp),
             "one byte appended to the z payload (lengths adjusted)", ["8.5"], P,
             ["trailing-payload-bytes", "z-payload"]),
        spec("err-z-payload-truncated", "PayloadTruncated", _with_header(f, zp[:-1], yp),
             "last byte of the z payload removed (lengths adjusted)", ["8.3"], P, ["payload-truncated", "z-payload"]),
        spec("err-y-payload-truncated", "PayloadTruncated", _with_header(f, zp, yp[:-1]),
             "last byte of the y payload removed (lengths adjusted)", ["8.3"], P, ["payload-truncated", "y-payload"]),
        spec("err-y-invalid-range-state", "InvalidRangeState",
             _with_header(f, zp, crafted_payload(_y_symbols(m, z, y), n_y // 2, "sliver")),
             "code value placed above the last symbol's interval in the middle of the y payload", ["8.3", "7.5"], P,
             ["invalid-range-state", "y-payload"]),
        spec("err-z-start-ffff", "InvalidRangeState", _with_header(f, b"\xff\xff" + zp[2:], yp),
             "z payload starting FF FF: v >= 2^16 at the first symbol", ["8.2", "8.3"], P,
             ["invalid-range-state", "z-payload"]),
        spec("err-z-escape-too-long", "EscapeTooLong",
             _with_header(f, crafted_payload(z_symbols(m, z), 1, "escape_too_long"), yp),
             "escape prefix of 15 ones in the z payload", ["7.10"], P, ["escape-too-long", "z-payload"]),
        spec("err-y-escape-too-long", "EscapeTooLong",
             _with_header(f, zp, crafted_payload(_y_symbols(m, z, y), n_y // 3, "escape_too_long")),
             "escape prefix of 15 ones in the y payload", ["7.10"], P, ["escape-too-long", "y-payload"]),
        spec("err-z-latent-out-of-range", "LatentOutOfRange",
             _with_header(f, crafted_payload(z_symbols(m, z), 2, "out_of_range"), yp),
             "z escape to hi + 32767, beyond Z_MAX", ["7.10", "5.3"], P, ["latent-out-of-range", "z-payload"]),
        spec("err-y-latent-out-of-range", "LatentOutOfRange",
             _with_header(f, zp, crafted_payload(_y_symbols(m, z, y), 2 * n_y // 3, "out_of_range")),
             "y escape to hi + 32767, beyond Y_MAX", ["7.10", "5.3"], P, ["latent-out-of-range", "y-payload"]),
    ]
    for bm in bad_models:
        slug = bm.name[len("invalid-"):]
        out.append(spec(f"err-model-{slug}", bm.expected_error,
                        _patched(base_stream, model_id=bm.model_id),
                        f"stream naming an invalid model file: {bm.description}",
                        sorted({bm.clause, "9.4"}, key=_clause_key), M, ["invalid-model"], model=bm))
    return out


# --- golden results -------------------------------------------------------------------------------

def golden_decode(stream: bytes, model, device: str):
    """The golden decoder (refcodec.int_decoder) and refdec must agree exactly."""
    from refcodec import int_decoder

    image, stages = int_decoder.decode(stream, model, device=device, trace=True)
    ref = refdec_decode(stream, model, trace=True)
    if not np.array_equal(ref.image, image):
        raise GenerationError("refdec and refcodec.int_decoder decode different samples")
    if set(stages) != set(STAGE_ORDER) or set(ref.stages) != set(STAGE_ORDER):
        raise GenerationError(f"stage names differ from clause 11.3: {sorted(set(stages) ^ set(STAGE_ORDER))}")
    for name in STAGE_ORDER:
        if stages[name].shape != ref.stages[name].shape or not np.array_equal(stages[name], ref.stages[name]):
            raise GenerationError(f"refdec and refcodec.int_decoder differ at stage {name}")
    return image, stages


def expect_rejection(stream: bytes, store: ModelStore, expected: str, device: str) -> int | None:
    """Both decoders reject the stream with `expected`; returns refdec's byte offset."""
    from refcodec import int_decoder

    offsets = []
    for who, run in (("refdec", lambda: refdec_decode(stream, store)),
                     ("refcodec.int_decoder", lambda: int_decoder.decode(stream, store, device=device))):
        try:
            run()
        except RefdecError as exc:
            if exc.name != expected:
                raise GenerationError(f"{who} reports {exc.name}, expected {expected}: {exc}") from None
            offsets.append(exc.offset)
        else:
            raise GenerationError(f"{who} accepts a stream made to fail with {expected}")
    return offsets[0]


# --- image-domain vectors (hook) ------------------------------------------------------------------

def synthetic_images() -> list[tuple[str, np.ndarray]]:
    """Deterministic synthetic test images (H, W, 3) uint8 for image-domain vectors."""
    yy, xx = np.mgrid[0:48, 0:64]
    gradient = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    cy, cx = np.mgrid[0:37, 0:29]
    checker = (((cy // 4 + cx // 4) % 2) * 255).astype(np.uint8)
    checker = np.stack([checker, 255 - checker, checker // 2], axis=-1)
    noise = np.random.default_rng(7).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    flat = np.full((8, 70, 3), (200, 30, 90), dtype=np.uint8)
    return [("gradient-64x48", gradient), ("checker-29x37", checker), ("noise-16x16", noise),
            ("flat-70x8", flat)]


def image_specs(checkpoint: Path, model, device: str, quick: bool) -> list[ValidSpec]:
    """Hook for image-domain vectors: synthetic images through the float analysis transform of a
    trained checkpoint (refcodec.codec.encode_image). Needs a checkpoint matching `model`."""
    from .model import load_float_model

    float_model = load_float_model(checkpoint).eval()
    specs = []
    images = synthetic_images()[:2] if quick else synthetic_images()
    for i, (name, img) in enumerate(images):
        rate = (i * 3) % model.num_rates
        h, w, _ = img.shape
        specs.append(ValidSpec(f"image-{name}", w, h, rate, None,
                               f"synthetic image {name} through the trained model at rate {rate}",
                               ["7.11", "7.12"], ["images"], stream=_encoder(float_model, model, img, rate, device)))
    return specs


def _encoder(float_model, model, img, rate, device):
    """The stream of an image-domain vector, encoded only when the vector is generated."""
    def encode() -> bytes:
        from .codec import encode_image
        return encode_image(float_model, model, img, rate, device).stream
    return encode


KODAK_ALL_RATES = "kodim23"                       # every rate index of the first model
KODAK_MORE = (("kodim01", 1), ("kodim19", 4))     # (image, rate index): first model only; kodim19 is portrait
LARGE_SIZE = (1920, 1080)


def mirrored_to(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """A larger image from `img` by mirror tiling (NumPy only, so the pixels never depend on a
    resampling library's version)."""
    h, w, _ = img.shape
    reps_y, reps_x = -(-height // h), -(-width // w)
    rows = [img if i % 2 == 0 else img[::-1] for i in range(reps_y)]
    tall = np.concatenate(rows, axis=0)
    cols = [tall if j % 2 == 0 else tall[:, ::-1] for j in range(reps_x)]
    return np.ascontiguousarray(np.concatenate(cols, axis=1)[:height, :width])


def kodak_specs(kodak: Path, checkpoint: Path, model, device: str, first_model: bool) -> list[ValidSpec]:
    """Kodak images through the trained float model. First model: KODAK_ALL_RATES at every rate
    index, KODAK_MORE and a large image (KODAK_ALL_RATES mirrored to LARGE_SIZE); other models:
    KODAK_ALL_RATES at the lowest and highest rate index."""
    from .codec import load_rgb
    from .model import load_float_model

    float_model = load_float_model(checkpoint).eval()
    if first_model:
        jobs = [(KODAK_ALL_RATES, r) for r in range(model.num_rates)]
        jobs += [(name, r % model.num_rates) for name, r in KODAK_MORE]
    else:  # the lowest and highest rate: enough to check a second profile, and the suite stays small
        jobs = [(KODAK_ALL_RATES, r) for r in sorted({0, model.num_rates - 1})]
    specs = []
    for name, rate in jobs:
        path = kodak / f"{name}.png"
        if not path.is_file():
            raise GenerationError(f"--kodak: {path} not found")
        img = load_rgb(path)
        h, w, _ = img.shape
        specs.append(ValidSpec(f"kodak-{name}-rate-{rate}", w, h, rate, None,
                               f"Kodak {name} ({w}x{h}) at rate index {rate}", ["7.11", "7.12"], ["kodak"],
                               stream=_encoder(float_model, model, img, rate, device)))
    if first_model:
        width, height = LARGE_SIZE
        img = mirrored_to(load_rgb(kodak / f"{KODAK_ALL_RATES}.png"), width, height)
        rate = (model.num_rates - 1) // 2
        specs.append(ValidSpec(f"large-{width}x{height}", width, height, rate, None,
                               f"{KODAK_ALL_RATES} mirror-tiled to {width}x{height} at rate index {rate}: a large "
                               "image, height not a multiple of 64, many synthesis bands",
                               ["5.4", "7.12", "7.13"], ["large", "sizes"],
                               stream=_encoder(float_model, model, img, rate, device)))
    return specs


# --- driver ----------------------------------------------------------------------------------------

def load_models(paths) -> list[ModelEntry]:
    entries, names = [], set()
    for p in paths:
        p = Path(p)
        files = sorted(p.glob("*.npz")) if p.is_dir() else [p]
        for f in files:
            data = f.read_bytes()
            model = parse_model(data, where=str(f))
            name = f.stem
            i = 2
            while name in names:
                name, i = f"{f.stem}-{i}", i + 1
            names.add(name)
            desc = str(model.header.get("description", "")) or f"model file {f.name}"
            entries.append(ModelEntry(name, data, model, desc))
    if not entries:
        raise GenerationError("no model: pass --model PATH (a model file or a folder of them)")
    return entries


def _log(msg: str) -> None:
    print(f"make_vectors: {msg}", file=sys.stderr, flush=True)


def generate(out: Path, model_paths, quick: bool = False, only=None, checkpoint=None, device: str = "cpu",
             log=_log, kodak=None) -> dict:
    """Build the vector set in `out`; returns the manifest."""
    models = load_models(model_paths)
    if kodak is not None and checkpoint is None:
        raise GenerationError("--kodak needs --checkpoint (the float model's analysis transform)")
    multi = len(models) > 1
    valid_entries = []
    for index, me in enumerate(models):
        specs = valid_specs(me.model, quick)
        if checkpoint is not None:
            specs += image_specs(Path(checkpoint), me.model, device, quick)
        if kodak is not None and not quick:
            specs += kodak_specs(Path(kodak), Path(checkpoint), me.model, device, first_model=index == 0)
        for s in specs:
            if multi:
                s.id = f"{me.name}.{s.id}"
            valid_entries.append((me, s))

    base_entry = models[0]
    base_spec = next(s for me, s in valid_entries if me is base_entry and s.id.endswith("odd-65x33"))
    bz, by = base_spec.latents(base_entry.model, base_spec.width, base_spec.height)
    base_stream = encode_latents(base_entry.model, bz, by, base_spec.rate, base_spec.width, base_spec.height)
    bad_models = [] if quick else invalid_model_entries()
    invalid = invalid_specs(base_stream, base_entry, bz, by, bad_models, quick)
    all_ids = [s.id for _, s in valid_entries] + [s.id for s in invalid]
    if len(set(all_ids)) != len(all_ids):
        raise GenerationError("duplicate vector ids")
    wanted = None
    if only:
        wanted = set(only)
        unknown = wanted - set(all_ids)
        if unknown:
            raise GenerationError(f"--only: unknown vector ids {sorted(unknown)}")

    files: dict[str, bytes] = {}
    stats: dict[str, dict] = {}
    used_models: dict[str, ModelEntry] = {}
    vectors = []
    for me, s in valid_entries:
        if wanted is not None and s.id not in wanted:
            continue
        if s.stream is not None:
            stream = s.stream()
        else:
            z, y = s.latents(me.model, s.width, s.height)
            stream = encode_latents(me.model, z, y, s.rate, s.width, s.height)
        image, stages = golden_decode(stream, me.model, device)
        feats, extra = measured_features(me.model, s, stages)
        measured = vector_stats.measure(me.model, stages)
        stats.setdefault(me.name, {})[s.id] = measured
        if "accumulators" in s.subsets:
            check_accumulator_peaks(s.id, measured, log)
        png = png_bytes(image)
        files[f"streams/{s.id}.rdc"] = stream
        files[f"golden/{s.id}.png"] = png
        used_models[me.name] = me
        vectors.append({
            "id": s.id, "kind": "valid", "purpose": s.purpose, "features": feats,
            "clauses": _clauses(COMMON_VALID_CLAUSES, extra, s.look_at), "look_at": _clauses(s.look_at),
            "subsets": sorted(s.subsets),
            "bitstream": {"file": f"streams/{s.id}.rdc", "sha256": sha256_hex(stream), "bytes": len(stream)},
            "model": me.ref(),
            "header": {"width": s.width, "height": s.height, "rate_index": s.rate},
            "golden": {"file": f"golden/{s.id}.png", "sha256": sha256_hex(png), "samples_sha256": sample_hash(image),
                       "width": s.width, "height": s.height},
            "stages": {n: {"shape": list(stages[n].shape), "sha256": stage_hash(stages[n])} for n in STAGE_ORDER},
        })
        log(f"{s.id}: {len(stream)} bytes, {s.width}x{s.height}, rate {s.rate}")

    store = ModelStore()
    for me in models:
        store.add(me.model)
    bad_by_id = {bm.model_id: bm for bm in bad_models}
    if bad_models:
        store_paths = _BytesModelStore(store, bad_by_id)
    else:
        store_paths = store
    for s in invalid:
        if wanted is not None and s.id not in wanted:
            continue
        offset = expect_rejection(s.stream, store_paths, s.expected, device)
        err = ALL_ERRORS[s.expected]
        files[f"streams/{s.id}.rdc"] = s.stream
        used_models[s.model.name] = s.model
        vectors.append({
            "id": s.id, "kind": "invalid", "purpose": s.purpose, "features": sorted(s.features),
            "clauses": _clauses(["6.2", "11.1", "11.2"], s.look_at, [err.clause]), "look_at": _clauses(s.look_at),
            "subsets": sorted(s.subsets),
            "bitstream": {"file": f"streams/{s.id}.rdc", "sha256": sha256_hex(s.stream), "bytes": len(s.stream)},
            "model": s.model.ref(),
            "expected_error": s.expected, "error_group": err.group, "error_clause": err.clause,
            "error_offset": offset,
        })
        log(f"{s.id}: {len(s.stream)} bytes -> {s.expected}")

    for me in used_models.values():
        files[me.file] = me.data
    used_subsets = sorted({x for v in vectors for x in v["subsets"]})
    options = {"quick": bool(quick), "models": [m.name + ".npz" for m in models],
               "checkpoint": Path(checkpoint).name if checkpoint else None,
               "kodak": Path(kodak).name if kodak else None, "only": sorted(only) if only else None}
    def arg(path) -> str:  # as typed in the repository root
        path = Path(path).resolve()
        return os.path.relpath(path, ROOT) if path.is_relative_to(ROOT.parent) else str(path)

    default_models = all(Path(p).resolve() == DEFAULT_MODEL_DIR for p in model_paths)
    command = "python -m refcodec.make_vectors --out vectors/" + (" --quick" if quick else "") + (
        "" if default_models else "".join(f" --model {arg(p)}" for p in model_paths)) + (
        f" --checkpoint {arg(checkpoint)}" if checkpoint else "") + (f" --kodak {arg(kodak)}" if kodak else "")
    manifest = {
        "format": MANIFEST_FORMAT, "manifest_version": MANIFEST_VERSION, "bitstream_version": K.VERSION,
        "spec": "refdec specification, bitstream version 1 (spec/); vectors: clause 11.5",
        "generator": {"command": command, "golden_decoder": "refcodec.int_decoder", "pillow": PIL.__version__,
                      "cross_checked_with": "refdec.decoder", "options": options},
        "stage_order": STAGE_ORDER,
        "subsets": {k: SUBSETS[k] for k in used_subsets},
        "models": {me.name: me.manifest_entry() for me in sorted(used_models.values(), key=lambda e: e.name)},
        "vectors": vectors,
    }
    if stats:
        by_name = {me.name: me for me in models}
        manifest["statistics"] = {"models": {name: vector_stats.summarise(per_vector, by_name[name].model)
                                             for name, per_vector in sorted(stats.items())}}
    problems = validate_manifest(manifest)
    if problems:
        raise GenerationError("generated manifest is invalid: " + "; ".join(problems[:5]))
    _write(out, files, manifest)
    return manifest


def check_accumulator_peaks(vid: str, measured: dict, log) -> None:
    """The accumulator vector must reach the clause 9.5 bound in every layer it targets (synthesis.0
    only where the inverse gains let +-Y_MAX saturate S0; its figure is logged)."""
    for name in ACCUMULATOR_TARGETS:
        m = measured["layers"][name]
        if name != "synthesis.0" and m["peak"] != m["channel_bound"]:
            raise GenerationError(f"{vid}: {name} reaches {m['peak']}, not its bound {m['channel_bound']}")
        log(f"{vid}: {name} accumulator {m['peak']} = {m['peak'] / m['channel_bound']:.4f} of its channel's "
            f"bound, {m['peak'] / 2**31:.4f} of 2^31")


class _BytesModelStore:
    """Informative: a model store that also knows deliberately invalid model files; asking for one
    runs clause 9.4 validation on its bytes (and fails as the file was made to)."""

    def __init__(self, store: ModelStore, bad: dict):
        self.store, self.bad = store, bad

    def get(self, model_id: bytes):
        if model_id in self.bad:
            return parse_model(self.bad[model_id].data, where=self.bad[model_id].file)
        return self.store.get(model_id)


def _write(out: Path, files: dict, manifest: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for sub, suffix in (("streams", ".rdc"), ("golden", ".png"), ("models", ".npz")):
        d = out / sub
        if d.is_dir():  # the folder holds exactly this vector set
            for f in d.glob(f"*{suffix}"):
                if f"{sub}/{f.name}" not in files:
                    f.unlink()
    for rel, data in sorted(files.items()):
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.is_file() or p.read_bytes() != data:
            p.write_bytes(data)
    (out / MANIFEST_NAME).write_text(dumps_canonical(manifest))
    (out / "README.md").write_text(readme_text(manifest))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refcodec.make_vectors",
                                 description="Generate the conformance vectors of spec clause 11.5.")
    ap.add_argument("--out", type=Path, required=True, metavar="DIR", help="vector folder to write")
    ap.add_argument("--model", action="extend", nargs="+", default=[], metavar="PATH",
                    help=f"model file or folder, repeatable (default: {DEFAULT_MODEL_DIR})")
    ap.add_argument("--quick", action="store_true", help="only a handful of tiny vectors")
    ap.add_argument("--only", action="append", default=[], metavar="ID[,ID...]",
                    help="generate only these vector ids (for regeneration checks)")
    ap.add_argument("--checkpoint", type=Path, default=None, metavar="FLOAT.pt",
                    help="optional trained float checkpoint matching the model: adds image-domain vectors "
                         "of synthetic images")
    ap.add_argument("--kodak", type=Path, default=None, metavar="DIR",
                    help="Kodak folder (needs --checkpoint): adds kodim23 at every rate index, two more Kodak "
                         "images and a large image (first model), kodim23 at the extreme rates (other models)")
    ap.add_argument("--device", default="cpu", help="torch device of the golden decoder (default cpu)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    only = [i for item in args.only for i in item.split(",") if i] or None
    paths = args.model or [DEFAULT_MODEL_DIR]
    try:
        manifest = generate(args.out, paths, quick=args.quick, only=only, checkpoint=args.checkpoint,
                            device=args.device, log=(lambda m: None) if args.quiet else _log, kodak=args.kodak)
    except (GenerationError, RefdecError, OSError) as exc:
        print(f"make_vectors: error: {exc}", file=sys.stderr)
        return 2
    n = len(manifest["vectors"])
    nv = sum(v["kind"] == "valid" for v in manifest["vectors"])
    if not args.quiet:
        _log(f"wrote {n} vectors ({nv} valid, {n - nv} invalid) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
