"""gradients(output, inputs, create_graph=) on both implementations: the floats are backward()'s
bits from zero grads; the derivative nodes hold those bits, are ordinary nodes (backward,
Tape, run, differentiate again), and are the same graph, bit for bit, on C and reference; a
failing derivative raises what backward() raises and leaves nothing behind; grad, value_and_grad
and hessian compose without perturbation confusion."""

from __future__ import annotations

import math
import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from programs import ARITHMETIC, Program, apply, bits, programs

import fastgrad._core
import fastgrad.reference
from fastgrad import functional
from fastgrad.demos import pinn as pinn_demo

gradient_programs = programs(sets=False, max_steps=60)


def build(impl: types.ModuleType, program: Program) -> list[Any]:
    """Every Value the program makes, failing steps skipped."""
    pool = [impl.Value(x) for x in program.leaves]
    for step in program.steps:
        try:
            value = apply(impl, pool, step)
        except ARITHMETIC:
            continue
        if value is not None:
            pool.append(value)
    return pool


def root_and_inputs(pool: list[Any], program: Program) -> tuple[Any, list[Any]]:
    """The program's root, and its leaves plus a few interior nodes as inputs."""
    inputs = pool[: len(program.leaves)] + [pool[i % len(pool)] for i in program.node_backwards]
    return pool[program.root % len(pool)], inputs


def outcome(call: Any) -> tuple[Any, ...]:
    try:
        return ("ok", call())
    except ARITHMETIC as e:
        return ("failed", type(e), str(e))


def observed(pool: list[Any]) -> list[tuple[bytes, bytes]]:
    return [(bits(v.data), bits(v.grad)) for v in pool]


def live_nodes(impl: types.ModuleType) -> int | None:
    return fastgrad._core._arena_stats()[0] if impl is fastgrad._core else None


def backward_grads(root: Any, pool: list[Any], inputs: list[Any]) -> list[bytes]:
    for v in pool:
        v.grad = 0.0
    root.backward()
    return [bits(v.grad) for v in inputs]


def structure(values: list[Any]) -> list[Any]:
    """The graphs below values, record by record, numbers as bits: what C and reference must
    agree on exactly."""
    def record(r: tuple[Any, ...]) -> tuple[Any, ...]:
        rule, data, grad, label, operands, exponent, constant, name, requires_grad = r
        exp = None if exponent is None else bits(exponent)
        return (rule, bits(data), bits(grad), label, operands, exp, constant, name,
                requires_grad)

    return [[record(r) for r in v.__reduce__()[1][0]] for v in values]


@settings(max_examples=150)
@given(gradient_programs)
def test_gradients_are_backwards_bits(impl: types.ModuleType, program: Program) -> None:
    pool = build(impl, program)
    root, inputs = root_and_inputs(pool, program)
    before, live = observed(pool), live_nodes(impl)

    floats = outcome(lambda: [bits(g) for g in impl.gradients(root, inputs)])
    nodes = outcome(lambda: impl.gradients(root, inputs, create_graph=True))
    assert observed(pool) == before  # no .grad touched
    reference = outcome(lambda: backward_grads(root, pool, inputs))

    assert floats == reference
    if reference[0] == "ok":
        assert [bits(d.data) for d in nodes[1]] == reference[1]
        assert all(isinstance(d, impl.Value) for d in nodes[1])
    else:
        assert nodes == reference
        assert live_nodes(impl) == live  # the failure built nothing that stays


@settings(max_examples=100)
@given(gradient_programs)
def test_derivative_graphs_are_the_same_on_c_and_reference(program: Program) -> None:
    results = []
    for impl in (fastgrad._core, fastgrad.reference):
        pool = build(impl, program)
        root, inputs = root_and_inputs(pool, program)
        got = outcome(lambda: impl.gradients(root, inputs, create_graph=True))  # noqa: B023
        if got[0] != "ok":
            results.append(got)
            continue
        derivatives = got[1]
        # their own derivatives, second order, through backward of their sum
        total = impl.sum(derivatives)
        second = outcome(lambda: impl.gradients(total, inputs))  # noqa: B023
        second = second if second[0] != "ok" else ("ok", [bits(x) for x in second[1]])
        results.append(("ok", structure(derivatives), second))
    assert results[0] == results[1]


