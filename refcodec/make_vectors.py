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
import ast
import importlib
import importlib.abc
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL

from refdec.constants import (ACT16_MAX, CONTEXT_INPUT_MAX, MAX_HALF_WINDOW, MAX_INV_GAIN_SHIFT, MAX_SHIFT,
                              NUM_MIXTURES, VERSION, Y_MAX, Z_MAX)
from refdec import constants
from refdec.architecture import BY_NAME, OUTPUT_LAYER, causal_mask, padded_sizes
from refdec.bitstream import HEADER_LAYOUT, HEADER_SIZE
from refdec.stages import STAGE_ORDER
from refdec.conformance.hashes import sample_hash, sha256_hex, stage_hash
from refdec.conformance.images import png_bytes
from refdec.conformance.manifest import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, dumps_canonical, readme_text, validate_manifest
from refdec.model_file import ModelStore
from refdec.decoder import decode as refdec_decode
from refdec.generators.encoder import (encode_escape_payload, encode_latents, encode_value, entropy_parameters,
                                       forward_integer, hyper_features, y_symbols, z_symbols)
from refdec.entropy import coding_window, mixture_parameters
from refdec.errors import ALL_ERRORS, RefdecError
from refdec.generators.invalid_models import (TINY_NUM_RATES, boundary_invalid_models, formula_layer, input_channels,
                                              invalid_models, tiny_base_model, valid_variants)
from refdec.model_file import input_bounds, model_id_of, parse_model
from refdec.generators.model_writer import serialize_model
from refdec.generators.random_model import random_latents
from refdec.generators.range_encoder import RANGE_BOTTOM, RangeEncoder
from refdec.range_decoder import RangeDecoder
from refdec.symbols import decode_value

