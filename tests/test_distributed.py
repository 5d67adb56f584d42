"""fastgrad.distributed.DataParallel on real Dask clusters (worker processes on this machine):
the bits of one process's tape.run(..., shards=K) for any number of workers, after workers
are killed during a run, on a cluster started from the `dask` command line; clear errors
that change no grad; a sweep with Dask's own client.map."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed_builds import (
    Chain,
    build,
    chain_build,
    classifier,
    data,
    dying_build,
    log_build,
    train_moons,
)
from programs import bits

import fastgrad
from fastgrad._common import engine_for

distributed = pytest.importorskip("distributed",
                                  reason="Dask is optional: pip install 'fastgrad[distributed]'")
dask = pytest.importorskip("dask")
from fastgrad.distributed import DataParallel, local_client  # noqa: E402

# one cluster for the module, on one xdist worker (its processes would crowd the other's cores)
pytestmark = pytest.mark.xdist_group("dask")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """The embedded cluster (DataParallel's client=None), Dask giving up on a task after its
    worker died twice under it."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        client = local_client()
    yield client
    fastgrad.distributed._close_embedded()  # (its threads would run beside later tests)


def one_process(model: Any, build_: Any, X: Any, y: Any, shards: int, **kwargs: Any) -> Any:
    """tape.run(..., shards=shards) of build_(model)'s tape, in this process."""
    inputs, targets, root = build_(model)
    tape = engine_for(model.parameters()).Tape(root)
    return tape.run(inputs, X, targets, y, shards=shards, **kwargs)


def seeded_grads(model: Any) -> None:
    for k, p in enumerate(model.parameters()):
        p.grad = 0.25 * k - 3.0 if k % 4 else -0.0


def state(model: Any) -> list[tuple[bytes, bytes]]:
    return [(bits(p.data), bits(p.grad)) for p in model.parameters()]


@pytest.mark.parametrize("shards", [1, 2, 3, 5])
def test_a_run_gives_the_bits_of_one_process(impl: types.ModuleType, client: Any,
                                             shards: int) -> None:  # fmt: skip
    X, Y = data(101)
    here, there = classifier(impl), classifier(impl)
    seeded_grads(here)
    seeded_grads(there)
    expected = one_process(here, build, X, Y, shards, root_grad=1 / 101)
    with DataParallel(there, build, X, Y, shards=shards) as dp:  # client=None: the embedded one
        out = dp.run(root_grad=1 / 101)
        assert state(there) == state(here)
        assert [bits(v) for v in out.tolist()] == [bits(v) for v in expected.tolist()]
        forward = dp.run(backward=False)
        assert state(there) == state(here)  # forward only touches no grad
        assert [bits(v) for v in forward.tolist()] == [bits(v) for v in expected.tolist()]


def test_training_steps_match_one_process(client: Any) -> None:
    X, Y = data(240)
    models = [classifier(fastgrad._core), classifier(fastgrad._core)]
    optimizers = [fastgrad.optim.Adam(m.parameters(), lr=0.05) for m in models]
    inputs, targets, root = build(models[0])
    tape = fastgrad._core.Tape(root)
    with DataParallel(models[1], build, X, Y, shards=4, client=client, threads=2) as dp:
        for _ in range(6):
            for opt in optimizers:
                opt.zero_grad()
            tape.run(inputs, X, targets, Y, shards=4, root_grad=1 / 240)
            dp.run(root_grad=1 / 240)
            for opt in optimizers:
                opt.step()
            assert state(models[1]) == state(models[0])


def test_one_worker_or_several_give_the_same_bits(client: Any) -> None:
    X, Y = data(97)
    results = []
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as one:  # fmt: skip
        for c in (one, client):
            model = classifier(fastgrad._core)
            with DataParallel(model, build, X, Y, shards=3, client=c) as dp:
                out = dp.run()
            results.append((state(model), [bits(v) for v in out.tolist()]))
    assert results[0] == results[1]


def worker_pids(client: Any) -> dict[str, int]:
    return client.run(os.getpid)


def kill_during_run(client: Any, dp: Any, victims: Any) -> Any:
    """dp.run() in a thread; while it runs, SIGKILL the worker processes that `victims`
    picks (from {address: pid} and the addresses holding the shards' tapes); its result."""
    pids = worker_pids(client)
    holders = client.who_has(dp._futures)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.setdefault("out", dp.run()))
    thread.start()
    time.sleep(0.1)
    assert thread.is_alive(), "the run ended before a worker was killed"
    for address in victims(pids, [a for f in dp._futures for a in holders[f.key]]):
        os.kill(pids[address], signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive()
    return result["out"]


def wait_for_workers(client: Any, count: int) -> None:
    client.wait_for_workers(count, timeout=60)


@pytest.mark.parametrize("who", ["one", "every"])
def test_workers_killed_during_a_run_change_no_bit(client: Any, who: str) -> None:
    X = np.linspace(-2, 2, 6000).reshape(-1, 1)  # a shard's run takes about 0.3 s
    here, there = Chain(length=2000), Chain(length=2000)
    expected = one_process(here, chain_build, X, None, 2)
    workers = len(client.scheduler_info()["workers"])
    with DataParallel(there, chain_build, X, shards=2, client=client, timeout=120) as dp:
        dp.run(backward=False)  # (the tapes recorded and warm)
        pick = (lambda pids, holders: holders[:1]) if who == "one" else \
            (lambda pids, holders: list(pids))  # fmt: skip
        out = kill_during_run(client, dp, pick)
        assert state(there) == state(here)
        assert [bits(v) for v in out.tolist()] == [bits(v) for v in expected.tolist()]
        wait_for_workers(client, workers)  # (the nannies start new workers)
        again = Chain(length=2000)
        for p in there.parameters():
            p.grad = 0.0
        one_process(again, chain_build, X, None, 2)
        dp.run()
        assert state(there) == state(again)  # and on the new workers


def test_a_shard_whose_worker_always_dies_is_a_clear_error(client: Any) -> None:
    X, _ = data(10)
    model = classifier(fastgrad._core)
    before = state(model)
    workers = len(client.scheduler_info()["workers"])
    with pytest.raises(RuntimeError, match="a shard's worker died each time it ran it"):
        DataParallel(model, dying_build, X, shards=1, client=client, timeout=120)
    assert state(model) == before
    wait_for_workers(client, workers)


def test_a_failing_row_is_named_in_the_whole_and_changes_no_grad(impl: types.ModuleType,
                                                                  client: Any) -> None:  # fmt: skip
    X = np.full((40, 1), 0.5)
    X[33] = -1.0  # rows 30-39 are the last shard's: its row 3
    model = Chain(impl)
    seeded_grads(model)
    before = state(model)
    with DataParallel(model, log_build, X, shards=4, client=client) as dp:
        with pytest.raises(ValueError, match=r"^row 33: log\(-0.7\): math domain error$"):
            dp.run()
    assert state(model) == before


def test_a_cluster_without_workers_times_out_clearly() -> None:
    X, Y = data(10)
    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as empty:  # fmt: skip
        with pytest.raises(TimeoutError, match=r"recording the shards' tapes took more than "
                                               r"1 s \(0 workers connected\)"):  # fmt: skip
            DataParallel(classifier(fastgrad._core), build, X, Y, shards=2, client=empty,
                         timeout=1)  # fmt: skip


@pytest.mark.parametrize("kwargs, error, message", [
    ({"shards": 0}, ValueError, "shards must be at least 1"),
    ({"shards": 2, "threads": 0}, ValueError, "threads must be an int of at least 1"),
    ({"shards": 2, "client": 42}, TypeError, "client must be a distributed.Client"),
    ({"shards": 2, "y": np.zeros((9, 3))}, ValueError, "X has 10 rows and y 9"),
    ({"shards": 2, "X": np.array(["a"] * 10)}, TypeError, "X must hold real numbers"),
    ({"shards": 2, "y": np.zeros((10, 4))}, ValueError, "y has 4 columns for build's 3 targets"),
])  # fmt: skip
def test_bad_arguments_are_named(client: Any, kwargs: dict[str, Any], error: type,
                                 message: str) -> None:  # fmt: skip
    X, Y = data(10)
    arguments = {"X": X, "y": Y, "client": client, **kwargs}
    model = classifier(fastgrad._core)
    with pytest.raises(error, match=message):
        DataParallel(model, build, arguments.pop("X"), arguments.pop("y"), **arguments)
    with pytest.raises(TypeError, match="build must be a function of the model"):
        DataParallel(model, 3, X, Y, shards=2, client=client)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"model must have \.parameters\(\)"):
        DataParallel(object(), build, X, Y, shards=2, client=client)


