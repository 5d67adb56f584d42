"""fastgrad.Tape: a graph recorded once and replayed gives the bits of building it again and
calling backward(), on both implementations; run() is the Python loop it replaces; failures
raise what eager code raises and change nothing."""

from __future__ import annotations

import gc
import math
import os
import random
import tracemalloc
import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from programs import ARITHMETIC, Program, bits, build_summed, edge_floats, programs

import fastgrad._core
from fastgrad import nn, optim
from fastgrad.demos import moons as demo

# no `.data =` steps: a tape recomputes from the leaves, while a step that sets an interior
# node's data mid-program has no counterpart in a rebuild
tape_programs = programs(sets=False, max_steps=60)


def outcome(action: Any) -> tuple[str, ...]:
    try:
        action()
    except ARITHMETIC as e:
        return (type(e).__name__, str(e))
    return ("ok",)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@given(tape_programs, st.data())
def test_replay_is_a_fresh_eager_graph(impl: types.ModuleType, fuse: bool, program: Program,
                                       data: st.DataObject) -> None:
    try:
        root, leaves = build_summed(impl, program, program.leaves)
    except ARITHMETIC:
        return  # nothing to record
    tape = impl.Tape(root, fuse=fuse)
    for _ in range(2):
        new = data.draw(st.lists(edge_floats, min_size=len(leaves), max_size=len(leaves)))
        for leaf, x in zip(leaves, new):
            leaf.data = x
            leaf.grad = 0.0
        root.grad = 0.0  # as a fresh graph's (a failed backward leaves it as it was)
        try:
            fresh_root, fresh_leaves = build_summed(impl, program, new)
        except ARITHMETIC:
            with pytest.raises(ARITHMETIC):
                tape.forward()
            continue
        assert outcome(tape.forward) == ("ok",)
        assert bits(root.data) == bits(fresh_root.data)
        assert outcome(tape.backward) == outcome(fresh_root.backward)
        assert [bits(v.grad) for v in leaves] == [bits(v.grad) for v in fresh_leaves]
        assert bits(root.grad) == bits(fresh_root.grad)


def test_fusing_merges_nodes_into_fewer_steps(impl: types.ModuleType) -> None:
    x = impl.Value(0.5)
    h = [((x * w + 1.0).tanh() * 2.0).relu() for w in (0.25, -1.5, 3.0)]
    root = impl.sum(h) + (x * x).exp()
    unfused = impl.Tape(root, fuse=False).steps
    fused = impl.Tape(root).steps
    # one per interior node, the sum's once per term (its terms are reached between the
    # neurons): five a neuron, three for the sum, x*x, exp, +
    assert unfused == 3 * 5 + 3 + 3
    if impl is fastgrad._core:
        assert fused < unfused  # each neuron's chain of single-use ops is one step
    else:
        assert fused == unfused  # the reference runs one node per step


@given(tape_programs)
def test_c_and_reference_tapes_agree(program: Program) -> None:
    results = []
    for impl in (fastgrad._core, fastgrad.reference):
        try:
            root, leaves = build_summed(impl, program, program.leaves)
        except ARITHMETIC:
            return
        tape = impl.Tape(root)
        trace: list[Any] = [len(tape), len(tape.leaves), impl.Tape(root, fuse=False).steps]
        for shift in (0.5, -3.0):
            for leaf in leaves:
                leaf.data = leaf.data * shift + 0.25
            trace.append(outcome(tape.forward))
            trace.append(outcome(tape.backward))
            trace.append([bits(v.grad) for v in leaves] + [bits(root.data), bits(root.grad)])
        results.append(trace)
    assert results[0] == results[1]


@pytest.mark.parametrize("terms_reached_first", [False, True])
def test_replay_keeps_the_chains_order_of_accumulation(impl: types.ModuleType,
                                                      terms_reached_first: bool) -> None:
    """x's grad gathers 1e17, -1e17 and small terms, whose sum depends on their order. The
    dot's product terms are first reached through the dot (its entries split around them)
    or through the root's left operand (its entries consecutive: one tape instruction)."""

    def graph(x_value: float) -> tuple[Any, Any]:
        x, v1, w = impl.Value(x_value), impl.Value(-2.5), impl.Value(1.001)
        big, small = x * 1e17, x * -1e17
        dot = impl.dot([w, w, 1.0, 1.0], [x, v1, big, small], v1)
        return ((big + small) * 0.0 + dot if terms_reached_first else dot), x

    root, x = graph(0.1)
    tape = impl.Tape(root)
    x.data = 0.3
    tape.forward()
    tape.backward()
    fresh_root, fresh_x = graph(0.3)
    fresh_root.backward()
    assert (bits(root.data), bits(x.grad)) == (bits(fresh_root.data), bits(fresh_x.grad))