from . import vector_stats

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = ROOT / "refdec" / "models"

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
    "model": "unknown or invalid model files (clauses 6.2, 9.4, 9.5), and valid ones at the edges of clause 9",
    "payload": "invalid payloads (clauses 7.10, 8.3, 8.5)",
    "limits": "both sides of the limits and ranges of clauses 5.2, 5.3, 6.2 and 9.4: valid streams and models "
              "at each limit, invalid ones one past it",
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
    a tiny valid model (refdec.generators.invalid_models, with its boundary group and without the
    SUPERSEDED_MODELS): the model-group vectors."""
    base = tiny_base_model()
    made = invalid_models(base) + boundary_invalid_models(base)
    names = {m.name for m in made}
    stale = {k: v for k, v in SUPERSEDED_MODELS.items() if k not in names or v not in names}
    if stale:
        raise GenerationError(f"SUPERSEDED_MODELS names files that are not made: {stale}")
    return [ModelEntry(f"invalid-{m.name}", m.data, None, m.description, m.expected_error, m.clause)
            for m in made if m.name not in SUPERSEDED_MODELS]


def variant_specs() -> list[tuple[ModelEntry, "ValidSpec"]]:
    """The valid model files at the edges of clauses 9.1 and 9.2 (refdec.generators.invalid_models.
    valid_variants), each with the tiny base model's stream (the same latents, its own model id):
    a decoder that rejects one, or decodes it to another image, applies a rule of clause 9 too
    strictly or misreads the container."""
    out = []
    for v in valid_variants(tiny_base_model()):
        me = ModelEntry(v.name, v.data, parse_model(v.data, where=v.name), v.description, clause=v.clause)
        out.append((me, ValidSpec(f"{v.name}.rate-01-65x33", 65, 33, TINY_NUM_RATES - 1, latents_random(31),
                                  f"the tiny base model's parameters in a model file at the edges of clause "
                                  f"{v.clause}: {v.description}", [v.clause, "9.4"], ["model", "limits"],
                                  ["model-file-edges"])))
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
    z = np.fromfunction(lambda c, y, x: np.where((c + y + x) % 2 == 0, Z_MAX, -Z_MAX),
                        (model.hyper_channels, hz, wz), dtype=np.int64)
    y = np.fromfunction(lambda c, yy, x: np.where((c + yy + x) % 2 == 0, Y_MAX, -Y_MAX),
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
        ctx = CONTEXT_INPUT_MAX
        py, px = ACCUMULATOR_TARGETS["hyper_synthesis.0"]
        z[:, py - 1: py + 2, px - 1: px + 2] = _extreme_window(model.layers["hyper_synthesis.0"], ctx, False)
        for k in constants.CONTEXT_KERNELS:
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
        win = _extreme_window(model.layers["synthesis.0"], 1, False) * Y_MAX
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
            levels = np.array([0, 1, 4, 16, 64, 255, 1024, Y_MAX])
            ym = levels[rng.integers(0, len(levels), size=(model.latent_channels, 1, 1))]
            zm = np.minimum(levels[rng.integers(0, len(levels), size=(model.hyper_channels, 1, 1))], Z_MAX)
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
            picks = [lo - 1, lo + n, Z_MAX, -Z_MAX, lo - 37, lo + n + 300]
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
                y[c, py, px] = [int(hi[py, px, c]) + 1, int(lo[py, px, c]) - 1, Y_MAX, -Y_MAX,
                                int(hi[py, px, c]) + 1000, int(lo[py, px, c]) - 255][choice]
        return z, y
    return make


# --- models at the limits of clauses 5.2 and 9.4 --------------------------------------------------

def _limit_arrays(profile: str, cy: int, cz: int, delivered: dict, in_max: dict, weight_scale: dict) -> dict:
    """Weights, biases and shifts from integer formulas (as tiny_base_model: no random numbers),
    for the given channels delivered by each layer (after depth-to-space); the weights of each
    layer are scaled down where needed to keep its clause 9.5 bound below 2^30."""
    from refdec.architecture import LAYERS

    wmax = 32767 if profile == "W16A16" else 127
    in_ch = input_channels(cy, cz, delivered)
    arrays = {}
    for index, spec in enumerate(LAYERS):
        out = delivered[spec.name] * (4 if spec.depth_to_space else 1)
        weight, bias, shift = formula_layer(spec, index, out, in_ch[spec.name], weight_scale.get(spec.name, 30))
        fan = np.abs(weight).reshape(out, -1).sum(axis=1).max(initial=0)
        if fan * in_max[spec.name] >= 1 << 30:
            weight = weight // (-(-(fan * in_max[spec.name]) // (1 << 30)) + 1)
        arrays[f"{spec.name}.weight"] = np.clip(weight, -wmax, wmax).astype(np.int16 if wmax > 127 else np.int8)
        arrays[f"{spec.name}.bias"] = bias.astype(np.int32)
        arrays[f"{spec.name}.shift"] = shift.astype(np.uint8)
    return arrays


def _limit_header(profile: str, cy: int, cz: int, rates: int, gain_shift: int, s0_clip: int, clip: int,
                  description: str) -> dict:
    from refdec.architecture import LAYER_NAMES

    clips = {name: clip for name in LAYER_NAMES}
    clips[OUTPUT_LAYER] = 255
    return {"format": "refdec-model", "format_version": 1, "profile": profile,
            "weight_bits": 16 if profile == "W16A16" else 8, "latent_channels": cy, "hyper_channels": cz,
            "num_rates": rates, "inv_gain_shift": gain_shift, "synthesis_input_clip": s0_clip, "clip": clips,
            "description": description, "provenance": {"generator": "refcodec.make_vectors.limit_models"}}


def _z_tables(rows) -> dict:
    """z_lo, z_count, z_cdf from (z_lo, C(0 .. n_w)) per channel, rows padded with 65536."""
    width = max(len(c) for _, c in rows)
    return {"z_lo": np.array([lo for lo, _ in rows], dtype=np.int32),
            "z_count": np.array([len(c) - 1 for _, c in rows], dtype=np.int32),
            "z_cdf": np.array([list(c) + [65536] * (width - len(c)) for _, c in rows], dtype=np.int32)}


# Mixture parameters of the limits-max model (clause 7.8), per latent channel, from the biases of
# gather.6 (its weights are zero, its shift 0: P = Clip3(-A, A, b)): (logits, means, raw scales) of
# the three components. Chosen to reach what no trained model reaches: the smallest and largest
# scale index, ties of Round2(P, 4), means 2^15 - 1 apart (Clip3 of d in clause 7.9), windows of
# 129 symbols centred by Round2 on both parities, and the Max(1, .) of the linearised softmax.
LIMIT_MIXTURES = (
    ((0, 0, 0), (0, 0, 0), (0, 0, 0)),                                  # n_w = 2..3, SCALE_Q[0]
    ((0, 0, 0), (-32767, 32767, 0), (0, 0, 0)),                         # means far apart: d clipped
    ((0, 0, 0), (-32767, 32767, 64), (-32767, 32767, 2544)),            # sidx 0, 159, 159
    ((32767, -32767, 0), (100, -100, 5000), (2536, 2535, 2520)),        # e[k] = 1, Round2 ties at 2536
    ((-300, 0, 300), (31, 32, 33), (8, 7, 24)),                         # Round2(P, 4) ties: 8 -> 1
    ((0, 256, 512), (-31, -32, -33), (-8, -9, 2552)),                   # negative ties, clip at 159
    ((1000, 1000, 1000), (-20000, 1, 20063), (1200, 1600, 2000)),       # wide: centre Round2 of odd
    ((7, -7, 0), (-20000, 1, 20062), (1200, 1600, 2000)),               # wide: centre of even
    ((0, 0, 0), (32767, 32767, 32767), (2544, 2544, 2544)),             # window at +512, widest scale
    ((0, 0, 0), (-32767, -32767, -32767), (0, 0, 0)),                   # window at -512, narrowest
)


def limits_max_model() -> bytes:
    """A valid W16A16 model at the upper limits of clauses 5.2 and 9.4: C_y = 227 (gather.6 has
    3 K C_y = 2043 outputs), C_z = 2048, gather.0 with 2048 outputs, R = 64, inv_gain_shift 27,
    inv_gain entries 0 and 65536, every clip 32767 (synthesis_input_clip too), weights +-32767,
    shifts 0 and 27, an output channel whose clause 9.5 bound is exactly 2^31 - 1 and whose
    accumulator is 2^31 - 1 at every position, z_count 1024
    with C(n_w) = 65535, z windows reaching -Z_MAX and Z_MAX; gather.6 drives the mixture
    parameters of LIMIT_MIXTURES."""
    cy, cz, rates = 227, 2048, 64
    top = ACT16_MAX
    delivered = {name: 1 for name in BY_NAME}
    delivered["gather.0"] = 2048
    delivered["gather.6"] = 3 * NUM_MIXTURES * cy
    delivered[OUTPUT_LAYER] = 3
    header = _limit_header("W16A16", cy, cz, rates, MAX_INV_GAIN_SHIFT, top, top,
                           "limits-max: a model at the upper limits of clauses 5.2 and 9.4 (conformance vectors)")
    in_max = input_bounds(header)
    arrays = _limit_arrays("W16A16", cy, cz, delivered, in_max, {"gather.1": 1, "synthesis.0": 2, "gather.0": 30})
    # gather.1 saturates at +A (bias 2^30, shift 0), so that gather.2 reaches its bound at every position.
    arrays["gather.1.bias"][:] = 1 << 30
    arrays["gather.1.shift"][:] = 0
    # gather.2: weight +32767, shift 27, bias making sum|W| * in_max + |b| = 2^31 - 1 exactly: every
    # accumulator is 2^31 - 1, and Round2(2^31 - 1, 27) needs the 32-bit form of clause 4.2.
    arrays["gather.2.weight"][:] = top
    arrays["gather.2.bias"][:] = (1 << 31) - 1 - top * in_max["gather.2"]
    arrays["gather.2.shift"][:] = MAX_SHIFT
    # gather.3: weight -32767, shift 0: its clamps at -A and A are reachable.
    arrays["gather.3.weight"][:] = -top
    arrays["gather.3.bias"][:] = 12345
    arrays["gather.3.shift"][:] = 0
    # gather.6: P = Clip3(-A, A, b), the parameters of LIMIT_MIXTURES cycled over the channels.
    nk = NUM_MIXTURES
    arrays["gather.6.weight"][:] = 0
    arrays["gather.6.shift"][:] = 0
    bias = np.zeros(3 * nk * cy, dtype=np.int64)
    for c in range(cy):
        rows = LIMIT_MIXTURES[c % len(LIMIT_MIXTURES)]
        for part in range(3):
            for k in range(nk):
                bias[part * nk * cy + k * cy + c] = rows[part][k] + (0 if c < len(LIMIT_MIXTURES) else (c * 7) % 5 - 2)
    arrays["gather.6.bias"] = bias.astype(np.int32)
    # A channel of gather.6 that depends on its input, so that P varies between positions.
    arrays["gather.6.weight"][cy + 11, 0, 0, 0] = 3
    r, c = np.arange(rates)[:, None], np.arange(cy)[None, :]
    gain = (r * 1031 + c * 97) % 65537
    gain[-1, 0], gain[-1, 1], gain[-1, 2] = 65536, 0, 1
    arrays["inv_gain"] = gain.astype(np.int32)
    ramp = [0] + [64 * j - 1 for j in range(1, 1025)]
    rows = [(-512, ramp), (-Z_MAX, [0, 30000, 60000]), (Z_MAX - 1, [0, 5000, 65535])]
    rows += [(-1 - c % 3, [0, 20000 + c % 7, 45000, 60000 + c % 11]) for c in range(3, cz)]
    arrays.update(_z_tables(rows))
    data = serialize_model(header, arrays)
    parse_model(data, where="limits_max_model()")
    return data


RENORM_Z_CDF = (0, 513, 33281, 65535)  # symbol 0 then symbol 1 leave R = 512 * 32768 = 2^24 (clause 8.3)


def limits_min_model(z_rows=((0, RENORM_Z_CDF), (-Z_MAX, (0, 65535)), (Z_MAX, (0, 1))),
                     name: str = "limits-min") -> bytes:
    """A valid W8A16 model at the lower limits of clauses 5.2 and 9.4: C_y = 1, one channel
    between layers, R = 1, inv_gain_shift 0 (Round2 with n = 0), shifts 0, every clip 1 (the
    synthesis input too), weights +-127, z_count 1 with C(1) = 65535 and with C(1) = 1 (a
    frequency of 1), z windows at -Z_MAX and Z_MAX, and a z table RENORM_Z_CDF whose first two
    symbols leave the range decoder at R = 2^24 exactly. Its output layer has zero weights and
    biases beyond 0 and 255: every decoded image is the constant (0, 255, 128), so that a stream
    of 2^25 samples has a small golden PNG. z_rows gives C_z and the z tables (limits-min-z1:
    C_z = 1 with RENORM_Z_CDF alone)."""
    cy, cz = 1, len(z_rows)
    delivered = {layer: 1 for layer in BY_NAME}
    delivered["gather.6"] = 3 * NUM_MIXTURES * cy
    delivered[OUTPUT_LAYER] = 3
    header = _limit_header("W8A16", cy, cz, 1, 0, 1, 1,
                           f"{name}: a model at the lower limits of clauses 5.2 and 9.4 (conformance vectors)")
    in_max = input_bounds(header)
    arrays = _limit_arrays("W8A16", cy, cz, delivered, in_max, {layer: 127 for layer in BY_NAME})
    for layer in BY_NAME:
        arrays[f"{layer}.shift"][:] = 0
    arrays[f"{OUTPUT_LAYER}.weight"][:] = 0
    arrays[f"{OUTPUT_LAYER}.bias"] = np.array([-5, 300, 128], dtype=np.int32)
    arrays["inv_gain"] = np.array([[1]], dtype=np.int32)
    arrays.update(_z_tables(list(z_rows)))
    data = serialize_model(header, arrays)
    parse_model(data, where=f"limits_min_model({name})")
    return data


def limit_model_entries() -> list[ModelEntry]:
    out = []
    for name, make in (("limits-max", limits_max_model), ("limits-min", limits_min_model),
                       ("limits-min-z1", lambda: limits_min_model(((0, RENORM_Z_CDF),), "limits-min-z1"))):
        data = make()
        model = parse_model(data, where=name)
        out.append(ModelEntry(name, data, model, model.header["description"]))
    return out


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
    check: object = None               # a function (stream, model) that raises GenerationError unless the
                                       # stream does what the vector is for


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


# --- valid streams at the limits of clauses 5.2, 5.3, 6.2 and 9.4 ----------------------------------

def latents_ends(seed, edge: int = 8):
    """Random latents (as latents_random) in the first and last `edge` latent positions along the
    longer axis, zero elsewhere: the ends of a long strip carry information, its middle costs
    almost nothing."""
    def make(model, w, h):
        z, y = random_latents(model, w, h, seed=seed)
        axis = 1 if y.shape[1] >= y.shape[2] else 2
        keep = np.zeros(y.shape[axis], dtype=bool)
        keep[:edge], keep[-edge:] = True, True
        zkeep = np.zeros(z.shape[axis], dtype=bool)
        zkeep[:2], zkeep[-2:] = True, True
        shape = (1, -1, 1) if axis == 1 else (1, 1, -1)
        return np.where(zkeep.reshape(shape), z, 0), np.where(keep.reshape(shape), y, 0)
    return make


def latents_limits_max(seed):
    """For limits-max: z at both ends of the z windows (-Z_MAX and Z_MAX) and across the 1024-symbol
    window; y in and around the windows of LIMIT_MIXTURES, with escapes to -Y_MAX and Y_MAX."""
    def make(model, w, h):
        rng = np.random.default_rng(seed)
        hz, wz, hy, wy = padded_sizes(w, h)
        z = rng.integers(-3, 4, size=(model.hyper_channels, hz, wz))
        z[0] = rng.integers(-512, 512, size=(hz, wz))
        z[1], z[2] = -Z_MAX, Z_MAX
        z[3, 0, 0], z[4, 0, 0] = Z_MAX, -Z_MAX  # escapes to the limits
        y = rng.integers(-600, 601, size=(model.latent_channels, hy, wy))
        y[:, 0, 0] = np.where(np.arange(model.latent_channels) % 2, Y_MAX, -Y_MAX)
        y[5::7] = rng.integers(-2, 3, size=y[5::7].shape)
        return z.astype(np.int64), y.astype(np.int64)
    return make


def latents_limits_min(z_values, y_values=None):
    """For limits-min: z_hat channel by channel from z_values (a list per channel, repeated over the
    positions), y_hat zero or y_values repeated over the positions."""
    def make(model, w, h):
        hz, wz, hy, wy = padded_sizes(w, h)
        z = np.stack([np.resize(np.array(v, dtype=np.int64), hz * wz).reshape(hz, wz) for v in z_values])
        y = np.zeros((model.latent_channels, hy, wy), dtype=np.int64)
        if y_values is not None:
            y[0] = np.resize(np.array(y_values, dtype=np.int64), hy * wy).reshape(hy, wy)
        return z, y
    return make


def latents_min_strip(seed, edge: int = 8):
    """For limits-min strips: z in and around its windows, y random near the two ends of the
    strip's longer axis and zero elsewhere (the middle costs almost nothing)."""
    def make(model, w, h):
        rng = np.random.default_rng(seed)
        hz, wz, hy, wy = padded_sizes(w, h)
        z = np.stack([rng.integers(0, 3, size=(hz, wz)), np.full((hz, wz), -Z_MAX),
                      np.full((hz, wz), Z_MAX - 1)]).astype(np.int64)
        y = np.zeros((model.latent_channels, hy, wy), dtype=np.int64)
        ends = rng.integers(-40, 41, size=(model.latent_channels, hy, wy))
        keep = np.zeros((hy, wy), dtype=bool)
        if hy >= wy:
            keep[:edge], keep[-edge:] = True, True
        else:
            keep[:, :edge], keep[:, -edge:] = True, True
        return z, np.where(keep, ends, y)
    return make