@settings(max_examples=60)
@given(programs(sets=False, max_steps=30))
def test_second_order_is_backward_of_the_derivative(impl: types.ModuleType,
                                                    program: Program) -> None:  # fmt: skip
    pool = build(impl, program)
    root, inputs = root_and_inputs(pool, program)
    try:
        first = impl.gradients(root, inputs, create_graph=True)
    except ARITHMETIC:
        return
    total = impl.sum(first)
    derivative_pool = pool + first + [total]
    floats = outcome(lambda: [bits(g) for g in impl.gradients(total, inputs)])
    assert floats == outcome(lambda: backward_grads(total, derivative_pool, inputs))


def test_unreached_inputs_get_zero(impl: types.ModuleType) -> None:
    x, y = impl.Value(2.0), impl.Value(3.0)
    out = x * x
    assert impl.gradients(out, [x, y]) == [4.0, 0.0]
    assert impl.gradients(out, y) == 0.0
    nodes = impl.gradients(out, [x, y], create_graph=True)
    assert [d.data for d in nodes] == [4.0, 0.0]
    assert impl.gradients(nodes[1], [x]) == [0.0]
    assert impl.gradients(out, [], create_graph=True) == []


def test_gradients_refuse_what_is_not_a_value(impl: types.ModuleType) -> None:
    x = impl.Value(1.0)
    with pytest.raises(TypeError, match="output"):
        impl.gradients(1.0, [x])
    with pytest.raises(TypeError, match="inputs"):
        impl.gradients(x * 2.0, [x, 2.0])
    other = fastgrad.reference if impl is fastgrad._core else fastgrad._core
    with pytest.raises(TypeError):
        impl.gradients(x * 2.0, [other.Value(1.0)])


def test_failing_derivative_leaves_nothing_behind(impl: types.ModuleType) -> None:
    x = impl.Value(0.0)
    out = (x * 2.0 + 1.0) * x**0.5  # d/dx x**0.5 at 0 fails
    with pytest.raises(ARITHMETIC) as from_backward:
        out.backward()
    x.grad = 0.0
    live = live_nodes(impl)
    for create_graph in (False, True):
        with pytest.raises(ARITHMETIC) as from_gradients:
            impl.gradients(out, [x], create_graph=create_graph)
        assert type(from_gradients.value) is type(from_backward.value)
        assert str(from_gradients.value) == str(from_backward.value)
        assert live_nodes(impl) == live
    assert x.grad == 0.0


def test_second_order_of_a_long_chain(impl: types.ModuleType) -> None:
    n = 100_000 if impl is fastgrad._core else 5_000  # far past Python's recursion limit
    x = impl.Value(0.5)
    y = x
    for _ in range(n):
        y = (y * 0.999).tanh() + x * 0.001
    d1 = impl.gradients(y, [x], create_graph=True)[0]
    d2 = impl.gradients(d1, [x], create_graph=True)[0]
    d2.backward()  # third order, into x.grad, without recursion
    assert d1.data == impl.gradients(y, [x])[0]
    assert math.isfinite(d2.data) and math.isfinite(x.grad)
    live = live_nodes(impl)
    del y, d1, d2
    if live is not None:
        assert live_nodes(impl) < 10  # the chain and both derivative graphs freed


# ---- ordinary nodes: Tape and run over derivative graphs ----


def pinn(impl: types.ModuleType) -> tuple[Any, list[Any]]:
    """The PINN demo's network at 1-4-4-1 tanh, and its parameters."""
    model = pinn_demo.network(impl, 4, seed=7)
    return model, model.parameters()


def pinn_loss(impl: types.ModuleType, x: Any, model: Any) -> Any:
    """The demo's loss at x: (u'' + pi^2 sin(pi x))^2, u'' from gradients twice."""
    return pinn_demo.squared_residual(impl, model, x)


def test_derivative_graphs_stay_linear_in_size(impl: types.ModuleType) -> None:
    # a node's product contributions summed as one dot: without it, 5.3x
    model = pinn_demo.network(impl, 16)
    x = impl.Value(0.5)
    forward = len(impl.Tape(model([x])))
    assert len(impl.Tape(pinn_loss(impl, x, model))) <= 3.5 * forward


