"""The image encoder and the torch decoder (spec annex A.1; informative).

encode: PNG -> edge-replication padding to a multiple of 64 -> float analysis ->
gain of the rate point -> y_hat, z_hat (rounded) -> integer entropy model computed
in torch (refcodec.int_decoder, independent of refdec's decoding code) -> range
coding (refdec's informative range encoder and header writer, which the issue
allows us to reuse) -> bitstream of spec clause 6.

The encoder codes the analysis output, or any latents its caller chose instead
(encode_image's latents, encode_latents): refcodec.refine refines them and hands
them here, so that this module needs nothing from the refinement or the experiments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from refdec.constants import PROB_BITS, VERSION, Z_MAX
from refdec import constants
from refdec.bitstream import Header
from refdec.generators.encoder import write_header
from refdec.generators.encoder import EncodeError, encode_escape_payload, encode_z, z_symbols
from refdec.latent import wavefronts
from refdec.model_file import Model
from refdec.generators.range_encoder import RangeEncoder

from . import int_decoder
from .model import FloatCodec


def load_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def pad_to_64(img: np.ndarray) -> np.ndarray:
    """Edge replication to the padded size of spec clause 5.4."""
    h, w, _ = img.shape
    ph, pw = (-h) % 64, (-w) % 64
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")


def image_tensor(img: np.ndarray) -> torch.Tensor:
    """The padded image (spec clause 5.4) as a (1, 3, H, W) float tensor in [0, 1]."""
    return torch.from_numpy(pad_to_64(img)).permute(2, 0, 1)[None].float() / 255.0


@torch.no_grad()
def analysis_latents(float_model: FloatCodec, x: torch.Tensor, rate: int):
    """(y, z) before rounding: the analysis output times the rate point's gain, and its hyper analysis."""
    y = float_model.analysis(x) * float_model.gain(torch.tensor([rate]))
    return y, float_model.hyper_analysis(y)


@torch.no_grad()
def round_latents(y: torch.Tensor, z: torch.Tensor):
    """(z_hat, y_hat) int64 numpy, channels-first: rounded and clipped to Z_MAX and Y_MAX (annex A.1)."""
    y_hat = torch.clamp(torch.round(y), -constants.Y_MAX, constants.Y_MAX)[0].long().numpy()
    z_hat = torch.clamp(torch.round(z), -Z_MAX, Z_MAX)[0].long().numpy()
    return z_hat, y_hat


def analyse(float_model: FloatCodec, img: np.ndarray, rate: int):
    """(z_hat, y_hat) int64 numpy, channels-first, for an (H, W, 3) uint8 image."""
    return round_latents(*analysis_latents(float_model, image_tensor(img), rate))


def encode_y(model: Model, y_hat: np.ndarray, z_hat: np.ndarray, device="cpu") -> bytes:
    """The y payload, with windows and cumulative frequencies from the torch integer model."""
    return _code_y(model, y_hat, z_hat, device)[0]


def _code_y(model: Model, y_hat: np.ndarray, z_hat: np.ndarray, device="cpu") -> tuple[bytes, float]:
    """The y payload and the ideal code length of its symbols (see ideal_code_bits).

    The symbol intervals are computed for all elements at once; only the range coder itself
    runs element by element, in the coding order of clause 7.5 (wavefronts, position-major,
    channel-minor).
    """
    y = np.asarray(y_hat, dtype=np.int64)
    if np.abs(y).max(initial=0) > constants.Y_MAX:
        raise EncodeError(f"latent value beyond +-{constants.Y_MAX}")
    symbol, start, end, lo, hi = int_decoder.symbol_intervals(model, y, z_hat, device)
    inside = symbol <= hi - lo
    _, hy, wy = y.shape
    order = [(ys, xs) for ys, xs in wavefronts(hy, wy)]

    def in_coding_order(a: np.ndarray) -> list:
        return np.concatenate([a[:, ys, xs].T.ravel() for ys, xs in order]).tolist()

    enc = RangeEncoder()
    for s, e, ok, value, lo_e, hi_e in zip(*(in_coding_order(a) for a in (start, end, inside, y, lo, hi))):
        enc.encode(s, e)
        if not ok:
            encode_escape_payload(enc, lo_e, hi_e, value)
    bits = float(np.sum(PROB_BITS - np.log2((end - start).astype(np.float64))))
    bits += float(escape_payload_bits(lo[~inside], hi[~inside], y[~inside]).sum())
    return enc.finish(), bits