LARGEST = (8192, 4096)  # W = 8192 and W * H = 2^25 (clause 5.2)


def limit_specs(limit_entries: list) -> list[tuple]:
    """(model entry, ValidSpec) of the valid streams at the limits: the largest width and height
    (strips) and the most samples, with limits-min (cheap to decode on the literal path too: C_y = 1,
    one channel between layers; a constant image), and a stream of each limit model (clauses 5.2,
    5.3, 6.2 and 9.4, valid side)."""
    by = {me.name: me for me in limit_entries}
    L = ["limits"]
    mx, mn = by["limits-max"], by["limits-min"]
    out = [
        (mn, ValidSpec(f"{mn.name}.strip-8192x1", 8192, 1, 0, latents_min_strip(41),
                       "the largest width, W = 8192 (clause 5.2), as a one-row strip: Wy = 512 latent columns, "
                       "524 wavefronts", ["5.2", "5.4", "7.5", "7.12"], L + ["sizes"], ["width-8192"])),
        (mn, ValidSpec(f"{mn.name}.strip-1x8192", 1, 8192, 0, latents_min_strip(42),
                       "the largest height, H = 8192 (clause 5.2), as a one-column strip: Hy = 512 latent rows, "
                       "2048 wavefronts of one position", ["5.2", "5.4", "7.5", "7.12"], L + ["sizes"],
                       ["height-8192"])),
    ]
    out.append((mx, ValidSpec(f"{mx.name}.rate-63-64x64", 64, 64, 63, latents_limits_max(43),
                              "model at the upper limits (C_y = 227, C_z = 2048, 2048 outputs, R = 64, G = 27, clips "
                              "32767, weights +-32767, shifts 27, a 2^31 - 1 accumulator bound, z_count 1024, z windows "
                              "to +-Z_MAX) at rate index 63 = R - 1; extreme mixture parameters",
                              ["5.2", "5.3", "6.2", "7.8", "7.9", "7.11", "9.4", "9.5"], L,
                              ["rate-index-r-minus-1", "model-upper-limits"])))
    out.append((mn, ValidSpec(f"{mn.name}.payloads-4-bytes-1x1", 1, 1, 0,
                              latents_limits_min([[2], [-Z_MAX], [Z_MAX - 1]]),
                              "model at the lower limits (R = 1, G = 0, shifts 0, clips 1, z_count 1); both payloads "
                              "have the smallest length, 4 bytes (clause 6.2)", ["5.2", "6.2", "8.2", "9.4"], L,
                              ["payload-length-4", "model-lower-limits"], check=_payloads_of_4_bytes)))
    out.append((mn, ValidSpec(f"{mn.name}.renorm-128x64", 128, 64, 0,
                              latents_limits_min([[0, 1], [-Z_MAX, -Z_MAX + 3], [Z_MAX, Z_MAX - 2]],
                                                 [Y_MAX, -Y_MAX, 0, 1, -1, 300, 0, 0]),
                              "R = 2^24 exactly after the first two z symbols: no renormalisation (clause 8.3); "
                              "a z symbol of frequency 1, z at -Z_MAX and Z_MAX, y at -Y_MAX and Y_MAX",
                              ["5.3", "8.3", "7.3", "9.4"], L, ["range-2-24", "z-frequency-1"],
                              check=_range_reaches_2_24)))
    z1 = by["limits-min-z1"]
    out.append((z1, ValidSpec(f"{z1.name}.renorm-at-end-65x1", 65, 1, 0, latents_limits_min([[0, 1]]),
                              "C_z = 1, the lower limit (clause 5.2); the z payload's last two symbols (0 then 1 of "
                              "RENORM_Z_CDF) leave R = 2^24 exactly at its end: no renormalisation, so no byte past "
                              "the payload is read (clause 8.3: only while R < 2^24)", ["5.2", "8.3", "8.5"], L,
                              ["range-2-24", "range-2-24-at-end", "hyper-channels-1"], check=_range_2_24_at_z_end)))
    width, height = LARGEST
    out.append((mn, ValidSpec(f"{mn.name}.size-{width}x{height}", width, height, 0,
                              latents_limits_min([[2], [-Z_MAX], [Z_MAX - 1]]),
                              f"the most samples, W * H = 2^25 (clause 5.2), with W = 8192: {padded_sizes(width, height)[2]}"
                              f" x {padded_sizes(width, height)[3]} latent positions; the model's output is constant",
                              ["5.2", "5.4", "7.5", "7.12", "7.13"], L + ["large"], ["samples-2-25", "width-8192"])))
    return out


