"""Informative: the latent-domain encoder (spec annex A.1). Not part of the decoding process.

encode_latents() writes a conformant bitstream for given integer latents z_hat,
y_hat, a model and a rate index. It computes the entropy parameters with whole-
tensor masked convolutions (every position at once, from the known y_hat), a
different route from the decoder's wavefront batches, so a round trip checks
the decoder's coding order against a direct forward pass.

forward_integer() is the direct integer forward pass: the stage tensors of
clause 11.3 computed layer by layer over whole tensors, without wavefronts or
bands.
"""

from __future__ import annotations

import numpy as np

from ..constants import CONTEXT_INPUT_MAX, MAGIC, NUM_MIXTURES, VERSION, Y_MAX, Z_MAX
from ..architecture import CONTEXT, GATHER, padded_sizes
from ..bitstream import HEADER_LAYOUT, Header
from ..entropy import coding_window, cumulative_frequencies, mixture_parameters
from ..fast import FastOptions
from ..fast.conv import conv
from ..fast.hyper import hyper_synthesis
from ..fast.synthesis import synthesis
from ..latent import wavefronts
from ..model_file import Model
from ..stages import Recorder
from ..synthesis import inverse_gain, output
from .range_encoder import RangeEncoder


def write_header(header: Header) -> bytes:
    """The 27 header bytes of clause 6.1 (HEADER_LAYOUT, the layout the decoder reads)."""
    return HEADER_LAYOUT.pack(MAGIC, header.version, header.flags, header.width, header.height,
                        header.rate_index, header.model_id, header.z_length, header.y_length)


class EncodeError(ValueError):
    """The latents cannot be coded (a value beyond Y_MAX/Z_MAX or shapes that do not match)."""


def hyper_features(model: Model, z_hat: np.ndarray) -> np.ndarray:
    """The hyper features of clause 7.4, channels-last (Hy, Wy, C_h), as entropy_parameters takes them."""
    return hyper_synthesis(model, np.asarray(z_hat, dtype=np.int64)).transpose(1, 2, 0).astype(np.float64)


def entropy_parameters(model: Model, y_hat: np.ndarray, hyper: np.ndarray, stages=None) -> np.ndarray:
    """Gather output P for every latent position at once, (Hy, Wy, 3*K*C_y), from the whole latent
    y_hat (C_y, Hy, Wy) and the hyper features (Hy, Wy, C_h): the masked convolutions of clause 7.6
    over whole tensors (every position at once), then clause 7.7; with stages, the context and
    gather outputs channels-last by layer name."""
    q = np.clip(y_hat, -CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX).transpose(1, 2, 0).astype(np.float64)
    contexts = [conv(model.layers[spec.name], q) for spec in CONTEXT]
    g = np.concatenate([hyper] + contexts, axis=2)
    if stages is not None:
        for spec, ctx in zip(CONTEXT, contexts):
            stages[spec.name] = ctx
    for spec in GATHER:
        g = conv(model.layers[spec.name], g)
        if stages is not None:
            stages[spec.name] = g
    return g


def encode_value(enc: RangeEncoder, cdf, n_w: int, lo: int, hi: int, value: int, limit: int) -> None:
    """Informative: the inverse of clause 7.10 DecodeValue (window symbol, or escape + Exp-Golomb)."""
    if abs(value) > limit:
        raise EncodeError(f"latent value {value} beyond +-{limit}")
    if lo <= value <= hi:
        enc.encode_symbol(cdf, n_w + 1, value - lo)
        return
    enc.encode_symbol(cdf, n_w + 1, n_w)  # escape
    encode_escape_payload(enc, lo, hi, value)


def encode_escape_payload(enc: RangeEncoder, lo: int, hi: int, value: int) -> None:
    """Informative: the bypass bits that follow an escape symbol (inverse of clause 7.10)."""
    side = int(value > hi)
    m = value - hi - 1 if side else lo - 1 - value
    enc.write_bit(side)
    v = m + 1
    k = v.bit_length() - 1
    if k > 14:
        raise EncodeError(f"latent value {value} needs an escape prefix of {k} > 14")
    for _ in range(k):
        enc.write_bit(1)
    enc.write_bit(0)
    for b in range(k - 1, -1, -1):
        enc.write_bit((v >> b) & 1)


def z_symbols(model: Model, z_hat: np.ndarray):
    """The z payload's symbols in coding order (clause 7.3): encode_value arguments after enc."""
    for c in range(model.hyper_channels):
        n_w, lo = int(model.z_count[c]), int(model.z_lo[c])
        cdf = model.z_cdf[c, : n_w + 1].tolist()
        for value in z_hat[c].ravel().tolist():
            yield cdf, n_w, lo, lo + n_w - 1, value, Z_MAX


