"""tape.run(..., per_row=True): each row's gradient, the bits the summed run adds for that
row, on both engines; against torch.func.vmap(torch.func.grad(...)); no grad touched."""

from __future__ import annotations

import math
import types
from typing import Any

import numpy as np
import pytest
from programs import bits

import fastgrad
from fastgrad.demos.moons import per_sample_model


def classifier(impl: types.ModuleType, rows: int = 37) -> tuple[Any, ...]:
    tape, model, inputs, targets = per_sample_model(impl, [5, 4, 3], "cross_entropy", seed=2)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(rows, 5)) * 2.0
    Y = np.eye(3)[rng.integers(0, 3, size=rows)]
    return tape, model, inputs, targets, X, Y


def test_rows_add_up_to_the_summed_run_bit_for_bit(impl: types.ModuleType) -> None:
    tape, model, inputs, targets, X, Y = classifier(impl)
    params = model.parameters()
    for k, p in enumerate(params):
        p.grad = 0.25 * k - 1.0
    before = [p.grad for p in params]
    out, G = tape.run(inputs, X, targets, Y, per_row=True, wrt=params)
    assert [p.grad for p in params] == before  # no grad touched
    assert G.shape == (len(X), len(params))
    summed = tape.run(inputs, X, targets, Y)
    assert [bits(v) for v in out.tolist()] == [bits(v) for v in summed.tolist()]
    for j, p in enumerate(params):
        total = before[j]
        for r in range(len(X)):
            total = total + float(G[r, j])
        assert bits(total) == bits(p.grad), j


def test_c_and_reference_give_the_same_rows() -> None:
    results = []
    for impl in (fastgrad._core, fastgrad.reference):
        tape, _, inputs, targets, X, Y = classifier(impl, rows=9)
        out, G = tape.run(inputs, X, targets, Y, per_row=True)
        results.append(([bits(v) for v in out.tolist()], [bits(v) for v in G.ravel().tolist()],
                        G.shape))  # fmt: skip
    assert results[0] == results[1]
    assert results[0][2] == (9, len(classifier(fastgrad.reference)[1].parameters()))


def test_per_row_gradients_are_torch_funcs_vmap_of_grad(impl: types.ModuleType) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    from fastgrad.benchmarks.case import in_parameter_order, torch_parameters

    tape, model, inputs, targets, X, Y = classifier(impl)
    _, G = tape.run(inputs, X, targets, Y, per_row=True, wrt=model.parameters())
    params = tuple(p.detach() for p in torch_parameters(torch, model))

    def loss(ps: tuple[Any, ...], x: Any, label: Any) -> Any:
        h = x
        for i in range(0, len(ps) - 2, 2):
            h = torch.relu(h @ ps[i] + ps[i + 1])
        scores = h @ ps[-2] + ps[-1]
        return torch.logsumexp(scores, 0) - (scores * label).sum()  # label: one-hot

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(
        params, torch.tensor(X), torch.tensor(Y))
    for r in range(len(X)):
        theirs = in_parameter_order([grads[r] for grads in per_sample], model)
        assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
                   for a, b in zip(G[r].tolist(), theirs)), r  # fmt: skip


def test_the_leaves_per_row_takes(impl: types.ModuleType) -> None:
    tape, model, inputs, targets, X, Y = classifier(impl, rows=3)
    _, G = tape.run(inputs, X, targets, Y, per_row=True)
    assert G.shape == (3, len(model.parameters()))  # the data leaves require no grad
    w = model.parameters()[0]
    _, one = tape.run(inputs, X, targets, Y, per_row=True, wrt=[w])
    assert one[:, 0].tolist() == G[:, [v is w for v in tape.leaves if v.requires_grad
                                       and all(v is not f for f in inputs + targets)].index(True)
                                  ].tolist()  # fmt: skip
    with pytest.raises(ValueError, match="wrt\\[0\\] is not a leaf of this tape"):
        tape.run(inputs, X, targets, Y, per_row=True, wrt=[impl.Value(1.0)])
    with pytest.raises(ValueError, match="requires no grad"):
        tape.run(inputs, X, targets, Y, per_row=True, wrt=[inputs[0]])
    with pytest.raises(ValueError, match="wrt names the leaves of per_row"):
        tape.run(inputs, X, targets, Y, wrt=[w])
    with pytest.raises(ValueError, match="2-D"):
        tape.run(inputs, X[0], targets, Y, per_row=True)
