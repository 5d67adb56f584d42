"""A tape's run over a Dask cluster: the rows of a dataset cut into shards, each shard's
tape recorded once on a worker and kept there, each run shipping only the weights.

    from fastgrad.distributed import DataParallel

    def build(model):                      # importable by the workers (or defined in __main__)
        xs = [Value(0.0) for _ in range(2)]
        y = Value(0.0)
        return xs, [y], (model(xs) - y) ** 2

    with DataParallel(model, build, X, y, shards=4) as dp:
        for step in range(100):
            opt.zero_grad()
            dp.run(root_grad=1 / len(X))  # the grads of tape.run(..., shards=4), bit for bit
            opt.step()

`build(model)` gives (inputs, targets, roots) for one row: the leaves X's columns feed, those
y's columns feed, and the root(s), as `Tape(roots).run(inputs, X, targets, y)` takes them.
Each worker that runs a shard unpickles the model, calls build once, records the tape and
keeps it; each run sends the parameters' data as one float64 array and gets back the shard's
outputs and its gradient sum, which the client adds to the grads in shard order. The bits
are those of one process's `tape.run(inputs, X, targets, y, shards=K)`, whatever the number
of workers, where the shards ran, and whether a worker died and its work was redone.

Needs Dask's distributed scheduler: `pip install 'fastgrad[distributed]'`.
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import engine_of, rows_later
from ._shards import check_shards, shard_bounds

__all__ = ["DataParallel", "local_client"]

# how long a run may wait for its shards before it gives up (seconds)
DEFAULT_TIMEOUT = 600.0


def _dask() -> Any:
    try:
        import distributed
    except ImportError as error:
        raise ImportError("fastgrad.distributed needs Dask's distributed scheduler: "
                          "pip install 'fastgrad[distributed]'") from error  # fmt: skip
    return distributed


_embedded: Any = None  # (cluster, client) started by local_client()
_embedded_lock = threading.Lock()


def local_client() -> Any:
    """The Dask client of an embedded cluster on this machine, started on first use and closed
    when the interpreter exits: a distributed.LocalCluster of worker processes, one thread
    each, one per core. DataParallel(client=None) uses it; pass it to your own Dask code too
    (client.map for a sweep) to share its workers.

    Returns:
        A distributed.Client.

    Raises:
        ImportError: Dask's distributed package is not installed.
    """
    global _embedded
    distributed = _dask()
    with _embedded_lock:
        if _embedded is None or _embedded[1].status in ("closing", "closed"):
            import logging

            cluster = distributed.LocalCluster(n_workers=os.cpu_count() or 1,
                                               threads_per_worker=1, processes=True,
                                               dashboard_address=_dashboard_address(),
                                               silence_logs=logging.ERROR)  # fmt: skip
            _embedded = (cluster, distributed.Client(cluster))
            atexit.register(_close_embedded)
        return _embedded[1]


def _dashboard_address() -> str | None:
    """Dask's dashboard on a free port where bokeh (which draws it) is installed."""
    try:
        importlib.import_module("bokeh")
    except ImportError:
        return None
    return ":0"


def _close_embedded() -> None:
    global _embedded
    with _embedded_lock:
        if _embedded is not None:
            cluster, client = _embedded
            _embedded = None
            client.close()
            cluster.close()


class _Shard:
    """One shard's rows and what a worker needs to record its tape: the pickled model and
    build. Its tape, once recorded on a worker, stays with this object in that worker's
    memory; a copy of it (moved to another worker, or recomputed after a worker died) records
    its own."""

    def __init__(self, model_bytes: bytes, build: Callable[[Any], Any], X: Any, y: Any,
                 first_row: int) -> None:  # fmt: skip
        self.model_bytes, self.build, self.X, self.y = model_bytes, build, X, y
        self.first_row = first_row  # X's first row is this row of the whole
        self._recorded: _Recorded | None = None
        self._lock = threading.Lock()
        self.recorded()  # recorded where the task runs, so that build's errors surface at once

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("model_bytes", "build", "X", "y",
                                                       "first_row")}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._recorded, self._lock = None, threading.Lock()

    def recorded(self) -> _Recorded:
        if self._recorded is None:
            self._recorded = _Recorded(pickle.loads(self.model_bytes), self.build, self.X,
                                       self.y)  # fmt: skip
        return self._recorded


