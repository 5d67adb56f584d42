"""tape.run(..., shards=K): the rows cut as numpy.array_split cuts them, each shard's gradient
summed from zero in row order, the grads = before + shard 0 + shard 1 + ... in shard order.
The expected bits come from per_row=True's rows (each the bits a run adds for its row), added
in that order in Python; the outputs never depend on K. And the parameters as flat arrays
(fastgrad.nn.utils.parameters_to_vector and its kin)."""

from __future__ import annotations

import math
import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from programs import bits

import fastgrad
from fastgrad.demos.moons import per_sample_model
from fastgrad.nn.utils import (
    grads_to_vector,
    parameters_to_vector,
    vector_to_grads,
    vector_to_parameters,
)


def classifier(impl: types.ModuleType, X: Any = None, rows: int = 23) -> tuple[Any, ...]:
    tape, model, inputs, targets = per_sample_model(impl, [4, 3, 3], "cross_entropy", seed=5)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(rows, 4)) * 3.0 if X is None else X
    Y = np.eye(3)[rng.integers(0, 3, size=len(X))]
    for k, p in enumerate(model.parameters()):
        p.grad = 0.5 * k - 2.0 if k % 3 else -0.0
    return tape, model, inputs, targets, X, Y


def expected_grads(tape: Any, model: Any, inputs: list[Any], targets: list[Any], X: Any, Y: Any,
                   shards: int) -> list[int]:  # fmt: skip
    """before + each shard's rows summed from -0.0, in shard order, from per_row's rows (one
    shard: the rows added to before one at a time, the unsharded run's sum)."""
    params = model.parameters()
    _, G = tape.run(inputs, X, targets, Y, per_row=True, wrt=params)
    totals = [p.grad for p in params]
    if shards == 1:
        for j in range(len(params)):
            for r in range(len(X)):
                totals[j] = totals[j] + float(G[r, j])
        return [bits(t) for t in totals]
    for rows in np.array_split(np.arange(len(X)), shards):
        for j in range(len(params)):
            shard = -0.0
            for r in rows.tolist():
                shard = shard + float(G[r, j])
            totals[j] = totals[j] + shard
    return [bits(t) for t in totals]


def assert_sharded_run(impl: types.ModuleType, X: Any, shards: int) -> None:
    """tape.run(shards=shards)'s grads are expected_grads', its outputs the unsharded run's."""
    tape, model, inputs, targets, X, Y = classifier(impl, X=X)
    expected = expected_grads(tape, model, inputs, targets, X, Y, shards)
    unsharded = tape.run(inputs, X, targets, Y, backward=False)
    out = tape.run(inputs, X, targets, Y, shards=shards)
    assert [bits(p.grad) for p in model.parameters()] == expected
    assert [bits(v) for v in out.tolist()] == [bits(v) for v in unsharded.tolist()]


@pytest.mark.parametrize("shards", [2, 3, 7, 23, 30])
def test_shards_add_up_in_shard_order(impl: types.ModuleType, shards: int) -> None:
    assert_sharded_run(impl, None, shards)


def test_one_shard_is_the_one_sum(impl: types.ModuleType) -> None:
    grads = []
    for shards in ({}, {"shards": 1}):
        tape, model, inputs, targets, X, Y = classifier(impl)
        tape.run(inputs, X, targets, Y, root_grad=1 / len(X), **shards)
        grads.append([bits(p.grad) for p in model.parameters()])
    assert grads[0] == grads[1]


def test_sharding_changes_only_the_summation_order(impl: types.ModuleType) -> None:
    tape, model, inputs, targets, X, Y = classifier(impl)
    params = model.parameters()
    tape.run(inputs, X, targets, Y, shards=1)
    one = [p.grad for p in params]
    for p, g in zip(params, classifier(impl)[1].parameters()):
        p.grad = g.grad
    tape.run(inputs, X, targets, Y, shards=4)
    assert [p.grad for p in params] == pytest.approx(one, rel=1e-12, abs=1e-12)


def test_c_and_reference_shard_alike() -> None:
    results = []
    for impl in (fastgrad._core, fastgrad.reference):
        tape, model, inputs, targets, X, Y = classifier(impl)
        out = tape.run(inputs, X, targets, Y, shards=5, root_grad=0.125)
        results.append(([bits(v) for v in out.tolist()],
                        [bits(p.grad) for p in model.parameters()]))
    assert results[0] == results[1]


def test_threads_do_not_change_sharded_bits(c_impl: types.ModuleType) -> None:
    got = []
    for threads in (1, 2):
        tape, model, inputs, targets, X, Y = classifier(c_impl, rows=200)
        tape.run(inputs, X, targets, Y, shards=3, threads=threads)
        got.append([bits(p.grad) for p in model.parameters()])
    assert got[0] == got[1]


edge = st.sampled_from([0.0, -0.0, 1e300, -1e300, 1e-310, 5.0, -7.25, math.inf, -math.inf,
                        math.nan])  # fmt: skip
number = st.one_of(st.floats(-50, 50), edge)


@given(rows=st.lists(st.lists(number, min_size=4, max_size=4), max_size=12),
       shards=st.integers(1, 15))  # fmt: skip
def test_random_rows_and_shards(impl: types.ModuleType, rows: list[list[float]],
                                shards: int) -> None:  # fmt: skip
    assert_sharded_run(impl, np.array(rows, dtype=np.float64).reshape(len(rows), 4), shards)


