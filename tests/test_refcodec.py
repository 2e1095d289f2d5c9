"""The PyTorch implementation: training smoke test, integeriser guarantees, encoder/decoder agreement."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refdec import constants as K  # noqa: E402
from refdec.model_file import parse_model, serialize_model  # noqa: E402

from refcodec import integerise as integ  # noqa: E402
from refcodec.model import FloatCodec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAIN_DIR = ROOT.parent / "shared" / "data" / "train"


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.skipif(not TRAIN_DIR.is_dir(), reason="training data not present")
def test_training_smoke_and_resume(tmp_path, capsys):
    from refcodec import train

    run = tmp_path / "run"
    common = ["--data", str(TRAIN_DIR), "--run-dir", str(run), "--batch", "2", "--crop", "64",
              "--max-images", "3", "--crops-per-image", "1", "--log-every", "1", "--checkpoint-every", "1"]
    assert train.main(common + ["--steps", "2"]) == 0
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["step"] == 2
    before = {k: v.clone() for k, v in state["model"].items()}
    assert train.main(common + ["--steps", "3", "--resume", "--export", str(tmp_path / "w.pt")]) == 0
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["step"] == 3
    assert any(not torch.equal(before[k], state["model"][k]) for k in before)  # it learned something
    exported = torch.load(tmp_path / "w.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in exported.values())
    # Mixed precision continues the same run; a learning-rate drop and a new crop pool on the way.
    capsys.readouterr()
    assert train.main(common + ["--steps", "6", "--resume", "--bf16", "--lr-drop", "5:1e-5", "--pool-refresh", "5"]) == 0
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["step"] == 6 and state["optimizer"]["param_groups"][0]["lr"] == 1e-5
    log = capsys.readouterr().out
    assert log.count("crop pool:") == 2 and "lr 1.0e-05" in log


def test_learning_rate_schedule():
    from refcodec import train

    drops = [train.lr_drop("40000:1e-4"), train.lr_drop("46000:3e-5")]
    assert drops == [(40000, 1e-4), (46000, 3e-5)]
    assert [train.learning_rate(s, 3e-4, drops) for s in (0, 39999, 40000, 45999, 46000, 90000)] == [
        3e-4, 3e-4, 1e-4, 1e-4, 3e-5, 3e-5]
    with pytest.raises(Exception, match="expected STEP:LR"):
        train.lr_drop("1e-4")


def test_bf16_transforms_keep_y_and_pixels_in_float32():
    """Mixed precision covers the inner layers only: y (rounded to integers) and the pixels come
    from float32 last layers, close to the all-float32 values, and gradients reach every layer."""
    torch.manual_seed(0)
    model = FloatCodec()
    x = torch.rand(1, 3, 64, 64)
    rate = torch.tensor([2])
    y32 = model.analysis(x)
    model.bf16_transforms = True
    y16 = model._transform(model.analysis, x)
    assert y16.dtype == torch.float32 and y16.shape == y32.shape
    assert torch.allclose(y16, y32, rtol=0.05, atol=0.05 * float(y32.detach().abs().max()))
    x_hat, y_lik, z_lik = model(x, rate, 0.5)
    assert x_hat.dtype == y_lik.dtype == z_lik.dtype == torch.float32
    (x_hat.mean() - torch.log2(y_lik).sum() / 1e4).backward()
    assert model.analysis[0].weight.grad.abs().sum() > 0 and model.synthesis[3].conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("wbits", [16, 8])
def test_quantise_layer_respects_weight_range_and_accumulator_bound(wbits):
    rng = np.random.default_rng(wbits)
    for trial in range(20):
        cout, cin, k = 8, int(rng.integers(1, 300)), int(rng.choice([1, 3]))
        w = rng.normal(0, 10 ** rng.uniform(-3, 1), size=(cout, cin, k, k))
        b = rng.normal(0, 10 ** rng.uniform(-2, 2), size=cout)
        f_in, f_out = int(rng.integers(0, 12)), int(rng.integers(0, 10))
        in_max = int(rng.integers(1, 32768))
        wmax = 2 ** (wbits - 1) - 1
        try:
            wq, bq, shift = integ.quantise_layer(w, b, f_in, f_out, in_max, wbits)
        except ValueError:
            # Infeasible only if some channel's largest representable exponent gives a negative shift.
            peak = np.abs(w.reshape(cout, -1)).max(axis=1)
            assert np.any(np.floor(np.log2(wmax / peak)) + f_in - f_out < 0)
            continue
        assert np.abs(wq).max() <= wmax
        worst = np.abs(wq).reshape(cout, -1).sum(axis=1) * in_max + np.abs(bq)
        assert worst.max() < 2**31
        assert shift.min() >= 0 and shift.max() <= K.MAX_SHIFT
        # The exponent is the largest allowed: one more bit would break a constraint or the shift limit.
        f_w = shift - f_in + f_out
        for o in range(cout):
            q2 = np.round(w[o] * 2.0 ** (f_w[o] + 1))
            b2 = round(float(b[o]) * 2.0 ** (f_w[o] + 1 + f_in))
            assert (np.abs(q2).max() > wmax or np.abs(q2).sum() * in_max + abs(b2) >= 2**31
                    or shift[o] + 1 > K.MAX_SHIFT)


@pytest.mark.parametrize("profile", ["W16A16", "W8A16"])
def test_integerised_random_float_model_is_a_valid_model_file(profile):
    torch.manual_seed(0)
    model = FloatCodec().eval()
    maxima = {name: 10.0 for name in list(integ.float_layers(model)) + ["synthesis_input"]}
    it = integ.Integeriser(model, maxima, profile)
    header, arrays = it.build()
    header["description"] = "test"
    parsed = parse_model(serialize_model(header, arrays))  # clause 9.4 and 9.5 validation
    assert parsed.header["profile"] == profile
    assert parsed.layers["gather.6"].weight.shape[0] == 3 * K.NUM_MIXTURES * K.LATENT_CHANNELS


def test_bias_correction_removes_the_mean_error_of_rounded_weights():
    """With the input mean, the bias absorbs sum_i (W_q 2^-f - W) mean_i: the integer layer's mean
    output error on inputs of that mean drops to the bias's own rounding."""
    rng = np.random.default_rng(3)
    cout, cin, f_in, f_out = 16, 64, 6, 4
    w = rng.normal(0, 0.05, size=(cout, cin, 3, 3))
    b = rng.normal(0, 0.1, size=cout)
    mean = rng.uniform(0.5, 2.0, size=cin)
    x = mean[:, None] + rng.normal(0, 0.3, size=(cin, 4096))  # inputs, one column per position
    exact = np.einsum("oikl,in->on", w, x) + b[:, None]          # every tap sees the same column
    errors = {}
    for corrected in (False, True):
        wq, bq, shift = integ.quantise_layer(w, b, f_in, f_out, 32767, 8, mean if corrected else None)
        f_w = shift - f_in + f_out
        approx = np.einsum("oikl,in->on", wq * 2.0 ** -f_w[:, None, None, None], x) + (bq * 2.0 ** -(f_w + f_in))[:, None]
        errors[corrected] = np.abs((approx - exact).mean(axis=1))
    assert errors[True].max() < 0.1 * errors[False].max()
    assert np.all(errors[True] <= 2.0 ** -(f_w + f_in) + 0.02)
