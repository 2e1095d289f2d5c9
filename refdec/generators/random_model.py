"""Informative: random integer models for tests and benchmarks. Not part of the decoding process.

random_model() draws weights, biases and shifts for any channel configuration so
that the clause 9.5 bound holds with a margin and activations stay in a useful
range (neither all clipped nor all zero), and builds a factorised prior for z
and inverse gains. The result is a valid model file (bytes) and its parsed Model.
"""

from __future__ import annotations

import numpy as np

from ..constants import MAX_SHIFT, NUM_MIXTURES, Y_MAX, Z_MAX
from ..architecture import CONTEXT, GATHER, HYPER_SYNTHESIS, LAYERS, SYNTHESIS, causal_mask
from ..model_file import input_bounds, parse_model
from .model_writer import serialize_model

REFERENCE_CHANNELS = {
    "latent": 128, "hyper": 64, "hyper_synthesis": (96, 128, 128), "context": 64,
    "gather": (320, 256, 256, 192, 192, 192), "synthesis": (128, 128, 128, 96, 64, 32),
}
SMALL_CHANNELS = {
    "latent": 8, "hyper": 4, "hyper_synthesis": (6, 8, 8), "context": 4,
    "gather": (16, 12, 12, 12, 8, 8), "synthesis": (8, 8, 8, 8, 6, 4),
}


def _layer_outputs(channels):
    cy = channels["latent"]
    outs = {}
    for spec, c in zip(HYPER_SYNTHESIS, channels["hyper_synthesis"]):
        outs[spec.name] = c
    for spec in CONTEXT:
        outs[spec.name] = channels["context"]
    for spec, c in zip(GATHER, tuple(channels["gather"]) + (3 * NUM_MIXTURES * cy,)):
        outs[spec.name] = c
    for spec, c in zip(SYNTHESIS, tuple(channels["synthesis"]) + (3,)):
        outs[spec.name] = c
    return outs


