"""B13: fastgrad.distributed.DataParallel on two Dask worker processes of this machine, beside
tape.run(threads=1) in one process: MNIST-size (20,000 rows, MLP 784-128-10, cross-entropy),
where the work is large enough to share, and moons-size (100 rows, 2 shards), where a run is
nearly all fixed cost (scheduling, shipping the weights, gathering the shard sums).

The cluster (a distributed.LocalCluster of 2 worker processes, one thread each) starts when
the case is built and closes when the interpreter exits; its workers record their shards'
tapes then, so a timed run is what each training step costs. Skipped without Dask."""

from __future__ import annotations

import atexit
import random
from typing import Any

from .case import Case, Contenders, optional

WORKERS = 2
_cluster: Any = None  # (cluster, client), started on first use


def _client() -> Any:
    global _cluster
    if _cluster is None:
        import logging

        distributed = optional("distributed")
        if distributed is None:
            return None
        cluster = distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1,
                                           processes=True, dashboard_address=None,
                                           silence_logs=logging.ERROR)  # fmt: skip
        _cluster = (cluster, distributed.Client(cluster))
        atexit.register(_close)
    return _cluster[1]


def _close() -> None:
    global _cluster
    if _cluster is not None:
        cluster, client = _cluster
        _cluster = None
        client.close()
        cluster.close()


def _case(id: str, title: str, rows: int, sizes: list[int], loss: str) -> Case:
    names = (f"fastgrad DataParallel, {WORKERS} workers", "tape.run, threads=1, one process")

    def build() -> Contenders:
        from .. import _core, nn
        from ..demos.moons import sample_loss
        from ..distributed import DataParallel
        from .tape import dataset

        client = _client()
        if client is None:
            return {}
        random.seed(0)
        model = nn.MLP(sizes[0], sizes[1:], engine=_core)
        inputs, targets, root = sample_loss(model, loss)
        tape = _core.Tape(root)
        X, Y = dataset(rows, sizes, loss)
        parallel = DataParallel(model, _build_for(loss), X, Y, shards=WORKERS, client=client)
        return {names[0]: lambda: parallel.run(root_grad=1.0 / rows),
                names[1]: lambda: tape.run(inputs, X, targets, Y, root_grad=1.0 / rows)}

    return Case(id, title, 1, "pass", build, names, rounds=3)


def build_margin(model: Any) -> tuple[Any, ...]:
    """DataParallel's build for the moons model: one sample's max-margin loss."""
    from ..demos.moons import sample_loss

    return sample_loss(model, "margin")


def _build_for(loss: str) -> Any:
    from ..demos import digits

    return build_margin if loss == "margin" else digits.build  # (one sample's cross-entropy)


DISTRIBUTED_CASES = [
    _case("B13", "DataParallel, MNIST-size: 20,000 rows, MLP 784-128-10, 2 shards", 20_000,
          [784, 128, 10], "cross_entropy"),
    _case("B13", "DataParallel's fixed cost, moons: 100 rows, MLP 2-16-16-1, 2 shards", 100,
          [2, 16, 16, 1], "margin"),
]  # fmt: skip