class _Recorded:
    """A worker's copy of the model, the graph build made of it, and its tape."""

    def __init__(self, model: Any, build: Callable[[Any], Any], X: Any, y: Any) -> None:
        built = build(model)
        if not isinstance(built, tuple) or len(built) != 3:
            raise TypeError("build(model) must return (inputs, targets, roots), not "
                            f"{type(built).__name__!r}")  # fmt: skip
        inputs, targets, roots = built
        self.inputs, self.targets = list(inputs), list(targets)
        params = list(model.parameters())
        engine = importlib.import_module(engine_of(params[0]) if params else "fastgrad")
        self.tape = engine.Tape(roots)
        self.params = engine._Parameters(params)
        self.added = engine._Parameters([v for v in self.tape.leaves if v.requires_grad])
        if X.shape[1] != len(self.inputs):
            raise ValueError(f"X has {X.shape[1]} columns for build's {len(self.inputs)} inputs")
        if y is not None and y.shape[1] != len(self.targets):
            raise ValueError(f"y has {y.shape[1]} columns for build's {len(self.targets)} "
                             "targets")  # fmt: skip
        elif y is None and self.targets:
            raise ValueError(f"build gives {len(self.targets)} targets and y is None")


def _record(model_bytes: bytes, build: Callable[[Any], Any], X: Any, y: Any,
            first_row: int) -> _Shard:  # fmt: skip
    return _Shard(model_bytes, build, X, y, first_row)


def _run_shard(shard: _Shard, weights: Any, grads_before: Any, backward: bool, root_grad: Any,
               threads: int) -> tuple[Any, Any]:  # fmt: skip
    """On a worker: the shard's outputs and (with backward) its gradient summed from zero,
    for the model's parameters at `weights`; or summed onto grads_before where given (one
    shard: Tape.run's one sum)."""
    with shard._lock:
        r = shard.recorded()
        r.params.write_data(weights)
        if backward:
            r.added.fill_grads(-0.0)
            if grads_before is not None:
                r.params.write_grads(grads_before)
        try:
            out = r.tape.run(r.inputs, shard.X, r.targets, shard.y, threads=threads,
                             backward=backward, root_grad=root_grad)  # fmt: skip
        except Exception as error:  # named by its row in the whole of X
            named = rows_later(error, shard.first_row)
            if named is error:
                raise
            raise named from None
        grads = None
        if backward:
            grads = np.empty(len(r.params))
            r.params.read_grads(grads)
        return out, grads


def _rows(array: Any, name: str) -> Any:
    matrix = np.asarray(array)
    if matrix.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; its dtype is {matrix.dtype}")
    matrix = matrix.astype(np.float64, copy=False)
    if matrix.ndim == 1:
        matrix = matrix.reshape(-1, 1)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of rows, not of shape {matrix.shape}")
    return np.ascontiguousarray(matrix)