def y_symbols(model: Model, y_hat: np.ndarray, params: np.ndarray):
    """The y payload's symbols in coding order (clause 7.5): encode_value arguments after enc."""
    cy = model.latent_channels
    for ys, xs in wavefronts(*y_hat.shape[1:]):
        mix = mixture_parameters(params[ys, xs], cy)
        lo, hi = coding_window(mix)
        cdf = cumulative_frequencies(mix, lo, hi).tolist()
        values = y_hat[:, ys, xs].T.ravel().tolist()
        for e, value in enumerate(values):
            lo_e, hi_e = int(lo[e]), int(hi[e])
            yield cdf[e], hi_e - lo_e + 1, lo_e, hi_e, value, Y_MAX


def encode_symbols(symbols) -> bytes:
    enc = RangeEncoder()
    for symbol in symbols:
        encode_value(enc, *symbol)
    return enc.finish()


def encode_z(model: Model, z_hat: np.ndarray) -> bytes:
    return encode_symbols(z_symbols(model, z_hat))


def encode_y(model: Model, y_hat: np.ndarray, params: np.ndarray) -> bytes:
    return encode_symbols(y_symbols(model, y_hat, params))


def check_latent_shapes(model: Model, z_hat, y_hat, width, height):
    hz, wz, hy, wy = padded_sizes(width, height)
    if z_hat.shape != (model.hyper_channels, hz, wz):
        raise EncodeError(f"z_hat has shape {z_hat.shape}, expected {(model.hyper_channels, hz, wz)}")
    if y_hat.shape != (model.latent_channels, hy, wy):
        raise EncodeError(f"y_hat has shape {y_hat.shape}, expected {(model.latent_channels, hy, wy)}")


def encode_latents(model: Model, z_hat: np.ndarray, y_hat: np.ndarray, rate_index: int,
                   width: int, height: int) -> bytes:
    """A bitstream (clause 6.1) carrying z_hat (C_z, Hz, Wz) and y_hat (C_y, Hy, Wy)."""
    z_hat = np.asarray(z_hat, dtype=np.int64)
    y_hat = np.asarray(y_hat, dtype=np.int64)
    check_latent_shapes(model, z_hat, y_hat, width, height)
    if not 0 <= rate_index < model.num_rates:
        raise EncodeError(f"rate index {rate_index} not below {model.num_rates}")
    z_payload = encode_z(model, z_hat)
    hyper = hyper_features(model, z_hat)
    y_payload = encode_y(model, y_hat, entropy_parameters(model, y_hat, hyper))
    header = Header(VERSION, 0, width, height, rate_index, model.model_id, len(z_payload), len(y_payload))
    return write_header(header) + z_payload + y_payload


def cdf_sums(mix, lo: np.ndarray, hi: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """C(0) + .. + C(n_w) of every element (the cdf.sum stage of clause 11.3), in chunks of elements
    so that the (E, 130) CDFs of a large image are never held at once."""
    out = np.empty(len(lo), dtype=np.int64)
    for a in range(0, len(lo), chunk):
        part = slice(a, a + chunk)
        sub = type(mix)(mix.weights[part], mix.means[part], mix.scale_index[part])
        C = cumulative_frequencies(sub, lo[part], hi[part])
        out[part] = np.where(np.arange(C.shape[1]) <= (hi[part] - lo[part] + 1)[:, None], C, 0).sum(axis=1)
    return out


def forward_integer(model: Model, z_hat: np.ndarray, y_hat: np.ndarray, rate_index: int,
                    width: int, height: int) -> dict:
    """The stage tensors of clause 11.3 by whole-tensor computation (no wavefronts, one band)."""
    z_hat = np.asarray(z_hat, dtype=np.int64)
    y_hat = np.asarray(y_hat, dtype=np.int64)
    record = Recorder()
    record.tensor("z_hat", z_hat)
    hyper = hyper_synthesis(model, z_hat, record).transpose(1, 2, 0).astype(np.float64)
    stages: dict = {}
    params = entropy_parameters(model, y_hat, hyper, stages)
    for name, value in stages.items():
        record.tensor(name, value.transpose(2, 0, 1))
    hy, wy = y_hat.shape[1:]
    mix = mixture_parameters(params.reshape(hy * wy, -1), model.latent_channels)
    lo, hi = coding_window(mix)
    nk, cy = NUM_MIXTURES, model.latent_channels
    for name, arr in (("mixture.weights", mix.weights), ("mixture.means", mix.means),
                      ("mixture.scale_index", mix.scale_index)):
        record.tensor(name, arr.reshape(hy, wy, cy, nk).transpose(3, 2, 0, 1))
    record.tensor("window.lo", lo.reshape(hy, wy, cy).transpose(2, 0, 1))
    record.tensor("window.hi", hi.reshape(hy, wy, cy).transpose(2, 0, 1))
    record.tensor("cdf.sum", cdf_sums(mix, lo, hi).reshape(hy, wy, cy).transpose(2, 0, 1))
    record.tensor("y_hat", y_hat)
    s0 = inverse_gain(model, y_hat, rate_index)
    record.tensor("synthesis_input", s0)
    full = synthesis(model, s0, record, options=FastOptions(band_rows=16 * hy))  # one band
    record.tensor("image", output(full, width, height))
    return record.stages
