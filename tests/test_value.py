"""Value's API on both implementations: construction, attributes, operators, _prev, _op,
labels, repr, numpy interplay, identity semantics, backward accumulation."""

from __future__ import annotations

import fractions
import math
import types

import numpy as np
import pytest


def test_micrograd_readme_example(impl: types.ModuleType) -> None:
    Value = impl.Value
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    assert f"{g.data:.4f}" == "24.7041"
    g.backward()
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"


@pytest.mark.parametrize(
    "data, expected",
    [(3, 3.0), (2.5, 2.5), (True, 1.0), (np.float64(1.25), 1.25), (np.float32(0.5), 0.5),
     (np.int64(-7), -7.0), (fractions.Fraction(1, 4), 0.25), (np.array(1.5), 1.5),
     (-0.0, -0.0), (math.inf, math.inf)],
)  # fmt: skip
def test_data_is_stored_as_a_python_float(impl: types.ModuleType, data: object,
                                          expected: float) -> None:
    v = impl.Value(data)
    assert type(v.data) is float and type(v.grad) is float
    assert v.data == expected and math.copysign(1, v.data) == math.copysign(1, expected)
    assert v.grad == 0.0 and v._op == "" and v.label == "" and v._prev == set()


@pytest.mark.parametrize("data", ["x", "1.5", None, 1j, [1], (1.0,), b"1", {}])
def test_non_numbers_are_rejected_naming_their_type(impl: types.ModuleType, data: object) -> None:
    with pytest.raises(TypeError, match=type(data).__name__):
        impl.Value(data)


def test_a_value_is_not_data(impl: types.ModuleType) -> None:
    with pytest.raises(TypeError, match="Value"):
        impl.Value(impl.Value(1.0))


def test_data_grad_and_label_are_writable_and_checked(impl: types.ModuleType) -> None:
    v = impl.Value(1.0, label="w")
    assert v.label == "w"
    v.data = 3
    v.grad = np.float32(0.5)
    v.label = "weight"
    assert (v.data, v.grad, v.label) == (3.0, 0.5, "weight")
    assert type(v.data) is float
    for attribute, bad in [("data", "3"), ("grad", None), ("label", 3)]:
        with pytest.raises(TypeError):
            setattr(v, attribute, bad)
    assert (v.data, v.grad, v.label) == (3.0, 0.5, "weight")


def test_labels_belong_to_the_node_not_the_handle(impl: types.ModuleType) -> None:
    x = impl.Value(2.0, label="x")
    y = x * 3
    del x
    (child,) = [c for c in y._prev if c.data == 2.0]
    assert child.label == "x"
    child.label = ""
    assert child.label == ""


def test_repr_matches_micrograd(impl: types.ModuleType) -> None:
    assert repr(impl.Value(2)) == "Value(data=2.0, grad=0.0)"
    v = impl.Value(-0.5)
    v.grad = 1e-300
    assert repr(v) == "Value(data=-0.5, grad=1e-300)"


def test_prev_returns_the_live_children_themselves(impl: types.ModuleType) -> None:
    a, b = impl.Value(1.0), impl.Value(2.0)
    c = a * b
    assert c._prev == {a, b}
    assert all(any(p is x for p in c._prev) for x in (a, b))
    assert (a + a)._prev == {a}


def test_prev_shows_number_operands_as_constant_leaves(impl: types.ModuleType) -> None:
    a = impl.Value(3.0)
    for expression in (a * 2, 2 * a, a + 2.0, 2.0 - a, a / 4, 4 / a, 2**a):
        (constant,) = [p for p in expression._prev if p is not a]
        assert constant._op == "" and constant._prev == set()
        assert constant.data in (2.0, 4.0)


def test_prev_gives_the_same_object_while_it_lives(impl: types.ModuleType) -> None:
    out = impl.Value(1.0) + 2.0
    first = sorted(out._prev, key=lambda v: v.data)
    second = sorted(out._prev, key=lambda v: v.data)
    assert all(x is y for x, y in zip(first, second))


