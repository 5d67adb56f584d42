"""Models and build functions for tests/test_distributed.py, in a module of their own so that
Dask's worker processes import them by name (tests/ is on their sys.path: LocalCluster's
workers inherit it, the CLI-started ones get PYTHONPATH)."""

from __future__ import annotations

import os
import random
import types
from typing import Any

import numpy as np

import fastgrad
from fastgrad.demos.digits import build  # noqa: F401  (one sample's cross-entropy)


def classifier(engine: types.ModuleType, seed: int = 3) -> fastgrad.nn.MLP:
    random.seed(seed)
    return fastgrad.nn.MLP(6, [5, 3], engine=engine)


def data(rows: int, seed: int = 1) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, 6)) * 2.0, np.eye(3)[rng.integers(0, 3, size=rows)]


class Chain:
    """Two weights and a long chain per row: a run that takes long enough to kill a worker
    during it."""

    def __init__(self, engine: types.ModuleType = fastgrad._core, length: int = 400) -> None:
        self.engine, self.length = engine, length
        self.w, self.b = engine.Value(0.7), engine.Value(0.1)

    def parameters(self) -> list[Any]:
        return [self.w, self.b]


def chain_build(model: Chain) -> tuple[Any, ...]:
    x = model.engine.Value(0.0, requires_grad=False)
    h = x
    for _ in range(model.length):
        h = (h * model.w + x).tanh() + model.b
    return [x], [], h * h


def log_build(model: Chain) -> tuple[Any, ...]:
    """log(x w) b: a row with x w <= 0 fails as eager code fails."""
    x = model.engine.Value(1.0, requires_grad=False)
    return [x], [], (x * model.w).log() * model.b


def dying_build(model: Any) -> tuple[Any, ...]:
    """A build whose worker dies each time it runs: Dask gives up after its retries."""
    os._exit(1)


def train_moons(lr: float, steps: int = 30) -> list[float]:
    """A sweep point: the moons model trained full-batch by SGD at lr; its loss per step."""
    from fastgrad.demos.moons import moons, per_sample_model

    X, y = moons(0)
    tape, model, inputs, targets = per_sample_model(fastgrad._core, [2, 8, 1], "margin", seed=0)
    sgd = fastgrad.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        sgd.zero_grad()
        losses.append(float(tape.run(inputs, X, targets, y, root_grad=1 / len(X)).mean()))
        sgd.step()
    return losses
