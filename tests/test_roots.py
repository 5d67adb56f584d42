"""Tapes of several roots (a classifier's scores), on both implementations: forward()
computes every root; backward(seeds) starts from one seed per root with the bits of
dot([Value(s) for s in seeds], roots).backward(); run() returns a column per root and follows
its per-row definition; a Tape of one root takes a seed too."""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from programs import ARITHMETIC, Program, bits, build_pool, edge_floats, held_by, programs

import fastgrad._core
import fastgrad.reference
from fastgrad.demos import moons as demo

root_programs = programs(sets=False, max_steps=30)
seed_values = st.one_of(st.sampled_from([1.0, -1.0, 0.5, 0.0, -0.0, 3.0]), edge_floats)


@pytest.fixture(autouse=True, scope="module")
def every_thread_asked_for() -> Any:
    """run() gives few rows fewer threads than asked; these tests compare thread counts."""
    before = fastgrad._core._run_min_work(0)
    yield
    fastgrad._core._run_min_work(before)


def recorded(impl: types.ModuleType, program: Program,
             data: st.DataObject) -> tuple[list[Any], list[int], Any] | None:
    """The program's Values, some of them drawn as roots, and the tape of those roots; None
    where building the program fails."""
    try:
        pool = build_pool(impl, program, program.leaves)
    except ARITHMETIC:
        return None
    picks = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=4))
    return pool, picks, impl.Tape([pool[i] for i in picks])


def failure(error: Exception) -> tuple[type, str]:
    return type(error), str(error)


def seeded_backward(impl: types.ModuleType, roots: list[Any], seeds: list[float]) -> Any:
    """The definition of a backward from several seeds, eagerly."""
    try:
        impl.dot([impl.Value(s) for s in seeds], roots).backward()
    except ARITHMETIC as e:
        return failure(e)
    return None


@settings(max_examples=150)
@given(root_programs, st.data())
def test_forward_and_backward_of_several_roots_are_the_eager_bits(
    impl: types.ModuleType, program: Program, data: st.DataObject
) -> None:
    made = recorded(impl, program, data)
    if made is None:
        return
    pool, picks, tape = made
    seeds = data.draw(st.lists(seed_values, min_size=len(picks), max_size=len(picks)))
    leaves = pool[: len(program.leaves)]
    new = data.draw(st.lists(edge_floats, min_size=len(leaves), max_size=len(leaves)))
    for v, x in zip(leaves, new):
        v.data, v.grad = x, 0.5
    try:
        fresh = build_pool(impl, program, new)
    except ARITHMETIC:
        # an op failed, maybe one the roots do not reach: the tape of dot(seeds, roots),
        # written out, is the definition
        explicit = impl.Tape(impl.dot([impl.Value(s) for s in seeds], [pool[i] for i in picks]))
        before = [bits(pool[i].data) for i in picks]
        try:
            explicit.forward()
        except ARITHMETIC as e:
            with pytest.raises(type(e)) as raised:
                tape.forward()
            assert failure(raised.value) == failure(e)
            assert [bits(pool[i].data) for i in picks] == before
        return
    got = tape.forward()
    assert isinstance(got, list)
    assert [bits(x) for x in got] == [bits(fresh[i].data) for i in picks]
    assert [bits(pool[i].data) for i in picks] == [bits(fresh[i].data) for i in picks]
    for v in fresh[: len(leaves)]:
        v.grad = 0.5
    expected = seeded_backward(impl, [fresh[i] for i in picks], seeds)
    if expected is not None:
        with pytest.raises(expected[0]) as raised:
            tape.backward(seeds)
        assert failure(raised.value) == expected
        assert all(v.grad == 0.5 for v in leaves)
        return
    tape.backward(seeds)
    assert [bits(v.grad) for v in leaves] == [bits(v.grad) for v in fresh[: len(leaves)]]
    assert [bits(pool[i].grad) for i in picks] == [bits(fresh[i].grad) for i in picks]
    tape.sync()  # every interior node as the eager backward left it
    assert [bits(v.grad) for v in pool] == [bits(v.grad) for v in fresh]