@pytest.mark.parametrize(
    "make, op",
    [(lambda a, b: a + b, "+"), (lambda a, b: a - b, "-"), (lambda a, b: a * b, "*"),
     (lambda a, b: a / b, "/"), (lambda a, b: a**b, "**"), (lambda a, b: -a, "neg"),
     (lambda a, b: a**2, "**2"), (lambda a, b: a**-1, "**-1"), (lambda a, b: a**0.5, "**0.5"),
     (lambda a, b: a**2.0, "**2"), (lambda a, b: a.relu(), "ReLU"), (lambda a, b: a.tanh(), "tanh"),
     (lambda a, b: a.exp(), "exp"), (lambda a, b: a.log(), "log"),
     (lambda a, b: a.sigmoid(), "sigmoid")],
)  # fmt: skip
def test_op_names(impl: types.ModuleType, make: object, op: str) -> None:
    a, b = impl.Value(2.0), impl.Value(3.0)
    assert make(a, b)._op == op  # type: ignore[operator]
    assert impl.sum([a, b])._op == "sum"
    assert impl.dot([a], [b])._op == "dot"


@pytest.mark.parametrize(
    "expression, data, grad_a",
    [("a + 2", 5.0, 1.0), ("2 + a", 5.0, 1.0), ("a - 2", 1.0, 1.0), ("2 - a", -1.0, -1.0),
     ("a * 2", 6.0, 2.0), ("2 * a", 6.0, 2.0), ("a / 2", 1.5, 0.5), ("6 / a", 2.0, -2 / 3),
     ("2 ** a", 8.0, 8 * math.log(2)), ("a ** 2", 9.0, 6.0), ("-a", -3.0, -1.0)],
)  # fmt: skip
def test_numbers_on_either_side(impl: types.ModuleType, expression: str, data: float,
                                grad_a: float) -> None:
    for number in (int, float, np.float64, np.int64, np.float32):
        a = impl.Value(3.0)
        out = eval(expression.replace("2", "number(2)").replace("6", "number(6)"),
                   {"a": a, "number": number})
        assert type(out) is impl.Value
        assert out.data == pytest.approx(data, rel=1e-15)
        out.backward()
        assert a.grad == pytest.approx(grad_a, rel=1e-15)


def test_unsupported_operands_give_type_error(impl: types.ModuleType) -> None:
    a = impl.Value(1.0)
    for bad in ("a", None, 1j, [1.0], object()):
        for op in ("+", "-", "*", "/", "**"):
            with pytest.raises(TypeError):
                eval(f"a {op} bad", {"a": a, "bad": bad})
            with pytest.raises(TypeError):
                eval(f"bad {op} a", {"a": a, "bad": bad})
    with pytest.raises(TypeError):
        pow(a, 2, 3)
    assert a.data == 1.0 and a.grad == 0.0


def test_numpy_object_arrays_work_elementwise(impl: types.ModuleType) -> None:
    xs = np.array([impl.Value(1.0), impl.Value(2.0), impl.Value(3.0)])
    ws = np.array([0.5, -1.0, 2.0])
    total = (xs * ws).sum() + np.dot(xs, xs)
    assert type(total) is impl.Value
    assert total.data == 0.5 - 2.0 + 6.0 + 14.0
    total.backward()
    assert [x.grad for x in xs] == [0.5 + 2.0, -1.0 + 4.0, 2.0 + 6.0]
    shifted = xs + np.array([1.0, 1.0, 1.0])
    assert [v.data for v in shifted] == [2.0, 3.0, 4.0]
    scaled = np.array([1.0, 2.0]) * impl.Value(3.0)  # an array with a Value: elementwise
    assert scaled.dtype == object and [v.data for v in scaled] == [3.0, 6.0]


def test_numpy_scalars_defer_to_the_value(impl: types.ModuleType) -> None:
    """np.float64(2) * v goes straight to v.__rmul__, not through a 0-d object array
    (thirty times slower): the demo's -yi * score has a numpy scalar on the left."""
    v = impl.Value(3.0)
    for number in (np.float64(2.0), np.float32(2.0), np.int64(2)):
        assert number.__mul__(v) is NotImplemented
        assert number.__add__(v) is NotImplemented
        assert (number * v).data == 6.0 and (number - v).data == -1.0