def test_a_failing_row_names_its_row_and_changes_no_grad(impl: types.ModuleType) -> None:
    x, w = impl.Value(0.5), impl.Value(2.0)
    tape = impl.Tape((x * w).log() * w)
    x.grad, w.grad = 0.125, -0.5
    X = np.full(200, 0.25)
    X[150] = -1.0  # log(-2.0), in the last of 4 shards (rows 150-199)
    with pytest.raises(ValueError, match=r"^row 150: log\(-2.0\): math domain error$"):
        tape.run([x], X, shards=4)
    assert (x.data, w.data, x.grad, w.grad) == (0.5, 2.0, 0.125, -0.5)


@pytest.mark.parametrize("shards, error, message", [
    (0, ValueError, "shards must be at least 1, not 0"),
    (-2, ValueError, "shards must be at least 1, not -2"),
    (2.0, TypeError, "shards must be an int, not 'float'"),
    (True, TypeError, "shards must be an int, not 'bool'"),
    ("3", TypeError, "shards must be an int, not 'str'"),
])  # fmt: skip
def test_bad_shards_are_refused(impl: types.ModuleType, shards: Any, error: type,
                                message: str) -> None:  # fmt: skip
    tape, model, inputs, targets, X, Y = classifier(impl)
    before = [bits(p.grad) for p in model.parameters()]
    with pytest.raises(error, match=message):
        tape.run(inputs, X, targets, Y, shards=shards)
    assert [bits(p.grad) for p in model.parameters()] == before


def test_mismatched_rows_are_refused_before_any_shard(impl: types.ModuleType) -> None:
    tape, model, inputs, targets, X, Y = classifier(impl)
    before = [bits(p.grad) for p in model.parameters()]
    with pytest.raises(ValueError, match="X has 23 rows and y 20"):
        tape.run(inputs, X, targets, Y[:20], shards=3)
    assert [bits(p.grad) for p in model.parameters()] == before


def test_forward_only_and_per_row_ignore_shards(impl: types.ModuleType) -> None:
    tape, model, inputs, targets, X, Y = classifier(impl)
    before = [bits(p.grad) for p in model.parameters()]
    plain = tape.run(inputs, X, targets, Y, backward=False)
    out = tape.run(inputs, X, targets, Y, backward=False, shards=4)
    assert [bits(v) for v in out.tolist()] == [bits(v) for v in plain.tolist()]
    _, G1 = tape.run(inputs, X, targets, Y, per_row=True)
    _, G4 = tape.run(inputs, X, targets, Y, per_row=True, shards=4)
    assert [bits(v) for v in G1.ravel().tolist()] == [bits(v) for v in G4.ravel().tolist()]
    assert [bits(p.grad) for p in model.parameters()] == before


# the parameters as flat float64 arrays

def test_vectors_round_trip_in_parameter_order(impl: types.ModuleType) -> None:
    params = fastgrad.nn.MLP(3, [4, 2], engine=impl).parameters()
    data = parameters_to_vector(params)
    assert data.dtype == np.float64 and data.shape == (len(params),)
    assert [bits(v) for v in data.tolist()] == [bits(p.data) for p in params]
    special = np.array([-0.0, math.inf, -math.inf, math.nan, 5e-324, -1e308]
                       + [0.5 * k for k in range(len(params) - 6)])  # fmt: skip
    vector_to_parameters(special, params)
    assert [bits(p.data) for p in params] == [bits(v) for v in special.tolist()]
    vector_to_grads(special[::-1], params)
    assert [bits(p.grad) for p in params] == [bits(v) for v in special[::-1].tolist()]
    assert [bits(v) for v in grads_to_vector(params).tolist()] == [bits(p.grad) for p in params]
    vector_to_parameters([1, 2], [params[0], params[1]])  # any numbers; one Value alone too
    assert (params[0].data, params[1].data) == (1.0, 2.0)
    assert parameters_to_vector(params[2]).tolist() == [params[2].data]


def test_vectors_track_what_a_tape_run_left(impl: types.ModuleType) -> None:
    tape, model, inputs, targets, X, Y = classifier(impl)
    tape.run(inputs, X, targets, Y)
    params = model.parameters()
    assert [bits(v) for v in grads_to_vector(params).tolist()] == [bits(p.grad) for p in params]


@pytest.mark.parametrize("vec, error, message", [
    (np.zeros(3), ValueError, "vec has 3 numbers for 26 parameters"),
    (np.zeros((26, 1)), ValueError, r"vec must be 1-D, not of shape \(26, 1\)"),
    (["a"] * 26, TypeError, "vec must be an array of numbers"),
])  # fmt: skip
def test_bad_vectors_write_nothing(impl: types.ModuleType, vec: Any, error: type,
                                   message: str) -> None:  # fmt: skip
    params = fastgrad.nn.MLP(3, [4, 2], engine=impl).parameters()
    assert len(params) == 26
    before = [(bits(p.data), bits(p.grad)) for p in params]
    for write in (vector_to_parameters, vector_to_grads):
        with pytest.raises(error, match=message):
            write(vec, params)
    assert [(bits(p.data), bits(p.grad)) for p in params] == before


def test_parameters_must_be_values_of_one_engine(impl: types.ModuleType) -> None:
    other = fastgrad.reference if impl is fastgrad._core else fastgrad._core
    v = impl.Value(1.0)
    with pytest.raises(TypeError, match="item 1 is 'float'"):
        parameters_to_vector([v, 2.0])
    with pytest.raises(TypeError, match="item 1 is 'a Value of the other engine'"):
        vector_to_parameters([3.0, 4.0], [v, other.Value(2.0)])
    assert v.data == 1.0
    assert parameters_to_vector([]).shape == (0,)
