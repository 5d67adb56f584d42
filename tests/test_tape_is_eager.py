"""A Tape is a faster way to run the same program: after its forward, backward or run, every
node it recorded holds what building the graph again at the leaves' data (and calling
backward) would have left, whatever Python does with it next: read it, build on it,
backpropagate or differentiate through it, pickle it. Both engines, compared with ==."""

from __future__ import annotations

import gc
import math
import pickle
import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from programs import ARITHMETIC, bits, build_summed, programs

import fastgrad._core
import fastgrad.reference


def pinn_like(impl: types.ModuleType, x0: float) -> tuple[Any, Any, list[Any]]:
    """y = tanh(2x)**2 and its interior nodes."""
    x = impl.Value(x0)
    a = 2 * x
    t = a.tanh()
    y = t**2
    return x, y, [a, t]


def state(values: list[Any]) -> list[tuple[bytes, bytes]]:
    return [(bits(v.data), bits(v.grad)) for v in values]


def test_gradients_after_forward_see_the_new_leaves(impl: types.ModuleType) -> None:
    """The new user's report: forward() left tanh's node at x = 0, so the derivative was 0."""
    x, y, _ = pinn_like(impl, 0.0)
    tape = impl.Tape(y)
    x.data = 1.0
    tape.forward()
    fresh_x, fresh, _ = pinn_like(impl, 1.0)
    assert impl.gradients(y, x) == impl.gradients(fresh, fresh_x)
    assert math.isclose(impl.gradients(y, x), 4 * math.tanh(2.0) * (1 - math.tanh(2.0) ** 2))


def test_after_forward_every_node_is_a_fresh_graphs(impl: types.ModuleType) -> None:
    x, y, interior = pinn_like(impl, 0.5)
    y.backward()  # grads that a graph built anew would not have
    tape = impl.Tape(y)
    x.data = -0.75
    tape.forward()
    fx, fy, finterior = pinn_like(impl, -0.75)
    assert state(interior + [y]) == state(finterior + [fy])
    tape.backward()
    fy.backward()
    assert state([x] + interior + [y]) != state([fx] + finterior + [fy])  # x.grad accumulated
    assert state(interior + [y]) == state(finterior + [fy])


def test_new_ops_and_backward_through_replayed_nodes(impl: types.ModuleType) -> None:
    x, y, (a, t) = pinn_like(impl, 0.0)
    tape = impl.Tape(y)
    x.data = 0.3
    tape.forward()
    z = t * 3.0 + a  # built on interior nodes: their data must be the replay's
    z.backward()
    fx, _, (fa, ft) = pinn_like(impl, 0.3)
    fz = ft * 3.0 + fa
    fz.backward()
    assert state([x, a, t, z]) == state([fx, fa, ft, fz])
    t._backward()  # micrograd's closure over the replayed node
    ft._backward()
    assert state([x, a, t]) == state([fx, fa, ft])


def test_pickles_and_drawings_see_the_replay(impl: types.ModuleType) -> None:
    x, y, _ = pinn_like(impl, 0.0)
    tape = impl.Tape(y)
    x.data = 0.9
    tape.forward()
    tape.backward()
    copy = pickle.loads(pickle.dumps(y))
    _, fy, _ = pinn_like(impl, 0.9)
    fy.backward()
    assert copy.data == fy.data
    assert [c.data for c in y._prev] == [c.data for c in fy._prev]


def test_after_run_the_graph_is_at_the_leaves_data(impl: types.ModuleType) -> None:
    """run() feeds rows and gives the fed leaves their data back: the graph is then the one
    built at those leaves, not at the last row, and no backward has run over it."""
    x = impl.Value(0.25)
    w = impl.Value(-1.5)
    h = (w * x).tanh()
    root = h * h + w
    tape = impl.Tape(root)
    tape.forward()
    tape.backward()
    out = tape.run([x], np.array([[1.0], [2.0], [3.0]]))
    fx, fw = impl.Value(0.25), impl.Value(-1.5)
    fh = (fw * fx).tanh()
    froot = fh * fh + fw
    assert state([h, root]) == [(bits(fh.data), bits(0.0)), (bits(froot.data), bits(0.0))]
    assert out[-1] != root.data
    assert x.data == 0.25
    assert impl.gradients(root, w) == impl.gradients(froot, fw)
    tape.backward()  # a backward after run is the graph's at the leaves' data
    froot.backward()
    assert (bits(h.grad), bits(root.grad)) == (bits(fh.grad), bits(froot.grad))


