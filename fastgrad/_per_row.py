"""Per-row gradients of a tape run (Tape.run(..., per_row=True)), written once over both
engines: each row run alone, its leaves' grads starting at -0.0 (which adds as nothing, so a
grad holds the row's gradient bit for bit: what the summed run adds for that row), every grad
the tape reads given back afterwards."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import numpy as np


def _chosen_leaves(tape: Any, fed: list[Any], wrt: Iterable[Any] | None) -> list[Any]:
    """The leaves whose gradients are wanted: wrt's (each a leaf of the tape that requires
    grad), else every leaf of the tape that requires grad and is not fed."""
    leaves = tape.leaves
    if wrt is None:
        fed_ids = {id(f) for f in fed}
        return [v for v in leaves if v.requires_grad and id(v) not in fed_ids]
    chosen = list(wrt)
    leaf_ids = {id(v) for v in leaves}
    for i, v in enumerate(chosen):
        if id(v) not in leaf_ids:
            raise ValueError(f"wrt[{i}] is not a leaf of this tape: {v!r}")
        if not v.requires_grad:
            raise ValueError(f"wrt[{i}] requires no grad: it has no gradient to give")
    return chosen


def per_row_run(tape: Any, inputs: Iterable[Any], X: Any, targets: Iterable[Any], y: Any,
                root_grad: Any, wrt: Iterable[Any] | None) -> tuple[Any, np.ndarray]:  # fmt: skip
    """(the root's value per row, as run returns it; an array (rows, leaves) of each row's
    gradient of the chosen leaves), touching no .grad."""
    inputs, targets = list(inputs), list(targets)
    chosen = _chosen_leaves(tape, inputs + targets, wrt)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array of rows, not of shape {X.shape}")
    Y = None if y is None else np.asarray(y, dtype=np.float64)
    if Y is not None and Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    engine = sys.modules[type(tape).__module__]
    # the leaves a run adds to (those that require grad), and the chosen among them, as the
    # engine's parameter loops: their grads set and read in one call each per row
    added = engine._Parameters([v for v in tape.leaves if v.requires_grad])
    wanted = engine._Parameters(chosen)
    before = np.empty(len(added))
    added.read_grads(before)
    outputs, grads = [], np.empty((len(X), len(chosen)))
    try:
        for r in range(len(X)):
            added.fill_grads(-0.0)
            outputs.append(tape.run(inputs, X[r:r + 1], targets,
                                    None if Y is None else Y[r:r + 1], root_grad=root_grad))
            wanted.read_grads(grads[r])
    finally:
        for v, g in zip(added.params, before.tolist()):
            v.grad = g
    if outputs:
        return np.concatenate(outputs), grads
    return tape.run(inputs, X, targets, Y, backward=False), grads
