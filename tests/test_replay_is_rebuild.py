"""Every public function of fastgrad replays, row by row, the bits of building it eagerly at
that row: Tape(f(leaves)).run(X) against a fresh graph per row, over random programs that
use the functions (softmax, logsumexp, cross_entropy, the losses, maximum, sum, dot, nn's
layers) on both engines. A shift chosen from the data (logsumexp's) is a node, so rows far
from the row the tape was recorded at neither overflow nor shift by the wrong amount."""

from __future__ import annotations

import math
import random
import types
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from programs import ARITHMETIC, bits

import fastgrad._core
import fastgrad.reference
from fastgrad import functional as F
from fastgrad.nn import MLP

index = st.integers(0, 10**6)
indices = st.lists(index, min_size=1, max_size=5)
REDUCTIONS = st.sampled_from(["mean", "sum", "none"])

function_steps = st.one_of(
    st.tuples(st.just("softmax"), indices, index),
    st.tuples(st.just("logsumexp"), indices),
    st.tuples(st.just("cross_entropy"), indices, index),
    st.tuples(st.just("mse_loss"), indices, indices, REDUCTIONS),
    st.tuples(st.just("l1_loss"), indices, indices, REDUCTIONS),
    st.tuples(st.just("huber_loss"), indices, indices, REDUCTIONS),
    st.tuples(st.just("smooth_l1_loss"), indices, indices, REDUCTIONS),
    st.tuples(st.just("log_softmax"), indices, index),
    st.tuples(st.just("nll_loss"), indices, index),
    st.tuples(st.just("binary_cross_entropy_with_logits"), indices, indices, REDUCTIONS),
    st.tuples(st.just("maximum"), index, index),
    st.tuples(st.just("sum"), indices),
    st.tuples(st.just("dot"), indices, indices),
    st.tuples(st.just("mlp"), indices, st.sampled_from(["relu", "tanh"])),
    st.tuples(st.just("op"), st.sampled_from(["tanh", "exp", "sigmoid", "softplus", "abs"]),
              index),
)


def apply(impl: types.ModuleType, pool: list[Any], step: tuple[Any, ...]) -> list[Any]:
    """The Values one step makes from the pool."""
    def pick(ids: list[int]) -> list[Any]:
        return [pool[i % len(pool)] for i in ids]

    kind = step[0]
    if kind == "softmax":
        out = F.softmax(pick(step[1]))
        return [out[step[2] % len(out)]]
    if kind == "logsumexp":
        return [F.logsumexp(pick(step[1]))]
    if kind == "cross_entropy":
        logits = pick(step[1])
        return [F.cross_entropy(logits, step[2] % len(logits))]
    if kind == "log_softmax":
        out = F.log_softmax(pick(step[1]))
        return [out[step[2] % len(out)]]
    if kind == "nll_loss":
        scores = pick(step[1])
        return [F.nll_loss(F.log_softmax(scores), step[2] % len(scores))]
    if kind in ("mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss",
                "binary_cross_entropy_with_logits"):
        xs, ts = pick(step[1]), pick(step[2])
        n = min(len(xs), len(ts))
        loss = getattr(F, kind)(xs[:n], ts[:n], reduction=step[3])
        return loss if isinstance(loss, list) else [loss]
    if kind == "maximum":
        return [impl.maximum(pool[step[1] % len(pool)], pool[step[2] % len(pool)])]
    if kind == "sum":
        return [impl.sum(pick(step[1]))]
    if kind == "dot":
        ws, xs = pick(step[1]), pick(step[2])
        n = min(len(ws), len(xs))
        return [impl.dot(ws[:n], xs[:n], 0.5)]
    if kind == "mlp":
        xs = pick(step[1])
        random.seed(len(pool))  # the same weights in every rebuild
        model = MLP(len(xs), [3, 2], activation=step[2], engine=impl)
        return list(model(xs))
    _, op, i = step
    v = pool[i % len(pool)]
    return [abs(v) if op == "abs" else getattr(v, op)()]


def build(impl: types.ModuleType, steps: list[tuple[Any, ...]], inputs: list[float],
          weights: list[float]) -> tuple[Any, list[Any], list[Any]]:  # fmt: skip
    """The program's graph, rooted at the sum of everything it made; the input leaves and
    the weight leaves."""
    xs = [impl.Value(x) for x in inputs]
    ws = [impl.Value(w) for w in weights]
    pool = xs + ws
    made = []
    for step in steps:
        values = apply(impl, pool, step)
        pool.extend(values)
        made.extend(values)
    return impl.sum(made + xs + ws), xs, ws  # every leaf on the tape


def eager_rows(impl: types.ModuleType, steps: list[tuple[Any, ...]], X: np.ndarray,
               weights: list[float]) -> tuple[list[float], list[float], type | None]:  # fmt: skip
    """Each row's root built anew, and the weights' grads summed over the rows in order;
    or the exception type of the first row that fails."""
    outs, totals = [], [0.0] * len(weights)
    for row in X.tolist():
        try:
            root, _, ws = build(impl, steps, row, weights)
            root.backward()
        except ARITHMETIC as e:
            return outs, totals, type(e)
        outs.append(root.data)
        totals = [t + w.grad for t, w in zip(totals, ws)]
    return outs, totals, None


