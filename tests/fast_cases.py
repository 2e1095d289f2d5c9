"""Inputs for the equivalence test of the fast path (tests/test_fast_equivalence.py), checkasm style.

CASES maps the name of every registered acceleration (refdec.fast.REGISTRY) to a generator
`cases(rng)` of (label, make_args) or (label, make_args, fast_kwargs): make_args() returns fresh
arguments for one call (a range decoder or a recorder is consumed by the call, so the literal
and the fast function each get their own); fast_kwargs go to the fast function only (its
FastOptions). Each generator mixes random inputs with inputs that drive a bound: accumulators at
exactly +-(2^31 - 1), saturating clips, odd sizes, several tiles or Winograd blocks, partial
bands, escapes and every payload error.
"""

from __future__ import annotations

import numpy as np

from refdec.constants import (CONTEXT_KERNELS, MAX_SHIFT, NUM_MIXTURES, NUM_SCALES, SCALE_INDEX_FRAC_BITS,
                              Y_MAX, Z_MAX)
from refdec.architecture import BY_NAME, LAYER_NAMES
from refdec.entropy import coding_window, mixture_parameters
from refdec.fast.registry import FastOptions
from refdec.generators.encoder import encode_latents, encode_value
from refdec.generators.random_model import REFERENCE_CHANNELS, random_latents, random_model
from refdec.generators.range_encoder import RangeEncoder
from refdec.model_file import Layer, input_bounds
from refdec.range_decoder import RangeDecoder
from refdec.stages import Recorder
from refdec.synthesis import SAMPLE_RANGE

INT31 = (1 << 31) - 1


def small_model():
    return random_model(0)[1]


def reference_model():
    return random_model(3, channels=REFERENCE_CHANNELS)[1]


def bound_layer(kernel: int, d2s: bool, leaky: bool, shift: int, cin: int = 8, cout: int = 8):
    """A layer whose accumulator reaches exactly +-(2^31 - 1) for the input +-in_max everywhere:
    every weight is 2^15 - 1 and the bias fills the rest (clause 9.5's bound with equality).
    Returns (layer, in_max)."""
    terms = cin * kernel * kernel * ((1 << 15) - 1)
    in_max = INT31 // terms
    bias = INT31 - terms * in_max
    weight = np.full((cout, cin, kernel, kernel), (1 << 15) - 1, dtype=np.int64)
    weight[1::2] *= -1  # half the outputs see -(2^31 - 1)
    layer = Layer(name="bound", weight=weight, bias=np.where(np.arange(cout) % 2, -bias, bias),
                  shift=np.full(cout, shift, dtype=np.int64), clip=(1 << 15) - 1, kernel=kernel,
                  depth_to_space=d2s, leaky=leaky)
    return layer, in_max


def _layer_cases(rng, names, sizes, *, kernels=None, planar=False):
    """Random inputs within each layer's input bound, the worst-case sign pattern of clause 9.5, and
    layers built to reach +-(2^31 - 1) exactly."""
    for model_name, model in (("small", small_model()), ("reference", reference_model())):
        bounds = input_bounds(model.header)
        for name in names:
            layer = model.layers[name]
            if kernels and layer.kernel not in kernels or planar and layer.depth_to_space:
                continue
            cin, in_max = layer.weight.shape[1], bounds[name]
            out = SAMPLE_RANGE if name == "synthesis.6" else None
            for h, w in (sizes if model_name == "small" else sizes[:2]):
                x = rng.integers(-in_max, in_max + 1, size=(cin, h, w))
                yield f"{model_name} {name} random {h}x{w}", lambda L=layer, x=x, o=out: (L, x, o)
            # Every output channel o's window at (1, 1) is sign(W[o]) * in_max: its largest accumulator.
            o = int(rng.integers(layer.weight.shape[0]))
            x = np.zeros((cin, layer.kernel + 2, layer.kernel + 2), dtype=np.int64)
            x[:, 1: 1 + layer.kernel, 1: 1 + layer.kernel] = in_max * np.sign(layer.weight[o])
            yield f"{model_name} {name} worst case of output {o}", lambda L=layer, x=x, o=out: (L, x, o)
    for kernel in (kernels or (1, 3, 5)):
        for d2s in (False, True):
            if planar and d2s:
                continue
            for leaky in (False, True):
                for shift in (0, 13, MAX_SHIFT):
                    layer, in_max = bound_layer(kernel, d2s, leaky, shift)
                    for sign in (1, -1):
                        x = np.full((8, 5, 3), sign * in_max, dtype=np.int64)
                        yield (f"accumulator {'+' if sign > 0 else '-'}(2^31 - 1), k{kernel} d2s={d2s} "
                               f"leaky={leaky} s={shift}", lambda L=layer, x=x: (L, x, None))