def _range_2_24_at_z_end(stream: bytes, model) -> None:
    f = _header(stream)
    decoder = RangeDecoder(stream[HEADER_SIZE: HEADER_SIZE + f[7]])
    hz, wz, _, _ = padded_sizes(f[3], f[4])
    for cdf, n_w, lo, hi, _, limit in z_symbols(model, np.zeros((model.hyper_channels, hz, wz), dtype=np.int64)):
        decode_value(decoder, cdf, n_w, lo, hi, limit)
    if decoder.range != RANGE_BOTTOM or decoder.pos != decoder.length:
        raise GenerationError(f"R = {decoder.range}, {decoder.length - decoder.pos} bytes left at the z payload's end")


def _payloads_of_4_bytes(stream: bytes, model) -> None:
    f = _header(stream)
    if (f[7], f[8]) != (4, 4):
        raise GenerationError(f"payloads of {f[7]} and {f[8]} bytes, not 4 and 4")


def _range_reaches_2_24(stream: bytes, model) -> None:
    f = _header(stream)
    if not range_hits_2_24(stream[HEADER_SIZE: HEADER_SIZE + f[7]], [list(RENORM_Z_CDF)] * 2):
        raise GenerationError("the first two z symbols do not leave R = 2^24")


def range_hits_2_24(payload: bytes, cdfs) -> bool:
    """Whether decoding the symbols with these cumulative frequencies (one list per symbol) from the
    payload leaves R = 2^24 exactly after some symbol (clause 8.3, before renormalisation)."""
    r_state, value, pos = 0xFFFFFFFF, int.from_bytes(payload[:4], "big"), 4
    for cdf in cdfs:
        r = r_state >> 16
        v = value // r
        j = max(i for i, c in enumerate(cdf) if c <= v)
        end = cdf[j + 1] if j + 1 < len(cdf) else 1 << 16
        value -= r * cdf[j]
        r_state = r * (end - cdf[j])
        if r_state == 1 << 24:
            return True
        while r_state < 1 << 24:
            value, r_state, pos = (value << 8) | payload[pos], r_state << 8, pos + 1
    return False


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
    if (np.abs(z) > CONTEXT_INPUT_MAX).any():
        feats.add("hyper-input-clip")
    if (np.abs(y) > CONTEXT_INPUT_MAX).any():
        feats.add("context-input-clip")
    a0 = int(model.header["synthesis_input_clip"])
    if (np.abs(stages["synthesis_input"]) == a0).any():
        feats.add("synthesis-input-clip")
    if ((hi - lo) == 2 * MAX_HALF_WINDOW).any():
        feats.add("window-129")
    if (y == 0).all():
        feats.add("zero-latents")
    img = stages["image"]
    if (img == 0).any() or (img == 255).any():
        feats.add("output-clip")
    return sorted(feats), sorted(clauses)


# --- payload crafting for invalid streams -------------------------------------------------------

class _BitList(list):
    """Informative: collects the bits encode_escape_payload writes."""

    def write_bit(self, bit: int) -> None:
        self.append(bit)


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

    def sliver_at_last_bit(self, cdf, n_w, lo, hi, value) -> bool:
        """The escape of `value` with its last bypass bit replaced by sliver(): the decoder finds
        v = 2^16 exactly at the payload's last ReadBit [InvalidRangeState]."""
        bits = _BitList()
        encode_escape_payload(bits, lo, hi, value)
        self.encode_symbol(cdf, n_w + 1, n_w)
        for bit in bits[:-1]:
            self.write_bit(bit)
        return self.sliver()

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


def crafted_payload(symbols, at: int, action) -> bytes:
    """A payload that codes `symbols` correctly up to symbol `at` (or the next symbol where the
    action is possible), then does `action` there and flushes. `action` is "sliver",
    "escape_too_long", "out_of_range", "sliver_at_last_bit" (the symbol's escaped value with a sliver
    for its last bit), or an escaped value (an int) placed without its range check."""
    enc = CraftingEncoder()
    for i, (cdf, n_w, lo, hi, value, limit) in enumerate(symbols):
        if i >= at:
            if isinstance(action, int):
                enc.encode_symbol(cdf, n_w + 1, n_w)
                encode_escape_payload(enc, lo, hi, action)
                return enc.finish()
            if action == "sliver_at_last_bit":
                if not lo <= value <= hi and enc.sliver_at_last_bit(cdf, n_w, lo, hi, value):
                    return enc.finish()
                raise GenerationError(f"no sliver at the last bit of symbol {i}")
            done = {"sliver": lambda: enc.sliver(), "escape_too_long": lambda: enc.escape_too_long(cdf, n_w),
                    "out_of_range": lambda: enc.out_of_range(cdf, n_w)}[action]()
            if done:
                return enc.finish()
        encode_value(enc, cdf, n_w, lo, hi, value, limit)
    raise GenerationError(f"could not place {action} at or after symbol {at}")


