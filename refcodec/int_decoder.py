"""A second, independent implementation of the normative decoding process, in PyTorch.

Written from the specification text (spec/, clauses 4 to 8 and 11), not from refdec's
decoding code: it exists to cross-check refdec. It reuses only what the specification lets
a decoder take as given data: the validated integer parameters of a model file
(refdec.model_file), the header parser (refdec.bitstream), the normative tables
(refdec.tables), the constants and layer names (refdec.constants, refdec.architecture) and
the error classes of clause 11.2 (refdec.errors).

Arithmetic (clause 3, 4.1, 11.1):

* every integer tensor is ``torch.int64``; no value of the decoding process exceeds 2^35
  (``Round2`` with ``s + 3`` adds at most ``2^33``), so nothing wraps;
* convolutions and 1x1 layers are computed as ``float64`` matrix products, one product per
  kernel tap, accumulated onto the bias.  Every partial sum of any summation order is a
  sum of a subset of the terms ``W * X`` plus possibly the bias, so its magnitude is at most
  ``sum |W| * in_max + |b|``, which clause 9.5 bounds by ``2^31 < 2^53``: all float64
  partial sums are exact integers (clause 11.1).  The bound is re-asserted here for every
  layer from its weights and the clause 9.5 input bound, and every layer input is asserted
  to lie within that input bound;
* ``Round2`` and ``Requant`` use ``>>`` on int64 tensors, which is the arithmetic shift.

Only device-generic tensor operations are used in the hot path (indexing, matmul,
elementwise integer ops, gather), so ``device="cuda"`` works as well as ``"cpu"``.
The range decoder (clause 8) is a sequential Python loop over Python integers; for each
wavefront (clause 7.5) the context model, gather network, mixture parameters and
cumulative frequencies of all its positions are computed at once on the device and copied
to the host in one transfer.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import torch

from refdec.constants import NUM_MIXTURES
from refdec import constants
from refdec import tables as T
from refdec.architecture import CONTEXT, GATHER, HYPER_SYNTHESIS, SYNTHESIS
from refdec.bitstream import HEADER_SIZE, parse_header
from refdec.errors import (EscapeTooLong, InvalidRangeState, LatentOutOfRange, PayloadTruncated,
                           RateIndexOutOfRange, TrailingPayloadBytes, UnknownModel)

I64 = torch.int64
F64 = torch.float64

NUM_K = 3                      # clause 5.1: K
Y_MAX = (1 << 14) - 1          # clause 5.3
Z_MAX = (1 << 14) - 1          # clause 5.3
CTX_IN_MAX = 255               # clause 5.1: Clip3(-255, 255, .) on context / hyper input
PROB_ONE = 1 << 16             # clause 7.9 / 8.3
WINDOW_MAX = 129               # clause 7.9: n_w <= 129
CDF_WIDTH = WINDOW_MAX + 2     # C(0 .. n_w) and C(n) = 2^16, padded with 2^16
EXACT_LIMIT = 1 << 53          # float64 integers are exact below this (clause 11.1)
ACC_LIMIT = 1 << 31            # clause 4.5

# The constants this module uses must agree with refdec's (they are normative numbers
# written in the spec text; a mismatch would be a finding, so check it at import).
assert constants.Y_MAX == Y_MAX and constants.Z_MAX == Z_MAX and NUM_MIXTURES == NUM_K


# ---------------------------------------------------------------------------------------
# Clause 4: integer operators on int64 tensors.

def round2(x: torch.Tensor, n) -> torch.Tensor:
    """Clause 4.2: Round2(x, n) = (x + (1 << (n - 1))) >> n, Round2(x, 0) = x.

    ``n`` is an int or an int64 tensor broadcastable to ``x`` (all ``n >= 0``).
    """
    if isinstance(n, int):
        if n == 0:
            return x
        return (x + (1 << (n - 1))) >> n
    half = (torch.ones_like(n) << n) >> 1          # 1 << (n - 1) for n >= 1, 0 for n == 0
    return (x + half) >> n


def clip3(lo, hi, x: torch.Tensor) -> torch.Tensor:
    """Clause 4.3."""
    return torch.clamp(x, min=lo, max=hi)


def requant(acc: torch.Tensor, shift: torch.Tensor, leaky: bool) -> torch.Tensor:
    """Clause 4.4; ``shift`` broadcasts against ``acc`` (per output channel)."""
    if leaky:
        n = torch.where(acc < 0, shift + 3, shift)
    else:
        n = shift.expand_as(acc)
    return round2(acc, n)


def depth_to_space(x: torch.Tensor) -> torch.Tensor:
    """Clause 4.6: Y[c][2y + i][2x + j] = X[4c + 2i + j][y][x]; x is (4C, H, W)."""
    c4, h, w = x.shape
    c = c4 // 4
    return x.reshape(c, 2, 2, h, w).permute(0, 3, 1, 4, 2).reshape(c, 2 * h, 2 * w)


# ---------------------------------------------------------------------------------------
# Model preparation (clause 9 data on the device).

@dataclass
class _Layer:
    name: str
    kernel: int
    d2s: bool
    leaky: bool
    out_lo: int                # Clip3 bounds of the output (clause 4.5 / 7.12)
    out_hi: int
    in_max: int                # clause 9.5 input bound
    taps: torch.Tensor         # float64 (k*k, O, I): W[:, :, ky, kx] for tap ky*k + kx
    flat: torch.Tensor         # float64 (O, I*k*k): W reshaped, (i, ky, kx) order
    bias_f: torch.Tensor       # float64 (O, 1)
    shift: torch.Tensor        # int64 (O, 1)
    out_channels: int
    in_channels: int


@dataclass
class _Prepared:
    device: torch.device
    layers: dict
    cy: int
    cz: int
    num_rates: int
    inv_gain: torch.Tensor     # int64 (R, C_y)
    inv_gain_shift: int
    synth_clip: int
    phi: torch.Tensor          # int64 (4097,)
    scale_q: torch.Tensor      # int64 (160,)
    inv_scale: torch.Tensor    # int64 (160,)
    z_tables: list             # per channel (cdf list C(0..n_w), n_w, lo)


def _input_bounds(header: dict) -> dict:
    """Clause 9.5: in_max of every layer, derived from the spec text."""
    clip = header["clip"]
    bounds = {}
    for net, first_bound in ((HYPER_SYNTHESIS, CTX_IN_MAX), (SYNTHESIS, header["synthesis_input_clip"])):
        for i, spec in enumerate(net):
            bounds[spec.name] = first_bound if i == 0 else clip[net[i - 1].name]
    for spec in CONTEXT:
        bounds[spec.name] = CTX_IN_MAX
    gather0 = max(clip[s.name] for s in [HYPER_SYNTHESIS[-1], *CONTEXT])
    for i, spec in enumerate(GATHER):
        bounds[spec.name] = gather0 if i == 0 else clip[GATHER[i - 1].name]
    return bounds


def prepare(model, device="cpu") -> _Prepared:
    """Copy a validated refdec Model's integer parameters to ``device`` (cached on the model)."""
    device = torch.device(device)
    key = ("refcodec.int_decoder", str(device))
    cache = getattr(model, "cache", None)
    if cache is not None and key in cache:
        return cache[key]
    header = model.header
    bounds = _input_bounds(header)
    layers = {}
    for spec in HYPER_SYNTHESIS + CONTEXT + GATHER + SYNTHESIS:
        src = model.layers[spec.name]
        w = np.asarray(src.weight, dtype=np.int64)
        b = np.asarray(src.bias, dtype=np.int64)
        s = np.asarray(src.shift, dtype=np.int64)
        o, i, k, k2 = w.shape
        assert k == k2 == spec.kernel, spec.name
        # Exactness argument (module docstring): every partial sum <= sum|W| in_max + |b|.
        worst = int((np.abs(w).reshape(o, -1).sum(axis=1) * bounds[spec.name] + np.abs(b)).max())
        assert worst < ACC_LIMIT <= EXACT_LIMIT, f"{spec.name}: accumulator bound {worst} (clause 9.5)"
        if spec.name == SYNTHESIS[-1].name:
            out_lo, out_hi = 0, 255                         # clause 7.12
        else:
            a = int(header["clip"][spec.name])
            out_lo, out_hi = -a, a
        wt = torch.as_tensor(w, dtype=F64)
        layers[spec.name] = _Layer(
            name=spec.name, kernel=k, d2s=spec.depth_to_space, leaky=spec.leaky,
            out_lo=out_lo, out_hi=out_hi, in_max=int(bounds[spec.name]),
            taps=wt.permute(2, 3, 0, 1).reshape(k * k, o, i).contiguous().to(device),
            flat=wt.reshape(o, i * k * k).contiguous().to(device),
            bias_f=torch.as_tensor(b, dtype=F64).reshape(o, 1).to(device),
            shift=torch.as_tensor(s, dtype=I64).reshape(o, 1).to(device),
            out_channels=o, in_channels=i,
        )
    z_tables = []
    for c in range(int(header["hyper_channels"])):
        n_w = int(model.z_count[c])
        z_tables.append((np.asarray(model.z_cdf[c][: n_w + 1], dtype=np.int64).tolist(), n_w, int(model.z_lo[c])))
    prep = _Prepared(
        device=device, layers=layers, cy=int(header["latent_channels"]), cz=int(header["hyper_channels"]),
        num_rates=int(header["num_rates"]),
        inv_gain=torch.as_tensor(np.asarray(model.inv_gain, dtype=np.int64), dtype=I64, device=device),
        inv_gain_shift=int(header["inv_gain_shift"]), synth_clip=int(header["synthesis_input_clip"]),
        phi=torch.as_tensor(T.PHI, dtype=I64, device=device),
        scale_q=torch.as_tensor(T.SCALE_Q, dtype=I64, device=device),
        inv_scale=torch.as_tensor(T.INV_SCALE, dtype=I64, device=device),
        z_tables=z_tables,
    )
    assert prep.phi.numel() == 4097 and prep.scale_q.numel() == 160 and prep.inv_scale.numel() == 160
    if cache is not None:
        cache[key] = prep
    return prep