def test_writes_by_the_user_after_a_replay_stay(impl: types.ModuleType) -> None:
    x, y, (a, t) = pinn_like(impl, 0.1)
    tape = impl.Tape(y)
    x.data = 0.2
    tape.forward()
    t.data = 5.0
    a.grad = 7.0
    tape.backward()  # over its forward; it writes grads only: t's data is still the user's
    assert t.data == 5.0
    _, fy, (fa, _) = pinn_like(impl, 0.2)
    fy.backward()
    assert bits(a.grad) == bits(fa.grad)


def test_a_tape_dropped_before_anyone_looks(impl: types.ModuleType) -> None:
    x, y, (a, t) = pinn_like(impl, 0.0)
    tape = impl.Tape(y)
    x.data = 1.25
    tape.forward()
    tape.backward()
    del tape
    gc.collect()
    _, fy, (fa, ft) = pinn_like(impl, 1.25)
    fy.backward()
    assert state([a, t, y]) == state([fa, ft, fy])


def test_the_newest_replay_of_shared_nodes_wins(impl: types.ModuleType) -> None:
    x = impl.Value(1.0)
    h = x.exp()
    first = impl.Tape(h * 2.0)
    second = impl.Tape(h * 3.0)
    x.data = 2.0
    first.forward()
    x.data = 3.0
    second.forward()
    assert h.data == math.exp(3.0)
    first.forward()
    assert h.data == math.exp(3.0)
    x.data = 0.5
    first.forward()
    second.backward()  # the second tape's backward (over its forward at x = 3) writes grads
    assert (h.data, h.grad) == (math.exp(0.5), 3.0)


def test_a_run_at_leaves_that_fail_leaves_the_nodes(impl: types.ModuleType) -> None:
    """run() succeeds row by row, but no graph can be built at the leaves' own data (a
    placeholder): the nodes keep what they held, and a backward raises what eager raises."""
    x = impl.Value(4.0)
    r = x.sqrt()
    root = r * 2.0
    tape = impl.Tape(root)
    x.data = -1.0
    tape.run([x], np.array([[1.0], [9.0]]), backward=False)
    assert (r.data, root.data) == (2.0, 4.0)
    with pytest.raises(ValueError, match="sqrt"):
        tape.backward()


@pytest.mark.parametrize("calls", [["forward"], ["forward", "backward"], ["run"],
                                   ["run", "backward"], ["forward", "run"], ["run", "forward"]])
def test_every_call_sequence_matches_across_engines(calls: list[str]) -> None:
    results = []
    for impl in (fastgrad._core, fastgrad.reference):
        x = impl.Value(0.5)
        w = impl.Value(2.0)
        h = (w * x).sigmoid()
        root = impl.dot([h, w], [x, h], 0.25).log()
        tape = impl.Tape(root)
        w.data = 1.5
        for call in calls:
            if call == "run":
                tape.run([x], np.linspace(0.1, 0.9, 7).reshape(7, 1))
            else:
                getattr(tape, call)()
        results.append(state([x, w, h, root]))
    assert results[0] == results[1]


CALLS = st.sampled_from(["forward", "backward", "run", "set"])


