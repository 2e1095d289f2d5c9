"""The PyTorch implementation: training smoke test, integeriser guarantees, encoder/decoder agreement."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refdec.constants import ACCUMULATOR_LIMIT, LATENT_CHANNELS, MAX_SHIFT, NUM_MIXTURES  # noqa: E402
from refdec.model_file import parse_model  # noqa: E402
from refdec.generators.model_writer import serialize_model

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


@pytest.mark.skipif(not TRAIN_DIR.is_dir(), reason="training data not present")
def test_training_time_limit_saves_and_exports(tmp_path, capsys):
    """--time-limit ends the run after the step that spends the budget, as --steps would: state
    saved, weights exported with their step. A budget spent on the crop pool alone still trains one step."""
    from refcodec import train

    run = tmp_path / "run"
    assert train.main(["--data", str(TRAIN_DIR), "--run-dir", str(run), "--batch", "2", "--crop", "64",
                       "--max-images", "2", "--crops-per-image", "1", "--steps", "1000", "--time-limit", "1e-6",
                       "--checkpoint-every", "500", "--export", str(tmp_path / "w.pt")]) == 0
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 1
    assert (tmp_path / "w.json").read_text().strip() == '{"step": 1}'
    assert "time limit of 1e-06 s reached at step 1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        train.main(["--run-dir", str(run), "--time-limit", "-5"])
    assert "--time-limit must be at least 0 seconds, got -5" in capsys.readouterr().err


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
        assert shift.min() >= 0 and shift.max() <= MAX_SHIFT
        # The exponent is the largest allowed: one more bit would break a constraint or the shift limit.
        f_w = shift - f_in + f_out
        for o in range(cout):
            q2 = np.round(w[o] * 2.0 ** (f_w[o] + 1))
            b2 = round(float(b[o]) * 2.0 ** (f_w[o] + 1 + f_in))
            assert (np.abs(q2).max() > wmax or np.abs(q2).sum() * in_max + abs(b2) >= 2**31
                    or shift[o] + 1 > MAX_SHIFT)


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
    assert parsed.layers["gather.6"].weight.shape[0] == 3 * NUM_MIXTURES * LATENT_CHANNELS


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


def test_compensated_rounding_beats_rounding_on_correlated_inputs():
    """Error-compensating rounding (OPTQ) on inputs with correlated channels and a non-zero mean: the
    output error on those inputs is well below that of rounding each weight, the weights stay in the
    profile's range, the clause 9.5 bound holds, and masked (all-zero) taps stay zero."""
    rng = np.random.default_rng(7)
    cout, cin, k, f_in, f_out = 24, 16, 3, 6, 5
    w = rng.normal(0, 0.08, size=(cout, cin, k, k))
    w[:, :, 2, :] = 0                                   # a masked kernel row
    b = rng.normal(0, 0.1, size=cout)
    mix = rng.normal(size=(cin * k * k, cin * k * k)) * 0.3 + np.eye(cin * k * k)
    u = (mix @ rng.normal(size=(cin * k * k, 20000))) * 0.5 + 0.8   # patches, one column per position
    ua = np.vstack([u, np.ones((1, u.shape[1]))])
    hessian = ua @ ua.T / u.shape[1]
    exact = w.reshape(cout, -1) @ u + b[:, None]
    in_max = 4095
    errors = {}
    for name, h in (("rounded", None), ("compensated", hessian)):
        wq, bq, shift = integ.quantise_layer(w, b, f_in, f_out, in_max, 8, None, h)
        f_w = shift - f_in + f_out
        assert np.abs(wq).max() <= 127
        assert np.all(np.abs(wq).reshape(cout, -1).sum(axis=1) * in_max + np.abs(bq) < ACCUMULATOR_LIMIT)
        approx = (wq.reshape(cout, -1) * 2.0 ** -f_w[:, None]) @ u + (bq * 2.0 ** -(f_w + f_in))[:, None]
        errors[name] = float(np.mean((approx - exact) ** 2))
        assert np.all(wq[:, :, 2, :] == 0)
    assert errors["compensated"] < 0.5 * errors["rounded"]


def test_compensated_rounding_in_blocks_is_rounding_one_column_at_a_time():
    """The lazy batch update only reorders the sums: the same integers as column by column."""
    rng = np.random.default_rng(9)
    w = rng.normal(0, 0.05, size=(12, 150))
    w[:, 7] = 0                                          # an all-zero column stays zero
    b = rng.normal(0, 0.1, size=12)
    u = np.vstack([rng.normal(size=(150, 3000)) + 0.3, np.ones((1, 3000))])
    hessian = u @ u.T / 3000
    f_w = np.full(12, 11)
    wq1, b1 = integ.compensated_rounding(w, b, f_w, 127, hessian, block=1)
    wq64, b64 = integ.compensated_rounding(w, b, f_w, 127, hessian, block=64)
    assert np.array_equal(wq1, wq64) and np.allclose(b1, b64, rtol=0, atol=1e-9)
    assert np.all(wq64[:, 7] == 0) and np.abs(wq64).max() <= 127


