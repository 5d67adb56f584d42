"""Values that require no grad: Value(x, requires_grad=False), detach(), and what no_grad()
makes. Backward (eager, gradients, a tape's backward and run) never evaluates a local
derivative toward them, so a derivative that is singular there (sqrt at 0, x ** k at 0)
never raises; ops on them alone give more of them; d/dx x**0 is 0 everywhere. Both engines,
C == reference with ==."""

from __future__ import annotations

import math
import pickle
import threading
import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from programs import ARITHMETIC, Program, bits, build_pool, programs

import fastgrad._core
import fastgrad.reference


def test_a_constant_base_needs_no_derivative(impl: types.ModuleType) -> None:
    """c * x**k at x = 0 raised in backward even when only d/dc was asked (PyTorch gives
    d/dc = 0): with x a constant, its derivative k * x**(k-1) is never taken."""
    c = impl.Value(2.0)
    x = impl.Value(0.0, requires_grad=False)
    y = c * x**0.5 + c * x**2.5
    y.backward()
    assert (c.grad, x.grad) == (0.0, 0.0)
    assert impl.gradients(y, c) == 0.0
    w = impl.Value(1.5)
    z = w * impl.Value(0.0).detach().sqrt()  # sqrt's derivative 0.5 / 0 is never taken
    z.backward()
    assert w.grad == 0.0
    with pytest.raises(ZeroDivisionError):  # a Value that requires grad still raises
        (w * impl.Value(0.0).sqrt()).backward()


def test_a_constant_base_of_a_power_with_a_variable_exponent(impl: types.ModuleType) -> None:
    """x ** c with x a constant 0: d/dx = c * 0 ** (c - 1) is never taken; d/dc is."""
    c = impl.Value(0.5)
    x = impl.Value(0.0, requires_grad=False)
    y = x**c
    y.backward()
    assert (c.grad, x.grad) == (0.0, 0.0)


def test_x_to_the_zero_has_derivative_zero(impl: types.ModuleType) -> None:
    for x0 in (0.0, -0.0, 2.0, -3.0, math.inf):
        x = impl.Value(x0)
        y = x**0
        y.backward()
        assert (y.data, x.grad) == (1.0, 0.0)
        assert impl.gradients(x**0, x) == 0.0


def test_requires_grad_follows_the_operands(impl: types.ModuleType) -> None:
    x = impl.Value(1.0, requires_grad=False)
    w = impl.Value(2.0)
    assert w.requires_grad and not x.requires_grad
    assert not (x * 2.0 + 1.0).requires_grad  # numbers aside
    assert not impl.sum([x, x.exp(), 3.0]).requires_grad
    assert (x * w).requires_grad and impl.dot([x], [w]).requires_grad
    assert not w.detach().requires_grad and w.detach()._prev == set()
    with pytest.raises(TypeError, match="requires_grad must be True or False"):
        impl.Value(1.0, requires_grad=1)  # type: ignore[arg-type]


def test_no_grad_makes_constants_in_this_thread_only(impl: types.ModuleType) -> None:
    w = impl.Value(2.0)
    seen: list[Any] = []
    inside, go_on = threading.Event(), threading.Event()

    def other_thread() -> None:
        inside.wait()
        seen.append((w * 3.0).requires_grad)  # this thread is not inside no_grad
        go_on.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with impl.no_grad():
        with impl.no_grad():  # nested
            y = w * 3.0
        z = (w + 1.0).tanh()
        inside.set()
        go_on.wait()
    worker.join()
    assert (y.data, y.requires_grad, y._prev, z.requires_grad) == (6.0, False, set(), False)
    assert seen == [True]
    assert (w * 3.0).requires_grad  # after it, ops build graphs again

    @impl.no_grad()
    def evaluate(v: Any) -> Any:
        return v * v

    assert not evaluate(w).requires_grad