LAYER_SIZES = [(1, 1), (1, 6), (5, 1), (3, 4), (6, 7), (23, 29)]  # 23 x 29 = 667 > TILE_POSITIONS: two tiles


def cases_layer_output_im2col(rng):
    yield from _layer_cases(rng, LAYER_NAMES, LAYER_SIZES)


def cases_layer_output_winograd(rng):
    names = [n for n in LAYER_NAMES if BY_NAME[n].kernel == 3]
    yield from _layer_cases(rng, names, LAYER_SIZES + [(48, 50)], kernels=(3,))  # 24 x 25 tiles: two blocks


def cases_layer_output_planar(rng):
    yield from _layer_cases(rng, ["synthesis.6", "synthesis.0", "gather.3"], LAYER_SIZES, planar=True)


def cases_requant_float64(rng):
    base = np.concatenate([rng.integers(-INT31, INT31 + 1, 2000), np.array([INT31, -INT31, 0, 1, -1, 4, -4, -5, -12])])
    for shift in range(MAX_SHIFT + 1):
        # The ties of Round2(acc, s) and Round2(acc, s + 3), and one either side of each: the rounding boundary.
        ties = np.concatenate([(2 * rng.integers(-2000, 2000, 200) + 1) << max(n - 1, 0) for n in (shift, shift + 3)])
        near = np.concatenate([ties - 1, ties, ties + 1])
        acc = np.concatenate([base, near[np.abs(near) <= INT31]])
        for leaky in (False, True):
            yield f"s={shift} leaky={leaky}", lambda a=acc, s=shift, lk=leaky: (a, np.int64(s), lk)


def _latent(model, rng, hy, wy, scale):
    return np.clip(np.round(rng.laplace(0, scale, (model.latent_channels, hy, wy))), -Y_MAX, Y_MAX).astype(np.int64)


def cases_context_model_at(rng):
    for model_name, model in (("small", small_model()), ("reference", reference_model())):
        for scale in (3.0, 1000.0):  # 1000: most values saturate the Clip3(-255, 255) of clause 7.6
            y_hat = _latent(model, rng, 5, 9, scale)
            for y, x in ((0, 0), (0, 8), (4, 0), (2, 4), (4, 8)):
                yield f"{model_name} scale {scale} at ({y}, {x})", lambda m=model, v=y_hat, y=y, x=x: (m, v, y, x)


def cases_gather_network_at(rng):
    for model_name, model in (("small", small_model()), ("reference", reference_model())):
        clip = model.header["clip"]
        widths = [model.layers[f"context.{k}"].weight.shape[0] for k in CONTEXT_KERNELS]
        c_h = model.layers["hyper_synthesis.2"].weight.shape[0]
        a_h = clip["hyper_synthesis.2"]
        for trial in range(4):
            if trial < 2:
                hyper = rng.integers(-a_h, a_h + 1, c_h)
                ctx = [rng.integers(-clip[f"context.{k}"], clip[f"context.{k}"] + 1, n)
                       for k, n in zip(CONTEXT_KERNELS, widths)]
            else:  # every input at its clip bound, one sign
                sign = 1 if trial == 2 else -1
                hyper = np.full(c_h, sign * a_h)
                ctx = [np.full(n, sign * clip[f"context.{k}"]) for k, n in zip(CONTEXT_KERNELS, widths)]
            yield f"{model_name} trial {trial}", lambda m=model, h=hyper, c=ctx: (m, h, c)


def _mixtures(rng, cy=16, positions=6):
    """MixtureParameters and windows of clause 7.8/7.9 from gather outputs P: random, at the clip
    bounds of P (means far outside the window: d clipped to +-2^15), smallest and largest scales."""
    nk = NUM_MIXTURES
    top = (1 << 15) - 1
    for label, P in (("random", rng.integers(-top, top + 1, (positions, 3 * nk * cy))),
                     ("small", rng.integers(-300, 300, (positions, 3 * nk * cy))),
                     ("all +max", np.full((positions, 3 * nk * cy), top)),
                     ("all -max", np.full((positions, 3 * nk * cy), -top)),
                     ("zero", np.zeros((positions, 3 * nk * cy), dtype=np.int64))):
        mix = mixture_parameters(P, cy)
        lo, hi = coding_window(mix)
        yield label, mix, lo, hi
    # Means spread over +-2^15 with every scale index: the far tails of the Phi table.
    P = np.zeros((NUM_SCALES, 3 * nk), dtype=np.int64)
    P[:, nk: 2 * nk] = rng.integers(-top, top + 1, (NUM_SCALES, nk))
    P[:, 2 * nk:] = (np.arange(NUM_SCALES) << SCALE_INDEX_FRAC_BITS)[:, None]
    mix = mixture_parameters(P, 1)
    yield "every scale index", mix, *coding_window(mix)