def random_model(seed: int = 0, channels=None, profile: str = "W16A16", num_rates: int = 6,
                 act_clip: int = 4095, mean_spread: float = 200.0, scale_offset: int = 1000):
    """(model file bytes, parsed Model) for the given channel configuration (default: small)."""
    channels = channels or SMALL_CHANNELS
    rng = np.random.default_rng(seed)
    wbits = 16 if profile == "W16A16" else 8
    wmax = (1 << (wbits - 1)) - 1
    cy, cz = channels["latent"], channels["hyper"]
    outs = _layer_outputs(channels)
    clip = {spec.name: act_clip for spec in LAYERS}
    clip[SYNTHESIS[-1].name] = 255
    header = {
        "format": "refdec-model", "format_version": 1, "profile": profile, "weight_bits": wbits,
        "latent_channels": cy, "hyper_channels": cz, "num_rates": num_rates, "inv_gain_shift": 12,
        "synthesis_input_clip": act_clip, "clip": clip,
        "description": f"random test model, seed {seed}", "provenance": {"generator": "refdec.random_model"},  # the module's name when examples/ was made
    }
    in_max = input_bounds(header)
    in_channels = {}
    prev = {"hyper_synthesis": cz, "synthesis": cy}
    for net in (HYPER_SYNTHESIS, SYNTHESIS):
        c = prev[net[0].network]
        for spec in net:
            in_channels[spec.name] = c
            c = outs[spec.name]
    for spec in CONTEXT:
        in_channels[spec.name] = cy
    c = outs[HYPER_SYNTHESIS[-1].name] + sum(outs[s.name] for s in CONTEXT)
    for spec in GATHER:
        in_channels[spec.name] = c
        c = outs[spec.name]
    arrays = {}
    for spec in LAYERS:
        cout = outs[spec.name] * (4 if spec.depth_to_space else 1)
        cin, k = in_channels[spec.name], spec.kernel
        w = rng.integers(-wmax, wmax + 1, size=(cout, cin, k, k))
        if spec.network == "context":
            w = w * causal_mask(k)
        fan = np.abs(w).reshape(cout, -1).sum(axis=1)
        # Keep sum|W| * in_max + |b| below 2^30 (half the clause 9.5 limit).
        budget = (1 << 30) // in_max[spec.name]
        over = fan > budget
        if over.any():
            w = (w * np.minimum(1.0, budget / np.maximum(fan, 1))[:, None, None, None]).astype(np.int64)
            fan = np.abs(w).reshape(cout, -1).sum(axis=1)
        bias = rng.integers(-(1 << 20), (1 << 20) + 1, size=cout)
        # Typical |acc| ~ fan * typical|x| / sqrt(taps): shift it to about a quarter of the clip.
        typical = fan * (in_max[spec.name] / 8) / np.sqrt(max(1, cin * k * k))
        target = 255 if spec.name == SYNTHESIS[-1].name else act_clip / 4
        shift = np.clip(np.round(np.log2(np.maximum(typical, 1) / target)), 0, MAX_SHIFT).astype(np.int64)
        if spec.name == GATHER[-1].name:
            # Mixture parameters: logits, means around zero, scale indices in range.
            third = cout // 3
            bias[:third] = rng.integers(-300, 300, size=third)
            bias[third:2 * third] = rng.integers(-int(mean_spread), int(mean_spread) + 1, size=third) << 6
            bias[2 * third:] = (scale_offset + rng.integers(-600, 600, size=cout - 2 * third)) << 4
            shift[:] = np.clip(shift + 3, 0, MAX_SHIFT)
        if spec.name == SYNTHESIS[-1].name:
            # Output around mid-grey; the clip below keeps |b| <= 2^29 for large shifts.
            bias[:] = 128 << int(shift.max())
            shift[:] = int(shift.max())
        bias = np.clip(bias, -(1 << 29), 1 << 29)
        arrays[f"{spec.name}.weight"] = w.astype(np.int16 if wbits == 16 else np.int8)
        arrays[f"{spec.name}.bias"] = bias.astype(np.int32)
        arrays[f"{spec.name}.shift"] = shift.astype(np.uint8)
    arrays["inv_gain"] = rng.integers(1 << 10, 1 << 14, size=(num_rates, cy)).astype(np.int32)
    z_counts = rng.integers(3, 40, size=cz)
    n_max = int(z_counts.max()) + 1
    z_cdf = np.full((cz, n_max), 65536, dtype=np.int64)
    for c in range(cz):
        n_w = int(z_counts[c])
        probs = np.exp(-0.5 * ((np.arange(n_w) - n_w / 2) / (n_w / 6)) ** 2) + 1e-3
        freq = 1 + np.floor(probs / probs.sum() * (65536 - n_w - 1 - 64)).astype(np.int64)
        z_cdf[c, : n_w + 1] = np.concatenate([[0], np.cumsum(freq)])
    arrays["z_lo"] = (-(z_counts // 2)).astype(np.int32)
    arrays["z_count"] = z_counts.astype(np.int32)
    arrays["z_cdf"] = z_cdf.astype(np.int32)
    data = serialize_model(header, arrays)
    return data, parse_model(data, where=f"random_model(seed={seed})")


def random_latents(model, width, height, seed=0, y_scale=3.0, z_scale=2.0):
    """Informative: synthetic integer latents of the right shapes (Laplacian-ish values)."""
    from ..architecture import padded_sizes

    rng = np.random.default_rng(seed)
    hz, wz, hy, wy = padded_sizes(width, height)
    z = np.round(rng.laplace(0, z_scale, size=(model.hyper_channels, hz, wz))).astype(np.int64)
    y = np.round(rng.laplace(0, y_scale, size=(model.latent_channels, hy, wy))).astype(np.int64)
    return np.clip(z, -Z_MAX, Z_MAX), np.clip(y, -Y_MAX, Y_MAX)