row_values = st.one_of(st.floats(-3.0, 3.0), st.sampled_from([-800.0, 805.67, -744.0, 0.0,
                                                                 710.0, -1e4]))  # fmt: skip


@pytest.mark.parametrize("engine", ["c", "python"])
@given(steps=st.lists(function_steps, min_size=1, max_size=6),
       inputs=st.integers(1, 4), weights=st.lists(st.floats(-2.0, 2.0), min_size=1, max_size=3),
       data=st.data())  # fmt: skip
def test_a_replayed_row_is_its_eager_build(engine: str, steps: list[tuple[Any, ...]],
                                           inputs: int, weights: list[float],
                                           data: st.DataObject) -> None:  # fmt: skip
    impl = fastgrad._core if engine == "c" else fastgrad.reference
    X = np.array(data.draw(st.lists(st.lists(row_values, min_size=inputs, max_size=inputs),
                                    min_size=1, max_size=4)))  # fmt: skip
    try:
        root, xs, ws = build(impl, steps, [0.5] * inputs, weights)
    except ARITHMETIC:
        return
    tape = impl.Tape(root)
    outs, totals, failure = eager_rows(impl, steps, X, weights)
    if failure is not None:
        with pytest.raises(failure):
            tape.run(xs, X)
        return
    out = tape.run(xs, X)
    assert [bits(v) for v in out.tolist()] == [bits(v) for v in outs]
    assert [bits(w.grad) for w in ws] == [bits(t) for t in totals]


def test_logsumexp_replays_its_own_rows_shift(impl: types.ModuleType) -> None:
    """The new user's rows: a shift recorded at the recording row gave -743.341 and
    OverflowError; the shift is the row's own, as eager code and PyTorch take it."""
    a, b = impl.Value(0.0), impl.Value(0.0)
    tape = impl.Tape(F.logsumexp([a, b]))
    out = tape.run([a, b], np.array([[-744.0, -744.3], [805.67, 3.0]]))
    assert out.tolist() == [F.logsumexp([impl.Value(-744.0), impl.Value(-744.3)]).data,
                            F.logsumexp([impl.Value(805.67), impl.Value(3.0)]).data]
    assert math.isclose(out[0], np.logaddexp(-744.0, -744.3), rel_tol=1e-15)
    assert out[1] == 805.67


def test_cross_entropy_of_unstandardised_features(impl: types.ModuleType) -> None:
    """Scores in the hundreds overflowed exp() under the recorded shift; the row's own shift
    gives PyTorch's loss."""
    scores = [impl.Value(0.0) for _ in range(3)]
    tape = impl.Tape(F.cross_entropy(scores, 2))
    X = np.array([[900.0, 1.0, 899.0], [-1000.0, -1001.0, -999.5]])
    out = tape.run(scores, X)
    expected = [np.logaddexp.reduce(row) - row[2] for row in X]
    assert np.allclose(out, expected, rtol=1e-12, atol=0.0)


def test_maximum_picks_and_differentiates(impl: types.ModuleType) -> None:
    a, b = impl.Value(2.0), impl.Value(3.0)
    m = impl.maximum(a, b)
    m.backward()
    assert (m.data, m._op, a.grad, b.grad) == (3.0, "max", 0.0, 1.0)
    tie = impl.maximum(a, 2.0)
    assert tie.data == 2.0 and impl.gradients(tie, a) == 1.0  # a tie goes to the first
    assert math.isnan(impl.maximum(a, math.nan).data)
    assert math.isnan(impl.maximum(math.nan, a).data)
    assert impl.maximum(3.0, b).data == 3.0
    with pytest.raises(TypeError, match="maximum"):
        impl.maximum(1.0, 2.0)
    with pytest.raises(TypeError, match="maximum"):
        impl.maximum(a, "2")


def test_a_layer_that_reads_one_input_twice(impl: types.ModuleType) -> None:
    """A layer's neurons all read w twice (inputs w, w, x): the run adds into w's grad in
    the eager order, each neuron's terms last-first (the grouped layer pass went input by
    input, and the last bit differed)."""
    def build_at(x0: float) -> tuple[Any, Any, Any]:
        x, w = impl.Value(x0), impl.Value(0.0)
        random.seed(4)
        scores = MLP(3, [3, 2], engine=impl)([w, w, x])
        random.seed(6)
        target = MLP(1, [3, 2], engine=impl)([x])[0]
        loss = F.binary_cross_entropy_with_logits(w, target)
        return impl.sum(list(scores) + [loss, x, w]), x, w

    root, x, w = build_at(0.5)
    impl.Tape(root).run([x], np.array([[-800.0], [0.25]]))
    total = 0.0
    for row in (-800.0, 0.25):
        fresh, _, fresh_w = build_at(row)
        fresh.backward()
        total = total + fresh_w.grad
    assert bits(w.grad) == bits(total)


# ---- a class index held by a Value: cross_entropy's target fed per row ----

