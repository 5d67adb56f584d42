"""Threads at once: graphs over shared leaves built, backpropagated, replayed by tapes and
run over rows, optimizers stepping, graphs dropped while others are built.

Every private result must have the bits it has when its graph is built alone, and every
addition into a shared leaf's grad must be whole (the shared grads are the sum of each
graph's part, up to the order of the additions). On a free-threaded CPython (3.13t, run by
.ci/run with PYTHON_GIL=0) the threads really run at once; on a GIL build they take turns at
the interpreter's switch points, which still interleaves them between any two Python lines.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import types

import numpy as np
import pytest

import fastgrad._core
from fastgrad.optim import SGD

THREADS = 4
OWN = 20
SHARED = 50
OPS = 500
ROUNDS = 6


def build(impl: types.ModuleType, seed: int, own: list, shared: list):
    """A random graph of OPS ops over the thread's own leaves and the shared ones (every
    product squashed by tanh, so that values stay within a few units)."""
    rng = random.Random(seed)
    pool = [*own, *shared]
    for _ in range(OPS):
        a, b = rng.choice(pool), rng.choice(pool)
        kind = rng.randrange(5)
        if kind == 0:
            out = (a + b) * 0.5
        elif kind == 1:
            out = (a * b).tanh()
        elif kind == 2:
            out = a.tanh()
        elif kind == 3:
            out = impl.dot([a, b], [b, rng.choice(pool)]).tanh()
        else:
            out = (a - 0.5 * b).relu()
        pool.append(out)
    return impl.sum(pool[OWN + SHARED:])


def own_leaves(impl: types.ModuleType, seed: int) -> list:
    return [impl.Value(math.sin(seed + i)) for i in range(OWN)]


def bits(x: float) -> bytes:
    return np.float64(x).tobytes()


def one_graph(impl: types.ModuleType, seed: int, own: list, shared: list) -> dict:
    """Everything a thread checks about its graph: the root, backward's grads of its own
    leaves, gradients() of the root, a tape's replay of both and a run over rows."""
    for v in own:
        v.grad = 0.0
    root = build(impl, seed, own, shared)
    derivatives = impl.gradients(root, own)
    root.backward()
    eager = [v.grad for v in own]
    tape = impl.Tape(root)
    for v in own:
        v.grad = 0.0
    replayed = tape.forward()
    tape.backward()
    rows = np.array([[math.cos(seed + r + i) for i in range(2)] for r in range(8)])
    run = tape.run(own[:2], rows, backward=False)
    return {"root": bits(root.data), "eager": [bits(g) for g in eager],
            "gradients": [bits(g) for g in derivatives], "replayed": bits(replayed),
            "tape": [bits(v.grad) for v in own], "run": np.asarray(run).tobytes()}


def shared_part(impl: types.ModuleType, seed: int, shared: list) -> list[float]:
    """What one graph's backward and its tape's backward add to the shared leaves."""
    for v in shared:
        v.grad = 0.0
    one_graph(impl, seed, own_leaves(impl, seed), shared)
    return [v.grad for v in shared]


def run_threads(target, count: int = THREADS) -> None:
    errors: list[BaseException] = []

    def guarded(t: int) -> None:
        try:
            target(t)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_threads_sharing_leaves(impl: types.ModuleType) -> None:
    shared = [impl.Value(math.cos(i)) for i in range(SHARED)]
    alone = {t: one_graph(impl, t, own_leaves(impl, t), shared) for t in range(THREADS)}
    parts = {t: shared_part(impl, t, shared) for t in range(THREADS)}
    for v in shared:
        v.grad = 0.0
    live_before = fastgrad._core._all_arenas_live()
    seen: dict[int, list[dict]] = {t: [] for t in range(THREADS)}

    def worker(t: int) -> None:
        own = own_leaves(impl, t)
        for _ in range(ROUNDS):
            seen[t].append(one_graph(impl, t, own, shared))

    run_threads(worker)
    for t in range(THREADS):
        assert all(outcome == alone[t] for outcome in seen[t])
    for i, leaf in enumerate(shared):
        expected = ROUNDS * math.fsum(parts[t][i] for t in range(THREADS))
        scale = ROUNDS * math.fsum(abs(parts[t][i]) for t in range(THREADS))
        assert abs(leaf.grad - expected) <= 1e-9 * (scale + 1.0)
    # every node the threads made is freed, whichever thread frees it
    assert fastgrad._core._all_arenas_live() == live_before


