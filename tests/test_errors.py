"""Bad input raises Python's own exception, with a message naming the op and its operands,
and changes nothing: no new node, no existing node touched, forward or backward."""

from __future__ import annotations

import gc
import types
from collections.abc import Callable
from typing import Any

import pytest

import fastgrad._core
import fastgrad.reference


def snapshot(values: list[Any]) -> list[tuple[Any, ...]]:
    """Everything observable of each value and of its children (by content: an intermediate
    node without a live handle gets a new one each time _prev is asked)."""
    return [
        (v.data, v.grad, v._op, v.label, sorted((p.data, p.grad, p._op) for p in v._prev))
        for v in values
    ]


def live_nodes() -> int:
    return int(fastgrad._core._arena_stats()[0])


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda V, a, z: a / z, ZeroDivisionError, "3.0 / 0.0: float division by zero"),
        (lambda V, a, z: a / 0, ZeroDivisionError, "3.0 / 0.0: float division by zero"),
        (lambda V, a, z: 1 / z, ZeroDivisionError, "1.0 / 0.0: float division by zero"),
        (lambda V, a, z: a / V(-0.0), ZeroDivisionError, "3.0 / (-0.0): float division by zero"),
        (lambda V, a, z: z.log(), ValueError, "log(0.0): math domain error"),
        (lambda V, a, z: V(-1).log(), ValueError, "log(-1.0): math domain error"),
        (lambda V, a, z: V(float("-inf")).log(), ValueError, "log(-inf): math domain error"),
        (lambda V, a, z: V(1000).exp(), OverflowError, "exp(1000.0): math range error"),
        (lambda V, a, z: V(-8) ** (1 / 3), ValueError,
         "(-8.0) ** 0.3333333333333333: math domain error"),
        (lambda V, a, z: (-8) ** V(1 / 3), ValueError,
         "(-8.0) ** 0.3333333333333333: math domain error"),
        (lambda V, a, z: z**-1, ValueError, "0.0 ** (-1.0): math domain error"),
        (lambda V, a, z: a ** V(1000.0), OverflowError, "3.0 ** 1000.0: math range error"),
        (lambda V, a, z: a ** 1e6, OverflowError, "3.0 ** 1000000.0: math range error"),
        (lambda V, a, z: V(-1.0).sqrt(), ValueError, "sqrt(-1.0): math domain error"),
        (lambda V, a, z: V(-1e-300).sqrt(), ValueError, "sqrt(-1e-300): math domain error"),
        (lambda V, a, z: V(float("-inf")).sqrt(), ValueError, "sqrt(-inf): math domain error"),
        (lambda V, a, z: V(float("inf")).sin(), ValueError, "sin(inf): math domain error"),
        (lambda V, a, z: V(float("-inf")).sin(), ValueError, "sin(-inf): math domain error"),
        (lambda V, a, z: V(float("inf")).cos(), ValueError, "cos(inf): math domain error"),
        (lambda V, a, z: V(float("-inf")).cos(), ValueError, "cos(-inf): math domain error"),
    ],
)  # fmt: skip
def test_forward_errors_are_pythons_and_change_nothing(
    impl: types.ModuleType, build: Callable[..., Any], error: type[Exception], message: str
) -> None:
    V = impl.Value
    a, z = V(3.0, label="a"), V(0.0)
    other = a * z
    other.backward()
    gc.collect()  # earlier tests' garbage cycles must not be freed during the count
    gc.disable()
    try:
        before, live = snapshot([a, z, other]), live_nodes()
        with pytest.raises(error) as raised:
            build(V, a, z)
        after = live_nodes()
    finally:
        gc.enable()
    assert str(raised.value) == message
    assert snapshot([a, z, other]) == before
    if impl is fastgrad._core:
        # a Value made inside `build` (V(-1) above) is dropped again; nothing else remains
        assert after == live


@pytest.mark.parametrize(
    "bad, name",
    [("x", "str"), (None, "NoneType"), (1j, "complex"), ([1], "list")],
)
def test_bad_data_names_the_type(impl: types.ModuleType, bad: object, name: str) -> None:
    with pytest.raises(TypeError, match=f"Value data must be a real number, not '{name}'"):
        impl.Value(bad)


def test_unsupported_operand_is_pythons_type_error(impl: types.ModuleType) -> None:
    a = impl.Value(1.0)
    # Python writes this message itself, naming a C type by its full name (as for numpy.ndarray)
    with pytest.raises(
        TypeError,
        match=r"unsupported operand type\(s\) for \+: '(fastgrad._core.)?Value' and 'str'",
    ):
        a + "a"
    with pytest.raises(TypeError, match=r"can't multiply sequence|unsupported operand"):
        "a" * a
    assert a.data == 1.0


def test_huge_ints_overflow_as_float_arithmetic_does(impl: types.ModuleType) -> None:
    a = impl.Value(1.0)
    with pytest.raises(OverflowError):
        a + 10**400
    with pytest.raises(OverflowError):
        impl.Value(10**400)