def test_merged_terms_run_last_first(impl: types.ModuleType) -> None:
    """The dot's three terms add into x in the chain's order, last first: (1 - 1e17) + 1e17
    is 0.0, where first to last would give (1e17 - 1e17) + 1 = 1.0. Its entries are
    consecutive, so the tape runs them as one instruction."""
    x = impl.Value(2.0)
    root = impl.dot([1e17, -1e17, 1.0], [x, x, x])
    tape = impl.Tape(root)
    x.data = 3.0
    tape.forward()
    tape.backward()
    fresh_x = impl.Value(3.0)
    impl.dot([1e17, -1e17, 1.0], [fresh_x, fresh_x, fresh_x]).backward()
    assert x.grad == fresh_x.grad == 0.0


def moons_step_eager(impl: types.ModuleType, seed: int, steps: int) -> list[list[bytes]]:
    X, y = demo.moons(seed, samples=30)
    random.seed(seed)
    model = nn.MLP(2, [16, 16, 1], engine=impl)
    history = []
    for k in range(steps):
        loss, _ = demo.loss(model, X, y, impl.Value)
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= (1.0 - 0.9 * k / steps) * p.grad
        history.append([bits(loss.data)] + [bits(p.data) for p in model.parameters()])
    return history


def moons_step_tape(impl: types.ModuleType, seed: int, steps: int) -> list[list[bytes]]:
    X, y = demo.moons(seed, samples=30)
    random.seed(seed)
    model = nn.MLP(2, [16, 16, 1], engine=impl)
    loss, _ = demo.loss(model, X, y, impl.Value)
    tape = impl.Tape(loss)
    sgd = optim.SGD(model.parameters(), lr=1.0)
    history = []
    for k in range(steps):
        tape.forward()
        sgd.zero_grad()
        tape.backward()
        sgd.lr = 1.0 - 0.9 * k / steps
        sgd.step()
        history.append([bits(loss.data)] + [bits(p.data) for p in model.parameters()])
    return history


def test_training_through_a_tape_is_eager_training(impl: types.ModuleType) -> None:
    assert moons_step_tape(impl, seed=5, steps=4) == moons_step_eager(impl, seed=5, steps=4)


def per_sample(impl: types.ModuleType) -> tuple[Any, Any, list[Any], list[Any]]:
    """One sample's max-margin loss through a small MLP: x1, x2 and the label are leaves.
    Every parameter gets one contribution per row (the inputs get one per neuron)."""
    random.seed(11)
    model = nn.MLP(2, [8, 1], engine=impl)
    x = [impl.Value(0.0, label="x1"), impl.Value(0.0, label="x2")]
    label = impl.Value(1.0, label="y")
    loss = (1 - label * model(x)).relu()
    return impl.Tape(loss), model, x, [label]


def test_run_is_the_loop_it_replaces(impl: types.ModuleType) -> None:
    """Where each leaf gets one contribution per row, run gives the Python loop's bits."""
    X, y = demo.moons(seed=2, samples=40)
    tape, model, inputs, targets = per_sample(impl)
    for p in model.parameters():
        p.grad = 0.125  # run adds to what the grads hold
    before = [bits(v.data) for v in inputs + targets]
    out = tape.run(inputs, X, targets, y)
    run_grads = [bits(p.grad) for p in model.parameters()]
    assert [bits(v.data) for v in inputs + targets] == before  # the rows are the run's

    tape, model, inputs, targets = per_sample(impl)
    for p in model.parameters():
        p.grad = 0.125
    loop = []
    for row, label in zip(X, y):
        inputs[0].data, inputs[1].data = row
        targets[0].data = label
        loop.append(tape.forward())
        tape.backward()
    assert isinstance(out, np.ndarray) and out.shape == (40,)
    assert [bits(v) for v in out] == [bits(v) for v in loop]
    assert run_grads == [bits(p.grad) for p in model.parameters()]


def test_run_takes_one_column_vectors_and_no_rows(impl: types.ModuleType) -> None:
    x = impl.Value(1.0)
    tape = impl.Tape((x * 3.0).exp())
    assert tape.run([x], [0.0, 1.0]).tolist() == [1.0, math.exp(3.0)]
    assert x.grad == 3.0 * 1.0 + 3.0 * math.exp(3.0)
    assert tape.run([x], np.empty((0, 1))).shape == (0,)


def test_a_value_that_is_not_a_leaf_is_refused(impl: types.ModuleType) -> None:
    x, w, other = impl.Value(1.0), impl.Value(2.0), impl.Value(3.0)
    h = x * w
    tape = impl.Tape(h + 1.0)
    assert {id(v) for v in tape.leaves} == {id(x), id(w)}  # the 1.0 is a constant
    for bad in (other, h, 2.0):
        with pytest.raises(ValueError, match="is not a leaf of this tape"):
            tape.run([bad], [[1.0]])
    with pytest.raises(ValueError, match=r"X must have 1 column\(s\)"):
        tape.run([x], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="X has 2 rows and y 1"):
        tape.run([x], [1.0, 2.0], [w], [5.0])
    with pytest.raises(TypeError, match="Tape needs a Value"):
        impl.Tape(2.0)


