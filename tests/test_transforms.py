"""jvp, vjp, jacobian and hvp: against torch.func on both engines, C == reference bit for bit,
and derivatives built as graphs replaying the choices they make from data."""

from __future__ import annotations

import functools
import math
import types
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from programs import bits, build_pool, programs

import fastgrad
from fastgrad import _forward


def _torch() -> Any:
    return pytest.importorskip("torch", reason="the comparisons with torch.func need PyTorch")


def f_scalar(x: Any, y: Any) -> Any:
    """Every kind of op: unary, binary with numbers, powers, sum and dot, a choice (relu)."""
    z = (x * y).tanh() + x.sin() * y.cos() - (x / (1.5 + y * y)).exp()
    return z + (x * 0.7 - y).relu() + abs(x - 0.2) * (y**2 + 1.0).log() + (x + 2.0) ** 0.5


def f_scalar_torch(t: Any, x: Any, y: Any) -> Any:
    z = t.tanh(x * y) + t.sin(x) * t.cos(y) - t.exp(x / (1.5 + y * y))
    return z + t.relu(x * 0.7 - y) + t.abs(x - 0.2) * t.log(y**2 + 1.0) + (x + 2.0) ** 0.5


def f_vector(xs: list[Any]) -> list[Any]:
    a, b, c = xs
    return [a * b + c.tanh(), (a - c).sigmoid() * b, fastgrad_engine(a).dot([a, b], [c, a])]


def fastgrad_engine(v: Any) -> types.ModuleType:
    import importlib

    return importlib.import_module(str(fastgrad._common.engine_of(v)))


def f_vector_torch(t: Any, xs: Any) -> Any:
    a, b, c = xs
    return t.stack([a * b + t.tanh(c), t.sigmoid(a - c) * b, a * c + b * a])


POINT = (0.4, -1.3)


def close(a: Any, b: Any) -> bool:
    return bool(np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                            rtol=1e-12, atol=1e-13))  # fmt: skip


def test_jvp_is_torch_funcs(impl: types.ModuleType) -> None:
    t = _torch()
    tangents = (0.3, -2.0)
    value, tangent = fastgrad.jvp(f_scalar, POINT, tangents, engine=impl)
    theirs = t.func.jvp(lambda x, y: f_scalar_torch(t, x, y),
                        tuple(t.tensor(x, dtype=t.float64) for x in POINT),
                        tuple(t.tensor(x, dtype=t.float64) for x in tangents))  # fmt: skip
    assert isinstance(value, float) and isinstance(tangent, float)
    assert close(value, float(theirs[0])) and close(tangent, float(theirs[1]))


def test_jvp_of_jvp_is_the_second_derivative(impl: types.ModuleType) -> None:
    def u(x: Any) -> Any:
        return (2 * x).tanh() ** 2 * x.sin()

    def slope(x: Any) -> Any:
        return fastgrad.jvp(u, (x,), (1.0,))[1]

    value, second = fastgrad.jvp(slope, (0.3,), (1.0,), engine=impl)
    assert close(second, fastgrad.grad(fastgrad.grad(u, engine=impl), engine=impl)(0.3))
    assert close(value, fastgrad.grad(u, engine=impl)(0.3))


def test_jvp_with_create_graph_gives_values_that_backpropagate(impl: types.ModuleType) -> None:
    w = impl.Value(0.8)
    out, tangent = fastgrad.jvp(lambda x: (w * x).tanh(), (0.5,), (1.0,), create_graph=True,
                                engine=impl)  # fmt: skip
    assert isinstance(out, impl.Value) and isinstance(tangent, impl.Value)
    tangent.backward()  # d/dw of w * (1 - tanh(w x)^2)
    s = 1 - math.tanh(0.4) ** 2
    assert close(w.grad, s - 2 * 0.8 * 0.5 * math.tanh(0.4) * s)


def test_jacobian_both_modes_are_torch_funcs(impl: types.ModuleType) -> None:
    t = _torch()
    point = [0.3, -0.7, 1.1]
    theirs = t.func.jacrev(lambda xs: f_vector_torch(t, xs))(t.tensor(point, dtype=t.float64))
    for mode in ("rev", "fwd"):
        ours = fastgrad.jacobian(f_vector, mode=mode, engine=impl)(point)
        assert len(ours) == 3 and all(len(row) == 3 for row in ours)
        assert close(ours, theirs.numpy()), mode