@pytest.mark.parametrize(
    "build, error, message",
    [
        # 1 / 1e-200 is fine, but d/db = -a / b**2 divides by 1e-400 == 0.0
        (lambda V: V(1.0) / V(1e-200), ZeroDivisionError,
         "in the backward pass of 1.0 / 1e-200: float division by zero"),
        # sqrt(0) is 0, its derivative 0.5 * 0 ** -0.5 is outside math.pow's domain
        (lambda V: V(0.0) ** 0.5, ValueError,
         "in the backward pass of 0.0 ** 0.5: math domain error"),
        # d/da of a ** b with a == 0, b == 0.5 is likewise undefined
        (lambda V: V(0.0) ** V(0.5), ValueError,
         "in the backward pass of 0.0 ** 0.5: math domain error"),
        # and d/da of 0 ** 0 is 0 * math.pow(0, -1), where PyTorch would give 0
        (lambda V: V(0.0) ** V(0.0), ValueError,
         "in the backward pass of 0.0 ** 0.0: math domain error"),
        # sqrt(0) is 0, and its derivative 0.5 / out divides by it, as `/` raises
        (lambda V: V(0.0).sqrt(), ZeroDivisionError,
         "in the backward pass of sqrt(0.0): float division by zero"),
        (lambda V: V(-0.0).sqrt(), ZeroDivisionError,
         "in the backward pass of sqrt(-0.0): float division by zero"),
    ],
)  # fmt: skip
def test_backward_errors_change_no_grad(
    impl: types.ModuleType, build: Callable[..., Any], error: type[Exception], message: str
) -> None:
    V = impl.Value
    x = V(2.0)
    failing = build(V)
    leaves = sorted(failing._prev, key=lambda v: v.data)
    root = (x * 3.0 + failing) * x
    x.grad = 0.25
    values = [x, failing, root, *leaves]
    before = snapshot(values)
    with pytest.raises(error) as raised:
        root.backward()
    assert str(raised.value) == message
    assert snapshot(values) == before
    with pytest.raises(error):
        failing._backward()
    assert snapshot(values) == before


def test_backward_error_after_data_changed(impl: types.ModuleType) -> None:
    x = impl.Value(2.0)
    y = x.log()
    x.data = 0.0  # micrograd's closure would divide by the new data
    with pytest.raises(ZeroDivisionError, match=r"backward pass of log\(0.0\)"):
        y.backward()
    assert (x.grad, y.grad) == (0.0, 0.0)


@pytest.mark.parametrize(
    "build, message",
    [(lambda x: x.sin(), "in the backward pass of sin(inf): math domain error"),
     (lambda x: x.cos(), "in the backward pass of cos(inf): math domain error")],
)  # fmt: skip
def test_sin_and_cos_derivatives_raise_where_the_math_module_does(
    impl: types.ModuleType, build: Callable[..., Any], message: str
) -> None:
    x = impl.Value(1.0)
    y = build(x)
    x.data = float("inf")  # the derivative is taken at the operand's data now, as micrograd's
    with pytest.raises(ValueError) as raised:
        y.backward()
    assert str(raised.value) == message
    assert (x.grad, y.grad) == (0.0, 0.0)


def test_nan_and_inf_propagate_without_raising(impl: types.ModuleType) -> None:
    V = impl.Value
    nan, inf = float("nan"), float("inf")
    out = (V(nan) + 1) * V(inf) - V(inf) + V(inf).exp() + V(nan).log() + V(inf).tanh()
    assert out.data != out.data
    out.backward()
    assert out.grad == 1.0
    assert (V(1.0) / V(inf)).data == 0.0
    assert V(inf).log().data == inf


def test_values_of_the_two_engines_are_named_when_mixed() -> None:
    """An op between a C Value and a reference Value said only "not 'Value'"."""
    c, r = fastgrad._core.Value(1.0), fastgrad.reference.Value(2.0)
    both = r"a Value of the C engine \(fastgrad._core\) and a Value of the pure-Python engine"
    with pytest.raises(TypeError, match=both):
        c + r
    with pytest.raises(TypeError, match=both):
        c ** r
    with pytest.raises(TypeError, match=r"a Value of the pure-Python engine .* and a Value of "
                                        r"the C engine"):
        r * c
    with pytest.raises(TypeError, match=r"sum\(\) term must be a real number, not a Value of "
                                        r"the pure-Python engine"):
        fastgrad._core.sum([c, r])


def test_data_and_grad_cannot_be_deleted(impl: types.ModuleType) -> None:
    v = impl.Value(1.5)
    with pytest.raises(AttributeError, match="data cannot be deleted"):
        del v.data
    with pytest.raises(AttributeError, match="grad cannot be deleted"):
        del v.grad
    assert (v.data, v.grad) == (1.5, 0.0)


def test_a_tape_never_initialised(impl: types.ModuleType) -> None:
    tape = impl.Tape.__new__(impl.Tape)
    for call in (tape.forward, tape.backward, lambda: tape.run([], [[]])):
        with pytest.raises(ValueError, match="never initialised"):
            call()


def test_run_with_targets_needs_y(impl: types.ModuleType) -> None:
    x, t = impl.Value(0.0), impl.Value(0.0)
    tape = impl.Tape((x - t) ** 2)
    with pytest.raises(ValueError, match="given 1 target leaves but no y"):
        tape.run([x], [[1.0], [2.0]], [t])
    assert (x.grad, t.grad) == (0.0, 0.0)


def test_reduce_on_plateau_takes_the_losss_value(impl: types.ModuleType) -> None:
    from fastgrad import optim
    from fastgrad.optim import lr_scheduler

    runs = []
    for as_value in (True, False):
        opt = optim.SGD([impl.Value(1.0)], lr=0.1)
        scheduler = lr_scheduler.ReduceLROnPlateau(opt, patience=0)
        for loss in (1.0, 2.0, 3.0, 0.5):
            scheduler.step(impl.Value(loss) * 1.0 if as_value else loss)
        runs.append(opt.param_groups[0]["lr"])
    assert runs[0] == runs[1] < 0.1