class DataParallel:
    """A model's tape run over the rows of X (and y), cut into shards that Dask's workers run.

    Args:
        model: what build takes: anything with .parameters() (a fastgrad.nn Module), picklable.
        build: build(model) -> (inputs, targets, roots) for one row, as Tape.run takes them;
            picklable (a module-level function, or one defined in a script's __main__).
        X: the rows fed to inputs, (rows, len(inputs)) numbers.
        y: the rows fed to targets (rows, len(targets)), or None where there are none.
        shards: how many contiguous shards the rows are cut into, as numpy.array_split
            cuts them; each is one Dask task per run.
        client: a distributed.Client, a scheduler's address ("tcp://host:8786"), or None
            for local_client()'s cluster on this machine.
        threads: Tape.run's threads on each worker, per shard.
        timeout: seconds a run (or recording the shards) may take before it raises.

    Raises:
        TypeError, ValueError: bad arguments, or build(model) failing on a worker (its own
            error is raised here, as recording runs when DataParallel is made).
        ImportError: Dask's distributed package is not installed.
    """

    def __init__(self, model: Any, build: Callable[[Any], Any], X: Any, y: Any = None, *,
                 shards: int, client: Any = None, threads: int = 1,
                 timeout: float = DEFAULT_TIMEOUT) -> None:  # fmt: skip
        distributed = _dask()
        self._shards = check_shards(shards)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int of at least 1, not {threads!r}")
        if not callable(build):
            raise TypeError(f"build must be a function of the model, not {type(build).__name__!r}")
        if not hasattr(model, "parameters"):
            raise TypeError(f"model must have .parameters(), as a fastgrad.nn Module has: "
                            f"{type(model).__name__!r} has none")  # fmt: skip
        self._threads, self._timeout = threads, float(timeout)
        self.model = model
        params = list(model.parameters())
        engine = importlib.import_module(engine_of(params[0]) if params else "fastgrad")
        self._params = engine._Parameters(params)
        X = _rows(X, "X")
        Y = None if y is None else _rows(y, "y")
        if Y is not None and len(Y) != len(X):
            raise ValueError(f"X has {len(X)} rows and y {len(Y)}")
        self.rows = len(X)
        self._owns_client = isinstance(client, str)
        if client is None:
            client = local_client()
        elif isinstance(client, str):
            client = distributed.Client(client, timeout=self._timeout)
        elif not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, a scheduler address or None, "
                            f"not {type(client).__name__!r}")  # fmt: skip
        self.client = client
        import cloudpickle  # (Dask's own: modules and __main__'s classes by reference)

        model_bytes = cloudpickle.dumps(model)
        token = uuid.uuid4().hex
        self._bounds = [(a, b) for a, b in shard_bounds(len(X), self._shards) if a < b]
        self._futures = [
            client.submit(_record, model_bytes, build, X[a:b],
                          None if Y is None else Y[a:b], a,
                          key=f"fastgrad-shard-{k}-{token}")  # fmt: skip
            for k, (a, b) in enumerate(self._bounds)
        ]
        try:
            self._wait(self._futures, "recording the shards' tapes")
        except BaseException:
            self.close()
            raise

    def _wait(self, futures: list[Any], what: str) -> list[Any]:
        """The futures' results, in order; a clear error when they cannot come."""
        distributed = _dask()
        try:
            distributed.wait(futures, timeout=self._timeout)
        except TimeoutError:
            for f in futures:
                f.cancel()
            workers = len(self.client.scheduler_info().get("workers", {}))
            raise TimeoutError(f"DataParallel: {what} took more than {self._timeout:g} s "
                               f"({workers} workers connected)") from None  # fmt: skip
        for f in futures:
            if f.status == "error":
                error = f.exception()
                if isinstance(error, distributed.KilledWorker):
                    raise RuntimeError(f"DataParallel: {what}: a shard's worker died each time "
                                       f"it ran it, past Dask's retries ({error})") from error
                raise error
        return self.client.gather(futures)

    def run(self, backward: bool = True, root_grad: Any = 1.0) -> Any:
        """Tape.run over X (and y) on the workers: each row's root value(s), in row order, as
        Tape.run returns them; with backward, each parameter's grad becomes its grad before
        plus shard 0's gradient sum, shard 1's, ... in shard order (the bits of
        tape.run(..., shards=K) in one process).

        Args:
            backward: False runs forward only and touches no grad.
            root_grad: each row's backward seed (1 / rows gives the mean's gradient), or one
                per root.

        Returns:
            An array of the rows' values: (rows,) for one root, (rows, roots) for several.

        Raises:
            TimeoutError: the shards did not all finish within `timeout` seconds.
            RuntimeError: a shard's worker died more often than Dask retries.
            Any error a row raises in Tape.run, as it raises it. No grad changes then.
        """
        if self._futures is None:
            raise RuntimeError("this DataParallel is closed")
        weights = np.empty(len(self._params))
        self._params.read_data(weights)
        total = np.empty(len(self._params))
        self._params.read_grads(total)
        # one shard adds its rows onto the grads before, as Tape.run does; several add their
        # sums from zero onto them here
        one_sum = total if self._shards == 1 else None
        runs = [self.client.submit(_run_shard, shard, weights, one_sum, bool(backward),
                                   root_grad, self._threads, pure=False)  # fmt: skip
                for shard in self._futures]
        results = self._wait(runs, "a run")
        if backward and one_sum is not None and results:
            self._params.write_grads(results[0][1])
        elif backward:
            for _, grads in results:
                total += grads  # (one IEEE addition per parameter, in shard order)
            self._params.write_grads(total)
        if not results:
            return np.empty((0,))
        return np.concatenate([out for out, _ in results])

    def close(self) -> None:
        """Releases the shards' tapes on the workers (and a client made from an address)."""
        futures, self._futures = getattr(self, "_futures", None), None
        if futures:
            for f in futures:
                f.release()
        if getattr(self, "_owns_client", False):
            self.client.close()
            self._owns_client = False

    def __enter__(self) -> DataParallel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._futures is None else f"{len(self._bounds)} shards"
        return f"DataParallel({self.rows} rows, {state}, client={self.client!r})"