def test_compensated_rounding_lowers_exponents_until_the_accumulator_bound_holds():
    rng = np.random.default_rng(8)
    w = rng.normal(0, 0.05, size=(8, 64, 1, 1))
    b = np.zeros(8)
    u = np.vstack([rng.normal(size=(64, 5000)), np.ones((1, 5000))])
    hessian = u @ u.T / 5000
    in_max = (1 << 31) // 1000                        # large inputs: full-range weights would overflow
    wq, bq, shift = integ.quantise_layer(w, b, 0, -10, in_max, 8, None, hessian)
    assert np.all(np.abs(wq).reshape(8, -1).sum(axis=1) * in_max + np.abs(bq) < ACCUMULATOR_LIMIT)
    assert np.abs(wq).max() <= 64                      # the bound, not the range, set the exponents


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["W16A16", "W8A16"])
def test_search_runs_with_the_profiles_rounding_and_the_file_is_rounded_with_compensation(profile, tmp_path,
                                                                                      monkeypatch):
    """W16A16 searches its bit widths with plain rounding, W8A16 with compensation; either way the
    file is rounded with compensation at the searched widths: the same bytes as the integerisation
    with those widths fixed (what --bits-from reproduces)."""
    from PIL import Image

    torch.manual_seed(1)
    checkpoint = tmp_path / "random.pt"
    torch.save({"model": FloatCodec().state_dict()}, checkpoint)
    calib = tmp_path / "calib.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(calib)
    searched = {}

    def fake_search(integeriser, samples, log):  # the real one runs the integer model 8 times per layer
        searched["compensated"] = bool(integeriser.hessians)
        integeriser.bits.update({name: 6 for name in integeriser.bits})  # feasible for an untrained model

    monkeypatch.setattr(integ, "search", fake_search)
    data = integ.integerise(checkpoint, profile, [calib], 64, [0], log=lambda *_: None)
    assert searched["compensated"] == (profile == "W8A16")
    prov = parse_model(data).header["provenance"]
    assert prov["compensated_rounding"] and prov["search_rounding"] == ("plain" if profile == "W16A16" else "compensated")
    assert f"--search-rounding {prov['search_rounding']}" in prov["command"]
    fixed = integ.integerise(checkpoint, profile, [calib], 64, [0], log=lambda *_: None, fixed_bits=prov["bits"])
    assert fixed == data
    plain = integ.integerise(checkpoint, profile, [calib], 64, [0], log=lambda *_: None, fixed_bits=prov["bits"],
                             compensation=False)
    assert parse_model(plain).header["provenance"]["search_rounding"] == "plain"
    assert plain != data  # the compensation changed the rounded weights
    with pytest.raises(ValueError, match="needs the final rounding compensated"):
        integ.integerise(checkpoint, profile, [calib], 64, [0], compensation=False, search_rounding="compensated")


def test_integerise_rejects_no_calibration_images(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        integ.main(["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.npz"),
                    "--calibration-images", "0"])
    assert exc.value.code == 2 and "at least one image" in capsys.readouterr().err


def test_relambda_moves_gain_units_by_interpolation_in_log_lambda(tmp_path):
    """tools/relambda.py: the gain vectors of new lambdas lie on the lines through the old ones in
    log lambda (extrapolated below the old range); other tensors are unchanged; a copy is kept."""
    import importlib.util
    import subprocess
    import sys

    spec = importlib.util.spec_from_file_location("relambda", ROOT / "tools" / "relambda.py")
    relambda = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(relambda)
    old = np.log([1.0, 2.0, 4.0])
    table = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 4.0]])
    moved = relambda.interpolate(table, old, np.log([0.5, 2.0 ** 0.5, 4.0]))
    assert torch.allclose(moved, torch.tensor([[-1.0, -1.0], [0.5, 2.0], [2.0, 4.0]]))

    model = FloatCodec()
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(1, 3, 64, 64), torch.tensor([0]), 0.5)[0].sum().backward()
    opt.step()
    path = tmp_path / "last.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 7}, path)
    lambdas = "0.0018,0.0035,0.0067,0.0130,0.0250,0.0483"
    subprocess.run([sys.executable, str(ROOT / "tools" / "relambda.py"), str(path), "--old", lambdas,
                    "--new", lambdas], check=True, capture_output=True)
    before = torch.load(tmp_path / "last.pt.before-relambda", weights_only=False)
    after = torch.load(path, weights_only=False)
    for key, value in before["model"].items():
        assert torch.allclose(after["model"][key], value, atol=1e-6), key



@pytest.mark.slow
def test_relambda_on_exported_weights_and_bad_files(tmp_path):
    """tools/relambda.py also moves exported float16 weights (no optimiser state); a file that is not
    a checkpoint, or lambdas of another count than the rate points, are errors without a traceback."""
    import subprocess
    import sys

    from refcodec.train import export_weights

    tool = [sys.executable, str(ROOT / "tools" / "relambda.py")]
    path = tmp_path / "w.pt"
    export_weights(FloatCodec(), path)
    before = torch.load(path, weights_only=True)
    lambdas = "0.0018,0.0035,0.0067,0.0130,0.0250,0.0483"
    higher = "0.0036,0.0070,0.0134,0.0260,0.0500,0.0966"
    subprocess.run(tool + [str(path), "--old", lambdas, "--new", higher], check=True, capture_output=True)
    after = torch.load(path, weights_only=True)
    assert after["log2_gain"].dtype == torch.float16
    assert not torch.equal(after["log2_gain"], before["log2_gain"])
    assert all(torch.equal(after[k], before[k]) for k in before if k not in ("log2_gain", "log2_inv_gain"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"model": FloatCodec().state_dict(), "optimizer": {"state": {}, "param_groups": [{"params": [0, 1]}]}},
               tmp_path / "partial.pt")  # an optimiser over two parameters: its indices are not the model's
    for args, message in (([str(tmp_path / "junk.pt"), "--old", lambdas, "--new", lambdas], "cannot read"),
                          ([str(tmp_path / "partial.pt"), "--old", lambdas, "--new", lambdas],
                           "does not hold the model's 67 parameters in order"),
                          ([str(path), "--old", "0.1,0.2", "--new", "0.1,0.3"], "has 6 rate points, --old and --new give 2")):
        run = subprocess.run(tool + args, capture_output=True, text=True)
        assert run.returncode == 1 and message in run.stderr and "Traceback" not in run.stderr
