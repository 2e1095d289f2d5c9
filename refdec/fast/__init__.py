"""The fast path: accelerations of the normative functions, each registered against the literal
function it replaces (dav1d's checkasm style).

An acceleration takes the same arguments as its literal function and returns the same result,
bit for bit; `exactness` says why. tests/test_fast_equivalence.py runs every registered pair on
the cases that tests/fast_cases.py generates for it (random inputs and inputs that drive every
bound: accumulators at 2^31 - 1, clips, odd sizes, several tile blocks, partial bands) and
compares the results; an acceleration without cases fails the test. Registrations marked `step=True` are the ones refdec.decode runs by default, in
place of the literal step of clause 7.1 (refdec.decoder); the others are the kernels that those
steps are built from, proven equal on their own so that a failure names the kernel.

Performance settings (band height, caches) live here, never in the normative modules.
"""

from . import conv, entropy, hyper, latent, symbols, synthesis  # noqa: F401  (each registers its accelerations)
from .registry import REGISTRY, Acceleration, FastOptions, accelerated_step

__all__ = ["REGISTRY", "Acceleration", "FastOptions", "accelerated_step"]
