"""The Kodak evaluation (refcodec.evaluate): a whole run on two small images, and the rule that
means and BD-rates are taken only over the images evaluated at every setting."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from refdec.bitstream import HEADER_SIZE  # noqa: E402

from refcodec import evaluate  # noqa: E402
from refcodec.bdrate import bd_rate  # noqa: E402

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


@pytest.mark.slow
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
    # The integer profile against the float model twice: by ideal code length (integerisation
    # alone) and by stream size, which adds the container: the header and the coders' flush.
    bds = summary["bd_rate_percent"]
    ideal = bds["W16A16 vs float, ideal code lengths (integerisation)"]
    stream = bds["W16A16 vs float, bitstream bytes (integerisation and container)"]
    assert abs(ideal) < 2 and stream > ideal + 5  # 72x40 images: the container is a large share
    assert HEADER_SIZE <= summary["container_bytes"]["W16A16"] <= HEADER_SIZE + 2 * 5
    assert "2 images, checkpoint" in (out / "README.md").read_text()
    # The checkpoint table's BD-rates for a checkpoint evaluated on the same images are the ones
    # recomputed against the current anchor curves: here the same as the summary's.
    row = next(line for line in (out / "README.md").read_text().splitlines()
               if line.startswith("| ") and f"`{summary['labels']['float'].split('@')[1][:8]}`" in line)
    for key in ("float vs JPEG 4:2:0", "float vs WebP", "float vs AVIF 4:4:4 speed 4"):
        v = summary["bd_rate_percent"][key]
        assert (f"{v:+.1f}%" if v == v else "n/a") in [cell.strip() for cell in row.strip("| ").split(" | ")][5:]

    # An older checkpoint evaluated on the same images: its row is recomputed against today's
    # anchors, not copied from its stored figures (999 here).
    history_path = out / "checkpoints.json"
    history = json.loads(history_path.read_text())
    old_curve = [dict(c, bpp=c["bpp"] * 1.5) for c in float_curve]
    history["float@0123456789abcdef"] = {"step": 1, "images": 2, "curve": old_curve,
                                         "bd": {"float vs JPEG 4:2:0": 999.0}}
    history_path.write_text(json.dumps(history))
    assert evaluate.main(args + ["--report-only"]) == 0
    old_row = next(line for line in (out / "README.md").read_text().splitlines() if "`01234567`" in line)
    assert "+999.0%" not in old_row
    # Only the checkpoint that the page evaluates is marked as the committed one.
    assert "(this page)" in next(line for line in (out / "README.md").read_text().splitlines()
                                 if line.startswith("| ") and row.split(" | ")[1] in line)
    assert "(this page)" not in old_row
    anchor = summary["curves"]["JPEG 4:2:0"]
    expected = bd_rate([c["bpp"] for c in anchor], [c["psnr"] for c in anchor],
                       [c["bpp"] for c in old_curve], [c["psnr"] for c in old_curve])
    assert f"{expected:+.1f}%" in old_row

    # A third image whose evaluation has not run: the report leaves it out and says so.
    Image.open(kodak / "kodim01.png").save(kodak / "kodim03.png")
    assert evaluate.main(args + ["--report-only"]) == 0
    text = (out / "README.md").read_text()
    assert "2 images (of 3 requested" in text
    assert json.loads((out / "kodak.json").read_text())["images"] == ["kodim01.png", "kodim02.png"]


@pytest.mark.slow
def test_refined_evaluation_is_keyed_apart_and_never_costs_more(tmp_path):
    """--refine codes refined latents: its cache entries are keyed by the step count, so they do not
    mix with the plain encoder's, and every point's rate-distortion cost is at most the plain one."""
    from refcodec.train import LAMBDAS

    kodak = tmp_path / "kodak"
    _images(kodak, 1, size=(64, 64))
    common = ["--checkpoint", str(CHECKPOINT), "--model", str(W16), "--kodak", str(kodak), "--rates", "1,4",
              "--torch-check", "none"]
    out = tmp_path / "results"
    assert evaluate.main(common + ["--out", str(out)]) == 0
    assert evaluate.main(common + ["--out", str(out / "refined"), "--refine", "10"]) == 0
    plain = json.loads((out / "kodak.json").read_text())
    refined = json.loads((out / "refined" / "kodak.json").read_text())
    assert refined["labels"]["float"].endswith("+refine@10") and refined["refine_steps"] == 10
    assert refined["labels"]["W16A16"].endswith("+refine@10")
    assert refined["decoder_agreement"]["W16A16"]["encoder_equal"] == 2
    assert "latents refined by 10 steps" in (out / "refined" / "README.md").read_text()
    # The main page summarises the refined evaluation against its own plain curve.
    assert evaluate.main(common + ["--out", str(out), "--report-only"]) == 0
    page = (out / "README.md").read_text()
    section = page[page.index("## The same decoder with the refining encoder"):]
    assert "| refined vs plain encoder (float model, ideal code length) |" in section
    assert "refdec decodes 2 of 2 W16A16 streams" in section
    assert f"| 1 | {plain['curves']['float'][0]['bpp']:.4f} |" in section

    def cost(point, rate):
        mse = 255.0**2 / 10 ** (point["psnr"] / 10)
        return point["bpp"] + LAMBDAS[rate] * mse

    for p, r in zip(plain["curves"]["float"], refined["curves"]["float"]):
        assert cost(r, r["setting"]) <= cost(p, p["setting"]) + 1e-9
    assert plain["curves"]["float"] != refined["curves"]["float"]
    with pytest.raises(SystemExit):
        evaluate.main(common + ["--out", str(tmp_path / "bad"), "--refine", "-1"])
    # A refined evaluation of another checkpoint is not set against this one.
    refined["labels"]["float"] = "float@0123456789abcdef+refine@10"
    (out / "refined" / "kodak.json").write_text(json.dumps(refined))
    assert evaluate.main(common + ["--out", str(out), "--report-only"]) == 0
    assert "is of another checkpoint" in (out / "README.md").read_text()


def test_committed_results_are_of_the_committed_models():
    """results/kodak.json and results/refined/kodak.json (tools/regenerate.sh remakes both after
    retraining) are of the committed checkpoint and W16A16 model, on all of Kodak, every stream
    decoded by refdec to the encoder's reconstruction; the page summarises the refined one."""
    import hashlib

    from refdec.model_file import load_model

    results = ROOT / "results"
    float_label = "float@" + hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest()[:16]
    w16_label = f"W16A16@{load_model(W16).model_id.hex()}"
    plain = json.loads((results / "kodak.json").read_text())
    refined = json.loads((results / evaluate.REFINED_DIR / "kodak.json").read_text())
    assert plain["labels"]["float"] == float_label and plain["labels"]["W16A16"] == w16_label
    steps = refined["refine_steps"]
    assert steps > 0 and refined["labels"] == {"float": f"{float_label}+refine@{steps}",
                                               "W16A16": f"{w16_label}+refine@{steps}"}
    for doc in (plain, refined):
        assert len(doc["images"]) == 24
        agreement = doc["decoder_agreement"]["W16A16"]
        assert agreement["encoder_equal"] == agreement["streams"] == 24 * 6
        assert agreement["torch_equal"] == agreement["torch_checked"] > 0
    page = (results / "README.md").read_text()
    assert "## The same decoder with the refining encoder" in page and f"--refine {steps}" in page
