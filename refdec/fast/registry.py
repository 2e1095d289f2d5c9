"""The registry of accelerations (see the package docstring)."""


from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class FastOptions:
    """Settings of the fast path; none of them changes a decoded sample."""

    band_rows: int = 32  # synthesis output rows per band: bounds the memory of large images
    # BLAS threads (refdec/fast/threads.py) for the hyper synthesis and the latent: their many small
    # products only wait on a second thread, most of all beside a busy core. None: leave the pool alone.
    blas_threads: int | None = 1
    # The most BLAS threads a synthesis band takes; more than one only while other processes leave
    # a core free (threads.OtherLoad). None: leave the pool alone.
    synthesis_blas_threads: int | None = 2


@dataclass
class Acceleration:
    """One registered acceleration: `fast(*args)` equals `literal(*args)` for every valid input."""

    literal: Callable
    fast: Callable
    exactness: str
    step: bool = False  # run by refdec.decode in place of `literal`
    options: bool = False  # `fast` takes the FastOptions as keyword `options`

    @property
    def clause(self) -> str:
        """The clause of the literal function (a reference composition names it with `clause_of`)."""
        return getattr(self.literal, "__clause__", (getattr(self.literal, "__clause_of__", "?"),))[0]

    @property
    def name(self) -> str:
        return f"{self.fast.__module__}.{self.fast.__qualname__}"


REGISTRY: list[Acceleration] = []


def accelerates(literal: Callable, *, exactness: str, step: bool = False, options: bool = False):
    """Register the decorated function as an acceleration of `literal` (a normative function, or a
    reference composition of normative functions marked with `clause_of`)."""

    def register(fast):
        REGISTRY.append(Acceleration(literal, fast, exactness, step, options))
        return fast

    return register


def accelerated_step(options: FastOptions | bool = True) -> Callable:
    """A function that maps a literal step of clause 7.1 to its registered step acceleration (or to
    itself when there is none)."""
    opts = options if isinstance(options, FastOptions) else FastOptions()
    steps = {acc.literal: acc for acc in REGISTRY if acc.step}

    def step(literal):
        acc = steps.get(literal)
        if acc is None:
            return literal
        return functools.partial(acc.fast, options=opts) if acc.options else acc.fast

    return step


def clause_of(number: str):
    """Mark a reference composition (built only from normative functions, for the equivalence test)
    with the clause whose computation it composes."""

    def mark(function):
        function.__clause_of__ = number
        return function

    return mark
