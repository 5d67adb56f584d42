"""fastgrad.gradcheck: every operator's backward agrees with central differences on random
inputs, and a deliberately wrong derivative fails with a report that names it."""

from __future__ import annotations

import math
import re
import types
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastgrad

# each op over inputs in its smooth domain (away from relu's kink, log's and pow's edges)
OPS: dict[str, tuple[int, Callable[..., Any]]] = {
    "neg": (1, lambda x: -x),
    "relu": (1, lambda x: x.relu()),
    "tanh": (1, lambda x: x.tanh()),
    "exp": (1, lambda x: x.exp()),
    "log": (1, lambda x: x.log()),
    "sigmoid": (1, lambda x: x.sigmoid()),
    "**2.5": (1, lambda x: x**2.5),
    "abs": (1, lambda x: abs(x)),
    "sqrt": (1, lambda x: x.sqrt()),
    "sin": (1, lambda x: x.sin()),
    "cos": (1, lambda x: x.cos()),
    "softplus": (1, lambda x: x.softplus()),
    "+": (2, lambda x, y: x + y),
    "-": (2, lambda x, y: x - y),
    "*": (2, lambda x, y: x * y),
    "/": (2, lambda x, y: x / y),
    "**": (2, lambda x, y: x**y),
}
smooth = st.one_of(st.floats(0.2, 3.0), st.floats(-3.0, -0.2))
positive = st.floats(0.2, 3.0)


@pytest.mark.parametrize("name", sorted(OPS))
@given(data=st.data())
def test_every_operator_passes(impl: types.ModuleType, name: str, data: st.DataObject) -> None:
    arity, f = OPS[name]
    domain = positive if name in ("log", "**2.5", "**", "sqrt") else smooth
    inputs = [impl.Value(data.draw(domain)) for _ in range(arity)]
    report = fastgrad.gradcheck(f, inputs)
    assert report and report.passed and len(report.inputs) == arity


@given(st.lists(smooth, min_size=4, max_size=8))
def test_sum_and_dot_pass(impl: types.ModuleType, xs: list[float]) -> None:
    values = [impl.Value(x) for x in xs]
    half = len(values) // 2
    assert fastgrad.gradcheck(lambda *v: impl.dot(v[:half], v[half : 2 * half], v[0]).tanh()
                              + impl.sum(v) * 0.5, values)  # fmt: skip


def test_a_wrong_derivative_fails_naming_the_input(impl: types.ModuleType) -> None:
    def sine(x: Any) -> Any:  # a node with no derivative: backward gives 0, not cos x
        return impl.Value(math.sin(x.data), (x,), "sin")

    x, y = impl.Value(0.5, label="x"), impl.Value(1.5, label="y")
    with pytest.raises(fastgrad.GradcheckError) as raised:
        fastgrad.gradcheck(lambda x, y: sine(x) + y * y, [x, y])
    message = str(raised.value)
    assert "FAILED" in message and "input 0 ('x')" in message
    assert "backward gives 0.0" in message
    numeric = float(re.search(r"central differences ([-0-9.e]+)", message).group(1))  # type: ignore[union-attr]
    assert numeric == pytest.approx(math.cos(0.5), rel=1e-6)
    report = raised.value.report
    assert report.worst.index == 0 and not report.inputs[0].passed and report.inputs[1].passed
    assert report.inputs[1].analytic == pytest.approx(3.0)
    quiet = fastgrad.gradcheck(lambda x, y: sine(x) + y, [x, y], raise_exception=False)
    assert not quiet and quiet.worst.label == "x"


def test_inputs_are_left_as_they_were(impl: types.ModuleType) -> None:
    x = impl.Value(0.7)
    x.grad = 12.5
    fastgrad.gradcheck(lambda v: v.exp() * v, [x])
    assert (x.data, x.grad) == (0.7, 12.5)
    with pytest.raises(ValueError, match="at least one input"):
        fastgrad.gradcheck(lambda: impl.Value(1.0), [])


def test_nan_is_a_failure(impl: types.ModuleType) -> None:
    x = impl.Value(float("nan"), label="x")
    report = fastgrad.gradcheck(lambda v: v * 2.0, [x], raise_exception=False)
    assert not report.passed and report.worst.label == "x"