def test_tape_of_a_derivative_graph_replays_as_eager(impl: types.ModuleType) -> None:
    x = impl.Value(0.25)
    model, params = pinn(impl)
    tape = impl.Tape(pinn_loss(impl, x, model))
    for point in (0.0, 0.3, 0.77, 1.0):
        x.data = point
        replayed = tape.forward()
        tape.backward()
        replayed_grads = [bits(p.grad) for p in params]
        eager = pinn_loss(impl, x, model)
        for p in params:
            p.grad = 0.0
        eager.backward()
        assert bits(replayed) == bits(eager.data)
        assert replayed_grads == [bits(p.grad) for p in params]
        for p in params:
            p.grad = 0.0


def test_run_over_a_pinn_graph_is_its_per_row_definition(impl: types.ModuleType) -> None:
    x = impl.Value(0.5)
    model, params = pinn(impl)
    tape = impl.Tape(pinn_loss(impl, x, model))
    X = np.linspace(0.0, 1.0, 23).reshape(-1, 1)
    for p in params:
        p.grad = 0.0
    out = tape.run([x], X, threads=2)

    totals, losses = [0.0] * len(params), []
    for (point,) in X.tolist():
        row_x = impl.Value(point)
        loss = pinn_loss(impl, row_x, model)
        for p in params:
            p.grad = -0.0
        loss.backward()
        losses.append(bits(loss.data))
        totals = [t + p.grad for t, p in zip(totals, params)]
        for p in params:
            p.grad = 0.0
    tape.run([x], X, threads=1)  # once more, to read the grads it adds
    assert [bits(v) for v in out.tolist()] == losses
    assert [bits(p.grad) for p in params] == [bits(t) for t in totals]


# ---- grad, value_and_grad and hessian compose ----


def test_grad_of_grad_is_the_second_derivative(impl: types.ModuleType) -> None:
    def f(x: Any) -> Any:
        return (x * x * x).sin() + x.exp() * 2.0

    x = 0.7
    d1 = functional.grad(f, engine=impl)
    d2 = functional.grad(d1, engine=impl)
    d3 = functional.grad(d2, engine=impl)
    v = impl.Value(x)
    first = impl.gradients(f(v), [v], create_graph=True)[0]
    second = impl.gradients(first, [v], create_graph=True)[0]
    third = impl.gradients(second, [v])[0]
    assert (d1(x), d2(x), d3(x)) == (first.data, second.data, third)
    assert isinstance(d2(x), float)
    assert math.isclose(d2(x), 6 * x * math.cos(x**3) - 9 * x**4 * math.sin(x**3)
                        + 2 * math.exp(x), rel_tol=1e-12)  # fmt: skip


def test_nesting_is_free_of_perturbation_confusion(impl: types.ModuleType) -> None:
    def outer(x: Any) -> Any:
        return x * functional.grad(lambda y: x + y, engine=impl)(1.0)

    assert functional.grad(outer, engine=impl)(1.0) == 1.0
    assert functional.grad(lambda x: x * functional.grad(lambda y: x * y, engine=impl)(1.0),
                           engine=impl)(1.0) == 2.0  # fmt: skip


def test_arguments_outside_argnums_are_constant_values(impl: types.ModuleType) -> None:
    def f(x: Any, y: Any) -> Any:
        return (x * y + x.exp()).tanh()

    got = functional.grad(f, argnums=1, engine=impl)(0.3, 1.7)
    x, y = impl.Value(0.3), impl.Value(1.7)
    assert got == impl.gradients(f(x, y), [y])[0]
    value, both = functional.value_and_grad(f, argnums=(0, 1), engine=impl)(0.3, 1.7)
    assert value == f(x, y).data and both == tuple(impl.gradients(f(x, y), [x, y]))


def test_hessian_matches_the_second_derivatives(impl: types.ModuleType) -> None:
    def f(xs: Any) -> Any:
        a, b, c = xs
        return a * b * c + (a * a).exp() * b.sin() + c**3

    xs = [0.3, -1.2, 0.8]
    h = functional.hessian(f, engine=impl)(xs)
    assert len(h) == 3 and all(len(row) == 3 and all(isinstance(e, float) for e in row)
                               for row in h)  # fmt: skip
    vs = [impl.Value(x) for x in xs]
    first = impl.gradients(f(vs), vs, create_graph=True)
    assert h == [impl.gradients(d, vs) for d in first]
    assert h[0][1] == pytest.approx(2 * xs[0] * math.exp(xs[0] ** 2) * math.cos(xs[1]) + xs[2],
                                    rel=1e-12)  # fmt: skip
    h_array = functional.hessian(f, engine=impl)(np.array(xs))
    assert np.asarray(h_array).tolist() == h