def cases_coding_cdf_rows(rng):
    for label, mix, lo, hi in _mixtures(rng):
        yield label, lambda m=mix, a=lo, b=hi: (m, a, b)


def cases_decode_elements_inlined(rng):
    from refdec.fast.entropy import cdf_rows

    for label, mix, lo, hi in _mixtures(rng):
        rows = cdf_rows(mix, lo, hi)
        # A valid payload: values in the window, just outside it (escapes) and at +-Y_MAX.
        values = [int(rng.integers(a - 3, b + 4)) for a, b in zip(lo.tolist(), hi.tolist())]
        values[0], values[-1] = Y_MAX, -Y_MAX
        enc = RangeEncoder()
        for row, a, b, v in zip(rows, lo.tolist(), hi.tolist(), values):
            encode_value(enc, [int(c) for c in row], len(row) - 1, a, b, v, Y_MAX)
        payload = enc.finish()
        yield f"{label} valid", lambda p=payload, r=rows, a=lo, b=hi: (RangeDecoder(p), r, a, b, Y_MAX)
        yield f"{label} truncated", lambda p=payload[:-3], r=rows, a=lo, b=hi: (RangeDecoder(p), r, a, b, Y_MAX)
        yield f"{label} smaller limit", lambda p=payload, r=rows, a=lo, b=hi: (RangeDecoder(p), r, a, b, 100)
        for trial in range(3):  # arbitrary bytes: invalid range states, long escapes, truncation
            junk = rng.integers(0, 256, int(rng.integers(4, 64)), dtype=np.uint8).tobytes()
            yield f"{label} junk {trial}", lambda p=junk, r=rows, a=lo, b=hi: (RangeDecoder(p), r, a, b, Y_MAX)
        ones = b"\x00" + b"\xff" * 40  # escape prefixes of all ones: EscapeTooLong
        yield f"{label} 0xff run", lambda p=ones, r=rows, a=lo, b=hi: (RangeDecoder(p), r, a, b, Y_MAX)


def cases_hyper_synthesis(rng):
    for model_name, model in (("small", small_model()), ("reference", reference_model())):
        for hz, wz in ((1, 1), (2, 3)):
            for scale in (2.0, 400.0):  # 400: z_hat beyond the Clip3(-255, 255) of clause 7.4
                z = np.clip(np.round(rng.laplace(0, scale, (model.hyper_channels, hz, wz))), -Z_MAX, Z_MAX)
                yield (f"{model_name} {hz}x{wz} scale {scale}",
                       lambda m=model, z=z.astype(np.int64): (m, z, Recorder()))


def cases_decode_y(rng):
    for model_name, model, sizes in (("small", small_model(), ((16, 16), (37, 65), (130, 1))),
                                     ("reference", reference_model(), ((48, 32),))):
        for width, height in sizes:
            for y_scale in (0.5, 40.0):
                z, y = random_latents(model, width, height, seed=int(rng.integers(1 << 16)), y_scale=y_scale)
                stream = encode_latents(model, z, y, 0, width, height)
                from refdec.bitstream import parse_header
                from refdec.fast.hyper import hyper_synthesis

                h = parse_header(stream)
                payload = stream[h.y_offset: h.y_offset + h.y_length]
                hyper = hyper_synthesis(model, z)
                grid = hyper.shape[1:]  # Hy, Wy
                yield (f"{model_name} {width}x{height} y scale {y_scale}",
                       lambda m=model, p=payload, f=hyper, g=grid, b=h.y_offset:
                       (RangeDecoder(p, b), m, f, *g, Recorder()))
                yield (f"{model_name} {width}x{height} y scale {y_scale}, truncated",
                       lambda m=model, p=payload[: len(payload) // 2], f=hyper, g=grid, b=h.y_offset:
                       (RangeDecoder(p, b), m, f, *g, Recorder()))


def cases_synthesis(rng):
    for model_name, model in (("small", small_model()), ("reference", reference_model())):
        a0 = model.header["synthesis_input_clip"]
        for hy, wy in ((1, 1), (2, 3), (4, 4)):
            for label, s0 in (("random", rng.integers(-a0, a0 + 1, (model.latent_channels, hy, wy))),
                              ("at the clip", a0 * rng.choice([-1, 1], (model.latent_channels, hy, wy)))):
                for band_rows in (1, 7, 16, 33, 10_000) if model_name == "small" else (5, 64):
                    yield (f"{model_name} {hy}x{wy} {label}, bands of {band_rows}",
                           lambda m=model, s=s0: (m, s, Recorder()), {"options": FastOptions(band_rows)})


CASES = {name[len("cases_"):]: fn for name, fn in globals().items() if name.startswith("cases_")}