def crafted_payload_last(symbols, n: int, action) -> bytes:
    """crafted_payload with the action at the last of the n symbols where it is possible, so that
    nothing but the end of the payload follows it."""
    symbols = list(symbols)
    for at in range(n - 1, -1, -1):
        try:
            return crafted_payload(symbols[: at + 1], at, action)
        except GenerationError:
            continue
    raise GenerationError(f"could not place {action} anywhere")


def _header(stream: bytes) -> list:
    return list(HEADER_LAYOUT.unpack_from(stream))


def _with_header(fields, z_payload: bytes, y_payload: bytes) -> bytes:
    f = list(fields)
    f[7], f[8] = len(z_payload), len(y_payload)
    return HEADER_LAYOUT.pack(*f) + z_payload + y_payload


def _patched(stream: bytes, **changes) -> bytes:
    names = ["magic", "version", "flags", "width", "height", "rate_index", "model_id", "z_length", "y_length"]
    f = _header(stream)
    for k, v in changes.items():
        f[names.index(k)] = v
    return HEADER_LAYOUT.pack(*f) + stream[HEADER_SIZE:]


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


def invalid_specs(base_stream: bytes, base: ModelEntry, z, y, bad_models: list, quick: bool,
                  model_stream: bytes = b"") -> list[InvalidSpec]:
    """The invalid streams: header and payload faults of the base stream, and the base model's
    stream (`model_stream`, valid with the tiny base model) naming each invalid model file."""
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
        spec("err-z-length-3", "PayloadTooShort", _patched(base_stream, z_length=3, y_length=f[8] + z_len - 3),
             "z_length 3 (y_length longer by as much: the lengths still add up to the stream)",
             ["6.2"], H, ["payload-too-short"]),
        spec("err-y-length-0", "PayloadTooShort", _patched(base_stream, y_length=0, z_length=z_len + f[8]),
             "y_length 0 (z_length longer by as much: the lengths still add up to the stream)",
             ["6.2"], H, ["payload-too-short"]),
        spec("err-payload-past-end", "PayloadPastEnd", base_stream[:-1], "last byte of the stream missing",
             ["6.2"], H, ["payload-past-end"]),
        spec("err-header-only", "PayloadPastEnd", base_stream[:HEADER_SIZE],
             f"the {HEADER_SIZE}-byte header alone: complete, so not TruncatedHeader; its payloads are missing",
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
             _with_header(f, zp, crafted_payload_last(_y_symbols(m, z, y), n_y, "sliver")),
             "code value placed above the last symbol's interval near the end of the y payload", ["8.3", "7.5"], P,
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
                        _patched(model_stream, model_id=bm.model_id),
                        f"stream naming an invalid model file: {bm.description}",
                        sorted({bm.clause, "9.4"}, key=_clause_key), M, ["invalid-model"], model=bm))
    return out


def code_value_2_16_stream(entry: ModelEntry) -> bytes:
    """A 1x1 stream of limits-min whose z payload ends in an escape (channel 2, whose window is the
    single value Z_MAX with frequency 1: the escape symbol leaves R nearly whole, so its bypass bits
    run without renormalisation) with the code value v = 2^16 exactly at its last ReadBit: the
    boundary of clause 8.3's v >= 2^16. The escape is to Z_MAX - 7 (m = 6, suffix bits 1 1), so a
    decoder that tests v > 2^16 reads the same bit 1 and ends the z payload with bytes left over."""
    m = entry.model
    z, y = latents_limits_min([[1], [-Z_MAX], [Z_MAX - 7]])(m, 1, 1)
    valid = encode_latents(m, z, y, 0, 1, 1)
    f = _header(valid)
    yp = valid[HEADER_SIZE + f[7]:]
    symbols = list(z_symbols(m, z))
    return _with_header(f, crafted_payload(symbols, len(symbols) - 1, "sliver_at_last_bit"), yp)


