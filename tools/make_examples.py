"""Regenerate examples/: a small random integer model and a few streams made from it.

Informative: these are smoke-test inputs for the README's decode command; the
conformance vectors proper live in vectors/ (made from the trained model).

    python tools/make_examples.py [OUT_DIR]
"""

import sys
from pathlib import Path

from refdec.generators.encoder import encode_latents
from refdec.generators.random_model import random_latents, random_model

EXAMPLES = [("tiny_64x64_r0", 64, 64, 0), ("odd_100x37_r5", 100, 37, 5), ("strip_1x130_r2", 1, 130, 2)]


def main(argv):
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "examples"
    out.mkdir(parents=True, exist_ok=True)
    data, model = random_model(seed=2026)
    (out / "random_small.npz").write_bytes(data)
    for i, (name, w, h, rate) in enumerate(EXAMPLES):
        z, y = random_latents(model, w, h, seed=i)
        (out / f"{name}.rdc").write_bytes(encode_latents(model, z, y, rate, w, h))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv)