def test_optimizers_and_dropped_graphs_across_threads(impl: types.ModuleType) -> None:
    """Each thread trains its own parameters with SGD on graphs that also read shared
    leaves, while other threads build and drop graphs over those leaves: each thread's
    parameters end with the bits of the same training done alone, and the memory comes back."""
    shared = [impl.Value(0.1 * i) for i in range(SHARED)]

    def train(t: int) -> list[bytes]:
        own = own_leaves(impl, t)
        opt = SGD(own, lr=0.01, momentum=0.9)
        for step in range(10):
            opt.zero_grad()
            loss = build(impl, 100 * t + step, own, shared) ** 2 * 1e-6
            loss.backward()
            opt.step()
        return [bits(v.data) for v in own]

    alone = {t: train(t) for t in range(THREADS)}
    live_before = fastgrad._core._all_arenas_live()
    trained: dict[int, list[bytes]] = {}

    def worker(t: int) -> None:
        if t % 2:
            trained[t] = train(t)
        else:
            for step in range(20):
                build(impl, 1000 * t + step, own_leaves(impl, t), shared)

    run_threads(worker)
    assert all(trained[t] == alone[t] for t in trained)
    assert fastgrad._core._all_arenas_live() == live_before


def test_one_tape_refuses_a_second_thread(impl: types.ModuleType) -> None:
    """A Tape replays one call at a time: a second thread gets RuntimeError, never a crash
    or a mixed replay; what it computes alone it computes again."""
    x = [impl.Value(0.5) for _ in range(2)]
    root = build(impl, 7, x * 10, [])
    tape = impl.Tape(root)
    rows = np.linspace(-1.0, 1.0, 2000).reshape(1000, 2)
    expected = np.asarray(tape.run(x, rows, backward=False)).tobytes()
    outcomes: list[object] = []

    def worker(t: int) -> None:
        for _ in range(5):
            try:
                outcomes.append(np.asarray(tape.run(x, rows, backward=False)).tobytes())
            except RuntimeError as e:
                assert "another thread" in str(e)
                outcomes.append("refused")

    run_threads(worker)
    assert len(outcomes) == 5 * THREADS
    assert all(o == expected for o in outcomes if o != "refused")


def test_reading_a_recorded_value_never_refuses_its_tapes_replay(impl: types.ModuleType) -> None:
    """A thread that reads a Value a tape recorded writes what the tape's last replay left
    waiting; the thread replaying that tape meanwhile waits for it, and is never refused as
    if a second replay ran. Every replay and every read gives the eager bits."""
    x = [impl.Value(0.25 * i) for i in range(4)]
    inner = build(impl, 11, x * 5, [])
    root = (inner * 0.5).tanh()
    expected = (bits(inner.data), bits(root.data))
    tape = impl.Tape(root)
    reads: list[bytes] = []

    def worker(t: int) -> None:
        for _ in range(400):
            if t == 0:
                assert bits(tape.forward()) == expected[1]
            else:
                reads.append(bits(inner.data))  # (brings the tape's writes up to date)

    run_threads(worker)  # (raises the first thread's error)
    assert set(reads) == {expected[0]}


def test_handles_asked_for_while_dropped(c_impl: types.ModuleType) -> None:
    """_prev hands out the Value of a node that another thread may be dropping at that
    moment: the same object while it lives, a new one after, never a freed one."""
    stop = threading.Event()
    leaves = [c_impl.Value(float(i)) for i in range(8)]
    parents = [leaf * 2.0 for leaf in leaves]

    def dropper(t: int) -> None:
        while not stop.is_set():
            for i in range(len(parents)):
                children = list(parents[i]._prev)
                assert sorted(c.data for c in children) == sorted([float(i), 2.0])
                del children

    def asker(t: int) -> None:
        for _ in range(2000):
            for parent in parents:
                for child in parent._prev:
                    assert child.data == child.data
        stop.set()

    run_threads(lambda t: asker(t) if t == 0 else dropper(t))
    del leaves
    assert sorted(c.data for c in parents[3]._prev) == [2.0, 3.0]


def test_threads_that_end_give_their_memory_back(impl: types.ModuleType) -> None:
    """Many short-lived threads, each building and dropping a graph: the node count returns
    to where it was, and the arenas of ended threads serve the next ones (no arena per
    thread ever started)."""
    shared = [impl.Value(0.5 * i) for i in range(SHARED)]
    live_before = fastgrad._core._all_arenas_live()
    for wave in range(25):
        run_threads(lambda t, wave=wave: build(impl, wave * THREADS + t, own_leaves(impl, t),
                                               shared).backward())
    assert fastgrad._core._all_arenas_live() == live_before
    assert fastgrad._core._arena_count() <= THREADS + 2


@pytest.mark.skipif(not hasattr(sys, "_is_gil_enabled") or sys._is_gil_enabled(),
                    reason="a GIL build (the free-threaded run of .ci/run tests it)")  # fmt: skip
def test_import_keeps_the_gil_off() -> None:
    """Importing fastgrad on a free-threaded CPython leaves the GIL off: the extension
    declares that it runs without it."""
    import subprocess

    out = subprocess.run([sys.executable, "-c",
                          "import sys, fastgrad, fastgrad.nn, fastgrad.optim; "
                          "print(sys._is_gil_enabled())"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "False", out.stderr
