"""Shared fixtures for the refdec test-suite.

Models are built once per session: random_model() is deterministic for a seed, so
every test that asks for the same fixture sees the same bytes and the same model id.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import settings

# No example database under the working tree; examples are drawn afresh from fixed-size strategies.
settings.register_profile("refdec", database=None, deadline=None, print_blob=True)
settings.load_profile("refdec")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere, without installing the package
    sys.path.insert(0, str(ROOT))

from refdec.generators.random_model import REFERENCE_CHANNELS, random_model  # noqa: E402

SPEC_DIR = ROOT / "spec"
REFDEC_DIR = ROOT / "refdec"
TOOLS_DIR = ROOT / "tools"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture
def image_folder(tmp_path):
    """make({file name: (H, W, 3) uint8 array}) writes the images as PNG files into a new folder
    under tmp_path and returns it: a stand-in for ../shared/data/kodak in command-line tests."""
    from PIL import Image

    def make(images: dict, name: str = "kodak") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for file_name, img in images.items():
            Image.fromarray(img).save(folder / file_name)
        return folder
    return make


@pytest.fixture(scope="session")
def small_model_file():
    """(bytes, Model) of the small W16A16 random model, seed 0."""
    return random_model(0)


@pytest.fixture(scope="session")
def small_model(small_model_file):
    return small_model_file[1]


@pytest.fixture(scope="session")
def small_model_w8_file():
    """(bytes, Model) of the small W8A16 random model, seed 1."""
    return random_model(1, profile="W8A16")


@pytest.fixture(scope="session")
def small_model_w8(small_model_w8_file):
    return small_model_w8_file[1]


@pytest.fixture(scope="session")
def reference_model():
    """A random model with the reference channel counts of clause 5.1 (about 5 MB, ~0.5 s)."""
    return random_model(3, channels=REFERENCE_CHANNELS)[1]