def test_what_requires_no_grad_cannot_be_differentiated(impl: types.ModuleType) -> None:
    x = impl.Value(1.0, requires_grad=False)
    w = impl.Value(2.0)
    with pytest.raises(RuntimeError, match="requires no grad"):
        (x * 2.0).backward()
    with pytest.raises(RuntimeError, match="input 1 requires no grad"):
        impl.gradients(w * x, [w, x])
    tape = impl.Tape(x.exp())
    assert tape.forward() == math.e
    with pytest.raises(RuntimeError, match="requires no grad"):
        tape.backward()
    with pytest.raises(RuntimeError, match="requires no grad"):
        tape.run([x], np.zeros((2, 1)))
    assert tape.run([x], np.zeros((2, 1)), backward=False).tolist() == [1.0, 1.0]


def test_inputs_that_require_no_grad_in_a_run(impl: types.ModuleType) -> None:
    """Input leaves made with requires_grad=False: a row at sqrt's singular point trains the
    weights as eager code would, and the inputs' grads are never written."""
    def build(x0: float) -> tuple[Any, Any, Any]:
        x = impl.Value(x0, requires_grad=False)
        w = impl.Value(0.75)
        return (w * x.sqrt() + w * w) * (x + 1.0).log(), x, w

    root, x, w = build(1.0)
    x.grad = 5.0
    rows = [0.0, 4.0, 9.0]
    out = impl.Tape(root).run([x], np.array(rows).reshape(3, 1))
    total = 0.0
    for r, row in enumerate(rows):
        fresh, _, fresh_w = build(row)
        fresh.backward()
        assert bits(out[r]) == bits(fresh.data)
        total = total + fresh_w.grad
    assert bits(w.grad) == bits(total)
    assert x.grad == 5.0


def test_pickles_keep_what_requires_no_grad(impl: types.ModuleType) -> None:
    x = impl.Value(3.0, requires_grad=False)
    w = impl.Value(2.0)
    y = pickle.loads(pickle.dumps(w * x + x * 2.0))
    assert y.requires_grad
    assert sorted(v.requires_grad for v in y._prev) == [False, True]
    made = impl.Value(5.0, [w], "made", requires_grad=False)  # micrograd's Value(data, children)
    assert not pickle.loads(pickle.dumps(made)).requires_grad


@given(programs(sets=False, max_steps=40), st.lists(st.booleans(), min_size=8, max_size=8))
def test_c_and_reference_agree_with_constants(program: Program, constant: list[bool]) -> None:
    """Random programs over edge values with some leaves made requires_grad=False: eager
    backward, gradients and a tape's forward, backward and run give the same bits and raise
    the same errors on both engines."""
    results = []
    for impl in (fastgrad._core, fastgrad.reference):
        pool = [impl.Value(x, requires_grad=not constant[i])
                for i, x in enumerate(program.leaves)]  # fmt: skip
        trace: list[Any] = []
        try:
            pool = build_pool(impl, program, program.leaves, pool)
        except ARITHMETIC as e:
            results.append(type(e).__name__)
            continue
        root = impl.sum(pool)
        leaves = pool[: len(program.leaves)]
        wanted = [v for v in leaves if v.requires_grad]
        for step in ("gradients", "backward", "tape"):
            try:
                if step == "gradients":
                    trace.append([bits(g) for g in impl.gradients(root, wanted)])
                elif step == "backward":
                    root.backward()
                else:
                    tape = impl.Tape(root)
                    tape.forward()
                    tape.backward()
                    rows = np.array([program.leaves, [x * 0.5 for x in program.leaves]])
                    trace.append([bits(v) for v in tape.run(leaves, rows).tolist()])
            except (RuntimeError, *ARITHMETIC) as e:
                trace.append(type(e).__name__)
            trace.append(sorted((bits(v.data), bits(v.grad), v.requires_grad) for v in pool))
        results.append(trace)
    assert results[0] == results[1]
