"""The fast path equals the literal spec (checkasm style): every acceleration registered in
refdec.fast.REGISTRY is run on the cases of tests/fast_cases.py beside the literal function it
replaces, and the results (return values, errors with their byte offsets, the range decoder's
final state and every recorded stage tensor) must be identical."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fast_cases import CASES
from refdec.errors import RefdecError
from refdec.fast import REGISTRY
from refdec.range_decoder import RangeDecoder
from refdec.stages import LATENT_STAGES, Recorder, decoded_positions


def outcome(function, args, kwargs):
    """What a call did: ("ok", result, states of its range decoders and recorders) or ("error", ...)."""
    try:
        result = function(*args, **kwargs)
        kind = "ok"
    except RefdecError as exc:
        result, kind = (type(exc).__name__, exc.offset, exc.where), "error"
    states = [(a.range, a.value, a.pos) if isinstance(a, RangeDecoder) else recorded(a, kind == "error")
              for a in args if isinstance(a, (RangeDecoder, Recorder))]
    return kind, result, states


def recorded(record: Recorder, failed: bool) -> dict:
    """The stages a recorder holds; after a failure, the latent stages only where clause 11.5.4 says a
    partial trace is valid (the positions of the wavefronts completed)."""
    if not failed or record.latent_wavefronts is None:
        return dict(record.stages, wavefronts=record.latent_wavefronts)
    hy, wy = record.stages["y_hat"].shape[-2:]
    keep = decoded_positions(hy, wy, record.latent_wavefronts)
    return dict({name: np.where(keep, value, 0) if name in LATENT_STAGES else value
                 for name, value in record.stages.items()}, wavefronts=record.latent_wavefronts)


def same(a, b) -> bool:
    """Exact equality of nested results: arrays by shape and values (any integer dtype), lists,
    tuples, dicts, dataclasses, scalars."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and np.array_equal(a, b)
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and same(dataclasses.astuple(a), dataclasses.astuple(b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_every_acceleration_has_cases():
    names = {acc.fast.__name__ for acc in REGISTRY}
    assert names == set(CASES), f"without cases: {names - set(CASES)}; cases of nothing: {set(CASES) - names}"


def test_the_decoder_steps_are_registered():
    from refdec.hyper import hyper_synthesis
    from refdec.latent import decode_y
    from refdec.synthesis import synthesis

    assert {acc.literal for acc in REGISTRY if acc.step} == {hyper_synthesis, decode_y, synthesis}


def test_comparison_sees_a_difference():
    assert not same(np.array([1, 2]), np.array([1, 3]))
    assert not same([np.zeros(2)], [np.zeros(3)])
    assert same((np.int64(3), [np.arange(3)]), (3, [np.arange(3, dtype=np.int32)]))


@pytest.mark.parametrize("acc", REGISTRY, ids=lambda acc: acc.fast.__name__)
def test_fast_equals_literal(acc):
    rng = np.random.default_rng(sum(map(ord, acc.fast.__name__)))
    count = 0
    for case in CASES[acc.fast.__name__](rng):
        label, make_args = case[:2]
        fast_kwargs = case[2] if len(case) > 2 else {}
        want = outcome(acc.literal, make_args(), {})
        got = outcome(acc.fast, make_args(), fast_kwargs)
        assert same(got, want), f"{acc.name} differs from {acc.literal.__qualname__} on: {label}"
        count += 1
    assert count >= 3
