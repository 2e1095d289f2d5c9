"""The quality-ceiling experiment (refcodec.ceiling) on a small crop of a Kodak-like image."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refcodec import ceiling  # noqa: E402
from refcodec.experiment import centre_crop, float_point  # noqa: E402
from refcodec.model import NUM_RATES, load_float_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "models" / "float.pt"


def _image(h=128, w=192):
    rng = np.random.default_rng(3)
    base = np.linspace(30, 220, w)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def test_centre_crop():
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    assert np.array_equal(centre_crop(img, 4), img[1:5, 2:6])
    assert centre_crop(img, 0) is img and centre_crop(img, 6) is img


@pytest.mark.slow
def test_ceiling_agrees_with_the_evaluation_and_bounds_it():
    model = load_float_model(CHECKPOINT).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    img = _image()
    res = ceiling.image_ceiling(model, img, [0, NUM_RATES - 1], steps=5)
    for r in (0, NUM_RATES - 1):
        # "rounded" is the evaluation's float operating point, bit for bit.
        assert (res["rates"][r]["bpp"], res["rates"][r]["rounded"]) == float_point(model, img, r)
    # The optimisation starts at the top rate's continuous latents and keeps the best iterate.
    assert res["optimised"] >= res["rates"][NUM_RATES - 1]["continuous"]
    with pytest.raises(ValueError, match="multiple of 64"):
        ceiling.image_ceiling(model, img[:100], [0], steps=0)


@pytest.mark.slow
def test_ceiling_command_writes_json_and_the_results_section(tmp_path, image_folder):
    kodak = image_folder({"kodim01.png": _image(64, 128)})
    out = tmp_path / "ceiling.json"
    assert ceiling.main(["--checkpoint", str(CHECKPOINT), "--kodak", str(kodak), "--crop", "64",
                         "--steps", "2", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["images"] == ["kodim01.png"] and doc["setup"]["crop"] == 64
    assert [row["rate"] for row in doc["summary"]["rates"]] == list(range(NUM_RATES))
    top = doc["per_image"]["kodim01.png"]["rates"][str(NUM_RATES - 1)]
    assert doc["summary"]["rates"][-1]["continuous"] == pytest.approx(top["continuous"])
    text = "\n".join(ceiling.report_lines(doc))
    assert "64x64 centre crops" in text and f"| {NUM_RATES - 1} | {top['bpp']:.4f} |" in text


def test_ceiling_command_rejects_bad_arguments(tmp_path, capsys):
    for bad in (["--crop", "100"], ["--images", "0"]):
        with pytest.raises(SystemExit) as exc:
            ceiling.main(["--checkpoint", str(CHECKPOINT), "--out", str(tmp_path / "c.json")] + bad)
        assert exc.value.code == 2
    assert ceiling.main(["--checkpoint", str(CHECKPOINT), "--kodak", str(tmp_path), "--out",
                         str(tmp_path / "c.json")]) == 2
    assert "no PNG images" in capsys.readouterr().err


def test_committed_experiments_are_of_the_committed_checkpoint():
    # tools/regenerate.sh remakes them after retraining; a stale JSON would describe another model.
    import hashlib
    sha = hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest()
    for name in ("crossdevice.json", "ceiling.json"):
        assert json.loads((ROOT / "results" / name).read_text())["setup"]["checkpoint_sha256"] == sha, name
    page = (ROOT / "results" / "README.md").read_text()
    doc = json.loads((ROOT / "results" / "ceiling.json").read_text())
    assert "\n".join(ceiling.report_lines(doc)) in page
