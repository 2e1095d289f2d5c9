"""The Kodak evaluation (refcodec.evaluate): a whole run on two small images, and the rule that
means and BD-rates are taken only over the images evaluated at every setting."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from refcodec import evaluate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "models" / "float.pt"
W16 = ROOT / "refdec" / "models" / "refdec-test-w16a16.npz"


def _images(folder: Path, count: int, size=(72, 40)):
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(count):
        base = np.linspace(0, 255, size[0])[None, :, None] * np.ones((size[1], 1, 3))
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"kodim{i + 1:02d}.png")


def test_complete_images_drops_partly_evaluated_ones(tmp_path):
    files = [tmp_path / f"kodim0{i}.png" for i in (1, 2)]
    labels = {"float": "float@x"}
    cache = {}
    for f in files:
        for r in (0, 1):
            cache[f"float@x|{f.name}|{r}"] = {}
        for name, (_, _, qualities) in evaluate.ANCHORS.items():
            for q in qualities:
                cache[f"{name}|{f.name}|{q}"] = {}
    assert evaluate.complete_images(cache, files, [0, 1], [], labels) == files
    del cache["float@x|kodim02.png|1"]
    assert evaluate.complete_images(cache, files, [0, 1], [], labels) == files[:1]
    del cache["WebP|kodim01.png|50"]
    assert evaluate.complete_images(cache, files, [0, 1], [], labels) == []


def test_evaluation_run_reports_agreement_and_resumes(tmp_path):
    kodak, out = tmp_path / "kodak", tmp_path / "results"
    _images(kodak, 2)
    args = ["--checkpoint", str(CHECKPOINT), "--model", str(W16), "--kodak", str(kodak), "--rates", "0,5",
            "--torch-check", "all", "--out", str(out)]
    assert evaluate.main(args) == 0
    summary = json.loads((out / "kodak.json").read_text())
    assert summary["images"] == ["kodim01.png", "kodim02.png"] and summary["images_requested"] == 2
    agreement = summary["decoder_agreement"]["W16A16"]
    assert agreement == {"streams": 4, "encoder_equal": 4, "torch_checked": 4, "torch_equal": 4}
    float_curve = summary["curves"]["float"]
    assert [c["setting"] for c in float_curve] == [0, 5] and all(c["n"] == 2 for c in float_curve)
    assert float_curve[0]["bpp"] < float_curve[1]["bpp"]
    assert (out / "rd_kodak.png").stat().st_size > 1000
    assert "2 images, checkpoint" in (out / "README.md").read_text()

    # A third image whose evaluation has not run: the report leaves it out and says so.
    Image.open(kodak / "kodim01.png").save(kodak / "kodim03.png")
    assert evaluate.main(args + ["--report-only"]) == 0
    text = (out / "README.md").read_text()
    assert "2 images (of 3 requested" in text
    assert json.loads((out / "kodak.json").read_text())["images"] == ["kodim01.png", "kodim02.png"]