def escape_payload_bits(lo: np.ndarray, hi: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Bypass bits after an escape: side bit, Exp-Golomb prefix and suffix (clause 7.10)."""
    m = np.where(value > hi, value - hi - 1, lo - 1 - value)
    k = np.floor(np.log2(m + 1)).astype(np.int64)
    return 2 * k + 2


def z_ideal_bits(model: Model, z_hat: np.ndarray) -> float:
    """The z part of ideal_code_bits, symbol by symbol in the coding order of encode_z."""
    bits = 0.0
    for cdf, n_w, lo, hi, value, _ in z_symbols(model, np.asarray(z_hat, dtype=np.int64)):
        s = value - lo if lo <= value <= hi else n_w
        upper = cdf[s + 1] if s + 1 <= n_w else 1 << PROB_BITS  # C(n) = 2^16 (clause 7.3)
        bits += PROB_BITS - math.log2(upper - cdf[s])
        if s == n_w:
            bits += int(escape_payload_bits(np.array(lo), np.array(hi), np.array(value)))
    return bits


def ideal_code_bits(model: Model, z_hat: np.ndarray, y_hat: np.ndarray, device="cpu") -> float:
    """Information content of the latents under the integer model's own frequency tables.

    The sum of -log2(f / 2^PROB_BITS) over the coded symbols plus the escape bypass bits: what
    an ideal entropy coder would spend, without the header of clause 6.2 and the range coder's
    termination. Set against the float model's ideal code length, it isolates the cost of
    integerising the entropy model from the cost of the bitstream container.
    """
    return z_ideal_bits(model, z_hat) + _code_y(model, y_hat, z_hat, device)[1]


@dataclass
class Encoded:
    stream: bytes
    z_hat: np.ndarray
    y_hat: np.ndarray
    width: int
    height: int
    rate: int
    ideal_bits: float  # ideal_code_bits() of the latents

    @property
    def bits_per_pixel(self) -> float:
        return 8 * len(self.stream) / (self.width * self.height)

    @property
    def ideal_bits_per_pixel(self) -> float:
        return self.ideal_bits / (self.width * self.height)


def encode_image(float_model: FloatCodec, model: Model, img: np.ndarray, rate: int, device="cpu",
                 latents=None) -> Encoded:
    """The bitstream of an (H, W, 3) uint8 image: of its analysis output (analyse), or of given
    latents = (z_hat, y_hat) of the image, such as refcodec.refine.refine_latents' (the caller
    refines: this module does not import refcodec.refine)."""
    h, w, _ = img.shape
    z_hat, y_hat = analyse(float_model, img, rate) if latents is None else latents
    return encode_latents(model, z_hat, y_hat, w, h, rate, device)


def encode_latents(model: Model, z_hat: np.ndarray, y_hat: np.ndarray, w: int, h: int, rate: int,
                   device="cpu") -> Encoded:
    """The bitstream of given latents (as from analyse) of a w x h image at a rate point."""
    z_payload = encode_z(model, z_hat)
    y_payload, y_bits = _code_y(model, y_hat, z_hat, device)
    header = Header(VERSION, 0, w, h, rate, model.model_id, len(z_payload), len(y_payload))
    return Encoded(write_header(header) + z_payload + y_payload, z_hat, y_hat, w, h, rate,
                   z_ideal_bits(model, z_hat) + y_bits)


def encoder_reconstruction(model: Model, enc: Encoded, device="cpu") -> np.ndarray:
    """The encoder's own reconstruction: the integer synthesis of its latents (torch)."""
    stages = int_decoder.forward_stages(model, enc.z_hat, enc.y_hat, enc.rate, enc.width, enc.height, device)
    return stages["image"].astype(np.uint8)


def decode_torch(stream: bytes, model: Model, device="cpu") -> np.ndarray:
    image, _ = int_decoder.decode(stream, model, device)
    return image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