def test_closed_runs_are_refused(client: Any) -> None:
    X, Y = data(10)
    dp = DataParallel(classifier(fastgrad._core), build, X, Y, shards=2, client=client)
    assert "2 shards" in repr(dp)
    dp.close()
    dp.close()  # (twice is fine)
    with pytest.raises(RuntimeError, match="this DataParallel is closed"):
        dp.run()


def test_without_dask_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'fastgrad\[distributed\]'"):
        DataParallel(classifier(fastgrad._core), build, *data(4), shards=1)


def test_a_sweep_with_client_map_is_the_serial_sweep(client: Any) -> None:
    grid = [0.3, 0.1, 0.03, 0.01]
    futures = client.map(train_moons, grid)
    assert client.gather(futures) == [train_moons(lr) for lr in grid]


def test_a_cluster_started_from_the_command_line(tmp_path: Path) -> None:
    """`dask scheduler` and two `dask worker`s on 127.0.0.1, reached by address."""
    dask_cli = Path(sys.executable).parent / "dask"
    if not dask_cli.exists():
        pytest.skip("no `dask` command beside this Python")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parent), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]))
    scheduler_file = tmp_path / "scheduler.json"
    common = ["--scheduler-file", str(scheduler_file)]
    procs = [subprocess.Popen([str(dask_cli), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", *common], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(2):
            procs.append(subprocess.Popen(
                [str(dask_cli), "worker", "--nthreads", "1", "--no-dashboard", "--host",
                 "127.0.0.1", *common], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        import json

        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        with distributed.Client(address, timeout=60) as probe:
            probe.wait_for_workers(2, timeout=60)
        X, Y = data(77)
        here, there = classifier(fastgrad._core), classifier(fastgrad._core)
        expected = one_process(here, build, X, Y, 2)
        with DataParallel(there, build, X, Y, shards=2, client=address) as dp:
            out = dp.run()
        assert state(there) == state(here)
        assert [bits(v) for v in out.tolist()] == [bits(v) for v in expected.tolist()]
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