def test_jacobian_shapes_follow_the_output_then_the_argument(impl: types.ModuleType) -> None:
    assert isinstance(fastgrad.jacobian(lambda x: x * x, engine=impl)(3.0), float)
    both = fastgrad.jacobian(lambda x, y: [x * y, x + y], argnums=(0, 1), engine=impl)(2.0, 5.0)
    assert both == ([5.0, 1.0], [2.0, 1.0])
    rows = fastgrad.jacobian(lambda xs: xs[0] * xs[1], engine=impl)(np.array([2.0, 3.0]))
    assert list(rows) == [3.0, 2.0]


def test_hvp_is_torchs(impl: types.ModuleType) -> None:
    t = _torch()

    def f(xs: Any) -> Any:
        return xs[0] ** 2 * xs[1] + (xs[1] * xs[2]).sin() + xs[0].exp() * xs[2]

    def f_torch(xs: Any) -> Any:
        return xs[0] ** 2 * xs[1] + t.sin(xs[1] * xs[2]) + t.exp(xs[0]) * xs[2]

    point, v = [0.5, -1.0, 2.0], [1.0, 0.3, -0.2]
    value, (product,) = fastgrad.hvp(f, (point,), (v,), engine=impl)
    their_value, their_product = t.autograd.functional.hvp(
        f_torch, t.tensor(point, dtype=t.float64), t.tensor(v, dtype=t.float64)
    )
    assert close(value, float(their_value)) and close(product, their_product.numpy())


def test_vjp_is_torch_funcs_and_a_unit_cotangent_is_grads_bits(impl: types.ModuleType) -> None:
    t = _torch()
    point = [0.3, -0.7, 1.1]
    outputs, products = fastgrad.vjp(f_vector, point, engine=impl)
    their_outputs, their_products = t.func.vjp(lambda xs: f_vector_torch(t, xs),
                                               t.tensor(point, dtype=t.float64))  # fmt: skip
    cotangents = [1.0, -2.0, 0.5]
    assert close(outputs, their_outputs.numpy())
    assert close(products(cotangents)[0], their_products(t.tensor(cotangents))[0].numpy())
    _, unit = fastgrad.vjp(lambda x, y: f_scalar(x, y), *POINT, engine=impl)
    assert unit(1.0) == fastgrad.grad(f_scalar, argnums=(0, 1), engine=impl)(*POINT)


def test_bad_calls_are_named(impl: types.ModuleType) -> None:
    with pytest.raises(ValueError, match="2 primals and 1 tangents"):
        fastgrad.jvp(f_scalar, POINT, (1.0,), engine=impl)
    with pytest.raises(ValueError, match="tangent 0 has 2 numbers where its primal has 3"):
        fastgrad.jvp(f_vector, ([1.0, 2.0, 3.0],), ([1.0, 2.0],), engine=impl)
    with pytest.raises(TypeError, match="non-empty tuple"):
        fastgrad.jvp(f_scalar, 0.5, 1.0, engine=impl)
    with pytest.raises(TypeError, match="must return a Value, or lists or tuples of them"):
        fastgrad.jvp(lambda x: "no", (1.0,), (1.0,), engine=impl)
    with pytest.raises(ValueError, match="mode must be 'rev' or 'fwd'"):
        fastgrad.jacobian(f_vector, mode="sideways")
    with pytest.raises(ValueError, match="3 cotangents for 1 outputs"):
        fastgrad.vjp(lambda x: x * 2.0, 1.0, engine=impl)[1]([1.0, 2.0, 3.0])
    with pytest.raises(ZeroDivisionError, match="backward"):  # sqrt's at 0, as backward raises
        fastgrad.jvp(lambda x: (x * 0.0).sqrt(), (1.0,), (1.0,), engine=impl)


# ---- forward mode on random programs: the same bits on both engines ----


@given(programs(sets=False, max_steps=40), st.lists(st.floats(-3, 3), min_size=8, max_size=8))
def test_tangents_are_the_same_on_c_and_reference(program: Any, seeds: list[float]) -> None:
    results = []
    for impl in (fastgrad._core, fastgrad.reference):
        try:
            pool = build_pool(impl, program, program.leaves)
        except (ZeroDivisionError, ValueError, OverflowError, IndexError):
            assume(False)
        root = pool[program.root % len(pool)]
        leaves = pool[: len(program.leaves)]
        got: list[Any] = []
        for graph in (False, True):
            try:
                (tangent,) = _forward.tangents(impl, [root], leaves, seeds[: len(leaves)], graph)
                got.append(bits(float(tangent.data) if graph else tangent))
            except (ZeroDivisionError, ValueError, OverflowError, IndexError) as e:
                got.append(type(e).__name__)
        assert got[0] == got[1]  # the graph holds the numbers' bits
        results.append(got)
    assert results[0] == results[1]


