"""Against micrograd 0.1.0 from PyPI, which orders and rounds differently (a / b is
a * b**-1 there, and its topological order follows set iteration): random programs of its
operators agree within micrograd's own tolerance, 1e-6."""

from __future__ import annotations

import math
import types
from typing import Any

import micrograd.engine
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from programs import Program, apply, programs

# micrograd's operators: + - * / (a * b**-1 there), ** with a number, relu, neg (a * -1).
# Magnitudes away from zero keep most programs clear of division by zero and 0 ** -1. No
# program changes .data: micrograd's a / b is a * b**-1, whose stale intermediate would
# legitimately differ from one / node.
magnitudes = st.floats(0.25, 3.0)
micrograd_programs = programs(
    numbers=st.one_of(magnitudes, magnitudes.map(lambda x: -x)),
    unary=["neg", "relu"],
    binary=["+", "-", "*", "/"],
    exponents=st.sampled_from([2, 3, -1, 0.5, 1.5]),
    nary=False,
    sets=False,
    max_steps=30,
)


def data_and_grads(module: Any, program: Program) -> list[tuple[float, float]] | None:
    """Runs the program on module's Value; None if anything raised or left the reals."""
    pool = [module.Value(x) for x in program.leaves]
    try:
        for step in program.steps:
            value = apply(module, pool, step)
            if value is not None:
                pool.append(value)
        pool[program.root % len(pool)].backward()
    except (ArithmeticError, ValueError, TypeError):  # micrograd: complex ** or complex < 0
        return None
    numbers = [(v.data, v.grad) for v in pool]  # micrograd keeps ints: its grads start at 0
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for pair in numbers for x in pair):
        return None
    return [(float(d), float(g)) for d, g in numbers]


def close(ours: list[float], theirs: list[float]) -> bool:
    # micrograd's own tests compare within 1e-6; cancellation makes a relative-only bound
    # meaningless near zero, so the absolute part scales with the numbers in play
    scale = max([1.0, *map(abs, ours), *map(abs, theirs)])
    return all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9 * scale) for a, b in zip(ours, theirs))


@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(micrograd_programs)
def test_random_programs_match_micrograd(impl: types.ModuleType, program: Program) -> None:
    theirs = data_and_grads(micrograd.engine, program)
    ours = data_and_grads(impl, program)
    assume(theirs is not None and ours is not None)
    assert ours is not None and theirs is not None
    assert close([d for d, _ in ours], [d for d, _ in theirs])
    assert close([g for _, g in ours], [g for _, g in theirs])


def test_micrograd_test_engine_sanity_check(impl: types.ModuleType) -> None:
    """micrograd's own test_sanity_check, against micrograd rather than PyTorch."""
    for module in (impl, micrograd.engine):
        x = module.Value(-4.0)
        z = 2 * x + 2 + x
        q = z.relu() + z * x
        h = (z * z).relu()
        y = h + q + q * x
        y.backward()
        if module is impl:
            ours = (y.data, x.grad)
        else:
            assert ours == pytest.approx((y.data, x.grad), rel=1e-6)
