"""Encoder-side latent refinement (refcodec.refine): never worse, deterministic, conformant streams."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refcodec import refine  # noqa: E402
from refcodec.codec import analyse, decode_torch, encode_image, encoder_reconstruction  # noqa: E402
from refcodec.experiment import float_point  # noqa: E402
from refcodec.model import NUM_RATES, load_float_model  # noqa: E402
from refdec.decoder import decode  # noqa: E402
from refdec.model_file import ModelStore
from refdec.model_file import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "models" / "float.pt"
W16A16 = ROOT / "refdec" / "models" / "refdec-test-w16a16.npz"


@pytest.fixture(scope="module")
def model():
    return load_float_model(CHECKPOINT).eval()


def _image(h=64, w=128, seed=5):
    rng = np.random.default_rng(seed)
    base = np.linspace(40, 210, w)[None, :, None] * np.ones((h, 1, 3))
    base[h // 3: h // 2, w // 4: w // 2] = (200, 60, 30)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def test_soft_rounding_stays_between_neighbours_and_hardens():
    v = torch.tensor([-2.7, -0.2, 0.0, 0.3, 1.49, 3.9])
    for temperature in (0.5, 0.1):
        s = refine.soft_round_sga(v, temperature)
        assert torch.all(s >= torch.floor(v)) and torch.all(s <= torch.floor(v) + 1)
    # Near zero temperature the nearer integer wins (here every value is at least 0.01 from a half).
    assert torch.equal(refine.soft_round_sga(v, 1e-3), torch.round(v))


def test_zero_steps_is_the_plain_encoder(model):
    img = _image()
    z_hat, y_hat, history = refine.refine_latents(model, img, 2, steps=0)
    z0, y0 = analyse(model, img, 2)
    assert np.array_equal(z_hat, z0) and np.array_equal(y_hat, y0)
    bpp, quality = float_point(model, img, 2)
    step, cost, bits, mse = history[0]
    assert step == 0 and bits / img[..., 0].size == pytest.approx(bpp, rel=1e-6)
    assert 10 * np.log10(255**2 / mse) == pytest.approx(quality, abs=1e-4)


@pytest.mark.slow
def test_refinement_lowers_the_cost_deterministically_and_leaves_the_model_alone(model):
    img = _image()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    rng_state = torch.get_rng_state()
    z_hat, y_hat, history = refine.refine_latents(model, img, 4, steps=20, check_every=5)
    assert [h[0] for h in history] == [0, 5, 10, 15, 20]
    best = min(history, key=lambda h: h[1])
    assert best[1] < history[0][1]  # this image gains; never above the start in any case
    # The returned latents are the best checked iterate: their discrete cost is the best one.
    bpp, _ = float_point_of(model, img, 4, z_hat, y_hat)
    assert bpp * img[..., 0].size == pytest.approx(best[2], rel=1e-6)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    again = refine.refine_latents(model, img, 4, steps=20, check_every=5)
    assert np.array_equal(again[0], z_hat) and np.array_equal(again[1], y_hat)
    with pytest.raises(ValueError):
        refine.refine_latents(model, img, 4, steps=-1)


def float_point_of(model, img, rate, z_hat, y_hat):
    from refcodec.experiment import float_latent_cost
    h, w, _ = img.shape
    y_bits, z_bits, rec = float_latent_cost(model, z_hat, y_hat, rate, (h, w))
    return float(y_bits + z_bits) / (h * w), rec


@pytest.mark.slow
def test_refined_stream_decodes_identically_everywhere(model):
    int_model = load_model(W16A16)
    img = _image(70, 100)  # padded: the refinement's distortion counts only the image's pixels
    enc = encode_image(model, int_model, img, NUM_RATES - 1,
                       latents=refine.refine_latents(model, img, NUM_RATES - 1, 10)[:2])
    plain = encode_image(model, int_model, img, NUM_RATES - 1)
    assert not np.array_equal(enc.y_hat, plain.y_hat)
    image = decode(enc.stream, ModelStore.default()).image
    assert np.array_equal(image, encoder_reconstruction(int_model, enc))
    assert np.array_equal(image, decode_torch(enc.stream, int_model))


def test_encode_cli_refines(tmp_path, capsys):
    from PIL import Image

    from refcodec.cli import main
    src = tmp_path / "in.png"
    Image.fromarray(_image()).save(src)
    assert main(["encode", str(src), "-o", str(tmp_path / "r.rdc"), "--rate", "1", "--refine", "5"]) == 0
    assert "refined by 5 steps" in capsys.readouterr().err
    assert decode((tmp_path / "r.rdc").read_bytes(), ModelStore.default()).image.shape == (3, 64, 128)
    with pytest.raises(SystemExit) as exc:
        main(["encode", str(src), "-o", str(tmp_path / "r.rdc"), "--refine", "-3"])
    assert exc.value.code == 2
    capsys.readouterr()
    assert main(["encode", str(src), "-o", str(tmp_path / "r.rdc"), "--rate", str(NUM_RATES)]) == 2
    assert f"has rate points 0 to {NUM_RATES - 1}" in capsys.readouterr().err


@pytest.mark.slow
def test_measurement_command(tmp_path, image_folder, capsys):
    kodak = image_folder({"kodim01.png": _image(64, 64)})
    out = tmp_path / "refine.json"
    assert refine.main(["--checkpoint", str(CHECKPOINT), "--kodak", str(kodak), "--crop", "0",
                        "--steps", "4", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["points"] == NUM_RATES and doc["refdec_identical"] == NUM_RATES
    assert set(doc["bd_rate_percent"]) == set(refine.BD_RATES)
    rows = doc["per_image"]["kodim01.png"]
    for r in range(NUM_RATES):
        row = rows[str(r)]
        # The best checked cost is never above the plain one.
        lam = refine.LAMBDAS[r]
        mse = lambda p: 255.0**2 / 10 ** (p["psnr"] / 10)  # noqa: E731
        assert (row["float refined"]["bpp"] + lam * mse(row["float refined"])
                <= row["float plain"]["bpp"] + lam * mse(row["float plain"]) + 1e-9)
    assert "| refined vs plain (float model) |" in "\n".join(refine.report_lines(doc))
    for bad in (["--steps", "0"], ["--crop", "10"]):
        with pytest.raises(SystemExit) as exc:
            refine.main(["--checkpoint", str(CHECKPOINT), "--out", str(out)] + bad)
        assert exc.value.code == 2
    assert refine.main(["--checkpoint", str(CHECKPOINT), "--kodak", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "no PNG images" in capsys.readouterr().err


def test_committed_measurement_is_of_the_committed_models():
    # tools/regenerate.sh remakes it after retraining.
    name = "refine.json"
    doc = json.loads((ROOT / "results" / name).read_text())
    assert set(doc["bd_rate_percent"]) == set(refine.BD_RATES)
    assert doc["setup"]["checkpoint_sha256"] == hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest()
    assert doc["setup"]["model_id"] == load_model(W16A16).model_id.hex()
    assert doc["refdec_identical"] == doc["points"]
    assert "\n".join(refine.report_lines(doc, name)) in (ROOT / "results" / "README.md").read_text()


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "kodak").is_dir(), reason="Kodak images not present")
def test_refine_benchmark_quick(tmp_path, capsys):
    """bench/bench_refine.py --quick: a table row per step count, and every refined point's RD cost
    (bpp + lambda * MSE) at most the plain encoder's at the same rate point."""
    import sys
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_refine
    from refcodec.train import LAMBDAS

    out = tmp_path / "bench.json"
    assert bench_refine.main(["--quick", "--threads", "1", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "steps" not in line] == ["0", "2", "4"]
    doc = json.loads(out.read_text())

    def cost(p, rate):
        return p["bpp"] + LAMBDAS[rate] * 255.0**2 / 10 ** (p["psnr"] / 10)

    plain = doc["runs"]["0"]["curve"]
    for steps in ("2", "4"):
        assert doc["runs"][steps]["seconds"] > 0
        for p0, p in zip(plain, doc["runs"][steps]["curve"]):
            assert cost(p, p["setting"]) <= cost(p0, p0["setting"]) + 1e-12
    assert len(doc["anchor_curve"]) > 1 and doc["images"] == ["kodim01.png"]