# ---------------------------------------------------------------------------------------
# Clause 4.5: the integer layer.

def _check_input(x: torch.Tensor, layer: _Layer) -> None:
    if x.numel():
        m = int(x.abs().max())
        assert m <= layer.in_max, f"{layer.name}: input magnitude {m} above the clause 9.5 bound {layer.in_max}"


def _finish(acc_f: torch.Tensor, layer: _Layer) -> torch.Tensor:
    """float64 accumulators (O, M), exact integers -> Clip3(Requant(acc))."""
    acc = acc_f.to(I64)
    y = requant(acc, layer.shift, layer.leaky)
    return clip3(layer.out_lo, layer.out_hi, y)


def conv_layer(x: torch.Tensor, layer: _Layer, rows_per_chunk: int | None = None) -> torch.Tensor:
    """Clause 4.5 over a whole (I, H, W) int64 tensor with zero padding; D2S if the layer has it.

    One float64 matrix product per kernel tap, accumulated onto the bias; output rows are
    processed in chunks to bound the workspace.
    """
    _check_input(x, layer)
    i, h, w = x.shape
    assert i == layer.in_channels, (layer.name, x.shape)
    k, p, o = layer.kernel, layer.kernel // 2, layer.out_channels
    xf = x.to(F64)
    if p:
        xf = torch.nn.functional.pad(xf, (p, p, p, p))
    if rows_per_chunk is None:
        rows_per_chunk = max(1, (1 << 24) // max(1, w * max(i, o)))
    out = torch.empty((o, h, w), dtype=I64, device=x.device)
    for r0 in range(0, h, rows_per_chunk):
        r1 = min(h, r0 + rows_per_chunk)
        acc = layer.bias_f.expand(o, (r1 - r0) * w).clone()
        for ky in range(k):
            for kx in range(k):
                patch = xf[:, r0 + ky: r1 + ky, kx: kx + w].reshape(i, -1)
                acc.addmm_(layer.taps[ky * k + kx], patch)
        out[:, r0:r1, :] = _finish(acc, layer).reshape(o, r1 - r0, w)
    return depth_to_space(out) if layer.d2s else out


def dense_layer(x: torch.Tensor, layer: _Layer) -> torch.Tensor:
    """Clause 4.5 for a layer evaluated on given input columns: x is (I*k*k, N)."""
    _check_input(x, layer)
    acc = torch.addmm(layer.bias_f, layer.flat, x.to(F64))
    return _finish(acc, layer)


# ---------------------------------------------------------------------------------------
# Clause 7.4: hyper synthesis; clause 7.11 to 7.13: inverse gain and synthesis.

def hyper_synthesis(prep: _Prepared, z_hat: torch.Tensor, stages: dict | None = None) -> torch.Tensor:
    t = clip3(-CTX_IN_MAX, CTX_IN_MAX, z_hat)
    for spec in HYPER_SYNTHESIS:
        t = conv_layer(t, prep.layers[spec.name])
        if stages is not None:
            stages[spec.name] = t
    return t


def inverse_gain(prep: _Prepared, y_hat: torch.Tensor, rate_index: int) -> torch.Tensor:
    g = prep.inv_gain[rate_index].reshape(-1, 1, 1)
    return clip3(-prep.synth_clip, prep.synth_clip, round2(y_hat * g, prep.inv_gain_shift))


def synthesis(prep: _Prepared, s0: torch.Tensor, stages: dict | None = None) -> torch.Tensor:
    t = s0
    for spec in SYNTHESIS:
        t = conv_layer(t, prep.layers[spec.name])
        if stages is not None:
            stages[spec.name] = t
    return t


# ---------------------------------------------------------------------------------------
# Clause 7.8 and 7.9: mixture parameters, windows, cumulative frequencies.

@dataclass
class _Entropy:
    weights: torch.Tensor      # (K, C, N)
    means: torch.Tensor        # (K, C, N)
    sidx: torch.Tensor         # (K, C, N)
    lo: torch.Tensor           # (C, N)
    hi: torch.Tensor           # (C, N)


def mixture_and_window(prep: _Prepared, p: torch.Tensor) -> _Entropy:
    """P (3 K C_y, N) -> clause 7.8 parameters and clause 7.9 windows."""
    cy = prep.cy
    n = p.shape[1]
    q = p.reshape(3, NUM_K, cy, n)
    logit, mean = q[0], q[1]
    sidx = clip3(0, 159, round2(q[2], 4))
    m = logit.max(dim=0, keepdim=True).values
    e = torch.clamp(256 + logit - m, min=1)
    e_sum = e.sum(dim=0, keepdim=True)
    w = 1 + torch.div(e * ((1 << 14) - NUM_K), e_sum, rounding_mode="floor")
    span = round2(6 * prep.scale_q[sidx], 2)
    lo = round2(mean - span, 6).min(dim=0).values
    hi = round2(mean + span, 6).max(dim=0).values
    wide = (hi - lo) > 128
    centre = round2(lo + hi, 1)
    lo = torch.where(wide, centre - 64, lo)
    hi = torch.where(wide, centre + 64, hi)
    return _Entropy(w, mean, sidx, lo, hi)


def cdf_at(prep: _Prepared, ent: _Entropy, j: torch.Tensor) -> torch.Tensor:
    """Clause 7.9: C(j) at the indices ``j`` (int64, broadcastable to (C, N, M)).

    Indices j > n_w give 2^16, so that C(n) = 2^16 for the escape symbol n = n_w + 1.
    """
    lo, hi = ent.lo, ent.hi                                   # (C, N)
    n_w = (hi - lo + 1).unsqueeze(-1)                         # (C, N, 1)

    def mixture_cdf(jj: torch.Tensor) -> torch.Tensor:
        b = (lo.unsqueeze(-1) + jj) * 64 - 32                 # (C, N, M)
        d = clip3(-(1 << 15), 1 << 15, b.unsqueeze(0) - ent.means.unsqueeze(-1))   # (K, C, N, M)
        u = d * prep.inv_scale[ent.sidx].unsqueeze(-1)
        i = clip3(-2048, 2048, round2(u, 10))
        return (ent.weights.unsqueeze(-1) * prep.phi[i + 2048]).sum(dim=0) >> 14

    dd = mixture_cdf(j) - mixture_cdf(torch.zeros(1, dtype=I64, device=lo.device))
    c = j + dd - ((dd * (n_w + 1) + 65535) >> 16)
    return torch.where(j <= n_w, c, torch.full_like(c, PROB_ONE))


def cumulative_frequencies(prep: _Prepared, ent: _Entropy) -> torch.Tensor:
    """Clause 7.9: C(j) for j = 0 .. CDF_WIDTH - 1, shape (C, N, CDF_WIDTH).

    Entries j > n_w hold 2^16 (so that C(n) = 2^16 for the escape symbol n = n_w + 1).
    """
    return cdf_at(prep, ent, torch.arange(CDF_WIDTH, dtype=I64, device=ent.lo.device))


def cdf_sums(cdf: torch.Tensor, n_w: torch.Tensor) -> torch.Tensor:
    """The cdf.sum stage of clause 11.3: C(0) + .. + C(n_w) per element, from cdf (C, N, J)."""
    j = torch.arange(cdf.shape[-1], device=cdf.device)
    return torch.where(j <= n_w.unsqueeze(-1), cdf, torch.zeros_like(cdf)).sum(dim=-1)


def cdf_sums_chunked(prep: _Prepared, ent: _Entropy, chunk: int = 1024) -> torch.Tensor:
    """cdf_sums over every position of ent (C, N), N in chunks so that the CDFs of a large image
    (C x N x 130 values) are never held at once."""
    parts = []
    for a in range(0, ent.lo.shape[1], chunk):
        part = _Entropy(*(t[..., a: a + chunk] for t in (ent.weights, ent.means, ent.sidx, ent.lo, ent.hi)))
        parts.append(cdf_sums(cumulative_frequencies(prep, part), part.hi - part.lo + 1))
    return torch.cat(parts, dim=1)


def check_cdf(c: torch.Tensor, n_w: torch.Tensor) -> None:
    """The clause 7.9 guarantees this decoder relies on: C(0) = 0, strictly increasing up to
    C(n_w), C(n_w) <= 2^16 - 1.  A violation would be a defect in the specification."""
    if c.numel() == 0:
        return
    assert bool((n_w >= 1).all()) and bool((n_w <= WINDOW_MAX).all()), "clause 7.9: n_w outside 1..129"
    assert bool((c[..., 0] == 0).all()), "clause 7.9: C(0) != 0"
    steps = c[..., 1:] - c[..., :-1]
    j = torch.arange(1, CDF_WIDTH, device=c.device)
    inside = j <= (n_w + 1).unsqueeze(-1)       # the step into C(n) = 2^16 included
    assert bool((steps[inside] >= 1).all()), "clause 7.9: a symbol with zero frequency"


# ---------------------------------------------------------------------------------------
# Clause 8: the range decoder; clause 7.10: DecodeValue.

class RangeDecoder:
    """Clause 8, on Python integers. ``base`` is the payload's byte offset in the stream."""

    def __init__(self, payload: bytes, base: int = 0):
        self.data = payload
        self.base = base
        self.length = len(payload)
        assert self.length >= 4        # clause 6.2 check 4 happened before
        self.V = int.from_bytes(payload[:4], "big")
        self.R = (1 << 32) - 1
        self.P = 4

    def _renormalise(self) -> None:
        while self.R < (1 << 24):
            if self.P == self.length:
                raise PayloadTruncated("the range decoder needs a byte past the payload (clause 8.3)",
                                       offset=self.base + self.P)
            self.V = (self.V << 8) + self.data[self.P]
            self.R <<= 8
            self.P += 1

    def decode_symbol(self, cdf, n: int) -> int:
        """Clause 8.3: cdf[0 .. n - 1] = C(0 .. n - 1); C(n) = 2^16 (cdf[n] may be present)."""
        r = self.R >> 16
        v = self.V // r
        if v >= PROB_ONE:
            raise InvalidRangeState(f"code value {v} >= 2^16 (clause 8.3)", offset=self.base + self.P)
        j = bisect_right(cdf, v, 0, n) - 1
        c_lo = cdf[j]
        c_hi = cdf[j + 1] if j + 1 < n else PROB_ONE
        self.V -= r * c_lo
        self.R = r * (c_hi - c_lo)
        self._renormalise()
        return j

    def read_bit(self) -> int:
        """Clause 8.4."""
        return self.decode_symbol(_BIT_CDF, 2)

    def finish(self) -> None:
        """Clause 8.5."""
        if self.P != self.length:
            raise TrailingPayloadBytes(f"{self.length - self.P} payload bytes left after the last symbol (clause 8.5)",
                                       offset=self.base + self.P)


_BIT_CDF = [0, 1 << 15]


def decode_value(rd: RangeDecoder, cdf, n_w: int, lo: int, hi: int, limit: int) -> int:
    """Clause 7.10."""
    j = rd.decode_symbol(cdf, n_w + 1)
    if j < n_w:
        return lo + j
    side = rd.read_bit()
    k = 0
    while rd.read_bit() == 1:
        k += 1
        if k > 14:
            raise EscapeTooLong("escape prefix longer than 14 (clause 7.10)", offset=rd.base + rd.P)
    v = 1
    for _ in range(k):
        v = 2 * v + rd.read_bit()
    m = v - 1
    value = lo - 1 - m if side == 0 else hi + 1 + m
    if abs(value) > limit:
        raise LatentOutOfRange(f"escaped value {value} beyond +-{limit} (clause 7.10)", offset=rd.base + rd.P)
    return value


# ---------------------------------------------------------------------------------------
# Clause 7.3: hyper-latent decoding.

def decode_z(rd: RangeDecoder, prep: _Prepared, hz: int, wz: int) -> torch.Tensor:
    out = []
    for cdf, n_w, lo in prep.z_tables:
        for _ in range(hz * wz):
            out.append(decode_value(rd, cdf, n_w, lo, lo + n_w - 1, Z_MAX))
    return torch.tensor(out, dtype=I64).reshape(prep.cz, hz, wz).to(prep.device)


# ---------------------------------------------------------------------------------------
# Clause 7.5 to 7.10: the latent, wavefront by wavefront.

def wavefront_positions(t: int, hy: int, wy: int):
    """Clause 7.5: positions (y, x) with x + 4 y == t, in increasing y."""
    y_first = max(0, -((wy - 1 - t) // 4))       # smallest y with t - 4 y <= wy - 1
    y_last = min(hy - 1, t // 4)
    ys = list(range(y_first, y_last + 1))
    return ys, [t - 4 * y for y in ys]


class _Stages:
    """Holds per-position results of the wavefronts as whole (channels, Hy, Wy) tensors."""

    def __init__(self, prep: _Prepared, hy: int, wy: int):
        dev, cy = prep.device, prep.cy
        self.t = {}
        self.wavefronts = 0  # wavefronts of clause 7.5 whose stages are all recorded (a partial trace's N)
        for spec in CONTEXT + GATHER:
            self.t[spec.name] = torch.zeros((prep.layers[spec.name].out_channels, hy, wy), dtype=I64, device=dev)
        for name in ("mixture.weights", "mixture.means", "mixture.scale_index"):
            self.t[name] = torch.zeros((NUM_K, cy, hy, wy), dtype=I64, device=dev)
        for name in ("window.lo", "window.hi", "cdf.sum"):
            self.t[name] = torch.zeros((cy, hy, wy), dtype=I64, device=dev)


def _context_columns(qp: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, k: int) -> torch.Tensor:
    """Columns (C k k, N) of the clause 4.5 sum for kernel k at positions (ys, xs).

    ``qp`` is Q padded by 3 on every side (zero padding), so Q[y + ky - p][x + kx - p] is
    qp[y + ky - p + 3][x + kx - p + 3].
    """
    p = k // 2
    off = torch.arange(k, device=qp.device) - p + 3
    rows = (ys.reshape(-1, 1, 1) + off.reshape(1, k, 1))                 # (N, k, 1)
    cols = (xs.reshape(-1, 1, 1) + off.reshape(1, 1, k))                 # (N, 1, k)
    patch = qp[:, rows, cols]                                            # (C, N, k, k)
    c, n = patch.shape[0], patch.shape[1]
    return patch.permute(0, 2, 3, 1).reshape(c * k * k, n)               # (i, ky, kx) order


def entropy_at(prep: _Prepared, qp: torch.Tensor, hyper: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
               record: dict | None = None) -> _Entropy:
    """Clauses 7.6 to 7.8 (and the 7.9 window) for the positions (ys, xs)."""
    feats = [hyper[:, ys, xs]]
    for spec in CONTEXT:
        layer = prep.layers[spec.name]
        ctx = dense_layer(_context_columns(qp, ys, xs, layer.kernel), layer)
        feats.append(ctx)
        if record is not None:
            record[spec.name] = ctx
    g = torch.cat(feats, dim=0)
    for spec in GATHER:
        g = dense_layer(g, prep.layers[spec.name])
        if record is not None:
            record[spec.name] = g
    return mixture_and_window(prep, g)


def decode_y(rd: RangeDecoder, prep: _Prepared, hyper: torch.Tensor, hy: int, wy: int,
             stages: _Stages | None = None) -> torch.Tensor:
    dev, cy = prep.device, prep.cy
    y_hat = torch.zeros((cy, hy, wy), dtype=I64, device=dev)
    qp = torch.zeros((cy, hy + 6, wy + 6), dtype=I64, device=dev)      # Clip3(-255, 255, y_hat), padded
    for t in range(wy - 1 + 4 * (hy - 1) + 1):
        ys_l, xs_l = wavefront_positions(t, hy, wy)
        ys = torch.tensor(ys_l, dtype=I64, device=dev)
        xs = torch.tensor(xs_l, dtype=I64, device=dev)
        record = {} if stages is not None else None
        ent = entropy_at(prep, qp, hyper, ys, xs, record)
        cdf = cumulative_frequencies(prep, ent)                         # (C, N, J)
        n_w = ent.hi - ent.lo + 1
        check_cdf(cdf, n_w)
        # Symbol order: positions (increasing y), then channels: (N, C).  Only the
        # columns C(0 .. max n_w) are needed on the host (C(n) = 2^16 is implicit).
        width = int(n_w.max()) + 1
        host = torch.cat([ent.lo.unsqueeze(-1), ent.hi.unsqueeze(-1), cdf[..., :width]], dim=-1)
        host = host.permute(1, 0, 2).reshape(len(ys_l) * cy, width + 2).cpu().tolist()
        values = []
        for row in host:
            lo_e, hi_e = row[0], row[1]
            del row[:2]
            values.append(decode_value(rd, row, hi_e - lo_e + 1, lo_e, hi_e, Y_MAX))
        vals = torch.tensor(values, dtype=I64).reshape(len(ys_l), cy).T.to(dev)   # (C, N)
        y_hat[:, ys, xs] = vals
        qp[:, ys + 3, xs + 3] = clip3(-CTX_IN_MAX, CTX_IN_MAX, vals)
        if stages is not None:
            for name, v in record.items():
                stages.t[name][:, ys, xs] = v
            stages.t["mixture.weights"][:, :, ys, xs] = ent.weights
            stages.t["mixture.means"][:, :, ys, xs] = ent.means
            stages.t["mixture.scale_index"][:, :, ys, xs] = ent.sidx
            stages.t["window.lo"][:, ys, xs] = ent.lo
            stages.t["window.hi"][:, ys, xs] = ent.hi
            stages.t["cdf.sum"][:, ys, xs] = cdf_sums(cdf, n_w)
            stages.wavefronts = t + 1
    return y_hat


# ---------------------------------------------------------------------------------------
# Clause 7.1: the whole decoding process.

def padded_sizes(width: int, height: int):
    """Clause 5.4."""
    hz, wz = (height + 63) >> 6, (width + 63) >> 6
    return hz, wz, 4 * hz, 4 * wz


def _resolve_model(models, model_id: bytes):
    """Clause 6.2 check 6: a Model, a mapping model_id -> Model, or an object with .get(id)."""
    if hasattr(models, "model_id") and hasattr(models, "layers"):
        if models.model_id != model_id:
            raise UnknownModel(f"no model with id {model_id.hex()} (have {models.model_id.hex()})", offset=11)
        return models
    if isinstance(models, dict):
        if model_id not in models:
            raise UnknownModel(f"no model with id {model_id.hex()}", offset=11)
        return models[model_id]
    return models.get(model_id)


def _to_numpy(stages: dict) -> dict:
    return {k: np.ascontiguousarray(v.cpu().numpy()).astype(np.int32) for k, v in stages.items()}


def decode(stream: bytes, model, device="cpu", trace: bool = False):
    """Decode a bitstream: (image uint8 (3, H, W), stages dict name -> int32 array).

    ``stages`` holds the clause 11.3 stage tensors when ``trace`` is true, else it is empty.
    Invalid streams raise the refdec.errors class that clause 11.2 names.
    """
    stream = bytes(stream)
    header = parse_header(stream)                                   # clause 6.2 checks 1 to 5
    model = _resolve_model(model, header.model_id)                  # check 6 (model validated on load)
    if header.rate_index >= int(model.header["num_rates"]):         # check 7
        raise RateIndexOutOfRange(f"rate index {header.rate_index} not below {model.header['num_rates']}",
                                  offset=10)
    prep = prepare(model, device)
    hz, wz, hy, wy = padded_sizes(header.width, header.height)
    z_off = HEADER_SIZE
    y_off = HEADER_SIZE + header.z_length
    stages = {} if trace else None

    with torch.no_grad():
        rd = RangeDecoder(stream[z_off: z_off + header.z_length], base=z_off)
        z_hat = decode_z(rd, prep, hz, wz)
        rd.finish()
        hyper = hyper_synthesis(prep, z_hat, stages)

        rd = RangeDecoder(stream[y_off: y_off + header.y_length], base=y_off)
        latent_stages = _Stages(prep, hy, wy) if trace else None
        y_hat = decode_y(rd, prep, hyper, hy, wy, latent_stages)
        rd.finish()

        s0 = inverse_gain(prep, y_hat, header.rate_index)
        full = synthesis(prep, s0, stages)
        image = full[:, : header.height, : header.width]

    if not trace:
        return image.to(torch.uint8).cpu().numpy(), {}
    stages["z_hat"] = z_hat
    stages.update(latent_stages.t)
    stages["y_hat"] = y_hat
    stages["synthesis_input"] = s0
    stages["image"] = image
    return image.to(torch.uint8).cpu().numpy(), _to_numpy(stages)


def forward_stages(model, z_hat, y_hat, rate_index: int, width: int, height: int, device="cpu") -> dict:
    """All clause 11.3 stage tensors computed over whole tensors from known latents.

    The context model runs as whole-tensor masked convolutions on the final y_hat: by the
    causal mask (clause 5.1, 7.5) each position sees exactly the values it would see during
    its wavefront, so the result equals the decoder's stages (informative use: encoders).
    """
    prep = prepare(model, device)
    hz, wz, hy, wy = padded_sizes(width, height)
    z = torch.as_tensor(np.asarray(z_hat), dtype=I64).to(prep.device)
    y = torch.as_tensor(np.asarray(y_hat), dtype=I64).to(prep.device)
    assert tuple(z.shape) == (prep.cz, hz, wz), z.shape
    assert tuple(y.shape) == (prep.cy, hy, wy), y.shape
    assert 0 <= rate_index < prep.num_rates
    stages = {}
    with torch.no_grad():
        stages["z_hat"] = z
        hyper = hyper_synthesis(prep, z, stages)
        q = clip3(-CTX_IN_MAX, CTX_IN_MAX, y)
        feats = [hyper]
        for spec in CONTEXT:
            ctx = conv_layer(q, prep.layers[spec.name])
            stages[spec.name] = ctx
            feats.append(ctx)
        g = torch.cat(feats, dim=0).reshape(-1, hy * wy)
        for spec in GATHER:
            g = dense_layer(g, prep.layers[spec.name])
            stages[spec.name] = g.reshape(-1, hy, wy)
        ent = mixture_and_window(prep, g)
        cy = prep.cy
        stages["mixture.weights"] = ent.weights.reshape(NUM_K, cy, hy, wy)
        stages["mixture.means"] = ent.means.reshape(NUM_K, cy, hy, wy)
        stages["mixture.scale_index"] = ent.sidx.reshape(NUM_K, cy, hy, wy)
        stages["window.lo"] = ent.lo.reshape(cy, hy, wy)
        stages["window.hi"] = ent.hi.reshape(cy, hy, wy)
        stages["cdf.sum"] = cdf_sums_chunked(prep, ent).reshape(cy, hy, wy)
        stages["y_hat"] = y
        s0 = inverse_gain(prep, y, rate_index)
        stages["synthesis_input"] = s0
        full = synthesis(prep, s0, stages)
        stages["image"] = full[:, :height, :width]
    return _to_numpy(stages)


def cumulative_tables(model, y_hat, hyper_or_z, device="cpu"):
    """Informative helper for encoders: (cdf (C, Hy, Wy, J), lo, hi) from known latents.

    ``hyper_or_z`` is z_hat (C_z, Hz, Wz); the hyper synthesis is run here.
    """
    prep = prepare(model, device)
    with torch.no_grad():
        z = torch.as_tensor(np.asarray(hyper_or_z), dtype=I64).to(prep.device)
        hyper = hyper_synthesis(prep, z)
        y = torch.as_tensor(np.asarray(y_hat), dtype=I64).to(prep.device)
        cy, hy, wy = y.shape
        q = clip3(-CTX_IN_MAX, CTX_IN_MAX, y)
        feats = [hyper] + [conv_layer(q, prep.layers[s.name]) for s in CONTEXT]
        g = torch.cat(feats, dim=0).reshape(-1, hy * wy)
        for spec in GATHER:
            g = dense_layer(g, prep.layers[spec.name])
        ent = mixture_and_window(prep, g)
        cdf = cumulative_frequencies(prep, ent)
    return (cdf.reshape(cy, hy, wy, CDF_WIDTH).cpu().numpy(), ent.lo.reshape(cy, hy, wy).cpu().numpy(),
            ent.hi.reshape(cy, hy, wy).cpu().numpy())


def symbol_intervals(model, y_hat, z_hat, device="cpu"):
    """Informative helper for encoders: for every element of y_hat (C_y, Hy, Wy) the coded symbol
    (its window index, or n_w for the escape), the interval [C(s), C(s + 1)) of clause 7.9, and
    the window (lo, hi); all int64 numpy arrays shaped like y_hat.

    Equal to looking the symbol up in cumulative_tables(), at 2/CDF_WIDTH of the cost.
    """
    prep = prepare(model, device)
    with torch.no_grad():
        z = torch.as_tensor(np.asarray(z_hat), dtype=I64).to(prep.device)
        hyper = hyper_synthesis(prep, z)
        y = torch.as_tensor(np.asarray(y_hat), dtype=I64).to(prep.device)
        cy, hy, wy = y.shape
        q = clip3(-CTX_IN_MAX, CTX_IN_MAX, y)
        feats = [hyper] + [conv_layer(q, prep.layers[s.name]) for s in CONTEXT]
        g = torch.cat(feats, dim=0).reshape(-1, hy * wy)
        for spec in GATHER:
            g = dense_layer(g, prep.layers[spec.name])
        ent = mixture_and_window(prep, g)
        flat = y.reshape(cy, hy * wy)
        inside = (flat >= ent.lo) & (flat <= ent.hi)
        symbol = torch.where(inside, flat - ent.lo, ent.hi - ent.lo + 1)
        bounds = cdf_at(prep, ent, torch.stack([symbol, symbol + 1], dim=-1))      # (C, N, 2)
    shape = (cy, hy, wy)
    return tuple(t.reshape(shape).cpu().numpy() for t in (symbol, bounds[..., 0], bounds[..., 1], ent.lo, ent.hi))
