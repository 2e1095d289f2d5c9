"""The float model: the architecture of spec clause 5.1, with the float encoder.

The decoder-side networks (hyper synthesis, context model, gather network,
synthesis) have exactly the structure that the integer decoder of spec
clause 7 runs; the analysis transforms are float and encoder-only. Training
uses the linearised softmax and the scale index grid of clause 7.8 itself, so
that integerisation changes only the precision of weights and activations.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from refdec.constants import (CONTEXT_INPUT_MAX, CONTEXT_KERNELS, HYPER_CHANNELS, LATENT_CHANNELS,
                              LEAKY_SHIFT, LOGIT_ONE, NUM_MIXTURES, NUM_SCALES, SCALE_MIN,
                              SCALE_STEPS_PER_OCTAVE)

LEAKY_SLOPE = 2.0 ** -LEAKY_SHIFT

# Layer tables: (in_channels, out_channels, kernel, depth_to_space, leaky).
# depth_to_space=True means the conv produces 4*out channels that are
# rearranged to out channels at twice the resolution (clause 4.6).
HYPER_SYNTHESIS = [
    (HYPER_CHANNELS, 96, 3, True, True),
    (96, 128, 3, True, True),
    (128, 128, 3, False, True),
]
HYPER_FEATURES = HYPER_SYNTHESIS[-1][1]
CONTEXT_CHANNELS = 64  # per kernel size
GATHER = [
    (HYPER_FEATURES + CONTEXT_CHANNELS * len(CONTEXT_KERNELS), 320, 1, False, True),
    (320, 256, 1, False, True),
    (256, 256, 1, False, True),
    (256, 192, 1, False, True),
    (192, 192, 1, False, True),
    (192, 192, 1, False, True),
    (192, 3 * NUM_MIXTURES * LATENT_CHANNELS, 1, False, False),
]
SYNTHESIS = [
    (LATENT_CHANNELS, 128, 3, False, True),
    (128, 128, 3, True, True),
    (128, 128, 3, False, True),
    (128, 96, 3, True, True),
    (96, 64, 3, True, True),
    (64, 32, 3, True, True),
    (32, 3, 3, False, False),
]
NUM_RATES = 6


def causal_mask(kernel: int) -> torch.Tensor:
    """Raster-causal mask of clause 5.1: rows above, and positions to the left."""
    mask = torch.zeros(kernel, kernel)
    centre = kernel // 2
    mask[:centre, :] = 1
    mask[centre, :centre] = 1
    return mask


class Stage(nn.Module):
    """A conv (optionally followed by depth-to-space) and LeakyReLU, per a layer table row."""

    def __init__(self, cin, cout, kernel, depth_to_space, leaky):
        super().__init__()
        self.depth_to_space = depth_to_space
        self.leaky = leaky
        self.conv = nn.Conv2d(cin, cout * (4 if depth_to_space else 1), kernel, padding=kernel // 2)

    def forward(self, x):
        x = self.conv(x)
        if self.depth_to_space:
            x = F.pixel_shuffle(x, 2)
        if self.leaky:
            x = F.leaky_relu(x, LEAKY_SLOPE)
        return x


def stack(table):
    return nn.Sequential(*[Stage(*row) for row in table])


class MaskedConv(nn.Conv2d):
    def __init__(self, cin, cout, kernel):
        super().__init__(cin, cout, kernel, padding=kernel // 2)
        self.register_buffer("mask", causal_mask(kernel)[None, None])

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class FactorizedDensity(nn.Module):
    """Per-channel learned cumulative density (Balle et al. 2018, appendix 6.1) for z."""

    def __init__(self, channels, filters=(3, 3, 3), init_scale=10.0):
        super().__init__()
        dims = (1,) + tuple(filters) + (1,)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, x):
        """x: (C, 1, N) -> cumulative logits (C, 1, N)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z):
        """Probability of the unit interval around each value of z (B, C, H, W)."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    def cdf(self, points):
        """Cumulative probability at the given points for every channel: (C, N)."""
        c = self.matrices[0].shape[0]
        v = points.reshape(1, 1, -1).expand(c, 1, -1)
        return torch.sigmoid(self.logits_cdf(v)).reshape(c, -1)


class _InwardClamp(torch.autograd.Function):
    """clamp(x, lo, hi) whose gradient also flows outside the range when it points back inside.

    A plain clamp has zero gradient outside [lo, hi], so a parameter that starts
    below the range could never return. The forward value is exactly clamp().
    """

    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        lo_ok = (x >= ctx.lo) | (grad < 0)  # descent moves x against grad: up when grad < 0
        hi_ok = (x <= ctx.hi) | (grad > 0)
        return grad * (lo_ok & hi_ok), None, None


def inward_clamp(x, lo=None, hi=None):
    return _InwardClamp.apply(x, -math.inf if lo is None else lo, math.inf if hi is None else hi)


def scale_from_index(s):
    """sigma = SCALE_MIN * 2^(s/16), s clamped to the index range (clause 7.8; formula of annex A.3)."""
    s = inward_clamp(s, 0, NUM_SCALES - 1)
    return SCALE_MIN * torch.pow(2.0, s / SCALE_STEPS_PER_OCTAVE)


def linearised_softmax(logits, dim):
    """Clause 7.8 in float: e_k = max(2^-8, 1 + l_k - max_j l_j); w_k = e_k / sum e."""
    u = logits - logits.max(dim=dim, keepdim=True).values
    e = inward_clamp(1 + u, lo=1.0 / LOGIT_ONE)
    return e / e.sum(dim=dim, keepdim=True)


def split_mixture(params):
    """Gather output (B, 3*K*C, H, W) -> logits, means, scale indices, each (B, K, C, H, W)."""
    b, _, h, w = params.shape
    p = params.reshape(b, 3, NUM_MIXTURES, LATENT_CHANNELS, h, w)
    return p[:, 0], p[:, 1], p[:, 2]


def normal_cdf(x):
    return 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2))))


def mixture_likelihood(y, params):
    logits, means, scale_idx = split_mixture(params)
    weights = linearised_softmax(logits, dim=1)
    sigma = scale_from_index(scale_idx)
    yk = y.unsqueeze(1)
    upper = normal_cdf((yk + 0.5 - means) / sigma)
    lower = normal_cdf((yk - 0.5 - means) / sigma)
    return (weights * (upper - lower)).sum(dim=1)


def quantize_sua(x, tau):
    """Stochastic uniform annealing surrogate (informative; training only).

    tau = 1 is additive uniform noise, tau -> 0 is rounding with a
    straight-through gradient; the noise and the rounding offset carry no
    gradient (partial stop-gradient), so dL/dx is the identity for both.
    """
    noise = torch.rand_like(x) - 0.5
    offset = tau * noise + (1 - tau) * (torch.round(x) - x)
    return x + offset.detach()


def round_ste(x):
    """Zero-centre rounding with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


