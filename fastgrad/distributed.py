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
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import engine_for, rows_later, rows_of
from ._shards import check_shards, shard_bounds
from .nn.utils import grads_to_vector, parameters_to_vector, vector_to_grads, vector_to_parameters

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
    """A Dask actor on one worker: one shard's rows, the worker's copy of the model, the graph
    build makes of it and its tape, recorded once when the actor starts and kept. Each call
    ships the weights and returns the shard's outputs and gradient sum. A worker that dies
    takes its actors with it; DataParallel starts the shard's actor again elsewhere."""

    def __init__(self, model_bytes: bytes, build: Callable[[Any], Any], X: Any, y: Any,
                 first_row: int) -> None:  # fmt: skip
        self.X, self.y = X, y
        self.first_row = first_row  # X's first row is this row of the whole
        model = pickle.loads(model_bytes)
        built = build(model)
        if not isinstance(built, tuple) or len(built) != 3:
            raise TypeError("build(model) must return (inputs, targets, roots), not "
                            f"{type(built).__name__!r}")  # fmt: skip
        inputs, targets, roots = built
        self.inputs, self.targets = list(inputs), list(targets)
        if X.shape[1] != len(self.inputs):
            raise ValueError(f"X has {X.shape[1]} columns for build's {len(self.inputs)} inputs")
        if y is not None and y.shape[1] != len(self.targets):
            raise ValueError(f"y has {y.shape[1]} columns for build's {len(self.targets)} "
                             "targets")  # fmt: skip
        if y is None and self.targets:
            raise ValueError(f"build gives {len(self.targets)} targets and y is None")
        self.params = list(model.parameters())
        engine = engine_for(self.params)
        self.tape = engine.Tape(roots)
        self.added = engine._Parameters([v for v in self.tape.leaves if v.requires_grad])

    def run(self, weights: Any, grads_before: Any, backward: bool, root_grad: Any,
            threads: int) -> tuple[str, Any, Any]:  # fmt: skip
        """("ok", the shard's outputs, (with backward) its gradient summed from zero, or
        onto grads_before where given: one shard is Tape.run's one sum) for the model's
        parameters at `weights`; ("error", the exception, None) for a failure of the run
        itself, which is the caller's to raise (an exception from the call is the worker's)."""
        try:
            vector_to_parameters(weights, self.params)
            if backward:
                self.added.fill_grads(-0.0)
                if grads_before is not None:
                    vector_to_grads(grads_before, self.params)
            out = self.tape.run(self.inputs, self.X, self.targets, self.y, threads=threads,
                                backward=backward, root_grad=root_grad)  # fmt: skip
            return "ok", out, grads_to_vector(self.params) if backward else None
        except Exception as error:  # named by its row in the whole of X
            return "error", rows_later(error, self.first_row), None


