"""A tape run cut into shards (Tape.run(..., shards=K)), written once over both engines: the
rows cut into K contiguous shards as numpy.array_split cuts them, each shard's gradient summed
from zero (the leaves' grads start at -0.0, which adds as nothing) in row order, and each
leaf's grad then its grad before the call plus shard 0, shard 1, ... in shard order. This is
the sum fastgrad.distributed.DataParallel computes with one shard per task, so that one
process gives its bits exactly."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._common import rows_later, rows_of
from .nn.utils import grads_to_vector, vector_to_grads


def check_shards(shards: Any) -> int:
    """shards as a count of at least 1, or a clear error."""
    if isinstance(shards, bool) or not isinstance(shards, int):
        raise TypeError(f"shards must be an int, not {type(shards).__name__!r}")
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    return shards


def shard_bounds(rows: int, shards: int) -> list[tuple[int, int]]:
    """(start, stop) of each shard, as numpy.array_split cuts `rows` rows into `shards`: the
    first rows % shards shards one row longer; shards past the rows are empty."""
    size, longer = divmod(rows, shards)
    starts = [k * size + min(k, longer) for k in range(shards + 1)]
    return list(itertools.pairwise(starts))


def sharded_run(tape: Any, inputs: Iterable[Any], X: Any, targets: Iterable[Any], y: Any,
                shards: int, threads: Any, root_grad: Any) -> Any:  # fmt: skip
    """Tape.run(..., backward=True, shards=shards) for shards > 1: the root's values per row,
    as run returns them; the grads as the module docstring says. A failing row restores every
    grad and raises what run raises."""
    inputs, targets = tuple(inputs), tuple(targets)
    X = rows_of(np, X, len(inputs), "X")
    Y = None if y is None else rows_of(np, y, len(targets), "y")
    if Y is not None and len(Y) != len(X):
        raise ValueError(f"X has {len(X)} rows and y {len(Y)}")
    engine = sys.modules[type(tape).__module__]
    leaves = [v for v in tape.leaves if v.requires_grad]
    added = engine._Parameters(leaves)
    before = grads_to_vector(leaves)
    total, shard = before.copy(), np.empty(len(leaves))
    outputs = []
    start = 0
    try:
        for start, stop in shard_bounds(len(X), shards):
            if start == stop:  # adds -0.0: nothing
                continue
            added.fill_grads(-0.0)
            outputs.append(tape.run(inputs, X[start:stop], targets,
                                    None if Y is None else Y[start:stop], threads=threads,
                                    root_grad=root_grad))  # fmt: skip
            added.read_grads(shard)
            total += shard  # (one IEEE addition per leaf, as the scalar sum)
    except Exception as error:
        vector_to_grads(before, leaves)
        named = rows_later(error, start)
        if named is error:
            raise
        raise named from None
    except BaseException:
        vector_to_grads(before, leaves)
        raise
    vector_to_grads(total, leaves)
    if not outputs:
        return tape.run(inputs, X, targets, Y, backward=False)
    return np.concatenate(outputs)