class FloatCodec(nn.Module):
    def __init__(self):
        super().__init__()
        n = LATENT_CHANNELS
        self.analysis = nn.Sequential(
            nn.Conv2d(3, 96, 5, 2, 2), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(96, 128, 5, 2, 2), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(128, 128, 5, 2, 2), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(128, n, 5, 2, 2),
        )
        self.hyper_analysis = nn.Sequential(
            nn.Conv2d(n, 128, 3, 1, 1), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(128, 128, 5, 2, 2), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(128, HYPER_CHANNELS, 5, 2, 2),
        )
        self.hyper_synthesis = stack(HYPER_SYNTHESIS)
        self.context = nn.ModuleList(MaskedConv(n, CONTEXT_CHANNELS, k) for k in CONTEXT_KERNELS)
        self.gather = stack(GATHER)
        self.synthesis = stack(SYNTHESIS)
        self.z_density = FactorizedDensity(HYPER_CHANNELS)
        # Gain units (Cui et al.): per rate point and channel, log2 of gain and inverse gain.
        init = torch.linspace(-1.5, 1.5, NUM_RATES)[:, None].repeat(1, n)
        self.log2_gain = nn.Parameter(init.clone())
        self.log2_inv_gain = nn.Parameter(-init.clone())
        # Training only: run the analysis and synthesis transforms, except their last layers, in
        # bfloat16 (mixed precision; about 2.4 times faster on CPUs with AMX). The last layers stay
        # float32 because they produce y, which is rounded to integers, and the pixels, whose error
        # is the distortion; the entropy networks are small and stay float32.
        self.bf16_transforms = False

    def _transform(self, layers: nn.Sequential, x):
        if not self.bf16_transforms:
            return layers(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            h = layers[:-1](x)
        return layers[-1](h.float())

    def gain(self, rate):
        return torch.pow(2.0, self.log2_gain[rate])[:, :, None, None]

    def inv_gain(self, rate):
        return torch.pow(2.0, self.log2_inv_gain[rate])[:, :, None, None]

    def context_features(self, y_hat):
        ctx_in = torch.clamp(y_hat, -CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX)
        return [F.leaky_relu(conv(ctx_in), LEAKY_SLOPE) for conv in self.context]

    def entropy_parameters(self, y_hat, z_hat):
        hyper = self.hyper_synthesis(torch.clamp(z_hat, -CONTEXT_INPUT_MAX, CONTEXT_INPUT_MAX))
        return self.gather(torch.cat([hyper] + self.context_features(y_hat), dim=1))

    def decode_pixels(self, y_hat, rate):
        """Synthesis output in 8-bit pixel units (the integer model clamps to 0..255)."""
        return self._transform(self.synthesis, y_hat * self.inv_gain(rate)) * 255.0

    def forward(self, x, rate, tau):
        """x in [0, 1], (B, 3, H, W) with H, W multiples of 64; rate (B,) long."""
        y = self._transform(self.analysis, x) * self.gain(rate)
        z = self.hyper_analysis(y)
        z_tilde = quantize_sua(z, tau)
        z_hat = round_ste(z)
        y_hat = round_ste(y)
        y_tilde = quantize_sua(y, tau)
        params = self.entropy_parameters(y_hat, z_hat)
        y_lik = mixture_likelihood(y_tilde, params).clamp_min(1e-9)
        z_lik = self.z_density.likelihood(z_tilde).clamp_min(1e-9)
        x_hat = self.decode_pixels(y_hat, rate) / 255.0
        return x_hat, y_lik, z_lik


def load_float_model(path, map_location="cpu") -> FloatCodec:
    model = FloatCodec()
    state = torch.load(path, map_location=map_location, weights_only=True)
    state = state.get("model", state)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model


def checkpoint_record(path) -> dict:
    """Which checkpoint an experiment ran on: its path, SHA-256 and training step (from the
    PATH.json sidecar that refcodec.train writes with exported weights; None without one)."""
    import hashlib
    import json
    from pathlib import Path
    path = Path(path)
    sidecar = path.with_suffix(".json")
    return {"checkpoint": str(path), "checkpoint_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "training_step": json.loads(sidecar.read_text()).get("step") if sidecar.is_file() else None}