def run_definition(impl: types.ModuleType, pool: list[Any], leaves: list[Any], picks: list[int],
                   fed: list[int], X: np.ndarray, seeds: list[float],
                   before: list[float]) -> tuple[Any, ...]:  # fmt: skip
    """run's result by its definition: per row, forward() and backward() of the tape of
    dot(seeds, roots) written out, the leaves' grads from -0.0 and added to the totals row
    after row. (That tape is the eager graph's bits: tests/test_run.py.)"""
    roots = [pool[i] for i in picks]
    explicit = impl.Tape(impl.dot([impl.Value(s) for s in seeds], roots))
    saved = [(v.data, v.grad) for v in leaves]
    totals, out = list(before), []
    try:
        for row, xs in enumerate(X.tolist()):
            for i, x in zip(fed, xs):
                leaves[i].data = x
            for v in leaves:
                v.grad = -0.0
            try:
                explicit.forward()
                explicit.backward()
            except ARITHMETIC as e:
                return ("failed", type(e), f"row {row}: {e}")
            explicit.sync()  # the roots' data
            out.append([bits(r.data) for r in roots])
            totals = [total + v.grad for total, v in zip(totals, leaves)]
    finally:
        for v, (x, g) in zip(leaves, saved):
            v.data, v.grad = x, g
    return ("ok", out, [bits(t) for t in totals])


@settings(max_examples=100)
@given(root_programs, st.data())
def test_run_of_several_roots_follows_its_definition(
    impl: types.ModuleType, program: Program, data: st.DataObject
) -> None:
    made = recorded(impl, program, data)
    if made is None:
        return
    pool, picks, tape = made
    leaves = pool[: len(program.leaves)]
    held = held_by(tape, leaves)
    if not held:
        return
    fed = data.draw(st.lists(st.sampled_from(held), min_size=1, max_size=len(held), unique=True))
    rows = data.draw(st.integers(0, 12))
    row = st.lists(edge_floats, min_size=len(fed), max_size=len(fed))
    X = np.array(data.draw(st.lists(row, min_size=rows, max_size=rows)), dtype=float)
    X = X.reshape(rows, len(fed))
    one_seed = data.draw(st.booleans())
    seeds = data.draw(st.lists(seed_values, min_size=len(picks), max_size=len(picks)))
    if one_seed:
        seeds = [seeds[0]] * len(picks)
    before = data.draw(st.lists(st.sampled_from([0.0, -0.0, 0.5]), min_size=len(leaves),
                                max_size=len(leaves)))  # fmt: skip
    expected = run_definition(impl, pool, leaves, picks, fed, X, seeds, before)
    for threads in [1, 2, 3] if impl is fastgrad._core else [1]:
        for v, g in zip(leaves, before):
            v.grad = g
        data_before = [bits(v.data) for v in leaves]
        try:
            out = tape.run([leaves[i] for i in fed], X, threads=threads,
                           root_grad=seeds[0] if one_seed else seeds)  # fmt: skip
        except ARITHMETIC as e:
            assert expected == ("failed", type(e), str(e))
            assert [bits(v.grad) for v in leaves] == [bits(g) for g in before]
            continue
        assert out.shape == (rows, len(picks))
        assert expected[0] == "ok"
        assert [[bits(x) for x in r] for r in out.tolist()] == expected[1]
        assert [bits(leaves[i].grad) for i in held] == [expected[2][i] for i in held]
        assert [bits(v.data) for v in leaves] == data_before  # the fed leaves keep their data


def two_scores(impl: types.ModuleType) -> tuple[Any, Any, Any, Any]:
    x, w = impl.Value(0.5), impl.Value(-1.2)
    a = (x * w).tanh()
    return x, w, a, a * x + w.exp()


def test_a_tape_of_several_roots_shows_only_the_graph(impl: types.ModuleType) -> None:
    x, w, a, b = two_scores(impl)
    tape = impl.Tape([a, b])
    assert tape.roots == [a, b]
    assert len(tape) == 7  # x, w, x*w, a, a*x, exp(w), b: the seeds are the tape's own
    assert tape.leaves == [x, w]
    assert repr(tape).startswith("Tape(7 nodes, 2 leaves, 2 roots")
    with pytest.raises(AttributeError, match=r"this Tape has 2 roots: they are in \.roots"):
        tape.root  # noqa: B018
    with pytest.raises(ValueError, match="is not a leaf of this tape"):
        tape.run([impl.Value(1.0)], np.zeros((2, 1)))
    one = impl.Tape([a])
    assert one.forward() == [a.data]
    assert one.run([x], np.array([[0.25], [0.5]])).shape == (2, 1)
    assert impl.Tape(a).roots == [a] and impl.Tape(a).root is a


def test_a_root_that_is_a_leaf_keeps_its_data(impl: types.ModuleType) -> None:
    x, w, _, b = two_scores(impl)
    tape = impl.Tape([x, b])
    out = tape.run([x], np.array([[1.0], [2.0]]), backward=False)
    assert out[:, 0].tolist() == [1.0, 2.0]
    assert x.data == 0.5 and x.grad == 0.0
    assert tape.forward() == [0.5, b.data]
    tape.backward([2.0, 1.0])
    fx, fw, _, fb = two_scores(impl)
    impl.dot([impl.Value(2.0), impl.Value(1.0)], [fx, fb]).backward()
    assert (bits(x.grad), bits(w.grad)) == (bits(fx.grad), bits(fw.grad))


