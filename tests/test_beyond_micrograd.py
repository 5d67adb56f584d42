"""What SPEC section 2 lists beyond micrograd, on both implementations: abs, sqrt, sin, cos and
softplus by the math module's formulas; comparisons on .data (so max and min route the
gradient), float(v); softmax, logsumexp and cross_entropy; grad and value_and_grad; every
public submodule an attribute of fastgrad, loaded on first use."""

from __future__ import annotations

import math
import subprocess
import sys
import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from programs import EDGE_VALUES, bits

import fastgrad
from fastgrad import functional

finite = st.floats(-50.0, 50.0)


def softplus(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


# op: (apply it to a Value, its forward by the math module, its derivative at a)
NEW_OPS = {
    "abs": (lambda v: abs(v), math.fabs, lambda a: 1.0 if a > 0 else -1.0 if a < 0 else 0.0),
    "sqrt": (lambda v: v.sqrt(), math.sqrt, lambda a: 0.5 / math.sqrt(a)),
    "sin": (lambda v: v.sin(), math.sin, math.cos),
    "cos": (lambda v: v.cos(), math.cos, lambda a: -math.sin(a)),
    "softplus": (lambda v: v.softplus(), softplus, sigmoid),
}


@pytest.mark.parametrize("name", sorted(NEW_OPS))
@given(a=st.one_of(st.sampled_from(EDGE_VALUES), st.floats(allow_nan=True, allow_infinity=True)),
       g=finite)  # fmt: skip
def test_new_ops_are_the_math_modules(impl: types.ModuleType, name: str, a: float,
                                      g: float) -> None:  # fmt: skip
    build, forward, derivative = NEW_OPS[name]
    try:
        expected = forward(a)
    except ValueError:
        with pytest.raises(ValueError, match=rf"^{name}\(.*\): math domain error$"):
            build(impl.Value(a))
        return
    x = impl.Value(a)
    out = build(x)
    assert out._op == name and out._prev == {x}
    assert bits(out.data) == bits(expected)
    out.grad = g
    try:
        d = derivative(a)
    except (ValueError, ZeroDivisionError) as error:
        with pytest.raises(type(error)):
            out._backward()
        return
    out._backward()
    assert bits(x.grad) == bits(0.0 + d * g)


def test_abs_has_pytorchs_zero_derivative_and_keeps_signs(impl: types.ModuleType) -> None:
    for a, d in [(-2.5, -1.0), (0.0, 0.0), (-0.0, 0.0), (3.0, 1.0)]:
        x = impl.Value(a)
        y = abs(x)
        y.backward()
        assert (y.data, x.grad) == (abs(a), d) and math.copysign(1, y.data) == 1


def test_softplus_does_not_overflow(impl: types.ModuleType) -> None:
    for a in (1000.0, -1000.0, 1e308, -1e308):
        x = impl.Value(a)
        y = x.softplus()
        y.backward()
        assert y.data == softplus(a) and x.grad == sigmoid(a)
    assert impl.Value(1000.0).softplus().data == 1000.0


# ---- comparisons, max and min, float ----


def test_comparisons_are_on_data_with_values_or_numbers(impl: types.ModuleType) -> None:
    a, b = impl.Value(2.0), impl.Value(-3.0)
    assert (a > b, a >= b, a < b, a <= b) == (True, True, False, False)
    assert (a < 3, 3 > a, a <= 2.0, 2 >= a, a > np.float64(1.5), b < -2) == (True,) * 6
    assert type(a < b) is bool
    assert not (a < impl.Value(2.0)) and a <= impl.Value(2.0) and a >= impl.Value(2.0)
    nan = impl.Value(math.nan)
    assert not (nan < a or nan > a or nan <= a or nan >= a)  # as floats compare
    with pytest.raises(TypeError):
        a < "3"  # noqa: B015
    with pytest.raises(TypeError):
        a > None  # type: ignore[operator]  # noqa: B015


def test_equality_and_hashing_stay_identity(impl: types.ModuleType) -> None:
    a, b = impl.Value(2.0), impl.Value(2.0)
    assert a == a and a != b and not (a == b) and a != 2.0
    assert len({a, b, a}) == 2 and hash(a) == hash(a)
    assert {a: 1}[a] == 1


def test_max_and_min_route_the_gradient_to_the_value_they_pick(impl: types.ModuleType) -> None:
    xs = [impl.Value(x) for x in (0.5, 4.0, -1.0, 2.0)]
    top, bottom = max(xs), min(xs)
    assert top is xs[1] and bottom is xs[2]
    (top * 3.0 + bottom * bottom).backward()
    assert [x.grad for x in xs] == [0.0, 3.0, -2.0, 0.0]
    assert max(xs[0], 7.0) == 7.0 and max(xs[0], 0.1) is xs[0]  # numbers compare too


def test_a_value_is_not_a_number(impl: types.ModuleType) -> None:
    v = impl.Value(-2.5)
    # each of these would take the number and drop the graph: micrograd raises TypeError too
    converting = [float, math.exp, np.float64, lambda v: np.array([v, v], dtype=float),
                  lambda v: np.asarray([v], dtype=np.float64)]  # fmt: skip
    for convert in converting:
        with pytest.raises(TypeError, match=r"a Value is not a number.*v\.data \(or v\.item"
                                            r"\(\)\) for its number, -2\.5$"):  # fmt: skip
            convert(v)
    x = impl.Value(1.0)  # the trial's case: x * math.exp(x) would give x.grad 1.649, not 2.473
    with pytest.raises(TypeError, match="not a number"):
        x * math.exp(x)
    assert v.item() == -2.5 and type(v.item()) is float
    assert f"{v:.3f}" == "-2.500" and format(v, "+.1e") == "-2.5e+00" and f"{v}" == repr(v)
    d = (v * 2.0).detach()
    assert d.data == -5.0 and d._op == "" and d._prev == set() and d is not v
    assert not d.requires_grad and d._prev == set()  # a constant, as PyTorch's detach()
    with pytest.raises(RuntimeError, match="requires no grad"):
        d.backward()
    (v * d).backward()
    assert d.grad == 0.0  # nothing flows into a detached value
    with pytest.raises(TypeError, match="Value"):
        impl.Value(v)
    with pytest.raises(TypeError, match="Value"):
        v.data = impl.Value(1.0)
    other = fastgrad.reference if impl is fastgrad._core else fastgrad._core
    with pytest.raises(TypeError):
        v + other.Value(1.0)  # the other implementation's Value is not a number either
    with pytest.raises(TypeError):
        impl.sum([other.Value(1.0)])


# ---- softmax, logsumexp, cross_entropy ----


def test_softmax_is_stable_for_large_inputs(impl: types.ModuleType) -> None:
    xs = [impl.Value(x) for x in (1000.0, 1001.0, -1000.0)]
    probs = fastgrad.softmax(xs)
    assert all(isinstance(p, impl.Value) for p in probs)
    expected = [1 / (1 + math.e), math.e / (1 + math.e), 0.0]
    assert all(math.isclose(p.data, e, rel_tol=1e-15, abs_tol=1e-300)
               for p, e in zip(probs, expected))  # fmt: skip
    probs[1].backward()
    p0, p1 = expected[0], expected[1]
    assert math.isclose(xs[1].grad, p1 * (1 - p1), rel_tol=1e-12)
    assert math.isclose(xs[0].grad, -p0 * p1, rel_tol=1e-12)


def test_logsumexp_and_cross_entropy_are_stable(impl: types.ModuleType) -> None:
    xs = [impl.Value(x) for x in (1000.0, 1000.0)]
    lse = fastgrad.logsumexp(xs)
    assert lse.data == 1000.0 + math.log(2.0)
    lse.backward()
    assert [x.grad for x in xs] == [0.5, 0.5]
    logits = [impl.Value(x) for x in (1000.0, 0.0, -5.0)]
    loss = fastgrad.cross_entropy(logits, 1)
    assert math.isclose(loss.data, 1000.0, rel_tol=1e-15)
    loss.backward()
    assert math.isclose(logits[0].grad, 1.0, rel_tol=1e-12) and logits[1].grad == -1.0
    assert fastgrad.logsumexp([impl.Value(math.inf), impl.Value(1.0)]).data == math.inf


def test_helpers_take_numbers_and_refuse_what_they_cannot_use(impl: types.ModuleType) -> None:
    probs = fastgrad.softmax([impl.Value(0.0), 0.0])
    assert [p.data for p in probs] == [0.5, 0.5] and isinstance(probs[1], impl.Value)
    with pytest.raises(ValueError, match="empty"):
        fastgrad.softmax([])
    with pytest.raises(IndexError, match="target_index 3"):
        fastgrad.cross_entropy([impl.Value(1.0)] * 3, 3)
    with pytest.raises(TypeError):
        fastgrad.cross_entropy([impl.Value(1.0)] * 3, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str"):
        fastgrad.logsumexp([impl.Value(1.0), "2"])


def test_softmax_replays_with_each_rows_own_shift(impl: types.ModuleType) -> None:
    """The shift m is a node (maximum, then finite): a replay at new data shifts by the new
    largest value, giving the bits of building softmax afresh there."""
    xs = [impl.Value(x) for x in (0.5, 2.0, -1.0)]
    probs = fastgrad.softmax(xs)
    tape = impl.Tape(impl.sum([p * w for p, w in zip(probs, (1.0, 2.0, 3.0))]))
    xs[0].data = 3.0
    tape.forward()
    tape.backward()
    fresh = [impl.Value(x) for x in (3.0, 2.0, -1.0)]
    root = impl.sum([p * w for p, w in zip(fastgrad.softmax(fresh), (1.0, 2.0, 3.0))])
    root.backward()
    assert tape.root.data == root.data
    assert [x.grad for x in xs] == [x.grad for x in fresh]


# ---- grad and value_and_grad ----


def test_grad_matches_hand_derived_gradients(impl: types.ModuleType) -> None:
    def f(x: Any, y: Any) -> Any:
        return (x * y).sin() + (x * x + y * y).sqrt()

    x, y = 0.7, 2.0
    r = math.sqrt(x * x + y * y)
    dfdx = functional.grad(f, engine=impl)
    dfdy = functional.grad(f, argnums=1, engine=impl)
    both = functional.grad(f, argnums=(0, 1), engine=impl)
    assert math.isclose(dfdx(x, y), y * math.cos(x * y) + x / r, rel_tol=1e-14)
    assert math.isclose(dfdy(x, y), x * math.cos(x * y) + y / r, rel_tol=1e-14)
    assert both(x, y) == (dfdx(x, y), dfdy(x, y))
    value, gradient = functional.value_and_grad(f, argnums=-1, engine=impl)(x, y)
    assert value == math.sin(x * y) + r and gradient == dfdy(x, y)
    assert type(value) is float and type(gradient) is float


def test_grad_of_list_arguments_comes_back_in_their_shape(impl: types.ModuleType) -> None:
    def loss(ws: list[Any], xs: list[Any], b: float) -> Any:
        return (impl.dot(ws, xs) + b).tanh()

    ws, xs, b = [0.5, -0.25], (1.0, 2.0), 0.1
    g_ws, g_xs = functional.grad(loss, argnums=(0, 1), engine=impl)(ws, xs, b)
    t = math.tanh(0.5 * 1.0 + -0.25 * 2.0 + 0.1)
    d = 1 - t * t
    assert isinstance(g_ws, list) and isinstance(g_xs, tuple)
    assert g_ws == [1.0 * d, 2.0 * d] and g_xs == (0.5 * d, -0.25 * d)
    nested = functional.grad(lambda m: m[0][0] * m[1][1], engine=impl)([[2.0, 0.0], [0.0, 3.0]])
    assert nested == [[3.0, 0.0], [0.0, 2.0]]
    array = functional.grad(lambda v: impl.sum(v) * 2.0, engine=impl)(np.array([1.0, 2.0]))
    assert isinstance(array, np.ndarray) and array.tolist() == [2.0, 2.0]


def test_grad_explains_what_it_cannot_differentiate(impl: types.ModuleType) -> None:
    def f(x: Any) -> Any:
        return x * 2.0

    def data(x: Any) -> Any:
        return x.data

    with pytest.raises(TypeError, match=r"^data\(\) must return a Value to be differentiated, "
                                        r"not 'float'$"):  # fmt: skip
        functional.grad(data, engine=impl)(1.0)

    with pytest.raises(TypeError, match=r"argument 0 of f\(\) must be a real number, not 'str'"):
        functional.grad(f, engine=impl)("1")
    derivative = functional.grad(f, engine=impl)(impl.Value(1.0))  # a node, differentiable
    assert isinstance(derivative, impl.Value) and derivative.data == 2.0
    with pytest.raises(ValueError, match="out of range"):
        functional.grad(f, argnums=1, engine=impl)(1.0)
    with pytest.raises(TypeError, match="argnums"):
        functional.grad(f, argnums="0", engine=impl)(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice"):
        functional.grad(f, argnums=(0, 0), engine=impl)(1.0)
    assert functional.grad(f, engine=impl).__name__ == "f"


def test_gradcheck_takes_numbers() -> None:
    report = fastgrad.gradcheck(lambda a, b: (a * b).sin() + a.softplus(), [0.3, 1.7])
    assert report.passed and len(report.inputs) == 2


# ---- the package: submodules as attributes, loaded lazily ----


def test_submodules_are_attributes() -> None:
    for name in ("nn", "optim", "viz", "datasets", "engine", "functional"):
        assert isinstance(getattr(fastgrad, name), types.ModuleType)
        assert name in dir(fastgrad) and name in fastgrad.__all__
    assert fastgrad.optim.SGD.__module__ == "fastgrad.optim.optimizer"
    assert isinstance(fastgrad.optim.lr_scheduler, types.ModuleType)
    assert callable(fastgrad.viz.draw_dot) and callable(fastgrad.save)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fastgrad.nope  # type: ignore[attr-defined]  # noqa: B018


def test_import_fastgrad_stays_light() -> None:
    code = ("import sys, fastgrad; heavy = [m for m in ('graphviz', 'matplotlib', 'tqdm', "
            "'fastgrad.viz', 'fastgrad.nn') if m in sys.modules]; print(heavy); "
            "fastgrad.optim.SGD; print('fastgrad.optim' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
