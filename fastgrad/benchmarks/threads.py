"""B11: threads building and backpropagating graphs at once.

Two independent graphs of 100,000 nodes each, built by eager ops and backpropagated, by two
threads at once against one thread doing both, one after the other: the same work. On a
free-threaded CPython each thread allocates from an arena of its own and the two run in
parallel; on a GIL build they take turns, and the row shows what the GIL costs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .case import Case, Contenders

GRAPH_NODES = 100_000


def build_and_backward(nodes: int = GRAPH_NODES) -> float:
    """A graph of `nodes` nodes (a recurrence over two leaves: a product, a sum and a tanh
    per step), built and backpropagated; returns a grad, so that nothing is optimised away."""
    from .. import Value

    x, w = Value(0.5), Value(-0.25)
    h = x
    for _ in range(nodes // 3):  # three nodes a step
        h = (h * w + x).tanh()
    h.backward()
    return x.grad


def _in_threads(count: int) -> Callable[[], object]:
    def run() -> None:
        threads = [threading.Thread(target=build_and_backward) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return run


def _sequential(count: int) -> Callable[[], object]:
    def run() -> None:
        for _ in range(count):
            build_and_backward()

    return run


def _build() -> Contenders:
    return {"fastgrad, 2 threads": _in_threads(2), "1 thread": _sequential(2)}


THREAD_CASES = [
    Case("B11", "two 100k-node graphs built and backpropagated", 2 * GRAPH_NODES, "node",
         _build, ("fastgrad, 2 threads", "1 thread"), rounds=3),
]
