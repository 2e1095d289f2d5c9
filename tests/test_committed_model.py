"""The committed test model: valid, reproducible from its committed command, and it codes Kodak."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refdec.decoder import decode  # noqa: E402

from refdec.model_file import ModelStore
from refdec.model_file import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLOAT = ROOT / "models" / "float.pt"
MODELS = {p: ROOT / "refdec" / "models" / f"refdec-test-{p.lower()}.npz" for p in ("W16A16", "W8A16")}
DATA = ROOT.parent / "shared" / "data"
KODIM = DATA / "kodak" / "kodim23.png"

pytestmark = pytest.mark.skipif(not FLOAT.exists() or not all(p.exists() for p in MODELS.values()),
                                reason="no committed model yet")


@pytest.mark.parametrize("profile", sorted(MODELS))
def test_committed_model_is_valid_and_documented(profile):
    model = load_model(MODELS[profile])
    assert model.header["profile"] == profile
    prov = model.header["provenance"]
    assert prov["command"].startswith("python -m refcodec.integerise")
    assert all("kodim" not in name for name in prov["calibration"])  # calibration never uses Kodak
    assert model.model_id in {m.model_id for m in map(load_model, MODELS.values())}


@pytest.mark.skipif(not (DATA / "train").is_dir(), reason="training images not present")
@pytest.mark.parametrize("profile", sorted(MODELS))
@pytest.mark.slow
def test_committed_model_is_what_the_committed_command_produces(profile, tmp_path):
    """Re-run the recorded command with the recorded bit widths (the search's result) and compare bytes."""
    committed = MODELS[profile]
    prov = load_model(committed).header["provenance"]
    args = prov["command"].split()[3:] + ["--bits-from", str(committed), "--out", str(tmp_path / "m.npz")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "refcodec.integerise", *args], cwd=ROOT, check=True,
                   capture_output=True, env=env)
    assert (tmp_path / "m.npz").read_bytes() == committed.read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(not KODIM.exists(), reason="Kodak not present")
def test_kodak_image_encodes_and_decodes_identically_everywhere():
    from refcodec.codec import decode_torch, encode_image, encoder_reconstruction, load_rgb, psnr
    from refcodec.model import load_float_model

    float_model = load_float_model(FLOAT).eval()
    model = load_model(MODELS["W16A16"])
    img = load_rgb(KODIM)
    enc = encode_image(float_model, model, img, rate=5)
    refdec_image = decode(enc.stream, ModelStore.default()).image  # found by model id in refdec/models
    assert np.array_equal(decode_torch(enc.stream, model), refdec_image)
    assert np.array_equal(encoder_reconstruction(model, enc), refdec_image)
    assert 0.05 < enc.bits_per_pixel < 4.0
    assert psnr(refdec_image.transpose(1, 2, 0), img) > 20.0


@pytest.mark.skipif(not KODIM.exists(), reason="Kodak not present")
def test_ideal_code_length_is_the_stream_less_its_container():
    """The evaluation's like-for-like rate: the stream is its ideal code length plus the header and
    the range coders' termination (a few bytes per payload), nothing else; escapes included."""
    from refdec.bitstream import HEADER_SIZE

    from refcodec import codec
    from refcodec.model import load_float_model

    float_model = load_float_model(FLOAT).eval()
    model = load_model(MODELS["W16A16"])
    img = codec.load_rgb(KODIM)[:128, :192]
    enc = codec.encode_image(float_model, model, img, rate=5)
    assert enc.ideal_bits == pytest.approx(codec.ideal_code_bits(model, enc.z_hat, enc.y_hat), abs=1e-6)
    container_bits = 8 * len(enc.stream) - enc.ideal_bits
    assert 8 * HEADER_SIZE <= container_bits <= 8 * (HEADER_SIZE + 2 * 5)

    # Values far outside every coding window: escapes, whose bypass bits the ideal length counts.
    y = enc.y_hat.copy()
    y[:, ::2, ::3] = 3000
    payload, bits = codec._code_y(model, y, enc.z_hat)
    escaped = y.size // 6
    assert bits > escaped * 2 * 11  # 3000 needs an Exp-Golomb prefix of about 11 bits
    assert 0 <= 8 * len(payload) - bits <= 8 * 5
