"""What a valid vector drives to its limits, measured on its golden stage tensors (informative).

The vector generator records, for every valid vector, which clamps of the decoding process it
reaches and how large the accumulators of clause 4.5 become in every layer, so that the
manifest can show that the suite drives every clamp and the largest accumulator values
(clause 9.5 bounds them; implementers size their accumulators from it).

Accumulators are recomputed here from each layer's input stage (the previous layer's output,
or the clipped latents) as exact float64 products: |acc| < 2^31 by clause 9.5, far below 2^53.
"""

from __future__ import annotations

import numpy as np

from refdec.constants import CONTEXT_INPUT_MAX
from refdec.architecture import CONTEXT, GATHER, HYPER_SYNTHESIS, SYNTHESIS, causal_mask
from refdec.model_file import input_bounds

ROWS_PER_BLOCK = 32  # output rows per product, to bound memory on large images


def layer_inputs(model, stages: dict) -> dict:
    """Each layer's input (C, H, W) as clause 7 defines it, from the clause 11.3 stage tensors."""
    clip = CONTEXT_INPUT_MAX
    q = np.clip(stages["y_hat"], -clip, clip)
    inputs = {HYPER_SYNTHESIS[0].name: np.clip(stages["z_hat"], -clip, clip)}
    for net in (HYPER_SYNTHESIS, GATHER, SYNTHESIS):
        for prev, spec in zip(net, net[1:]):
            inputs[spec.name] = stages[prev.name]
    for spec in CONTEXT:
        inputs[spec.name] = q
    inputs[GATHER[0].name] = np.concatenate([stages[HYPER_SYNTHESIS[-1].name]] + [stages[s.name] for s in CONTEXT])
    inputs[SYNTHESIS[0].name] = stages["synthesis_input"]
    return inputs


def accumulators_peak(layer, x: np.ndarray) -> tuple[int, int]:
    """(max |acc|, its output channel) of clause 4.5 over all output positions of one layer."""
    w = layer.weight.astype(np.float64)
    out_ch, in_ch, k, _ = w.shape
    if layer.name.startswith("context."):
        w = w * causal_mask(k)
    p = k // 2
    xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p)))
    _, h, width = x.shape
    taps = [(ky, kx, np.ascontiguousarray(w[:, :, ky, kx].T)) for ky in range(k) for kx in range(k)
            if np.any(w[:, :, ky, kx])]
    best, best_ch = 0, 0
    for r0 in range(0, h, ROWS_PER_BLOCK):
        r1 = min(h, r0 + ROWS_PER_BLOCK)
        acc = np.broadcast_to(layer.bias.astype(np.float64), (r1 - r0, width, out_ch)).copy()
        for ky, kx, wt in taps:
            acc += xp[:, r0 + ky: r1 + ky, kx: kx + width].transpose(1, 2, 0) @ wt
        peak = np.abs(acc).reshape(-1, out_ch).max(axis=0)
        ch = int(np.argmax(peak))
        if peak[ch] > best:
            best, best_ch = int(peak[ch]), ch
    return best, best_ch


def channel_bounds(model) -> dict:
    """Clause 9.5: sum |W| * in_max + |b| per output channel of every layer."""
    bounds = {}
    for name, in_max in input_bounds(model.header).items():
        layer = model.layers[name]
        bounds[name] = (np.abs(layer.weight.astype(np.int64)).reshape(layer.weight.shape[0], -1).sum(axis=1) * in_max
                        + np.abs(layer.bias.astype(np.int64)))
    return bounds


def measure(model, stages: dict) -> dict:
    """Per layer: accumulator peak, its channel and that channel's clause 9.5 bound; and which
    activation clamps (clause 4.5 Clip3 at -A / +A, clause 7.12 at 0 / 255) are reached."""
    inputs = layer_inputs(model, stages)
    bounds = channel_bounds(model)
    layers = {}
    for spec in HYPER_SYNTHESIS + CONTEXT + GATHER + SYNTHESIS:
        layer = model.layers[spec.name]
        peak, ch = accumulators_peak(layer, inputs[spec.name])
        out = stages[spec.name]
        lo, hi = (0, 255) if spec.name == SYNTHESIS[-1].name else (-layer.clip, layer.clip)
        layers[spec.name] = {"peak": peak, "channel": ch, "channel_bound": int(bounds[spec.name][ch]),
                             "clamp_low": bool((out == lo).any()), "clamp_high": bool((out == hi).any())}
    sidx = stages["mixture.scale_index"]
    return {
        "layers": layers,
        "scale_index_min": int(sidx.min()), "scale_index_max": int(sidx.max()),
        "mean_min": int(stages["mixture.means"].min()), "mean_max": int(stages["mixture.means"].max()),
    }


def clamps_possible(model) -> dict:
    """Per layer, whether any input can reach its lower and upper clamp at all: whether the output
    Clip3(lo, hi, Requant(acc)) reaches lo or hi for |acc| up to the channel's clause 9.5 bound.
    A clamp that is not possible is a property of the model, not a gap in the vectors."""
    bounds = channel_bounds(model)
    out = {}
    for spec in HYPER_SYNTHESIS + CONTEXT + GATHER + SYNTHESIS:
        layer = model.layers[spec.name]
        lo, hi = (0, 255) if spec.name == SYNTHESIS[-1].name else (-layer.clip, layer.clip)
        b = bounds[spec.name].astype(np.float64)
        s = layer.shift.astype(np.int64)
        top = np.floor(np.ldexp(b, -s) + 0.5)
        bottom = np.floor(np.ldexp(-b, -(s + 3 if spec.leaky else s)) + 0.5)
        out[spec.name] = {"low": bool((bottom <= lo).any()), "high": bool((top >= hi).any())}
    return out


def summarise(per_vector: dict, model=None) -> dict:
    """The manifest's "statistics" for one model: per layer the largest accumulator over its valid
    vectors (and where), how many vectors reach each clamp and whether the clamp can be reached
    at all; per mixture parameter the extremes reached."""
    possible = clamps_possible(model) if model is not None else {}
    out_layers = {}
    names = next(iter(per_vector.values()))["layers"].keys() if per_vector else []
    for name in names:
        best_id = max(per_vector, key=lambda vid: (per_vector[vid]["layers"][name]["peak"], vid))
        best = per_vector[best_id]["layers"][name]
        out_layers[name] = {
            "accumulator_peak": best["peak"], "vector": best_id, "channel": best["channel"],
            "channel_bound": best["channel_bound"],
            "peak_over_2^31": round(best["peak"] / 2**31, 6),
            "clamp_low_vectors": sum(v["layers"][name]["clamp_low"] for v in per_vector.values()),
            "clamp_high_vectors": sum(v["layers"][name]["clamp_high"] for v in per_vector.values()),
        }
        if name in possible:
            out_layers[name]["clamp_low_possible"] = possible[name]["low"]
            out_layers[name]["clamp_high_possible"] = possible[name]["high"]
    ext = {}
    for key, pick in (("scale_index_min", min), ("scale_index_max", max), ("mean_min", min), ("mean_max", max)):
        value = pick(v[key] for v in per_vector.values())
        ext[key] = {"value": value, "vectors": sum(v[key] == value for v in per_vector.values())}
    return {"layers": out_layers, "mixture": ext}