score_values = st.one_of(row_values, st.sampled_from([math.inf, -math.inf, math.nan, -0.0]))


def classifier(impl: types.ModuleType, row: list[float], weights: list[float],
               target: Any) -> tuple[Any, list[Any], list[Any]]:  # fmt: skip
    """Scores as a layer of the inputs and the inputs themselves (so that edge values reach
    the loss as they are), the loss of each against the target; the inputs and weights."""
    xs = [impl.Value(x) for x in row]
    ws = [impl.Value(w) for w in weights]
    layer = [impl.dot(ws, xs[:len(ws)]) * (j + 1) for j in range(len(xs))] if len(ws) <= len(
        xs) else [x * ws[0] for x in xs]
    loss = F.cross_entropy(layer, target) + F.cross_entropy(xs, target) * 0.5
    return loss, xs, ws


@pytest.mark.parametrize("engine", ["c", "python"])
@given(classes=st.integers(1, 5), weights=st.lists(st.floats(-2.0, 2.0), min_size=1, max_size=3),
       seed=st.sampled_from([1.0, 0.25, -3.0, 0.0]), data=st.data())  # fmt: skip
def test_a_fed_class_index_gives_the_int_targets_bits(engine: str, classes: int,
                                                      weights: list[float], seed: float,
                                                      data: st.DataObject) -> None:  # fmt: skip
    impl = fastgrad._core if engine == "c" else fastgrad.reference
    X = np.array(data.draw(st.lists(st.lists(score_values, min_size=classes, max_size=classes),
                                    min_size=1, max_size=4)))  # fmt: skip
    y = np.array(data.draw(st.lists(st.integers(0, classes - 1), min_size=len(X),
                                    max_size=len(X))), dtype=np.int64)  # fmt: skip
    label = impl.Value(0.0, requires_grad=False)
    root, xs, ws = classifier(impl, [0.5] * classes, weights, label)
    tape = impl.Tape(root * seed)
    outs, totals, failure = [], [0.0] * len(ws), None
    for row, k in zip(X.tolist(), y.tolist()):
        try:
            eager, _, eager_ws = classifier(impl, row, weights, k)  # the int, built anew
            eager = eager * seed
            eager.backward()
        except ARITHMETIC as e:
            failure = type(e)
            break
        outs.append(eager.data)
        totals = [t + w.grad for t, w in zip(totals, eager_ws)]
    if failure is not None:
        with pytest.raises(failure):
            tape.run(xs, X, [label], y)
        assert [w.grad for w in ws] == [0.0] * len(ws)
        return
    out = tape.run(xs, X, [label], y)
    assert [bits(v) for v in out.ravel().tolist()] == [bits(v) for v in outs]
    assert [bits(w.grad) for w in ws] == [bits(t) for t in totals]
    assert label.data == 0.0 and label.grad == 0.0


def test_a_value_target_is_the_int_target_eagerly(impl: types.ModuleType) -> None:
    """Loss, grads and the derivative graph of gradients(create_graph=True): the bits the
    int gives, for each class."""
    for k in range(3):
        by_int = [impl.Value(v) for v in (0.5, -0.0, 3.0)]
        by_value = [impl.Value(v) for v in (0.5, -0.0, 3.0)]
        a = F.cross_entropy(by_int, k)
        b = F.cross_entropy(by_value, impl.Value(float(k), requires_grad=False))
        assert bits(a.data) == bits(b.data)
        da = impl.gradients(a, by_int, create_graph=True)
        db = impl.gradients(b, by_value, create_graph=True)
        assert [bits(d.data) for d in da] == [bits(d.data) for d in db]
        assert impl.gradients(impl.sum(da), by_int) == impl.gradients(impl.sum(db), by_value)
        a.backward()
        b.backward()
        assert [bits(v.grad) for v in by_int] == [bits(v.grad) for v in by_value]


def test_a_label_that_is_no_class_raises_index_error(impl: types.ModuleType) -> None:
    """Eagerly as the int would (IndexError), and in a run naming the row, changing nothing;
    a 1-D integer y feeds the one target."""
    scores = [impl.Value(0.0) for _ in range(3)]
    label = impl.Value(1.0)  # requires grad: an index has none, it gets 0.0 added
    tape = impl.Tape(F.cross_entropy(scores, label))
    for bad in (3.0, -1.0, 1.5, math.nan, math.inf):
        with pytest.raises(IndexError, match="not a class index"):
            F.cross_entropy(scores, impl.Value(bad))
        with pytest.raises(IndexError, match=r"^row 1: class index .* among 3 classes"):
            tape.run(scores, np.zeros((2, 3)), [label], np.array([0.0, bad]))
        assert [s.grad for s in scores] == [0.0] * 3 and label.grad == 0.0
    out = tape.run(scores, np.array([[1.0, 2.0, 3.0]] * 3), [label], np.array([0, 1, 2]))
    assert out.ravel().tolist() == [F.cross_entropy([1.0, 2.0, 3.0], k).data for k in range(3)]
    assert label.grad == 0.0 and label.data == 1.0
