"""Post-training integerisation of the float model into a refdec model file (spec clause 9).

No retraining. For every decoder-side layer:

* activations: a per-layer exponent f (an activation a stands for a * 2^-f) and a
  symmetric clip A = 2^bits - 1, chosen on calibration images from the training
  set (never Kodak). For each layer a bit width is searched greedily, layer by
  layer, with the integer model in the loop: for the entropy networks (hyper
  synthesis, context, gather) the objective is the bit rate of the calibration
  latents under the integer entropy model; for the synthesis it is the
  rate-distortion loss, which with fixed latents is the MSE of the integer
  reconstruction (RDO-PTQ).
* weights: per output channel the largest power-of-two exponent f_w for which
  the weights fit the profile's bit width and the accumulator bound of clause
  9.5 holds for inputs up to the previous layer's clip (Koyuncu et al., eq.
  16-17); int32 bias b * 2^(f_w + f_in); shift s = f_w + f_in - f_out.
* fixed formats: gather.6 outputs logits with f = 8, means with f = 6, scale
  indices with f = 4 (clause 7.8); synthesis.6 outputs samples (the factor 255
  is folded into its weights) with f = 0 and clip [0, 255].
* error-compensating rounding (OPTQ/GPTQ: Frantar et al., "GPTQ: Accurate
  post-training quantization for generative pre-trained transformers", ICLR
  2023), on by default for both profiles: the weights of a layer are rounded one
  input column at a time and each column's rounding error is spread over the
  columns not yet rounded and over the bias, weighted by the second moments of
  the float model's input patches on the calibration images, so that the
  layer's output error on those inputs is small rather than each weight's
  error. Per output channel the exponent is the one that holds the peak weight
  or one more, whichever gives the smaller output error. It helps 8-bit weights
  most; for 16-bit weights the gain is small (tools/compare_integerisation.py
  measures the rounding methods on held-out training images).
* the rounding inside the bit-width search (--search-rounding): W16A16 searches
  with plain rounding and then rounds with compensation at the widths found;
  W8A16 searches with compensation. With 16-bit weights plain rounding is
  close enough to the final rounding, and a search with compensation picked
  coarser activations that came out worse on Kodak.
* bias correction (Nagel et al., "Data-free quantization through weight
  equalization and bias correction", 2019, with calibration means), what
  remains of the above when only the bias compensates, is an option (--bias-correction):
  the bias of each output channel absorbs the mean error that weight rounding
  adds, sum_i (W_q[o][i] 2^-f_w - W[o][i]) * mean(x_i).

    python -m refcodec.integerise --checkpoint models/float.pt --profile W16A16 \
        --out refdec/models/refdec-test-w16a16.npz

The measurements behind these choices (rounding methods, search rounding, calibration images) are
in results/design-history.md.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from refdec.constants import (ACCUMULATOR_LIMIT, ACT16_MAX, CONTEXT_INPUT_MAX, MAX_INV_GAIN_SHIFT, MAX_SHIFT,
                              MEAN_FRAC_BITS, NUM_MIXTURES, Y_MAX, Z_MAX)
from refdec.architecture import CONTEXT, GATHER, HYPER_SYNTHESIS, LAYERS, SYNTHESIS
from refdec.generators.encoder import entropy_parameters, hyper_features
from refdec.entropy import coding_window, cumulative_frequencies, mixture_parameters
from refdec.fast.synthesis import synthesis
from refdec.model_file import Layer, Model, input_bounds, model_id_of, parse_model
from refdec.generators.model_writer import serialize_model
from refdec.synthesis import inverse_gain

from .codec import escape_payload_bits
from .model import LEAKY_SLOPE, FloatCodec, load_float_model
from .options import DEFAULT_TRAIN_DIR
from .train import list_images

PROFILE_WEIGHT_BITS = {"W16A16": 16, "W8A16": 8}
# Calibration images per profile: W16A16 loses less to the float model with 8 than with 4, at about
# twice the time; W8A16 was measured with 4 only (results/design-history.md).
DEFAULT_CALIBRATION_IMAGES = {"W16A16": 8, "W8A16": 4}
OUTPUT_EXPONENTS = {"logits": 8, "means": MEAN_FRAC_BITS, "scales": 4}
BIT_CANDIDATES = (8, 9, 10, 11, 12, 13, 14, 15)
DEFAULT_BITS = 12
INV_GAIN_MAX = 1 << 16


# ----------------------------------------------------------------------------- float side

def float_layers(model: FloatCodec):
    """name -> (weight, bias) float64 numpy, masks applied, output layer scaled to 8-bit samples."""
    out = {}
    for spec, stage in zip(HYPER_SYNTHESIS, model.hyper_synthesis):
        out[spec.name] = stage.conv
    for spec, conv in zip(CONTEXT, model.context):
        out[spec.name] = conv
    for spec, stage in zip(GATHER, model.gather):
        out[spec.name] = stage.conv
    for spec, stage in zip(SYNTHESIS, model.synthesis):
        out[spec.name] = stage.conv
    params = {}
    for name, conv in out.items():
        w = conv.weight.detach().double()
        if hasattr(conv, "mask"):
            w = w * conv.mask.double()
        b = conv.bias.detach().double()
        if name == SYNTHESIS[-1].name:
            w, b = w * 255.0, b * 255.0
        params[name] = (w.numpy(), b.numpy())
    return params


def load_calibration(files, crop):
    images = []
    for path in files:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = min(w, h)
            size = min(crop, (s // 64) * 64)
            x0, y0 = (w - size) // 2, (h - size) // 2
            arr = np.asarray(im.crop((x0, y0, x0 + size, y0 + size)), dtype=np.uint8)
        images.append(arr)
    return images


@torch.no_grad()
def calibrate(model: FloatCodec, images, rates, second_moments: bool = False):
    """Float activations' max |value| per layer, the mean input per channel of every layer (in the
    units of the float model; for the synthesis output layer, whose weights are scaled to 8-bit
    samples, the input is unchanged), and the calibration latents per image and rate.

    With second_moments, also per layer the mean of u u^T over every output position, u the layer's
    input patch (im2col order: channel, kernel row, kernel column) followed by a constant 1 for the
    bias: the Hessian of the layer's output error that error-compensating rounding needs.
    """
    maxima = {spec.name: 0.0 for spec in LAYERS}
    maxima["synthesis_input"] = 0.0
    sums: dict[str, torch.Tensor] = {}  # per layer: sum over the calibration images of the mean input per channel
    moments: dict[str, torch.Tensor] = {}
    positions: dict[str, int] = {}
    kernels = {spec.name: spec.kernel for spec in LAYERS}
    samples = []

    def observe(name, x):
        mean = x.mean(dim=(0, 2, 3))
        sums[name] = sums.get(name, 0) + mean
        if second_moments:
            k = kernels[name]
            u = F.unfold(x, k, padding=k // 2)[0]                    # (cin * k * k, positions)
            u = torch.cat([u, torch.ones(1, u.shape[1], dtype=u.dtype)])
            moments[name] = moments.get(name, 0) + u @ u.T
            positions[name] = positions.get(name, 0) + u.shape[1]

    for img in images:
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].double() / 255.0  # a writable copy
        for r in rates:
            rate = torch.tensor([r])
            y = model.analysis(x) * model.gain(rate)
            y_hat = torch.clamp(torch.round(y), -Y_MAX, Y_MAX)
            z_hat = torch.clamp(torch.round(model.hyper_analysis(y)), -Z_MAX, Z_MAX)
            h = torch.clamp(z_hat, -CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX)
            for spec, stage in zip(HYPER_SYNTHESIS, model.hyper_synthesis):
                observe(spec.name, h)
                h = stage(h)
                maxima[spec.name] = max(maxima[spec.name], float(h.abs().max()))
            q = torch.clamp(y_hat, -CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX)
            ctx = []
            for spec, conv in zip(CONTEXT, model.context):
                c = F.leaky_relu(conv(q), LEAKY_SLOPE)
                observe(spec.name, q)
                maxima[spec.name] = max(maxima[spec.name], float(c.abs().max()))
                ctx.append(c)
            g = torch.cat([h] + ctx, dim=1)
            for spec, stage in zip(GATHER, model.gather):
                observe(spec.name, g)
                g = stage(g)
                maxima[spec.name] = max(maxima[spec.name], float(g.abs().max()))
            s = y_hat * model.inv_gain(rate)
            maxima["synthesis_input"] = max(maxima["synthesis_input"], float(s.abs().max()))
            for spec, stage in zip(SYNTHESIS, model.synthesis):
                observe(spec.name, s)
                s = stage(s)
                maxima[spec.name] = max(maxima[spec.name], float(s.abs().max()))
            samples.append({"image": img.transpose(2, 0, 1).astype(np.int64), "rate": r,
                            "y_hat": y_hat[0].long().numpy(), "z_hat": z_hat[0].long().numpy()})
    means = {name: (total / (len(images) * len(rates))).numpy() for name, total in sums.items()}
    if second_moments:
        means["second_moments"] = {name: (m / positions[name]).numpy() for name, m in moments.items()}
    return maxima, means, samples


# ----------------------------------------------------------------------------- integer side

def exponent_for(max_abs: float, bits: int) -> int:
    """Largest f with max_abs * 2^f <= 2^bits - 1."""
    if max_abs <= 0:
        return 0
    return int(math.floor(math.log2((2 ** bits - 1) / max_abs)))


def quantise_layer(w, b, f_in: int, f_out, in_max: int, wbits: int, input_mean=None, hessian=None,
                   rounding_cache: dict | None = None):
    """Per-output-channel weight exponents (largest satisfying range and clause 9.5), int bias, shifts.

    With input_mean (per input channel, float units), the bias is corrected for the mean error of
    the rounded weights (bias correction). With hessian (see calibrate), the weights are rounded
    with error compensation instead (compensated_rounding), which includes the bias correction;
    rounding_cache (a dict per layer) keeps its results by weight exponents for the search."""
    if hessian is not None:
        return _quantise_compensated(w, b, f_in, f_out, in_max, wbits, hessian,
                                     {} if rounding_cache is None else rounding_cache)
    cout = w.shape[0]
    wmax = 2 ** (wbits - 1) - 1
    f_out = np.broadcast_to(np.asarray(f_out, dtype=np.int64), (cout,))
    wq = np.zeros(w.shape, dtype=np.int64)
    bq = np.zeros(cout, dtype=np.int64)
    shift = np.zeros(cout, dtype=np.int64)
    flat = w.reshape(cout, -1)
    for o in range(cout):
        peak = np.abs(flat[o]).max()
        f = 40 if peak == 0 else int(math.floor(math.log2(wmax / peak)))
        f = min(f, MAX_SHIFT + int(f_out[o]) - f_in)  # shift <= 27 (clause 9.4)
        while True:
            q = np.round(flat[o] * 2.0 ** f)
            bias_float = float(b[o])
            if input_mean is not None:
                error = (q * 2.0 ** -f - flat[o]).reshape(w.shape[1], -1).sum(axis=1)  # per input channel
                bias_float -= float(error @ input_mean)
            bias = round(bias_float * 2.0 ** (f + f_in))
            if (np.abs(q).max() <= wmax and np.abs(q).sum() * in_max + abs(bias) < ACCUMULATOR_LIMIT
                    and abs(bias) < 2**31):
                break
            f -= 1
        s = f + f_in - int(f_out[o])
        if s < 0:
            raise ValueError(f"negative shift {s} (f_w {f}, f_in {f_in}, f_out {int(f_out[o])}): "
                             "lower the output exponent")
        wq[o] = q.reshape(w.shape[1:])
        bq[o] = bias
        shift[o] = s
    return wq, bq, shift


def compensation_factor(w, hessian, damping: float = 0.01):
    """(active columns, U) for compensated_rounding: the columns of w that are non-zero in some row,
    and U the upper Cholesky factor of (H + damping mean(diag H) I)^-1 over those columns and the bias
    (row j of U holds how the rounding error of column j spreads to the later columns)."""
    d = w.shape[1]
    active = np.flatnonzero(np.any(w != 0, axis=0))
    cols = np.concatenate([active, [d]])                  # the bias column last: never rounded
    h = hessian[np.ix_(cols, cols)].astype(np.float64)
    h = h + damping * np.mean(np.diag(h)) * np.eye(len(cols))
    return active, np.linalg.cholesky(np.linalg.inv(h)).T


def compensated_rounding(w, b, f_w, wmax: int, hessian, damping: float = 0.01, factor=None, block: int = 64):
    """Round the weights column by column, each rounding error compensated on the columns not yet
    rounded and on the bias (OPTQ/GPTQ, Frantar et al. 2023).

    w (cout, d) float, b (cout,), f_w (cout,) weight exponents, hessian (d + 1, d + 1) the mean of
    u u^T over the calibration inputs u = (patch, 1). Minimises, one column at a time, the mean
    squared output error (W_q - W) u over the calibration inputs; the bias is never rounded here,
    so it absorbs what the weights cannot (bias correction is the case where only the bias
    compensates). Columns that are zero in every row (the masked taps of a context kernel) stay zero.
    factor: compensation_factor(w, hessian, damping), when the caller rounds the same layer again.
    The errors of a block of columns reach the columns after the block in one product (GPTQ's lazy
    batch update): the same arithmetic as one column at a time, in another order of summation.
    Returns the integer weights (cout, d) and the compensated float bias.
    """
    cout, d = w.shape
    active, upper = factor if factor is not None else compensation_factor(w, hessian, damping)
    work = np.concatenate([w[:, active], b[:, None]], axis=1).astype(np.float64)
    scale = 2.0 ** np.asarray(f_w, dtype=np.float64)
    n = len(active)
    q = np.zeros((cout, n), dtype=np.int64)
    for j0 in range(0, n, block):
        j1 = min(j0 + block, n)
        errors = np.zeros((cout, j1 - j0))
        for j in range(j0, j1):
            q[:, j] = np.clip(np.round(work[:, j] * scale), -wmax, wmax)
            err = (work[:, j] - q[:, j] / scale) / upper[j, j]
            work[:, j + 1:j1] -= err[:, None] * upper[j, j + 1:j1][None, :]
            errors[:, j - j0] = err
        work[:, j1:] -= errors @ upper[j0:j1, j1:]
    wq = np.zeros((cout, d), dtype=np.int64)
    wq[:, active] = q
    return wq, work[:, -1]


def _quantise_compensated(w, b, f_in: int, f_out, in_max: int, wbits: int, hessian, cache: dict):
    """quantise_layer with compensated_rounding. Per output channel the exponent is the largest
    that holds the channel's peak weight, or one more (the largest weights then clip, and the
    compensation absorbs the clipping) where that gives the smaller output error; an exponent
    whose weights or bias break clause 9.5 is lowered until they fit."""
    cout = w.shape[0]
    wmax = 2 ** (wbits - 1) - 1
    f_out = np.broadcast_to(np.asarray(f_out, dtype=np.int64), (cout,)).astype(np.int64)
    flat = w.reshape(cout, -1).astype(np.float64)
    peak = np.abs(flat).max(axis=1)
    f_fit = np.where(peak > 0, np.floor(np.log2(wmax / np.where(peak > 0, peak, 1.0))), 40).astype(np.int64)
    f_cap = MAX_SHIFT + f_out - f_in                                    # shift <= 27 (clause 9.4)

    active = np.concatenate([np.any(flat != 0, axis=0), [True]])  # weight columns and the bias
    if "factor" not in cache:  # depends on the layer only
        cache["factor"] = compensation_factor(flat, hessian)

    def attempt(f):
        key = f.tobytes()  # the rounding depends on the exponents only: reused across the search
        if key not in cache:
            cache[key] = compensated_rounding(flat, np.asarray(b, dtype=np.float64), f, wmax, hessian,
                                              factor=cache["factor"])
        wq, bias = cache[key]
        bq = np.round(bias * 2.0 ** (f + f_in))
        e = np.concatenate([wq * 2.0 ** -f[:, None] - flat, (bq * 2.0 ** -(f + f_in) - b)[:, None]], axis=1)
        e[:, ~active] = 0
        loss = np.sum((e @ hessian) * e, axis=1)  # e H e^T per output channel
        fits = (np.abs(wq).sum(axis=1) * in_max + np.abs(bq) < ACCUMULATOR_LIMIT) & (np.abs(bq) < 2**31)
        return wq, bq.astype(np.int64), loss, fits

    f = np.minimum(f_fit, f_cap)
    wq, bq, loss, fits = attempt(f)
    wq, bq = wq.copy(), bq.copy()  # rows are replaced below; the cached rounding stays intact
    wq_up, bq_up, loss_up, fits_up = attempt(np.minimum(f + 1, f_cap))
    better = fits_up & (loss_up < loss) & (f + 1 <= f_cap)
    wq[better], bq[better], f = wq_up[better], bq_up[better], np.where(better, f + 1, f)
    fits = fits | better
    while not fits.all():                  # lower the exponent of the rows that overflow
        f = np.where(fits, f, f - 1)
        wq_down, bq_down, _, fits_down = attempt(f)
        redo = ~fits
        wq[redo], bq[redo] = wq_down[redo], bq_down[redo]
        fits = fits | fits_down
    shift = f + f_in - f_out
    if (shift < 0).any():
        o = int(np.argmax(shift < 0))
        raise ValueError(f"negative shift {int(shift[o])} (f_w {int(f[o])}, f_in {f_in}, f_out {int(f_out[o])}): "
                         "lower the output exponent")
    return wq.reshape(w.shape), bq, shift


def gather_output_exponents(cy: int):
    third = NUM_MIXTURES * cy
    return np.concatenate([np.full(third, OUTPUT_EXPONENTS["logits"]), np.full(third, OUTPUT_EXPONENTS["means"]),
                           np.full(third, OUTPUT_EXPONENTS["scales"])])


class Integeriser:
    def __init__(self, model: FloatCodec, maxima: dict, profile: str, input_means: dict | None = None,
                 hessians: dict | None = None):
        self.float_params = float_layers(model)
        self.maxima = maxima
        self.input_means = input_means or {}
        self.set_hessians(hessians or {})
        self.profile = profile
        self.wbits = PROFILE_WEIGHT_BITS[profile]
        self.inv_gain = torch.pow(2.0, model.log2_inv_gain.detach().double()).numpy()
        self.z_tables = z_prior_tables(model)
        self.bits = {spec.name: DEFAULT_BITS for spec in LAYERS if spec.name not in
                     (GATHER[-1].name, SYNTHESIS[-1].name)}
        self.bits["synthesis_input"] = DEFAULT_BITS

    def set_hessians(self, hessians: dict):
        """The second moments that error-compensating rounding uses from now on, per layer (none:
        plain rounding); forgets the layers quantised so far, which another rounding made."""
        self.hessians = hessians
        self._quantised = {}  # (layer, f_in, f_out, in_max) -> quantise_layer() result; the search rebuilds often
        self._roundings = {spec.name: {} for spec in LAYERS}  # per layer: compensated roundings by exponents

    def exponents(self):
        """Per-layer output exponent and clip from the chosen bit widths."""
        f, clip = {}, {}
        for name, bits in self.bits.items():
            f[name] = exponent_for(self.maxima[name], bits)
            clip[name] = 2 ** bits - 1
        clip[GATHER[-1].name] = ACT16_MAX
        clip[SYNTHESIS[-1].name] = 255
        f[SYNTHESIS[-1].name] = 0
        return f, clip

    def build(self):
        """(header, arrays) of the model file for the current bit widths."""
        f, clip = self.exponents()
        cy = self.inv_gain.shape[1]
        header = {
            "format": "refdec-model", "format_version": 1, "profile": self.profile, "weight_bits": self.wbits,
            "latent_channels": cy, "hyper_channels": len(self.z_tables[0]), "num_rates": self.inv_gain.shape[0],
            "synthesis_input_clip": clip["synthesis_input"],
            "clip": {spec.name: clip[spec.name] for spec in LAYERS},
        }
        in_max = input_bounds(header)
        f_in = {}
        for net in (HYPER_SYNTHESIS, GATHER, SYNTHESIS):
            for i, spec in enumerate(net):
                f_in[spec.name] = f[net[i - 1].name] if i else None
        f_in[HYPER_SYNTHESIS[0].name] = 0
        for spec in CONTEXT:
            f_in[spec.name] = 0
        concat = [HYPER_SYNTHESIS[-1].name] + [s.name for s in CONTEXT]
        f_cat = min(f[n] for n in concat)
        for n in concat:  # concatenated tensors share one exponent
            f[n] = f_cat
        f_in[GATHER[0].name] = f_cat
        f_in[SYNTHESIS[0].name] = f["synthesis_input"]
        arrays = {}
        wdtype = np.int16 if self.wbits == 16 else np.int8
        for spec in LAYERS:
            w, b = self.float_params[spec.name]
            f_out = gather_output_exponents(cy) if spec.name == GATHER[-1].name else f[spec.name]
            key = (spec.name, f_in[spec.name], tuple(np.atleast_1d(f_out).tolist()), in_max[spec.name])
            if key not in self._quantised:
                self._quantised[key] = quantise_layer(w, b, f_in[spec.name], f_out, in_max[spec.name], self.wbits,
                                                      self.input_means.get(spec.name), self.hessians.get(spec.name),
                                                      self._roundings[spec.name])
            wq, bq, shift = self._quantised[key]
            arrays[f"{spec.name}.weight"] = wq.astype(wdtype)
            arrays[f"{spec.name}.bias"] = bq.astype(np.int32)
            arrays[f"{spec.name}.shift"] = shift.astype(np.uint8)
        # Inverse gain: S0 = Round2(y_hat * inv_gain_q, G) with inv_gain_q = inv_gain * 2^(G + f_s0).
        f_s0 = f["synthesis_input"]
        g_shift = int(math.floor(math.log2(INV_GAIN_MAX / self.inv_gain.max()))) - f_s0
        g_shift = max(0, min(MAX_INV_GAIN_SHIFT, g_shift))
        arrays["inv_gain"] = np.clip(np.round(self.inv_gain * 2.0 ** (g_shift + f_s0)), 0, INV_GAIN_MAX).astype(np.int32)
        header["inv_gain_shift"] = g_shift
        z_lo, z_count, z_cdf = self.z_tables
        arrays["z_lo"], arrays["z_count"], arrays["z_cdf"] = z_lo, z_count, z_cdf
        header["act_exponents"] = {k: int(v) for k, v in f.items()}
        return header, arrays

    def refdec_model(self):
        header, arrays = self.build()
        return model_from_arrays(header, arrays), header, arrays


def model_from_arrays(header, arrays) -> Model:
    """A refdec Model straight from arrays (search loop; the final file is validated by parse_model)."""
    from refdec.architecture import BY_NAME

    layers = {}
    for spec in LAYERS:
        layers[spec.name] = Layer(spec.name, arrays[f"{spec.name}.weight"].astype(np.int64),
                                  arrays[f"{spec.name}.bias"].astype(np.int64),
                                  arrays[f"{spec.name}.shift"].astype(np.int64), header["clip"][spec.name],
                                  spec.kernel, BY_NAME[spec.name].depth_to_space, spec.leaky)
    return Model(header, layers, arrays["inv_gain"].astype(np.int64), arrays["z_lo"].astype(np.int64),
                 arrays["z_count"].astype(np.int64), arrays["z_cdf"].astype(np.int64), b"\0" * 8)


def z_prior_tables(model: FloatCodec, tail=2.0 ** -14, max_count=1024):
    """Clause 9.3 factorised-prior tables from the learned density: window covering all but `tail`."""
    with torch.no_grad():
        grid = torch.arange(-CONTEXT_INPUT_MAX - 0.5, CONTEXT_INPUT_MAX + 1.5, 1.0, dtype=torch.float64)
        density = model.z_density.double()
        cdf = density.cdf(grid).numpy()  # (C_z, 512): at v - 0.5 for v = -255 .. 256
        model.z_density.float()
    cz = cdf.shape[0]
    values = np.arange(-CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX + 1)
    pmf = np.clip(np.diff(cdf, axis=1), 0, None)
    los, counts, rows = [], [], []
    for c in range(cz):
        lo_idx = int(np.searchsorted(cdf[c], tail / 2, side="right")) - 1
        hi_idx = int(np.searchsorted(cdf[c], 1 - tail / 2, side="left"))
        lo_idx = max(0, min(lo_idx, len(values) - 1))
        hi_idx = max(lo_idx, min(hi_idx, len(values) - 1, lo_idx + max_count - 1))
        p = pmf[c, lo_idx: hi_idx + 1]
        escape = max(0.0, 1.0 - p.sum())
        n_w = len(p)
        spare = 65536 - (n_w + 1)
        freq = 1 + np.floor(p / max(p.sum() + escape, 1e-12) * spare).astype(np.int64)
        freq[np.argmax(freq)] += spare + n_w - int(freq.sum()) - max(0, int(np.floor(escape * spare)))
        los.append(int(values[lo_idx]))
        counts.append(n_w)
        rows.append(np.concatenate([[0], np.cumsum(freq)]))
    n_max = max(counts) + 1
    z_cdf = np.full((cz, n_max), 65536, dtype=np.int64)
    for c, row in enumerate(rows):
        z_cdf[c, : len(row)] = row
        assert row[-1] <= 65535 and np.all(np.diff(row) >= 1)
    return np.array(los, dtype=np.int32), np.array(counts, dtype=np.int32), z_cdf.astype(np.int32)


# ----------------------------------------------------------------------------- objectives

def symbol_bits(model: Model, sample) -> float:
    """Ideal code length (bits) of the calibration latents under the integer entropy model."""
    y_hat, z_hat = sample["y_hat"], sample["z_hat"]
    hyper = hyper_features(model, z_hat)
    params = entropy_parameters(model, y_hat, hyper)
    hy, wy = y_hat.shape[1:]
    mix = mixture_parameters(params.reshape(hy * wy, -1), model.latent_channels)
    lo, hi = coding_window(mix)
    cdf = cumulative_frequencies(mix, lo, hi)
    values = y_hat.transpose(1, 2, 0).ravel()
    inside = (values >= lo) & (values <= hi)
    n_w = hi - lo + 1
    j = np.where(inside, values - lo, n_w)
    rows = np.arange(len(values))
    start = cdf[rows, j]
    end = np.where(j + 1 <= n_w, cdf[rows, np.minimum(j + 1, cdf.shape[1] - 1)], 65536)
    end = np.where(j == n_w, 65536, end)
    bits = float(np.sum(16 - np.log2(end - start)))
    escaped = ~inside
    bits += float(escape_payload_bits(lo[escaped], hi[escaped], values[escaped]).sum())
    return bits


def synthesis_mse(model: Model, sample) -> float:
    s0 = inverse_gain(model, sample["y_hat"], sample["rate"])
    image = synthesis(model, s0)
    ref = sample["image"]
    h, w = ref.shape[1:]
    return float(np.mean((image[:, :h, :w].astype(np.float64) - ref) ** 2))


def search(integ: Integeriser, samples, log=print):
    """Greedy per-layer bit-width search with the integer model in the loop."""
    entropy_layers = [s.name for s in HYPER_SYNTHESIS + CONTEXT + GATHER[:-1]]
    synth_layers = ["synthesis_input"] + [s.name for s in SYNTHESIS[:-1]]

    def entropy_cost():
        model, _, _ = integ.refdec_model()
        return sum(symbol_bits(model, s) for s in samples)

    def synth_cost():
        model, _, _ = integ.refdec_model()
        return sum(synthesis_mse(model, s) for s in samples) / len(samples)

    for names, cost_fn, label in ((entropy_layers, entropy_cost, "bits"), (synth_layers, synth_cost, "mse")):
        for name in names:
            results = {}
            for bits in BIT_CANDIDATES:
                integ.bits[name] = bits
                try:
                    results[bits] = cost_fn()
                except ValueError:
                    continue
            if not results:
                raise ValueError(f"no feasible bit width for layer {name}")
            best = min(results, key=results.get)
            integ.bits[name] = best
            log(f"  {name:20s} -> {best:2d} bits  ({label} {results[best]:.4g}; "
                f"range {min(results.values()):.4g}..{max(results.values()):.4g})")


SEARCH_ROUNDINGS = ("plain", "compensated")


def default_search_rounding(profile: str) -> str:
    """The weight rounding that the bit-width search runs with, by default: plain rounding for
    16-bit weights (its widths, rounded with compensation afterwards, measured better on Kodak than
    a search with compensation: results/design-history.md), compensation for 8-bit weights (the
    W8A16 procedure as measured; plain-rounding search not measured for it)."""
    return "plain" if PROFILE_WEIGHT_BITS[profile] > 8 else "compensated"


def integerise(checkpoint: Path, profile: str, calib_files, crop: int, rates, log=print, fixed_bits=None,
               bias_correction: bool | None = None, compensation: bool | None = None,
               search_rounding: str | None = None):
    """The model file (bytes) of the float checkpoint, integerised for profile.

    compensation: round the final weights with error compensation (default: on for both profiles);
    search_rounding: "plain" or "compensated", the rounding that the bit-width search runs with
    (default_search_rounding; "compensated" needs compensation); fixed_bits skips the search."""
    if compensation is None:
        compensation = True
    if search_rounding is None:
        search_rounding = default_search_rounding(profile) if compensation else "plain"
    if search_rounding not in SEARCH_ROUNDINGS:
        raise ValueError(f"search rounding {search_rounding!r}: expected one of {', '.join(SEARCH_ROUNDINGS)}")
    if search_rounding == "compensated" and not compensation:
        raise ValueError("a search with compensated rounding needs the final rounding compensated too")
    if bias_correction is None:
        bias_correction = PROFILE_WEIGHT_BITS[profile] <= 8 and not compensation
    model = load_float_model(checkpoint).double().eval()
    images = load_calibration(calib_files, crop)
    t0 = time.time()
    maxima, means, samples = calibrate(model, images, rates, second_moments=compensation)
    log(f"calibrated on {len(images)} images x {len(rates)} rates in {time.time() - t0:.1f}s")
    hessians = means.pop("second_moments", None)
    search_hessians = hessians if search_rounding == "compensated" else None
    integ = Integeriser(model.float(), maxima, profile, means if bias_correction else None, search_hessians)
    if fixed_bits is None:
        search(integ, samples, log)
    else:
        integ.bits.update(fixed_bits)
    if hessians is not None and search_hessians is None:
        integ.set_hessians(hessians)  # the final rounding, compensated, at the searched widths
    header, arrays = integ.build()
    header["description"] = f"refdec test model, {profile}, integerised from {checkpoint.name}"
    header["provenance"] = {
        "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "calibration": [Path(f).name for f in calib_files], "calibration_crop": crop, "rates": list(rates),
        "bits": dict(sorted(integ.bits.items())), **({"bias_correction": True} if bias_correction else {}),
        **({"compensated_rounding": True} if compensation else {}), "search_rounding": search_rounding,
        "command": (f"python -m refcodec.integerise --checkpoint {checkpoint.as_posix()} --profile {profile} "
                    f"--calibration-images {len(calib_files)} --crop {crop} --rates {','.join(map(str, rates))}"
                    + (" --bias-correction" if bias_correction else " --no-bias-correction")
                    + (" --compensated-rounding" if compensation else " --no-compensated-rounding")
                    + f" --search-rounding {search_rounding}"),
    }
    data = serialize_model(header, arrays)
    parse_model(data, where="integerised model")  # full clause 9.4/9.5 validation
    return data


def default_calibration_files(data_dir: Path, count: int):
    files = list_images(data_dir)
    step = max(1, len(files) // count)
    return files[::step][:count]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="refcodec integerise", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--profile", choices=sorted(PROFILE_WEIGHT_BITS), default="W16A16")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_TRAIN_DIR)
    ap.add_argument("--calibration-images", type=int, default=None,
                    help="training images to calibrate on (default: " + ", ".join(
                        f"{n} for {p}" for p, n in DEFAULT_CALIBRATION_IMAGES.items()) + ")")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--rates", default="0,2,5")
    ap.add_argument("--bits-from", type=Path,
                    help="skip the search: reuse the bit widths recorded in this model file's provenance")
    ap.add_argument("--bias-correction", action=argparse.BooleanOptionalAction, default=None,
                    help="correct the biases for the mean weight-rounding error (default: for 8-bit weights "
                         "with --no-compensated-rounding)")
    ap.add_argument("--compensated-rounding", action=argparse.BooleanOptionalAction, default=None,
                    help="round the weights with error compensation on the calibration inputs (OPTQ; "
                         "default: on)")
    ap.add_argument("--search-rounding", choices=SEARCH_ROUNDINGS, default=None,
                    help="the weight rounding that the bit-width search runs with (default: plain for "
                         "16-bit weights, compensated for 8-bit weights)")
    args = ap.parse_args(argv)
    count = DEFAULT_CALIBRATION_IMAGES[args.profile] if args.calibration_images is None else args.calibration_images
    if count < 1:
        ap.error(f"--calibration-images {args.calibration_images}: at least one image is needed")
    files = default_calibration_files(args.data, count)
    rates = [int(r) for r in args.rates.split(",")]
    fixed = None
    if args.bits_from:
        fixed = parse_model(args.bits_from.read_bytes(), str(args.bits_from)).header["provenance"]["bits"]
    with torch.no_grad():  # not set_grad_enabled: main() is also called in-process (tests)
        data = integerise(args.checkpoint, args.profile, files, args.crop, rates, fixed_bits=fixed,
                          bias_correction=args.bias_correction, compensation=args.compensated_rounding,
                          search_rounding=args.search_rounding)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes, model id {model_id_of(data).hex()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
