"""examples/ is reproducible from its committed command, byte for byte."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_examples_reproduces_committed_files(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_examples.py"), str(tmp_path)], check=True,
                   cwd=ROOT, capture_output=True)
    committed = sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_file())
    assert sorted(p.name for p in tmp_path.iterdir()) == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (ROOT / "examples" / name).read_bytes(), name


def test_example_streams_decode():
    from refdec.decoder import decode
    from refdec.model_file import ModelStore

    store = ModelStore([ROOT / "examples"])
    for stream in sorted((ROOT / "examples").glob("*.rdc")):
        result = decode(stream.read_bytes(), store)
        assert result.image.shape == (3, result.header.height, result.header.width)