@given(programs(sets=False, max_steps=30), st.lists(CALLS, max_size=5), st.integers(0, 2**31))
def test_random_programs_replayed_are_their_eager_build(program: Any, calls: list[str],
                                                        seed: int) -> None:  # fmt: skip
    """Any graph, any sequence of replays and leaf changes: every node as building the
    graph again at the leaves' data (and backward, where the last call was one) leaves it,
    on both engines alike."""
    rows = np.random.default_rng(seed).normal(size=(3, len(program.leaves)))
    results = []
    for impl in (fastgrad._core, fastgrad.reference):
        try:
            root, leaves = build_summed(impl, program, program.leaves)
        except ARITHMETIC:
            return
        pool = [root]
        stack = list(root._prev)
        seen = {id(root)}
        while stack:  # every node below the root, once
            v = stack.pop()
            if id(v) not in seen:
                seen.add(id(v))
                pool.append(v)
                stack.extend(v._prev)
        tape = impl.Tape(root)
        trace: list[Any] = []
        for call in calls:
            try:
                if call == "set":
                    leaves[0].data = float(rows[0, 0])
                elif call == "run":
                    trace.append([bits(r) for r in tape.run(leaves, rows).tolist()])
                else:
                    getattr(tape, call)()
            except ARITHMETIC as e:
                trace.append(type(e).__name__)
        trace.append(sorted(state(pool)))
        results.append(trace)
        if calls[-1:] == ["forward"]:  # against a graph built anew at the leaves' data
            try:
                fresh, _ = build_summed(impl, program, [v.data for v in leaves])
            except ARITHMETIC:
                continue
            assert bits(fresh.data) == bits(root.data)
    assert results[0] == results[1]


# ---- a row where several nodes fail raises what eager code meets first ----


def test_a_row_with_two_failures_raises_the_first_built(impl: types.ModuleType) -> None:
    """The new user's row: log of a negative built first, exp overflowing built second, and
    the sum naming them the other way round, so the tape's order meets exp first. Eager code
    raises the log's ValueError; so do run and forward, naming the same node."""
    for first, second, expected in (("log", "exp", ValueError), ("exp", "log", OverflowError)):
        x, y = impl.Value(1.0), impl.Value(1.0)
        a = getattr(x, first)()
        b = getattr(y, second)()
        tape = impl.Tape(b + a)
        row = {"log": -1.0, "exp": 1000.0}
        X = np.array([[0.5, 0.5], [row[first], row[second]]])
        with pytest.raises(ARITHMETIC) as eager:
            fx, fy = impl.Value(row[first]), impl.Value(row[second])
            fa = getattr(fx, first)()  # built in the recorded order
            getattr(fy, second)() + fa
        assert eager.type is expected
        with pytest.raises(expected, match=f"^row 1: {first}"):
            tape.run([x, y], X)
        x.data, y.data = row[first], row[second]
        with pytest.raises(expected, match=f"^{first}"):
            tape.forward()


@pytest.mark.parametrize("engine", ["c", "python"])
@given(programs(sets=False, max_steps=40), st.integers(0, 2**31))
def test_a_failing_row_raises_its_eager_builds_failure(engine: str, program: Any,
                                                       seed: int) -> None:  # fmt: skip
    """Random programs rooted at the sum of their nodes last-built first, so that the
    tape's order is not the building order; rows of edge values: run raises exactly the
    exception (type and message) that building the program at the failing row raises."""
    from programs import build_pool

    impl = fastgrad._core if engine == "c" else fastgrad.reference
    try:
        pool = build_pool(impl, program, program.leaves)
    except ARITHMETIC:
        return
    leaves = pool[: len(program.leaves)]
    tape = impl.Tape(impl.sum(pool[::-1]))
    rng = np.random.default_rng(seed)
    picks = [0.0, -1.0, 1000.0, -1000.0, math.inf, -math.inf, math.nan, 0.5]
    X = np.array([[picks[i] for i in rng.integers(0, len(picks), len(leaves))]
                  for _ in range(3)])  # fmt: skip
    for r, row in enumerate(X.tolist()):
        try:
            build_pool(impl, program, row)
        except ARITHMETIC as e:
            with pytest.raises(type(e)) as replayed:
                tape.run(leaves, X, backward=False)
            assert str(replayed.value) == f"row {r}: {e}"
            return
    tape.run(leaves, X, backward=False)
