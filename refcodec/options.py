"""What refcodec's command lines share: the default files and folders, and argument types.

Standard library only, so that `refcodec --help` runs without the extras; every command module
imports its defaults from here (none imports another command for them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

_REPOSITORY = Path(__file__).resolve().parents[1]
_SHARED_DATA = _REPOSITORY.parent / "shared" / "data"  # beside the clone, not in it (README: Set-up)

DEFAULT_CHECKPOINT = _REPOSITORY / "models" / "float.pt"
DEFAULT_MODEL = _REPOSITORY / "refdec" / "models" / "refdec-test-w16a16.npz"
DEFAULT_KODAK = _SHARED_DATA / "kodak"
DEFAULT_TRAIN_DIR = _SHARED_DATA / "train"


def non_negative(text: str) -> int:
    """argparse type of a count that may be 0 (--refine STEPS of refcodec encode and evaluate)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value
