"""Small version of the cross-device experiment (refcodec.crossdevice).

A one-ulp perturbation of the float entropy model changes quantised CDF tables
and desynchronises decoding; the integer decoders give identical samples
whatever the thread count or implementation.
"""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refdec.decoder import decode  # noqa: E402
from refdec.generators.random_model import random_latents, random_model  # noqa: E402
from refdec.generators.encoder import encode_latents  # noqa: E402

from refcodec import crossdevice, int_decoder  # noqa: E402
from refcodec.model import FloatCodec  # noqa: E402

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"


@pytest.fixture(scope="module")
def image():
    if KODAK.exists():
        from refcodec.codec import load_rgb

        return load_rgb(KODAK)[200:264, 300:364]
    return np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)


def test_float_entropy_model_breaks_under_one_ulp(image):
    torch.manual_seed(0)
    model = FloatCodec().eval()
    with torch.no_grad():  # spread the scales so that tables are not all degenerate
        model.gather[-1].conv.bias[2 * 384:] = 40.0
    result = crossdevice.run_image(model, image, rate=5, variant="ulp")
    assert result["mismatched_tables"] > 0
    assert not result["decoded_correctly"] and result["wrong_latents"] > 0


def test_float_entropy_model_unperturbed_round_trips(image):
    torch.manual_seed(0)
    model = FloatCodec().eval()
    with torch.no_grad():
        model.gather[-1].conv.bias[2 * 384:] = 40.0
    result = crossdevice.run_image(model, image, rate=5, variant="none")
    assert result["mismatched_tables"] == 0 and result["decoded_correctly"]


def test_integer_decoders_identical_across_threads_and_implementations():
    _, model = random_model(seed=5)
    z, y = random_latents(model, 70, 45, seed=1)
    stream = encode_latents(model, z, y, 2, 70, 45)
    reference = decode(stream, model).image
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            image, _ = int_decoder.decode(stream, model)
            assert np.array_equal(image, reference)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_command_line_runs_on_a_folder_and_rejects_bad_arguments(tmp_path, image, image_folder, capsys):
    """refcodec.crossdevice on a one-image folder writes every variant's summary; a missing folder, a
    crop that is not a multiple of 64 and a rate outside the model's are errors, not tracebacks."""
    import json

    checkpoint = Path(__file__).resolve().parents[1] / "models" / "float.pt"
    kodak = image_folder({"kodim23.png": image})
    out = tmp_path / "crossdevice.json"
    assert crossdevice.main(["--checkpoint", str(checkpoint), "--kodak", str(kodak), "--crop", "0",
                             "--images", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert sorted(doc["summary"]) == ["float64", "threads", "ulp"]
    assert all(s["images"] == 1 and s["elements"] > 0 for s in doc["summary"].values())
    assert [r["image"] for r in doc["results"]] == ["kodim23.png"] * 3
    assert crossdevice.main(["--checkpoint", str(checkpoint), "--kodak", str(tmp_path / "none"),
                             "--out", str(tmp_path / "x.json")]) == 2
    assert "no PNG images in" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    for bad, message in ((["--crop", "100"], "--crop must be 0 or a positive multiple of 64"),
                         (["--rate", "6"], "--rate one of 0..5"), (["--images", "0"], "--images must be at least 1")):
        with pytest.raises(SystemExit):
            crossdevice.main(["--checkpoint", str(checkpoint), "--kodak", str(kodak), *bad])
        assert message in capsys.readouterr().err