def test_hash_and_equality_are_by_identity(impl: types.ModuleType) -> None:
    a, b = impl.Value(1.0), impl.Value(1.0)
    assert a != b and a == a
    assert len({a, b, a}) == 2
    assert hash(a) != hash(b)


def test_backward_twice_accumulates_as_micrograd(impl: types.ModuleType) -> None:
    x = impl.Value(3.0)
    y = x * x + x
    y.backward()
    assert x.grad == 7.0
    y.backward()
    # the interior node x * x kept its grad of 1 and receives another: micrograd's behaviour
    assert x.grad == 7.0 + 2 * 3.0 * 2.0 + 1.0
    assert y.grad == 1.0


def test_node_backward_runs_the_local_rule_once(impl: types.ModuleType) -> None:
    a, b = impl.Value(2.0), impl.Value(5.0)
    out = a * b
    out.grad = 3.0
    out._backward()
    assert (a.grad, b.grad) == (15.0, 6.0)
    out._backward()
    assert (a.grad, b.grad) == (30.0, 12.0)
    a._backward()  # a leaf's rule does nothing
    assert (a.grad, b.grad) == (30.0, 12.0)


def test_backward_reads_current_data_like_micrograd_closures(impl: types.ModuleType) -> None:
    a, b = impl.Value(2.0), impl.Value(5.0)
    out = a * b
    b.data = 7.0  # micrograd's closure reads other.data when it runs
    out.backward()
    assert a.grad == 7.0 and out.data == 10.0


def test_user_built_nodes_keep_children_and_op(impl: types.ModuleType) -> None:
    a, b = impl.Value(1.0), impl.Value(2.0)
    out = impl.Value(10.0, (a, b, a), "custom", label="out")
    assert out._prev == {a, b} and out._op == "custom" and out.label == "out"
    named_leaf = impl.Value(1.0, _op="input")
    assert named_leaf._op == "input" and named_leaf._prev == set()
    total = out * 2
    total.backward()
    # no _backward was given: like micrograd, the node passes no gradient on
    assert out.grad == 2.0 and a.grad == 0.0 and b.grad == 0.0
    with pytest.raises(TypeError):
        impl.Value(1.0, (a, 2.0))
    with pytest.raises(TypeError):
        impl.Value(1.0, (), 3)


def test_sum_and_dot_take_numbers_and_values(impl: types.ModuleType) -> None:
    a, b = impl.Value(2.0), impl.Value(3.0)
    s = impl.sum([a, 1, b, 0.5], start=10)
    assert s.data == 16.5 and len(s._prev) == 5
    d = impl.dot([a, 2.0], [b, a], start=b)
    assert d.data == 3.0 + 6.0 + 4.0
    d.backward()
    assert (a.grad, b.grad) == (3.0 + 2.0, 1.0 + 2.0)
    assert impl.sum([], start=a) is a
    empty = impl.sum([])
    assert type(empty) is impl.Value and empty.data == 0.0
    with pytest.raises(ValueError, match="2 weights and 1 inputs"):
        impl.dot([a, b], [a])
    with pytest.raises(TypeError, match="str"):
        impl.sum([a, "b"])
    with pytest.raises(TypeError, match="NoneType"):
        impl.sum([a], start=None)


def test_sum_accepts_generators_like_micrograd_code(impl: types.ModuleType) -> None:
    w = [impl.Value(float(i)) for i in range(4)]
    x = [1.0, -1.0, 2.0, 0.5]
    out = impl.sum((wi * xi for wi, xi in zip(w, x)), impl.Value(1.0))
    assert out.data == 1.0 + 0.0 - 1.0 + 4.0 + 1.5


def test_init_twice_is_refused_by_both_engines(impl: types.ModuleType) -> None:
    """A second __init__ would leave the graph built on the Value holding its old node (the
    C engine gave grad 0.0 and the reference 3.0 afterwards): both refuse, and change
    nothing."""
    x = impl.Value(1.0)
    y = x * 3.0
    with pytest.raises(RuntimeError, match="make a new Value"):
        x.__init__(2.0)
    y.backward()
    assert (x.data, x.grad) == (1.0, 3.0)