# ---- derivatives as graphs: the choices they make from data are made again ----


def choices(impl: types.ModuleType, x: Any) -> Any:
    """A function of x whose derivative makes every choice from data: relu's step, abs's
    sign, max's pick, a finite shift, a picked class."""
    scores = [x * 2.0 - 0.3, -x, x * x - 1.0]
    target = impl.Value(2.0, requires_grad=False)
    return ((x - 0.1).relu() * x + abs(x + 0.4) * x + impl.maximum(x, 0.5 * x) * x
            + fastgrad.functional.logsumexp(scores) + impl._finite(x * x) * 0.25
            + fastgrad.cross_entropy(scores, target))  # fmt: skip


ROWS = np.array([[0.7], [-1.3], [0.0], [-0.4], [0.1], [2.5], [-0.05]])


@pytest.mark.parametrize("how", ["gradients", "jvp"])
def test_a_recorded_derivative_makes_its_choices_again_at_each_row(impl: types.ModuleType,
                                                                   how: str) -> None:  # fmt: skip
    def derivative(x: Any) -> Any:
        if how == "gradients":
            return impl.gradients(choices(impl, x), [x], create_graph=True)[0]
        return fastgrad.jvp(lambda v: choices(impl, v), (x,), (1.0,), engine=impl)[1]

    x = impl.Value(0.7)
    tape = impl.Tape(derivative(x))
    replayed = tape.run([x], ROWS, backward=False)
    eager = [derivative(impl.Value(float(row[0]))).data for row in ROWS]
    assert [bits(v) for v in replayed.tolist()] == [bits(v) for v in eager]


def test_a_derivative_of_choices_alone_backpropagates_to_nothing(impl: types.ModuleType) -> None:
    x = impl.Value(0.5)
    step = impl.gradients(x.relu(), [x], create_graph=True)[0]  # 1.0, chosen from x
    assert step.data == 1.0 and not step.requires_grad
    step.backward()  # d step / dx is 0: nothing reaches x, and this is no mistake
    assert x.grad == 0.0
    assert impl.gradients(step, [x]) == [0.0]


def test_forward_mode_passes_no_tangent_through_a_choice(impl: types.ModuleType) -> None:
    """relu' is a choice of relu's output (sign): forward mode, as backward, carries nothing
    through it, so even an infinite tangent gives relu'' = 0 (0 * inf would be nan)."""
    relu_slope = fastgrad.grad(lambda x: x.relu(), engine=impl)
    assert fastgrad.jvp(relu_slope, (0.5,), (math.inf,), engine=impl) == (1.0, 0.0)
    assert fastgrad.grad(relu_slope, engine=impl)(0.5) == 0.0


def test_a_node_feeding_only_choices_still_runs_its_chain_rule(impl: types.ModuleType) -> None:
    """x * inf feeds only a choice (sign), so its grad is 0.0, and backward, as micrograd's,
    still multiplies that 0.0 by its derivative inf: nan in x. gradients gives backward's
    bits (the reference skipped such a node and gave 0.0)."""
    x = impl.Value(-1.0)
    t = impl._choice("sign", x * math.inf) * math.inf
    grads = impl.gradients(t, [x])
    t.backward()
    assert [bits(g) for g in grads] == [bits(x.grad)] == [bits(math.nan)]


def test_c_and_reference_build_the_same_jvp_graph() -> None:
    shapes = []
    for impl in (fastgrad._core, fastgrad.reference):
        x = impl.Value(0.3)
        _, tangent = fastgrad.jvp(functools.partial(choices, impl), (x,), (1.0,), engine=impl)
        shapes.append([(r[0], bits(r[1]), r[4]) for r in tangent.__reduce__()[1][0]])
    assert shapes[0] == shapes[1]


# ---- the PINN through jvp of jvp ----


def test_the_pinn_loss_by_jvp_of_jvp_is_the_gradients_graphs(impl: types.ModuleType) -> None:
    from fastgrad.benchmarks import derivatives as b10
    from fastgrad.demos.pinn import network

    model = network(impl, 4)
    X = np.linspace(0.0, 1.0, 9).reshape(-1, 1)
    results = []
    for loss in (b10.derivative_loss, b10.jvp_loss):
        x = impl.Value(0.5)
        tape = impl.Tape(loss(impl, model, x))
        for p in model.parameters():
            p.grad = 0.0
        results.append((tape.run([x], X).tolist(), [p.grad for p in model.parameters()]))
    assert close(results[0][0], results[1][0]) and close(results[0][1], results[1][1])