class DataParallel:
    """A model's tape run over the rows of X (and y), cut into shards that Dask's workers run.

    Args:
        model: what build takes: anything with .parameters() (a fastgrad.nn Module), picklable.
        build: build(model) -> (inputs, targets, roots) for one row, as Tape.run takes them;
            picklable (a module-level function, or one defined in a script's __main__).
        X: the rows fed to inputs, (rows, len(inputs)) numbers.
        y: the rows fed to targets (rows, len(targets)), or None where there are none.
        shards: how many contiguous shards the rows are cut into, as numpy.array_split
            cuts them; each is a Dask actor that keeps its tape on a worker.
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
        self._params = list(model.parameters())
        parameters_to_vector(self._params)  # (Values of one engine, or a TypeError now)
        X = np.ascontiguousarray(rows_of(np, X, None, "X"))
        Y = None if y is None else np.ascontiguousarray(rows_of(np, y, None, "y"))
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

        self._model_bytes, self._build = cloudpickle.dumps(model), build
        self._pieces = [(X[a:b], None if Y is None else Y[a:b], a)
                        for a, b in shard_bounds(len(X), self._shards) if a < b]  # fmt: skip
        self._futures: list[Any] | None = [None] * len(self._pieces)
        self._actors: list[Any] = [None] * len(self._pieces)
        # how often a shard's worker may die under one run before it gives up: Dask's own
        # limit for a task (the scheduler's allowed-failures)
        import dask

        self._deaths_allowed = int(dask.config.get("distributed.scheduler.allowed-failures"))
        try:
            self._start(list(range(len(self._pieces))), "recording the shards' tapes")
        except BaseException:
            self.close()
            raise

    def _start(self, shards: list[int], what: str) -> None:
        """Starts these shards' actors, each recording its tape on a worker Dask picks."""
        assert self._futures is not None
        with warnings.catch_warnings():
            # the rows go in the task graph: Dask warns of large graphs
            warnings.filterwarnings("ignore", message="(?i).*large (object|graph)")
            for k in shards:
                X, Y, first_row = self._pieces[k]
                if self._futures[k] is not None:
                    self._futures[k].release()
                self._futures[k] = self.client.submit(_Shard, self._model_bytes, self._build, X,
                                                      Y, first_row, actor=True, pure=False)
        self._wait([self._futures[k] for k in shards], what)
        for k in shards:
            self._actors[k] = self._futures[k].result()

    def _wait(self, futures: list[Any], what: str) -> None:
        """Waits for the futures; a clear error when they cannot finish."""
        distributed = _dask()
        try:
            distributed.wait(futures, timeout=self._timeout)
        except TimeoutError:
            for f in futures:
                f.cancel()
            raise self._timed_out(what) from None
        for f in futures:
            if f.status == "error":
                error = f.exception()
                if isinstance(error, distributed.KilledWorker):
                    raise RuntimeError(f"DataParallel: {what}: a shard's worker died each time "
                                       f"it ran it, past Dask's retries ({error})") from error
                raise error

    def _timed_out(self, what: str) -> TimeoutError:
        workers = len(self.client.scheduler_info().get("workers", {}))
        return TimeoutError(f"DataParallel: {what} took more than {self._timeout:g} s "
                            f"({workers} workers connected)")  # fmt: skip

    def run(self, backward: bool = True, root_grad: Any = 1.0) -> Any:
        """Tape.run over X (and y) on the workers: each row's root value(s), in row order, as
        Tape.run returns them; with backward, each parameter's grad becomes its grad before
        plus shard 0's gradient sum, shard 1's, ... in shard order (the bits of
        tape.run(..., shards=K) in one process).

        Each shard's actor is called directly (no scheduling): it sets its model copy's
        weights, runs its tape and returns its outputs and gradient sum. A shard whose worker
        died is started again on a live worker and run again, as often as Dask's
        allowed-failures permits a task; the bits are the same.

        Args:
            backward: False runs forward only and touches no grad.
            root_grad: each row's backward seed (1 / rows gives the mean's gradient), or one
                per root.

        Returns:
            An array of the rows' values: (rows,) for one root, (rows, roots) for several.

        Raises:
            TimeoutError: the shards did not all finish within `timeout` seconds.
            RuntimeError: a shard's worker died more often than Dask allows a task's.
            Exception: whatever a failing row raises in Tape.run, as it raises it, naming the
                row of X. No grad changes on any failure.
        """
        if self._futures is None:
            raise RuntimeError("this DataParallel is closed")
        weights, total = parameters_to_vector(self._params), grads_to_vector(self._params)
        # one shard adds its rows onto the grads before, as Tape.run does; several add their
        # sums from zero onto them here
        one_sum = total if self._shards == 1 else None
        arguments = (weights, one_sum, bool(backward), root_grad, self._threads)
        results: list[Any] = [None] * len(self._actors)
        deaths = [0] * len(self._actors)
        deadline = time.monotonic() + self._timeout
        calls = {k: actor.run(*arguments) for k, actor in enumerate(self._actors)}
        while calls:
            lost = []
            for k, call in calls.items():
                try:
                    results[k] = call.result(timeout=max(deadline - time.monotonic(), 0.0))
                except Exception as error:  # the actor's worker is gone (or slow)
                    if isinstance(error, TimeoutError) and time.monotonic() >= deadline:
                        raise self._timed_out("a run") from None
                    deaths[k] += 1
                    if deaths[k] > self._deaths_allowed:
                        raise RuntimeError(f"DataParallel: a run: shard {k}'s worker died "
                                           f"{deaths[k]} times, past Dask's retries "
                                           f"({error})") from error  # fmt: skip
                    lost.append(k)
            if lost:
                self._start(lost, "recording a lost shard's tape again")
            calls = {k: self._actors[k].run(*arguments) for k in lost}
        for status, failure, _ in results:
            if status == "error":  # the first failing row's, as Tape.run raises it
                raise failure
        if backward and one_sum is not None and results:
            vector_to_grads(results[0][2], self._params)
        elif backward:
            for _, _, grads in results:
                total += grads  # (one IEEE addition per parameter, in shard order)
            vector_to_grads(total, self._params)
        if not results:
            return np.empty((0,))
        return np.concatenate([out for _, out, _ in results])

    def close(self) -> None:
        """Releases the shards' tapes on the workers (and a client made from an address)."""
        futures, self._futures = getattr(self, "_futures", None), None
        self._actors = []
        for f in futures or ():
            if f is not None:
                f.release()
        if getattr(self, "_owns_client", False):
            self.client.close()
            self._owns_client = False

    def __enter__(self) -> DataParallel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._futures is None else f"{len(self._pieces)} shards"
        return f"DataParallel({self.rows} rows, {state}, client={self.client!r})"
