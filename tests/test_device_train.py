"""tools/device_train.py: what travels to a lent GPU machine, and the run it makes there (on CPU here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import device_train  # noqa: E402

TRAIN_DIR = ROOT.parent / "shared" / "data" / "train"


def fake_images(folder: Path, sizes):
    folder.mkdir(parents=True)
    for i, size in enumerate(sizes):
        (folder / f"img{i:02d}.jpg").write_bytes(bytes(size))
    (folder / "README.txt").write_text("not an image")


def test_selection_is_seeded_and_within_budget(tmp_path):
    fake_images(tmp_path / "data", [1000 * (i + 1) for i in range(20)])
    chosen = device_train.select_images(tmp_path / "data", 30_000)
    assert chosen == device_train.select_images(tmp_path / "data", 30_000)
    assert 0 < sum(p.stat().st_size for p in chosen) <= 30_000
    assert all(p.suffix == ".jpg" for p in chosen)
    assert chosen != device_train.select_images(tmp_path / "data", 30_000, seed=1)


def test_prepare_copies_what_travels_and_ignores_it(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "tracked.bin").write_bytes(bytes(62 * 2**20))  # 62 MiB tracked: nothing left beside the margin
    subprocess.run(["git", "add", "tracked.bin"], cwd=repo, check=True)
    fake_images(tmp_path / "data", [100_000] * 5)
    with pytest.raises(SystemExit, match=r"1.0 MiB of images would not travel: the tracked files leave 0.0 MiB"):
        device_train.prepare(tmp_path / "data", 1.0, dest=repo / ".devdata", root=repo)
    (repo / "tracked.bin").write_bytes(bytes(10 * 2**20))
    chosen = device_train.prepare(tmp_path / "data", 0.3, dest=repo / ".devdata", root=repo)
    assert len(chosen) == 3 and sorted(p.name for p in (repo / ".devdata" / "train").iterdir()) == [p.name for p in chosen]
    exclude = (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert exclude.count("/.devdata/") == 1
    device_train.prepare(tmp_path / "data", 0.3, dest=repo / ".devdata", root=repo)  # again: no second line
    assert (repo / ".git" / "info" / "exclude").read_text().splitlines().count("/.devdata/") == 1
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, check=True, capture_output=True, text=True).stdout
    assert ".devdata" not in status
    with pytest.raises(SystemExit, match="no training images at"):
        device_train.prepare(tmp_path / "nothing", 1.0, root=repo)


def test_run_needs_the_carried_data(tmp_path, capsys):
    with pytest.raises(SystemExit):
        device_train.main(["run", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    assert "run 'prepare' here and carry .devdata" in capsys.readouterr().err


@pytest.mark.skipif(not TRAIN_DIR.is_dir(), reason="training data not present")
def test_run_continues_the_committed_weights_into_out(tmp_path):
    """The lent run, tiny and on CPU: from the committed step, weights and step back in OUT only."""
    pytest.importorskip("torch")
    data = tmp_path / "train"
    data.mkdir()
    for path in sorted(TRAIN_DIR.glob("*.jpg"))[:2]:
        (data / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    assert device_train.main(["run", "--seconds", "1e-6", "--data", str(data), "--out", str(out), "--",
                              "--crop", "64", "--batch", "1", "--crops-per-image", "1", "--device", "cpu"]) == 0
    start = json.loads((ROOT / "models" / "float.json").read_text())["step"]
    assert json.loads((out / "float.json").read_text()) == {"step": start + 1}
    assert sorted(p.name for p in out.iterdir()) == ["float.json", "float.pt"]