def test_a_tape_of_one_root_takes_a_seed(impl: types.ModuleType) -> None:
    x, w, a, b = two_scores(impl)
    tape = impl.Tape(b)
    tape.backward(2.5)
    fx, fw, fa, fb = two_scores(impl)
    impl.dot([impl.Value(2.5)], [fb]).backward()
    assert [bits(v.grad) for v in (x, w, b)] == [bits(v.grad) for v in (fx, fw, fb)]
    tape.sync()
    assert bits(a.grad) == bits(fa.grad)


def test_bad_roots_and_seeds_raise_before_any_work(impl: types.ModuleType) -> None:
    x, w, a, b = two_scores(impl)
    with pytest.raises(ValueError, match="at least one root"):
        impl.Tape([])
    with pytest.raises(TypeError, match="roots must be Values, not 'float'"):
        impl.Tape([a, 1.0])
    with pytest.raises(TypeError, match="Tape needs a Value to start from, or a list of Values"):
        impl.Tape(3.0)
    tape = impl.Tape([a, b])
    tape.forward()
    x.grad = w.grad = 0.25
    with pytest.raises(ValueError, match="backward's seeds has 1 seed"):
        tape.backward([1.0])
    with pytest.raises(TypeError, match="backward's seeds must be a real number, not 'str'"):
        tape.backward([1.0, "2"])
    with pytest.raises(ValueError, match="root_grad has 3 seed"):
        tape.run([x], np.zeros((4, 1)), root_grad=[1.0, 2.0, 3.0])
    assert (x.grad, w.grad) == (0.25, 0.25)


def test_a_failed_backward_leaves_the_seeds_as_they_were(impl: types.ModuleType) -> None:
    """A backward that fails changes nothing."""
    x = impl.Value(4.0)
    s = x.sqrt()
    tape = impl.Tape([s, x * 2.0])
    tape.backward([3.0, 1.0])
    x.data = 0.0  # sqrt's derivative at 0 divides by zero
    tape.forward()
    good = (x.grad, s.grad)
    x.data = 4.0
    with pytest.raises(ZeroDivisionError):
        tape.backward([5.0, 7.0])
    assert (x.grad, s.grad) == good


def test_c_and_reference_agree_on_a_classifiers_scores() -> None:
    """Ten scores of an MLP run forward and backward over rows: C == reference, bit for bit."""
    results = []
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 6))
    seeds = rng.normal(size=10).tolist()
    for impl in (fastgrad._core, fastgrad.reference):
        _, model, xs, _ = demo.per_sample_model(impl, [6, 8, 10], "cross_entropy", 0)
        scores = model(xs)
        tape = impl.Tape(scores)
        out = tape.run(xs, X, root_grad=seeds, threads=2)
        results.append(([[bits(v) for v in r] for r in out.tolist()],
                        [bits(p.grad) for p in model.parameters()],
                        [(bits(v.data), bits(v.grad)) for v in scores]))  # fmt: skip
    assert results[0] == results[1]
    assert [g for _, g in results[0][2]] == [bits(0.0)] * 10  # a graph built anew's



def test_a_seeded_backward_after_a_run_is_at_the_leaves_data(impl: types.ModuleType) -> None:
    """After run(), the graph is the one built at the leaves' own data (the fed leaves keep
    theirs), with no backward over it; backward(s) then gives the bits of
    dot([s], [root]).backward() on that graph."""
    X = np.random.default_rng(4).normal(size=(9, 6))

    def scored() -> tuple[Any, Any, list[Any]]:
        _, model, xs, _ = demo.per_sample_model(impl, [6, 5, 3], "cross_entropy", 0)
        scores = model(xs)
        return impl.sum(scores).tanh(), scores, xs

    root, scores, xs = scored()
    tape = impl.Tape(root)
    tape.run(xs, X, root_grad=0.375)
    fresh, fresh_scores, _ = scored()
    assert [(bits(v.data), bits(v.grad)) for v in scores + [root]] == [
        (bits(v.data), bits(0.0)) for v in fresh_scores + [fresh]]
    tape.backward(0.375)
    impl.dot([impl.Value(0.375)], [fresh]).backward()
    assert bits(root.grad) == bits(0.375)
    assert [bits(v.grad) for v in scores] == [bits(v.grad) for v in fresh_scores]