def boundary_invalid_specs(base_stream: bytes, base: ModelEntry, z, y, max_stream: bytes,
                           max_entry: ModelEntry, min_entry: ModelEntry) -> list[InvalidSpec]:
    """Invalid streams one past the limits of clauses 5.2, 5.3 and 6.2 (each breaks only that limit;
    the valid side is in limit_specs or the base set)."""
    m = base.model
    f = _header(base_stream)
    z_len, y_len = f[7], f[8]
    zp, yp = base_stream[HEADER_SIZE: HEADER_SIZE + z_len], base_stream[HEADER_SIZE + z_len:]
    n_z, n_y = int(z.size), int(y.size)
    H, P, L = ["header"], ["payload"], ["limits"]
    w, h = 4226, 7940  # the smallest W * H beyond 2^25 with W, H <= 8192: 2^25 + 8
    assert w * h == (1 << 25) + 8 and min(a * ((1 << 25) // a + 1) for a in range(4097, 8193)) == w * h
    return [
        InvalidSpec("err-height-8193", "DimensionsTooLarge", _patched(base_stream, height=8193),
                    "height 8193, one past the largest (clause 5.2)", ["5.2", "6.2"], H + L, ["too-large"], base),
        InvalidSpec(f"err-samples-{w}x{h}", "DimensionsTooLarge", _patched(base_stream, width=w, height=h),
                    f"{w} x {h} = 2^25 + 8 samples: the smallest product beyond 2^25 with W, H <= 8192 (clause 5.2)",
                    ["5.2", "6.2"], H + L, ["too-large"], base),
        InvalidSpec("err-y-length-3", "PayloadTooShort", _patched(base_stream, y_length=3, z_length=z_len + y_len - 3),
                    "y_length 3, one below 4 (z_length longer by as much: the lengths still add up)", ["6.2"], H + L,
                    ["payload-too-short"], base),
        InvalidSpec("err-lengths-wrap-32", "PayloadPastEnd",
                    _patched(base_stream, z_length=0xFFFFFFFF, y_length=len(base_stream) - HEADER_SIZE + 1),
                    "z_length 2^32 - 1 and y_length = stream length - 26: 27 + z_length + y_length is 2^32 + the "
                    "stream length, which a 32-bit sum wraps to the stream length (clause 4.1)", ["4.1", "6.2"],
                    H + L, ["payload-past-end"], base),
        InvalidSpec("err-y-latent-16384", "LatentOutOfRange",
                    _with_header(f, zp, crafted_payload(_y_symbols(m, z, y), n_y // 2, Y_MAX + 1)),
                    "y escape to exactly Y_MAX + 1 = 16384, one past the limit (clause 5.3)", ["5.3", "7.10"], P + L,
                    ["latent-out-of-range", "y-payload"], base),
        InvalidSpec("err-z-latent-minus-16384", "LatentOutOfRange",
                    _with_header(f, crafted_payload(z_symbols(m, z), n_z // 2, -Z_MAX - 1), yp),
                    "z escape to exactly -Z_MAX - 1 = -16384, one past the limit (clause 5.3)", ["5.3", "7.10"],
                    P + L, ["latent-out-of-range", "z-payload"], base),
        InvalidSpec("err-z-code-value-2-16-at-last-bit", "InvalidRangeState", code_value_2_16_stream(min_entry),
                    "code value v = 2^16 exactly at the z payload's last ReadBit (the last suffix bit of an escape): "
                    "v >= 2^16 is InvalidRangeState, the boundary of clause 8.3; a decoder testing v > 2^16 "
                    "decodes bit 1 there and finds bytes left over", ["8.3", "8.4", "7.10"], P + L,
                    ["invalid-range-state", "z-payload"], min_entry),
        InvalidSpec("err-rate-index-64", "RateIndexOutOfRange", _patched(max_stream, rate_index=64),
                    "rate index 64 = R of limits-max, whose R = 64 is the largest (clauses 5.2, 6.2)", ["6.2", "7.11"],
                    H + L, ["rate-index"], max_entry),
    ]


# Invalid model files whose rule no file can break alone: with the check that rejects them switched
# off, another check of clause 9.4 rejects them, with the same class, for the reason given. The
# single-fault check verifies that the second check is still found; the mutation harness argues
# the deleted check equivalent on the same grounds (results/mutation/equivalent.json).
INHERENT_SECOND_RULE = {
    # Clause 9.1.1, the ZIP records: a fault in the structure leaves nothing after it to read.
    "zip-not-an-archive": "without an end-of-central-directory record in the last 22 bytes there is no archive: "
                          "read there anyway, its fields are other bytes",
    "zip-truncated": "as zip-not-an-archive: the cut file has no end-of-central-directory record",
    "zip-archive-comment": "the comment moves the end-of-central-directory record from the last 22 bytes, where "
                           "the comment's bytes are read in its place",
    "zip-central-directory-offset": "a wrong central-directory offset makes every record read from other bytes",
    "zip-central-record-past-end": "a record that runs past the central directory is read from the bytes after it",
    "zip-data-into-central-directory": "members that overlap the central directory leave no consistent layout",
    "zip-local-extra-past-central-directory": "an extra field past the central directory puts the member's data "
                                              "there as well",
    "zip-stored-sizes-differ": "a stored member's data is its compressed size: with another uncompressed size the "
                               "data read is not the member's",
    "zip-size-larger-than-data": "the member inflates to fewer bytes than declared, and the .npy checks read the "
                                 "declared size",
    "zip-inflates-past-declared-size": "inflating past the declared size and inflating to another size than "
                                       "declared are one rule, checked while inflating and after",
    "zip-encrypted": "flag bit 0 is outside the allowed bits 1, 2 and 11 as well (one rule, two checks)",
    "zip-data-descriptor": "flag bit 3 is outside the allowed bits 1, 2 and 11 as well (one rule, two checks)",
    "zip-member-too-large": "its records declare 2^28 + 1 bytes for 8 bytes of data; a member within clause 5.2 "
                            "is at most 2048 x 2048 x 3 x 3 int16 weights (75 MB), so a true one breaks a shape "
                            "rule too: the limit bounds memory before anything is read",
    "zip-member-2-28-plus-1-bytes": "no member of a model within clause 5.2 reaches 2^28 bytes (the largest is "
                                    "2048 x 2048 x 3 x 3 int16 weights, 75 MB), so a real member one byte past the "
                                    "limit has a wrong shape too: the limit bounds work before anything is inflated",
    "zip-members-2-29-plus-1-bytes-together": "no model within clause 5.2 reaches 2^29 bytes of members (at most "
                                              "504,207,670 bytes with their .npy headers, clause 9.1), so real "
                                              "members one byte past the limit have a wrong shape too: the limit "
                                              "bounds work before anything is inflated",
    "zip-bad-crc-and-shape-error": "it tests the order of clause 9.4's items: a format fault (a CRC-32, item 1) and "
                                   "a shape fault (item 2) in other members; with the CRC check off the shape fault "
                                   "is reported, as it must be",
    "zip-members-too-large-together": "as zip-member-too-large: the declared sizes are false, and the members of "
                                      "a model within clause 5.2 are below 2^29 bytes together",
    "zip-too-many-members": "clause 9.3 names 65 members and names are unique, so more than 256 members always "
                            "include an unexpected one",
    "zip-non-npy-member": "a name not ending in .npy is not a member of clause 9.3 either",
    # Clause 9.1.3, the .npy members.
    "npy-version-2": "a version 2.0 header has a 4-byte length field: read as version 1.0 it does not parse "
                     "(npy-version-1-1 has a 1.0 layout)",
    "npy-truncated-header": "a header that ends past the member leaves no data, and every clause 9.3 array has "
                            "at least one element",
    "npy-object-dtype": "no clause 9.3 member has an object dtype, so the member list check rejects its dtype",
    "npy-big-endian": "'>' is not the '<' that the dtype table requires either (one rule, two checks)",
    "npy-native-byte-order": "'=i4' is not the '<i4' of the dtype table either (one rule, two checks)",
    "npy-no-byte-order": "'|i2' is not the '<i2' of the dtype table either (one rule, two checks)",
    "npy-shape-4301-digits": "a dimension beyond 2^28 cannot be filled by the data of a member of at most 2^28 "
                             "bytes, so its data size is wrong as well: the limit bounds the arithmetic before the "
                             "sizes are compared (and spares a decoder the conversion of 4301 digits)",
    "npy-shape-huge-empty": "no clause 9.3 array within clause 5.2 has a dimension above 2^28, so its shape is "
                            "wrong as well: the limit bounds the arithmetic before the shapes are compared",
    # Clause 9.2 and 9.3.
    "header-nan": "NaN where an integer is required is not an integer either (header-nan-in-provenance puts it "
                  "where any value is allowed)",
    "header-format-not-string": "a format that is not a string is not \"refdec-model\" either",
    "header-profile-not-string": "a profile that is not a string is not a known profile either",
    "header-weight-bits-not-integer": "true does not match the profile's 16 either (header-weight-bits-16-0 "
                                      "is 16.0)",
    "header-wrong-ndim": "a 2-D array holds its data in another shape: the data size check fails too",
    "member-wrong-ndim": "an array of another number of dimensions has another shape as well",
    "member-wrong-dtype": "data of another dtype has another size than the table's dtype needs",
    "member-weight-dtype-profile": "int8 weights under W16A16 have half the bytes int16 needs",
    "shape-latent-channels-zero": "C_y = 0 makes gather.6 have 3 K C_y = 0 outputs, below the 1 of clause 5.2",
}
# Invalid streams for which switching off the check that rejects them cannot pass: the same class
# follows from the same fault at the next step, for the reason given.
INHERENT_SAME_CLASS: dict = {}
# Invalid model files of refdec.generators.invalid_models left out of the vectors: a file that
# breaks one rule alone replaces each (named in the value).
SUPERSEDED_MODELS = {
    "shape-hyper-channels-too-many": "shape-hyper-channels-2049",
}


# --- single-fault verification -------------------------------------------------------------------

SINGLE_FAULT_PACKAGE = "_refdec_single_fault"


# Functions that check several rules for their callers (a range check): a raise in one of them is
# told apart by its caller's line as well.
SHARED_CHECKS = {"_check_range", "_expect_shape"}


class _FaultSwitch:
    """Called before every `raise` of the instrumented refdec copy: records where the raise is
    (its signature: the innermost `depth` frames of the copy, module and line) and returns True
    (the raise is skipped) when that signature was switched off."""

    def __init__(self):
        self.off: set = set()
        self.depth = 2
        self.last = None

    def __call__(self) -> bool:
        frame, sig = sys._getframe(1), []
        depth = self.depth if frame.f_code.co_name in SHARED_CHECKS else 1
        while frame is not None and len(sig) < depth:
            name = frame.f_globals.get("__name__", "")
            if name == SINGLE_FAULT_PACKAGE or name.startswith(SINGLE_FAULT_PACKAGE + "."):
                sig.append((name, frame.f_lineno))
            frame = frame.f_back
        sig = tuple(sig)
        if sig in self.off:
            return True
        self.last = sig
        return False


class SingleFaultTimeout(Exception):
    """A check switched off and the decoder runs on without end (a deflate stream that never ends)."""


class SkippedInHandler(Exception):
    """Raised in place of a switched-off raise inside an exception handler: the check converts an
    error of a library (zipfile, the .npy reader) and nothing sensible follows it (a crash)."""


class _GuardRaises(ast.NodeTransformer):
    """`raise X` -> `if not __sf_skip__(): raise X` (at the raise's line); inside an exception
    handler `if __sf_skip__(): raise __sf_stop__` then `raise X`."""

    def __init__(self):
        self.in_handler = 0

    def visit_ExceptHandler(self, node):
        self.in_handler += 1
        self.generic_visit(node)
        self.in_handler -= 1
        return node

    def visit_FunctionDef(self, node):
        saved, self.in_handler = self.in_handler, 0
        self.generic_visit(node)
        self.in_handler = saved
        return node

    def visit_Raise(self, node):
        if node.exc is None:
            return node  # a re-raise: the check is where the exception was raised first
        call = ast.Call(ast.Name("__sf_skip__", ast.Load()), [], [])
        if self.in_handler:
            stop = ast.Raise(exc=ast.Name("__sf_stop__", ast.Load()), cause=None)
            guard = ast.If(test=call, body=[stop], orelse=[])
            nodes = (guard, call, call.func, stop, stop.exc)
            result = [guard, node]
        else:
            guard = ast.If(test=ast.UnaryOp(ast.Not(), call), body=[node], orelse=[])
            nodes = (guard, guard.test, call, call.func)
            result = guard
        for n in nodes:
            ast.copy_location(n, node)
        return result


class _InstrumentedRefdec(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports refdec/ as the package SINGLE_FAULT_PACKAGE with every raise guarded by a switch."""

    def __init__(self, switch: _FaultSwitch):
        self.root = Path(__file__).resolve().parents[1] / "refdec"
        self.switch = switch

    def _file(self, fullname):
        parts = fullname.split(".")[1:]
        base = self.root.joinpath(*parts)
        if (base / "__init__.py").is_file():
            return base / "__init__.py", True
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py"), False
        return None, False

    def find_spec(self, fullname, path, target=None):
        if fullname != SINGLE_FAULT_PACKAGE and not fullname.startswith(SINGLE_FAULT_PACKAGE + "."):
            return None
        file, package = self._file(fullname)
        if file is None:
            return None
        spec = importlib.util.spec_from_loader(fullname, self, origin=str(file), is_package=package)
        if package:
            spec.submodule_search_locations = [str(file.parent)]
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        file = Path(module.__spec__.origin)
        tree = _GuardRaises().visit(ast.parse(file.read_text(encoding="utf-8"), filename=str(file)))
        ast.fix_missing_locations(tree)
        module.__file__ = str(file)
        module.__dict__["__sf_skip__"] = self.switch
        module.__dict__["__sf_stop__"] = SkippedInHandler
        exec(compile(tree, str(file), "exec"), module.__dict__)


_SINGLE_FAULT = None


def _single_fault_refdec():
    """(package, switch): refdec imported once more, every raise guarded (for SingleFaultCheck)."""
    global _SINGLE_FAULT
    if _SINGLE_FAULT is None:
        switch = _FaultSwitch()
        sys.meta_path.insert(0, _InstrumentedRefdec(switch))
        package = importlib.import_module(SINGLE_FAULT_PACKAGE)
        _SINGLE_FAULT = (package, switch)
    return _SINGLE_FAULT


class SingleFaultCheck:
    """Each invalid vector breaks exactly one rule (issue 20): refdec rejects it with the expected
    class at one check, and with that check switched off (every raise at the same place, the
    same caller for model and header checks) it passes every other check of its group:

    * a model file: clause 9.4 validation finds nothing else (it loads, or crashes);
    * a header check: no other error of clauses 6.2 and 9 (the payloads may then fail: they were
      made for the stream's true header);
    * a payload error: decoding does not end in the same class elsewhere.

    A vector whose fault is masked (a decoder without the check would still report the expected
    class because the vector breaks a second rule) fails the check: the mutation harness could
    not tell a decoder without that check from a correct one."""

    def __init__(self, models):
        self.pkg, self.switch = _single_fault_refdec()
        self.errors = importlib.import_module(SINGLE_FAULT_PACKAGE + ".errors")
        self.mf = importlib.import_module(SINGLE_FAULT_PACKAGE + ".model_file")
        self.valid = {me.model_id: me for me in models}
        self.parsed = {}
        # The literal path where there is one: the normative checks alone.
        self.literal = {"fast": False} if "fast" in inspect.signature(self.pkg.decode).parameters else {}

    def _store(self, bad: dict):
        check = self

        class Store:
            def get(self, model_id):
                if model_id in bad:
                    return check.mf.parse_model(bad[model_id], where="model")
                if model_id in check.valid:
                    if model_id not in check.parsed:
                        check.parsed[model_id] = check.mf.parse_model(check.valid[model_id].data, where="model")
                    return check.parsed[model_id]
                return check.pkg.ModelStore().get(model_id)  # UnknownModel, raised by the copy
        return Store()

    def _run(self, action, seconds: float = 60.0):
        """action() under a timer: its error, a crash, SingleFaultTimeout, or None."""
        import signal

        def expire(signum, frame):
            raise SingleFaultTimeout(f"no result within {seconds} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            action()
        except self.errors.RefdecError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a crash (or a loop without end): no check rejected it
            return exc
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return None

    def verify(self, vid: str, expected: str, stream: bytes | None = None, bad: dict | None = None,
               model_data: bytes | None = None, inherent: str | None = None) -> None:
        """Raises GenerationError unless the vector breaks exactly one rule. `inherent` is the
        reason why a vector cannot: then the second rule must be found (the reason stays true)."""
        err = ALL_ERRORS[expected]
        if model_data is not None:
            action = lambda: self.mf.parse_model(model_data, where="model")  # noqa: E731
            depth = 2
        else:
            store = self._store(bad or {})
            action = lambda: self.pkg.decode(stream, store, **self.literal)  # noqa: E731
            depth = 1 if err.group == "payload" else 2
        self.switch.off, self.switch.depth, self.switch.last = set(), depth, None
        first = self._run(action)
        if type(first).__name__ != expected or self.switch.last is None:
            raise GenerationError(f"{vid}: the instrumented refdec reports {first!r}, expected {expected}")
        site = self.switch.last
        self.switch.off = {site}
        second = self._run(action, 20.0)
        self.switch.off = set()
        where = ", ".join(f"{name.split('.')[-1]}.py:{line}" for name, line in site)
        problem = None
        if isinstance(second, self.errors.RefdecError):
            name = type(second).__name__
            if model_data is not None or (err.group != "payload" and type(second).group in ("header", "model")) \
                    or name == expected:
                problem = (f"{vid}: with the check at {where} ({expected}) switched off, refdec still reports "
                           f"{name}: the vector breaks a second rule ({second})")
        if problem and not inherent:
            raise GenerationError(problem)
        if inherent and not problem:
            raise GenerationError(f"{vid}: listed as breaking a second rule inherently ({inherent}), but with "
                                  f"the check at {where} switched off nothing else rejects it")


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

    limit_entries = [] if quick else limit_model_entries()
    if not quick:
        valid_entries += limit_specs(limit_entries) + variant_specs()
    streams: dict[str, bytes] = {}

    def stream_of(me, s) -> bytes:
        if s.id not in streams:
            if s.stream is not None:
                streams[s.id] = s.stream()
            else:
                z, y = s.latents(me.model, s.width, s.height)
                streams[s.id] = encode_latents(me.model, z, y, s.rate, s.width, s.height)
        return streams[s.id]

    base_entry = models[0]
    base_spec = next(s for me, s in valid_entries if me is base_entry and s.id.endswith("odd-65x33"))
    bz, by = base_spec.latents(base_entry.model, base_spec.width, base_spec.height)
    base_stream = encode_latents(base_entry.model, bz, by, base_spec.rate, base_spec.width, base_spec.height)
    # The model-group vectors name an invalid model file from a stream that is valid with the tiny
    # base model they derive from (so that the model file is their only fault).
    tiny_data = tiny_base_model()
    tiny = ModelEntry("tiny-base", tiny_data, parse_model(tiny_data, where="tiny_base_model()"), "tiny base model")
    tz, ty = latents_random(31)(tiny.model, 65, 33)
    model_stream = encode_latents(tiny.model, tz, ty, tiny.model.num_rates - 1, 65, 33)
    bad_models = [] if quick else invalid_model_entries()
    invalid = invalid_specs(base_stream, base_entry, bz, by, bad_models, quick, model_stream)
    if not quick:
        mx, mx_spec = next((me, s) for me, s in valid_entries if me.name == "limits-max")
        mn = next(me for me in limit_entries if me.name == "limits-min")
        invalid += boundary_invalid_specs(base_stream, base_entry, bz, by, stream_of(mx, mx_spec), mx, mn)
    all_ids = [s.id for _, s in valid_entries] + [s.id for s in invalid]
    if len(set(all_ids)) != len(all_ids):
        raise GenerationError("duplicate vector ids")
    wanted = None
    if only:
        wanted = set(only)
        unknown = wanted - set(all_ids)
        if unknown:
            raise GenerationError(f"--only: unknown vector ids {sorted(unknown)}")

    # Each invalid vector breaks exactly one rule (SingleFaultCheck); a model-group stream is valid
    # with the tiny base model.
    chosen = [s for s in invalid if wanted is None or s.id in wanted]
    if chosen:
        checker = SingleFaultCheck(models + limit_entries + [tiny])
        refdec_decode(model_stream, tiny.model)
        for s in chosen:
            if s.model.model is None:
                slug = s.model.name[len("invalid-"):]
                checker.verify(s.id, s.expected, model_data=s.model.data, inherent=INHERENT_SECOND_RULE.get(slug))
                if _patched(s.stream, model_id=tiny.model_id) != model_stream:
                    raise GenerationError(f"{s.id}: not the tiny base model's stream")
            else:
                checker.verify(s.id, s.expected, stream=s.stream, inherent=INHERENT_SAME_CLASS.get(s.id))
        log(f"single-fault check: {len(chosen)} invalid vectors, each breaks one rule")

    files: dict[str, bytes] = {}
    stats: dict[str, dict] = {}
    used_models: dict[str, ModelEntry] = {}
    vectors = []
    for me, s in valid_entries:
        if wanted is not None and s.id not in wanted:
            continue
        stream = stream_of(me, s)
        streams.pop(s.id, None)
        if s.check is not None:
            s.check(stream, me.model)
        image, stages = golden_decode(stream, me.model, device)
        feats, extra = measured_features(me.model, s, stages)
        feats = sorted(set(feats) | set(s.features))
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
    for me in models + limit_entries:
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
        "format": MANIFEST_FORMAT, "manifest_version": MANIFEST_VERSION, "bitstream_version": VERSION,
        "spec": "refdec specification, bitstream version 1 (spec/); vectors: clause 11.5",
        "generator": {"command": command, "golden_decoder": "refcodec.int_decoder", "pillow": PIL.__version__,
                      "cross_checked_with": "refdec.decoder", "options": options},
        "stage_order": STAGE_ORDER,
        "subsets": {k: SUBSETS[k] for k in used_subsets},
        "models": {me.name: me.manifest_entry() for me in sorted(used_models.values(), key=lambda e: e.name)},
        "vectors": vectors,
    }
    if stats:
        by_name = {me.name: me for me in models + limit_entries}
        # The models of the set's own vectors (the clause 9 variants repeat the tiny base model's layers).
        manifest["statistics"] = {"models": {name: vector_stats.summarise(per_vector, by_name[name].model)
                                             for name, per_vector in sorted(stats.items()) if name in by_name}}
    score = mutation_statistics(manifest)
    if score:
        manifest.setdefault("statistics", {})["mutation"] = score
    problems = validate_manifest(manifest)
    if problems:
        raise GenerationError("generated manifest is invalid: " + "; ".join(problems[:5]))
    _write(out, files, manifest)
    return manifest


# --- the mutation score of the set (tools/mutate.py) -------------------------------------------------

MUTATION_SUMMARY = ROOT / "results" / "mutation" / "summary.json"


def vector_set_digest(manifest: dict) -> str:
    """SHA-256 of a manifest without its statistics.mutation block: the identity of the vector set
    that a mutation score belongs to (tools/mutate.py records it)."""
    import hashlib
    import json

    data = json.loads(json.dumps(manifest))
    data.get("statistics", {}).pop("mutation", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def mutation_statistics(manifest: dict, summary_path: Path = MUTATION_SUMMARY) -> dict | None:
    """statistics.mutation of the manifest: the score of the last full run of tools/mutate.py
    (results/mutation/summary.json) when it was measured on this very vector set, else None."""
    import json

    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    if summary.get("vectors_manifest_sha256") != vector_set_digest(manifest) or summary.get("sample") \
            or summary.get("subsets") or summary.get("selection"):
        return None
    t = summary["total"]
    return {"date": summary["date"], "commit": summary.get("commit", ""), "path": summary["path"],
            "score": t["score"], "killed": t["killed"], "equivalent": t["equivalent"],
            "untestable": t.get("untestable", 0), "open": t["open"],
            "mutants": summary["mutants"], "survivors": "results/mutation/survivors.md"}


def embed_mutation_score(vectors_dir: Path) -> bool:
    """Write the score of results/mutation/summary.json into a vector set's manifest and README, as
    generation would (returns False when the score was measured on another set)."""
    import json

    manifest = json.loads((vectors_dir / MANIFEST_NAME).read_text())
    score = mutation_statistics(manifest)
    if not score:
        return False
    manifest.setdefault("statistics", {})["mutation"] = score
    (vectors_dir / MANIFEST_NAME).write_text(dumps_canonical(manifest))
    (vectors_dir / "README.md").write_text(readme_text(manifest))
    return True


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