def test_forward_errors_change_nothing(impl: types.ModuleType) -> None:
    x, w = impl.Value(2.0), impl.Value(0.5)
    root = (x * w).log() + w
    tape = impl.Tape(root)
    tape.backward()
    before = (root.data, x.grad, w.grad)
    x.data = -1.0
    with pytest.raises(ValueError, match=r"^log\(-0.5\): math domain error$"):
        tape.forward()
    assert (root.data, x.grad, w.grad) == before
    tape.backward()  # the last good forward's values
    assert (x.grad, w.grad) == (2 * before[1], 2 * before[2])
    assert (x.data, w.data) == (-1.0, 0.5)


def test_backward_errors_change_nothing(impl: types.ModuleType) -> None:
    x = impl.Value(1e-200)
    root = 1.0 / x + x.log()
    tape = impl.Tape(root)
    x.data = 0.0  # the forward would divide by zero: and it raises that, before anything
    with pytest.raises(ZeroDivisionError, match=r"^1.0 / 0.0: float division by zero$"):
        tape.forward()
    x.data = 1e-200
    tape.forward()
    x.grad = 0.5
    z = impl.Value(0.0)
    root2 = z**0.5
    tape2 = impl.Tape(root2)
    with pytest.raises(ValueError, match=r"in the backward pass of 0.0 \*\* 0.5"):
        tape2.backward()
    assert (z.grad, root2.grad) == (0.0, 0.0)


def test_run_errors_change_nothing(impl: types.ModuleType) -> None:
    x, w = impl.Value(0.25), impl.Value(2.0)
    root = (x * w).exp() * w
    tape = impl.Tape(root)
    w.grad, x.grad = 0.5, 0.75
    with pytest.raises(OverflowError, match=r"^row 2: exp\(2000.0\): math range error$"):
        tape.run([x], [0.0, 1.0, 1000.0, 2.0])
    assert (x.data, x.grad, w.grad) == (0.25, 0.75, 0.5)
    assert tape.forward() == root.data == math.exp(0.5) * 2.0


def test_interior_values_are_what_eager_code_leaves(impl: types.ModuleType) -> None:
    x = impl.Value(1.0)
    h = x * 3.0
    root = h.tanh()
    tape = impl.Tape(root)
    x.data = 2.0
    tape.forward()
    tape.backward()
    tape.sync()  # nothing left to do: it stays for old code
    fresh_x = impl.Value(2.0)
    fresh_h = fresh_x * 3.0
    fresh = fresh_h.tanh()
    fresh.backward()
    assert (h.data, h.grad, root.data, x.grad) == (fresh_h.data, fresh_h.grad, fresh.data,
                                                   fresh_x.grad)  # fmt: skip
    assert x.data == 2.0  # the leaves' data is the user's


def test_a_leaf_as_root(impl: types.ModuleType) -> None:
    x = impl.Value(3.0)
    tape = impl.Tape(x)
    assert len(tape) == 1 and tape.leaves[0] is x
    x.data = 4.0
    assert tape.forward() == 4.0
    tape.backward()
    assert x.grad == 1.0


@pytest.mark.slow
def test_a_million_node_tape(impl: types.ModuleType) -> None:
    x, c = impl.Value(1.0), impl.Value(1.0 + 1e-7)
    y = x
    for _ in range(10**6 // 2):
        y = (y * c) + 1e-9
    tape = impl.Tape(y)
    assert len(tape) == 10**6 // 2 * 2 + 2 + 10**6 // 2  # two ops and a constant each
    x.data = 2.0
    tape.forward()
    tape.backward()
    assert x.grad == pytest.approx((1.0 + 1e-7) ** (10**6 // 2), rel=1e-9)


def test_replay_allocates_no_python_object_per_node() -> None:
    impl = fastgrad._core
    xs = [impl.Value(0.01 * i) for i in range(100)]
    root = impl.sum([(xs[i % 100] * xs[(3 * i) % 100]).tanh() for i in range(20_000)])
    tape = impl.Tape(root)
    tape.forward()
    tape.backward()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(20):
            tape.forward()
            tape.backward()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # this thread's allocations are made in this file or fastgrad's (other threads of the
    # process, such as a Dask client's event loop, allocate in their libraries' files)
    ours = [s for s in after.compare_to(before, "filename")
            if s.traceback[0].filename == __file__
            or s.traceback[0].filename.startswith(os.path.dirname(fastgrad.__file__))]
    grown = sum(s.count_diff for s in ours if s.count_diff > 0)
    assert len(tape) == 40_102  # 100 leaves, 20,000 products and tanh, a sum, its 0.0
    assert grown < 20, f"{grown} Python allocations over 20 replays of {len(tape)} nodes"
