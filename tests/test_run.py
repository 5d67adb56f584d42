"""Tape.run over rows (SPEC section 6), on both implementations: each row's forward and
backward are those of forward(); backward() at that row, its leaf gradients computed from zero,
added to the leaves' grads one row at a time in row order. So the bits depend neither on the
thread count nor on how the C engine cuts the rows into blocks; a failing row raises naming the
row and changes nothing; bad arguments raise before any work; the GIL is released."""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import math
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from programs import ARITHMETIC, Program, bits, build_summed, edge_floats, held_by, programs

import fastgrad
import fastgrad._core
from fastgrad import nn
from fastgrad.benchmarks import case as _bench_case
from fastgrad.demos import moons as demo

run_programs = programs(sets=False, max_steps=40)


@pytest.fixture(autouse=True, scope="module")
def every_thread_asked_for() -> Any:
    """run() gives few rows fewer threads than asked; these tests compare thread counts, so
    every thread they ask for runs."""
    before = fastgrad._core._run_min_work(0)
    yield
    fastgrad._core._run_min_work(before)


def definition(impl: types.ModuleType, program: Program, fed: list[int], X: np.ndarray,
               before: list[float]) -> tuple[Any, ...]:  # fmt: skip
    """run's result by its definition, computed eagerly: a fresh graph per row, its leaves'
    grads from -0.0, added to the leaves' totals row after row. ("failed", row, error) for the
    first row that raises, forward or backward."""
    totals, out = list(before), []
    for row, xs in enumerate(X.tolist()):
        leaves = list(program.leaves)
        for i, x in zip(fed, xs):
            leaves[i] = x
        try:
            root, values = build_summed(impl, program, leaves)
            for v in values:
                v.grad = -0.0
            root.backward()
        except ARITHMETIC as e:
            return ("failed", row, type(e), str(e))
        out.append(bits(root.data))
        totals = [total + v.grad for total, v in zip(totals, values)]
    return ("ok", out, [bits(t) for t in totals])


def outcome(tape: Any, inputs: list[Any], X: np.ndarray, threads: int) -> tuple[Any, ...]:
    try:
        out = tape.run(inputs, X, threads=threads)
    except ARITHMETIC as e:
        return ("failed", type(e), str(e))
    return ("ok", [bits(x) for x in out.tolist()])


@settings(max_examples=150)
@given(run_programs, st.data())
def test_run_follows_its_definition(impl: types.ModuleType, program: Program,
                                    data: st.DataObject) -> None:  # fmt: skip
    try:
        root, leaves = build_summed(impl, program, program.leaves)
    except ARITHMETIC:
        return  # nothing to record
    tape = impl.Tape(root)
    held = held_by(tape, leaves)
    if not held:
        return
    fed = data.draw(st.lists(st.sampled_from(held), min_size=1, max_size=len(held), unique=True))
    rows = data.draw(st.integers(0, 20))
    row = st.lists(edge_floats, min_size=len(fed), max_size=len(fed))
    X = np.array(data.draw(st.lists(row, min_size=rows, max_size=rows)), dtype=float)
    X = X.reshape(rows, len(fed))
    before = data.draw(st.lists(st.sampled_from([0.0, -0.0, 0.5, -1e17]), min_size=len(leaves),
                                max_size=len(leaves)))  # fmt: skip
    expected = definition(impl, program, fed, X, before)
    for threads in ([1, 2, 3] if impl is fastgrad._core else [1]):
        for leaf, grad in zip(leaves, before):
            leaf.grad = grad
        state = [(bits(v.data), bits(v.grad)) for v in leaves] + [bits(root.data)]
        got = outcome(tape, [leaves[i] for i in fed], X, threads)
        if expected[0] == "failed":
            _, row, kind, message = expected
            assert got == ("failed", kind, f"row {row}: {message}")
            assert [(bits(v.data), bits(v.grad)) for v in leaves] + [bits(root.data)] == state
        else:
            assert got == ("ok", expected[1])
            held_grads = [bits(v.grad) for i, v in enumerate(leaves) if i in held]
            assert held_grads == [g for i, g in enumerate(expected[2]) if i in held]
            # the rows are the run's: the fed leaves keep their data
            assert [(bits(v.data)) for v in leaves] == [s[0] for s in state[:-1]]


def per_sample_classifier(impl: types.ModuleType, inputs: int, hidden: int, classes: int,
                          seed: int = 0, data_grads: bool = True,
                          ) -> tuple[Any, Any, list[Any], Any]:  # fmt: skip
    """An MLP with softmax cross-entropy for one sample: its tape, the model, the input leaves
    and the target's one-hot leaves (which require grad, unless not `data_grads`)."""
    tape, model, xs, onehot = demo.per_sample_model(impl, [inputs, hidden, classes],
                                                    "cross_entropy", seed,
                                                    data_grads=data_grads)  # fmt: skip
    return tape, model, xs, onehot


def classifier_data(rows: int, inputs: int, classes: int, seed: int = 1) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, inputs))
    y = np.eye(classes)[rng.integers(0, classes, size=rows)]
    return X, y


@pytest.mark.parametrize("rows", [1, 7, 8, 9, 63, 64, 65, 131])
def test_threads_and_blocks_give_the_same_bits(rows: int) -> None:
    impl = fastgrad._core
    X, y = classifier_data(rows, 12, 4)
    results = []
    for threads in (1, 2, 3, 5):
        tape, model, xs, onehot = per_sample_classifier(impl, 12, 9, 4)
        out = tape.run(xs, X, onehot, y, threads=threads)
        results.append(([bits(v) for v in out.tolist()],
                        [bits(p.grad) for p in model.parameters()],
                        [bits(x.grad) for x in xs + onehot]))  # fmt: skip
    assert all(r == results[0] for r in results[1:])
    reference_tape, model, xs, onehot = per_sample_classifier(fastgrad.reference, 12, 9, 4)
    out = reference_tape.run(xs, X, onehot, y)
    assert results[0] == ([bits(v) for v in out.tolist()],
                          [bits(p.grad) for p in model.parameters()],
                          [bits(x.grad) for x in xs + onehot])  # fmt: skip


# neurons of every width the weights' passes cut differently: 1 to 4 vectors and a tail, one
# full pass, more than one
@pytest.mark.parametrize("inputs, hidden", [(6, 5), (1, 2), (2, 3), (3, 4), (4, 9), (5, 13),
                                            (8, 16), (9, 17), (12, 31), (33, 36), (70, 3)])
def test_run_equals_the_loop_where_each_leaf_gets_one_contribution(
    impl: types.ModuleType, inputs: int, hidden: int
) -> None:
    """The parameters of a classifier get one contribution per row: run gives the loop's bits."""
    X, y = classifier_data(37, inputs, 3)
    tape, model, xs, onehot = per_sample_classifier(impl, inputs, hidden, 3)
    for p in model.parameters():
        p.grad = 0.25
    out = tape.run(xs, X, onehot, y)
    run_grads = [bits(p.grad) for p in model.parameters()]
    tape, model, xs, onehot = per_sample_classifier(impl, inputs, hidden, 3)
    for p in model.parameters():
        p.grad = 0.25
    loop = []
    for row, target in zip(X.tolist(), y.tolist()):
        for v, x in zip(xs + onehot, row + target):
            v.data = x
        loop.append(bits(tape.forward()))
        tape.backward()
    assert [bits(v) for v in out.tolist()] == loop
    assert run_grads == [bits(p.grad) for p in model.parameters()]


def test_a_failing_row_is_named_and_changes_nothing(impl: types.ModuleType) -> None:
    x, w = impl.Value(0.5), impl.Value(2.0)
    root = (x * w).log() * w + (x * 3.0).sqrt()
    tape = impl.Tape(root)
    x.grad, w.grad = 0.125, -0.5
    X = np.full(200, 0.25)
    X[150] = -1.0   # log(-2.0) forward
    for threads in ([1, 2] if impl is fastgrad._core else [1]):
        with pytest.raises(ValueError, match=r"^row 150: log\(-2.0\): math domain error$"):
            tape.run([x], X, threads=threads)
        assert (x.data, w.data, x.grad, w.grad) == (0.5, 2.0, 0.125, -0.5)
    tape2 = impl.Tape((x * 3.0).sqrt() + w)
    X2 = np.full(50, 1.0)
    X2[33] = 0.0
    message = r"^row 33: in the backward pass of sqrt\(0.0\): float division by zero$"
    with pytest.raises(ZeroDivisionError, match=message):
        tape2.run([x], X2)
    assert (x.data, x.grad, w.grad) == (0.5, 0.125, -0.5)
    assert tape.forward() == root.data


@pytest.mark.parametrize(
    "kwargs, error, message",
    [({"threads": 0}, ValueError, "threads must be at least 1, not 0"),
     ({"threads": -2}, ValueError, "threads must be at least 1"),
     ({"threads": 1.5}, TypeError, "threads must be an int, not 'float'"),
     ({"threads": "2"}, TypeError, "threads must be an int, not 'str'"),
     ({"threads": True}, TypeError, "threads must be an int, not 'bool'"),
     ({"X": [[1.0, 2.0]]}, ValueError, r"X must have 1 column\(s\), one per leaf"),
     ({"X": np.ones((2, 1, 1))}, ValueError, r"X must have 1 column\(s\)"),
     ({"X": np.array([["a"]])}, TypeError, "X must hold real numbers; its dtype is <U1"),
     ({"X": np.array([[1j]])}, TypeError, "X must hold real numbers; its dtype is complex128"),
     ({"X": np.array([[object()]])}, TypeError, "its dtype is object"),
     ({"y": [1.0, 2.0, 3.0]}, ValueError, "X has 2 rows and y 3"),
     ({"inputs": "w"}, ValueError, "is not a leaf of this tape"),
     ({"inputs": "h"}, ValueError, "is not a leaf of this tape"),
     ({"inputs": "twice"}, ValueError, "a leaf is fed twice")],
)  # fmt: skip
def test_bad_arguments_raise_before_any_work(
    impl: types.ModuleType, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    x, w, t, other = impl.Value(1.0), impl.Value(2.0), impl.Value(3.0), impl.Value(4.0)
    h = x * w
    tape = impl.Tape(h * t)
    x.grad, w.grad, t.grad = 0.5, 0.25, 0.125
    call: dict[str, Any] = {"inputs": [x], "X": [[1.0], [2.0]], "targets": [t], "y": [1.0, 2.0]}
    chosen = kwargs.get("inputs")
    call.update(kwargs)
    if chosen == "w":
        call["inputs"] = [other]
    elif chosen == "h":
        call["inputs"] = [h]
    elif chosen == "twice":
        call["inputs"] = [t]
    state = [(v.data, v.grad) for v in (x, w, t, h)] + [tape.root.data, tape.root.grad]
    with pytest.raises(error, match=message):
        tape.run(call.pop("inputs"), call.pop("X"), call.pop("targets"), call.pop("y"), **call)
    assert [(v.data, v.grad) for v in (x, w, t, h)] + [tape.root.data, tape.root.grad] == state


def mnist_size_tape(rows: int) -> tuple[Any, list[Any], Any, Any, Any]:
    impl = fastgrad._core
    tape, _model, xs, onehot = per_sample_classifier(impl, 784, 32, 10)
    X, y = classifier_data(rows, 784, 10)
    return tape, xs, onehot, X, y


def count_while(action: Any) -> tuple[int, float]:
    """How far a Python thread counts while `action` runs in this one, and how long it took."""
    counted, stop = [0], threading.Event()

    def count() -> None:
        while not stop.is_set():
            counted[0] += 1

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.02)
    start, at_start = time.perf_counter(), counted[0]
    action()
    seconds, during = time.perf_counter() - start, counted[0] - at_start
    stop.set()
    counter.join()
    return during, seconds


def calls_in_c(call: Any, seconds: float) -> Any:
    """`call` repeated for about `seconds` by a loop in C, which runs no bytecode between the
    calls: holding the GIL, they would give the interpreter no point at which to switch."""
    start = time.perf_counter()
    call()
    times = max(1, int(seconds / (time.perf_counter() - start)))
    return lambda: collections.deque(itertools.starmap(call, itertools.repeat((), times)), 0)


def test_run_forward_and_backward_release_the_gil() -> None:
    """A Python thread keeps counting while replay works: with the GIL held through 0.1 s of
    calls it could count only in the switch interval (5 ms) after them. Counting alone gives
    its rate."""
    tape, xs, onehot, X, y = mnist_size_tape(200)
    x = fastgrad._core.Value(0.5)
    y_ = x
    for _ in range(100_000):
        y_ = (y_ * 1.0000001).tanh()
    long_tape = fastgrad._core.Tape(y_)
    alone, seconds = count_while(lambda: time.sleep(0.2))
    rate = alone / seconds
    run = functools.partial(tape.run, xs, X, onehot, y)
    for call in (run, long_tape.forward, long_tape.backward):
        during, seconds = count_while(calls_in_c(call, 0.1))
        assert seconds > 0.03 and during > 0.3 * rate * seconds, (call, during, rate * seconds)


def test_one_tape_replays_one_call_at_a_time() -> None:
    """A call while another thread's replay holds the tape raises RuntimeError. Either thread
    may be the one refused (without the GIL neither waits for the other to start), so the
    run retries until it has run once, while the other thread calls forward(); on a busy
    machine the two may never meet in one attempt, so it tries again until they do."""
    tape, xs, onehot, X, y = mnist_size_tape(400)
    errors: list[Exception] = []
    deadline = time.perf_counter() + 30.0

    def run_once(ran: threading.Event) -> None:
        while not ran.is_set():
            try:
                tape.run(xs, X, onehot, y)
                ran.set()
            except RuntimeError as e:
                errors.append(e)

    while not errors and time.perf_counter() < deadline:
        ran = threading.Event()
        worker = threading.Thread(target=run_once, args=(ran,))
        worker.start()
        while not ran.is_set() and time.perf_counter() < deadline:
            try:
                tape.forward()
            except RuntimeError as e:
                errors.append(e)
        worker.join()
        assert ran.is_set()
    assert errors and all("replaying in another thread" in str(e) for e in errors)
    tape.forward()  # free again


def test_two_tapes_sharing_parameters_from_two_threads() -> None:
    """Many concurrent runs of two tapes over the same parameters: no crash, and every run's
    contribution lands (each tape adds into the grads after it computes, holding the GIL)."""
    impl = fastgrad._core
    random.seed(3)
    model = nn.MLP(8, [16, 3], engine=impl)
    tapes = []
    for _ in range(2):
        xs = [impl.Value(0.0) for _ in range(8)]
        tapes.append((impl.Tape(impl.sum(model(xs))), xs))
    X = np.random.default_rng(0).normal(size=(300, 8))
    rounds = 40

    def replay(tape: Any, xs: list[Any]) -> None:
        for _ in range(rounds):
            tape.run(xs, X, threads=2)

    workers = [threading.Thread(target=replay, args=pair) for pair in tapes]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    together = [p.grad for p in model.parameters()]
    for p in model.parameters():
        p.grad = 0.0
    tapes[0][0].run(tapes[0][1], X)
    once = [p.grad for p in model.parameters()]
    assert all(math.isfinite(g) for g in together)
    assert all(math.isclose(g, 2 * rounds * o, rel_tol=1e-9, abs_tol=1e-9)
               for g, o in zip(together, once))  # fmt: skip


def test_ctrl_c_stops_a_run_and_changes_nothing(tmp_path: Any) -> None:
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent("""
        import signal, sys, numpy as np, fastgrad._core as impl
        # Ctrl-C's handler, also where the parent runs with SIGINT ignored (a shell's `&`)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        xs = [impl.Value(0.0) for _ in range(400)]
        ws = [impl.Value(0.001 * i) for i in range(400)]
        root = impl.sum([impl.dot(ws, xs).tanh() * (k + 1.0) for k in range(64)])
        tape = impl.Tape(root)
        X = np.ones((50_000, 400))
        print("started", flush=True)
        for _ in range(400):  # runs until the signal comes, however fast the machine
            before = [w.grad for w in ws] + [x.data for x in xs]
            try:
                tape.run(xs, X)
            except KeyboardInterrupt:
                same = before == [w.grad for w in ws] + [x.data for x in xs]
                print("KeyboardInterrupt", "unchanged" if same else "CHANGED", flush=True)
                sys.exit(0)
        print("finished without interruption", flush=True)
    """))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    time.sleep(0.5)
    child.send_signal(2)  # SIGINT, as Ctrl-C sends
    out, _ = child.communicate(timeout=60)
    assert out.strip() == "KeyboardInterrupt unchanged"


KERNELS = [name for name, supported in fastgrad._core._simd_kernels() if supported]


@contextlib.contextmanager
def kernel(name: str) -> Iterator[None]:
    before = fastgrad._core._select_simd(name)
    try:
        yield
    finally:
        fastgrad._core._select_simd(before)


def test_every_kernel_this_cpu_runs_gives_the_same_bits() -> None:
    """run()'s loops are built once per instruction set (scalar, SSE2, AVX2, AVX-512 on
    x86-64; NEON on arm64): each lane is a row's own IEEE operations, so every kernel gives
    the reference's bits, on a classifier (its layers take the fast loops) of 150 rows."""
    X, y = classifier_data(150, 20, 5)
    tape, model, xs, onehot = per_sample_classifier(fastgrad.reference, 20, 17, 5)
    expected = ([bits(v) for v in tape.run(xs, X, onehot, y).tolist()],
                [bits(p.grad) for p in model.parameters() + xs + onehot])  # fmt: skip
    for name in KERNELS:
        with kernel(name):
            assert fastgrad._core.simd() == name
            tape, model, xs, onehot = per_sample_classifier(fastgrad._core, 20, 17, 5)
            out = tape.run(xs, X, onehot, y)
            assert ([bits(v) for v in out.tolist()],
                    [bits(p.grad) for p in model.parameters() + xs + onehot]) == expected, name


def test_inputs_that_require_no_grad_get_none_on_every_kernel() -> None:
    """A dataset's leaves made with requires_grad=False: the layers' loops skip d/dX (a third
    of a wide layer's backward), and the parameters get the bits they get when the inputs
    require grad, on every kernel and both engines; the inputs keep their grads."""
    X, y = classifier_data(150, 20, 5)
    expected = None
    for data_grads in (True, False):
        for name in [None, *KERNELS]:
            impl = fastgrad.reference if name is None else fastgrad._core
            tape, model, xs, onehot = per_sample_classifier(impl, 20, 17, 5, seed=3,
                                                            data_grads=data_grads)  # fmt: skip
            if not data_grads:
                xs[3].grad = 0.5
            with kernel(name) if name is not None else contextlib.nullcontext():
                out = tape.run(xs, X, onehot, y, threads=2)
            result = ([bits(v) for v in out.tolist()], [bits(p.grad) for p in model.parameters()])
            expected = expected or result
            assert result == expected, (name, data_grads)
            if not data_grads:
                assert [v.grad for v in xs + onehot] == [0.0] * 3 + [0.5] + [0.0] * 21


@settings(max_examples=60)
@given(run_programs, st.data())
def test_random_programs_give_the_references_bits_on_every_kernel(program: Program,
                                                                  data: st.DataObject) -> None:
    """Any graph over rows of edge values, on each kernel this CPU runs: C == reference."""
    X = np.array(data.draw(st.lists(st.lists(edge_floats, min_size=len(program.leaves),
                                             max_size=len(program.leaves)),
                                    min_size=1, max_size=20)))  # fmt: skip
    results = []
    for name in [None, *KERNELS]:
        impl = fastgrad.reference if name is None else fastgrad._core
        try:
            root, leaves = build_summed(impl, program, program.leaves)
        except ARITHMETIC:
            return
        tape = impl.Tape(root)
        columns = held_by(tape, leaves)
        fed = [leaves[i] for i in columns]
        with kernel(name) if name is not None else contextlib.nullcontext():
            try:
                out = [bits(v) for v in tape.run(fed, X[:, columns]).tolist()]
            except ARITHMETIC as e:
                out = [type(e).__name__, str(e)]
        results.append((out, [bits(v.grad) for v in leaves]))
    assert all(r == results[0] for r in results[1:])


def test_simd_names_the_kernel_and_refuses_what_it_cannot_run() -> None:
    assert fastgrad.simd() == fastgrad._core.simd() in KERNELS
    assert KERNELS[0] == fastgrad._core.simd() or "FASTGRAD_SIMD" in os.environ
    with pytest.raises(ValueError, match="'avx9' is not one of fastgrad's SIMD kernels"):
        fastgrad._core._select_simd("avx9")
    missing = [name for name, supported in fastgrad._core._simd_kernels() if not supported]
    for name in missing:
        with pytest.raises(ValueError, match="needs an instruction set this CPU lacks"):
            fastgrad._core._select_simd(name)
    assert fastgrad.reference.simd() == "python"


@pytest.mark.parametrize(("setting", "message"), [
    ("avx9", "FASTGRAD_SIMD: 'avx9' is not one of fastgrad's SIMD kernels"),
    ("scalar", None),
])  # fmt: skip
def test_the_environment_variable_forces_a_kernel(setting: str, message: str | None) -> None:
    env = dict(os.environ, FASTGRAD_SIMD=setting)
    env.pop("FASTGRAD_PURE_PYTHON", None)
    result = subprocess.run([sys.executable, "-c", "import fastgrad; print(fastgrad.simd())"],
                            capture_output=True, text=True, env=env)  # fmt: skip
    if message is None:
        assert result.returncode == 0 and result.stdout.strip() == setting, result.stderr
    else:
        assert result.returncode != 0 and message in result.stderr


@settings(max_examples=100)
@given(run_programs, st.data())
def test_forward_only_runs_touch_no_grad(impl: types.ModuleType, program: Program,
                                        data: st.DataObject) -> None:  # fmt: skip
    try:
        root, leaves = build_summed(impl, program, program.leaves)
    except ARITHMETIC:
        return
    tape = impl.Tape(root)
    held = [leaves[i] for i in held_by(tape, leaves)]
    if not held:
        return
    X = np.array(data.draw(st.lists(st.lists(edge_floats, min_size=1, max_size=1), max_size=12)),
                 dtype=float).reshape(-1, 1)  # fmt: skip
    state = [(bits(v.data), bits(v.grad)) for v in leaves]
    try:
        out = tape.run([held[0]], X, backward=False)
    except ARITHMETIC as e:  # a forward failure; a derivative's never matters here
        per_row = []
        for x in X.tolist():
            values = list(program.leaves)
            values[next(i for i, v in enumerate(leaves) if v is held[0])] = x[0]
            try:
                build_summed(impl, program, values)
            except ARITHMETIC as failure:
                per_row.append(f"{type(failure).__name__}: {failure}")
                break
        assert per_row and str(e).endswith(per_row[0].split(": ", 1)[1])
        return
    finally:
        assert [(bits(v.data), bits(v.grad)) for v in leaves] == state
    where = next(i for i, v in enumerate(leaves) if v is held[0])
    for row, x in enumerate(X.tolist()):
        values = list(program.leaves)
        values[where] = x[0]
        assert bits(out[row]) == bits(build_summed(impl, program, values)[0].data)


def test_root_grad_seeds_each_rows_backward(impl: types.ModuleType) -> None:
    tape, model, xs, onehot = per_sample_classifier(impl, 4, 5, 3)
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(9, 4)), np.eye(3)[rng.integers(0, 3, size=9)]
    grads = []
    for seed in (1.0, 2.0):
        model.zero_grad()
        tape.run(xs, X, onehot, Y, threads=2, root_grad=seed)
        grads.append([p.grad for p in model.parameters()])
    assert grads[1] == [2.0 * g for g in grads[0]]  # a power of two scales every bit exactly
    assert any(g != 0.0 for g in grads[0])
    with pytest.raises(TypeError, match="root_grad"):
        tape.run(xs, X, onehot, Y, root_grad="mean")  # type: ignore[arg-type]


def test_root_grad_gives_pytorchs_mean_reduction(impl: types.ModuleType) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is optional; pip install torch==2.13.0")
    tape, model, xs, onehot = per_sample_classifier(impl, 6, 8, 4)
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(20, 6)), np.eye(4)[rng.integers(0, 4, size=20)]
    model.zero_grad()
    tape.run(xs, X, onehot, Y, root_grad=1 / len(X))
    params = _bench_case.torch_parameters(torch, model)
    h = torch.relu(torch.tensor(X) @ params[0] + params[1])
    loss = torch.nn.functional.cross_entropy(h @ params[2] + params[3],
                                             torch.tensor(Y.argmax(1)), reduction="mean")
    loss.backward()
    theirs = [float(v) for W, b in zip(params[::2], params[1::2])
              for j in range(W.shape[1]) for v in [*W.grad[:, j].tolist(), b.grad[j]]]
    ours = [p.grad for p in model.parameters()]
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15) for a, b in zip(ours, theirs))


def test_weights_read_by_several_dots_follow_the_definition(impl: types.ModuleType) -> None:
    """The forward-mode PINN graph: each second-layer weight is read by three dots (z, z', z'')
    and gets no per-row slot; each row's gradient still collects its three contributions in
    backward's order from -0.0, and the rows add up in row order, whatever the threads."""
    from fastgrad.benchmarks.derivatives import forward_mode_loss
    from fastgrad.demos.pinn import network

    model = network(impl, 5)
    params = model.parameters()
    X = np.linspace(0.0, 1.0, 45).reshape(-1, 1)
    totals = [0.25] * len(params)
    expected_out = []
    for row in X.tolist():
        for p in params:
            p.grad = -0.0
        loss = forward_mode_loss(impl, model, impl.Value(row[0]))
        loss.backward()
        expected_out.append(bits(loss.data))
        totals = [t + p.grad for t, p in zip(totals, params)]
    x = impl.Value(0.5)
    tape = impl.Tape(forward_mode_loss(impl, model, x))
    for threads in [1, 2, 3] if impl is fastgrad._core else [1]:
        for p in params:
            p.grad = 0.25
        out = tape.run([x], X, threads=threads)
        assert [bits(v) for v in out.tolist()] == expected_out
        assert [bits(p.grad) for p in params] == [bits(t) for t in totals]


def rows_by_definition(impl: types.ModuleType, loss: Any, params: list[Any],
                       X: np.ndarray) -> tuple[list[bytes], list[list[float]]]:  # fmt: skip
    """Each row of X through loss(fresh input Values), eagerly: the root's bits per row, and
    each row's grads of params then inputs, from -0.0."""
    out, grads = [], []
    for row in X.tolist():
        xs = [impl.Value(v) for v in row]
        for p in params:
            p.grad = -0.0
        root = loss(xs)
        root.backward()
        out.append(bits(root.data))
        grads.append([v.grad for v in params + xs])
    return out, grads


def added_in_row_order(row_grads: list[list[float]]) -> list[float]:
    return functools.reduce(lambda t, g: [a + b for a, b in zip(t, g)], row_grads,
                            [0.0] * len(row_grads[0]))  # fmt: skip


def run_follows_definition(impl: types.ModuleType, loss: Any, params: list[Any], X: np.ndarray,
                           row_sets: Sequence[slice] = (slice(None),)) -> Any:  # fmt: skip
    """Records loss over new input leaves and runs its tape on each set of X's rows (threads
    1, 2 and 3 on the C engine), asserting each time the root's bits per row and every grad's,
    params then inputs, as rows_by_definition's rows give them added in row order. Returns
    the tape."""
    expected_out, row_grads = rows_by_definition(impl, loss, params, X)
    xs = [impl.Value(0.0) for _ in range(X.shape[1])]
    tape = impl.Tape(loss(xs))
    for threads in [1, 2, 3] if impl is fastgrad._core else [1]:
        for rows in row_sets:
            for v in params + xs:
                v.grad = 0.0
            out = tape.run(xs, X[rows], threads=threads)
            totals = added_in_row_order(row_grads[rows])
            assert [bits(v) for v in out.tolist()] == expected_out[rows]
            assert [bits(v.grad) for v in params + xs] == [bits(t) for t in totals]
    return tape


def test_weights_read_by_a_dot_and_a_sum_follow_the_definition(impl: types.ModuleType) -> None:
    """Parameters that a dot and a sum both read (and nothing else): each row's gradient
    collects both uses in backward's order. (The sum's operand list is not a dot's pairs: the
    sanitizer build of the extension runs this test.)"""
    w = [impl.Value(0.5 + i) for i in range(3)]

    def loss(xs: list[Any]) -> Any:
        return (impl.dot(w, xs) * impl.sum(w[::-1])).tanh()

    run_follows_definition(impl, loss, w, np.random.default_rng(4).normal(size=(21, 3)))


def test_dots_whose_first_terms_are_products_of_rows(impl: types.ModuleType) -> None:
    """Dots that begin with products of two rows (as a derivative graph sums a few such
    products before a weighted column), then (weight, row) terms: each row's bits, whatever the
    threads. Among the first terms: a row times a weight, a row squared, a start with rows; the
    weights read once, read by two dots, and a dot with more such terms than run takes fast."""
    rng = random.Random(11)
    w = [impl.Value(rng.uniform(-1, 1) * 10.0 ** rng.randint(-5, 5)) for _ in range(7)]
    u, b = impl.Value(0.375), impl.Value(-1.25)
    params = w + [u, b]

    def loss(xs: list[Any]) -> Any:
        h = [(v * 0.7 + 0.1).tanh() for v in xs]
        led = impl.dot([h[0], h[2], h[3]] + w[:4], [h[1], u, h[3]] + h, b)
        started = impl.dot([h[1], 2.0] + w[2:6], [h[2], h[0]] + h, h[3])
        long_lead = impl.dot(h * 3 + [w[6]], h[::-1] * 3 + [h[0]])
        return led * started + long_lead     # no saturating op: every term reaches the root

    run_follows_definition(impl, loss, params, np.random.default_rng(6).normal(size=(37, 4)))


@pytest.mark.parametrize("between", ["its score", "an input", "a later weight", "the next start"])
def test_a_layers_neurons_with_steps_between_them(impl: types.ModuleType, between: str) -> None:
    """A layer's neurons recorded with a step after each that reads its score, as a softmax
    records exp(score - m): run still gives each row's bits, also where that step reads one of
    the layer's inputs, a weight of a later neuron, or is the next neuron's start."""
    rng = random.Random(5)
    # weights of many magnitudes: adding the same terms in another order changes the bits
    W = [[impl.Value(rng.uniform(-1, 1) * 10.0 ** rng.randint(-6, 6)) for _ in range(5)]
         for _ in range(6)]  # fmt: skip
    b = [impl.Value(rng.uniform(-1, 1)) for _ in range(6)]
    params = [w for ws in W for w in ws] + b

    def loss(xs: list[Any]) -> Any:
        after: list[Any] = []
        for j in range(6):
            start = after[-1] if between == "the next start" and after else b[j]
            z = impl.dot(W[j], xs, start)
            if between == "its score":
                after.append((z * 1e-6 - 0.25).exp())
            elif between == "an input":
                after.append((z * 1e-6).sin() * xs[j % 5])
            elif between == "a later weight":
                after.append((z * 1e-6).sin() * W[(j + 1) % 6][0])
            else:
                after.append((z * 1e-6).sin())
        return impl.sum(after)

    run_follows_definition(impl, loss, params, np.random.default_rng(11).normal(size=(45, 5)),
                           [slice(i, i + 1) for i in range(5)] + [slice(0, 45)])  # fmt: skip


@pytest.mark.parametrize("between", ["other layers' dots", "another layer's input",
                                     "another layer's score as start", "a weight"])
def test_layers_whose_neurons_interleave(impl: types.ModuleType, between: str) -> None:
    """Six layers over six input vectors, recorded neuron by neuron, each neuron's dot of
    every layer in turn (as a forward-mode graph records value, first and second derivative
    dots), more layers than run keeps open at once: run still gives each row's bits, also
    where a step between a layer's neurons reads another layer's input or a later neuron's
    weight, or a neuron starts from another layer's score."""
    rng = random.Random(7)
    layers, neurons, width = 6, 9, 4
    W = [[[impl.Value(rng.uniform(-1, 1) * 10.0 ** rng.randint(-6, 6)) for _ in range(width)]
          for _ in range(neurons)] for _ in range(layers)]  # fmt: skip
    for ws in W[1]:     # the weights of h[1][0], which a step between its neurons reads
        ws[0].data = rng.uniform(-1, 1)
    b = [impl.Value(rng.uniform(-1, 1)) for _ in range(layers)]
    params = [w for layer in W for ws in layer for w in ws] + b

    def loss(xs: list[Any]) -> Any:
        # each layer's inputs from inputs of its own, so that every grad reaches X's grads
        h = [[(x * 0.7 + 0.1).tanh() for x in xs[f * width:(f + 1) * width]]
             for f in range(layers)]  # fmt: skip
        out: list[Any] = []
        for j in range(neurons):
            for f in range(layers):
                start = b[f]
                if between == "another layer's score as start" and out and f % 2:
                    start = out[-1]
                z = impl.dot(W[f][j], h[f], start)
                if between == "another layer's input" and f == 0 and j == 4:
                    z = z * h[1][0]     # a grad of h[1][0]'s size among the dots' own
                elif between == "a weight" and f == 0:   # (a sum reads it: no row of its own)
                    z = impl.sum([z, W[1][(j + 1) % neurons][0]])
                out.append((z * 1e-6).sin())
        return impl.sum(out)

    X = np.random.default_rng(3).normal(size=(37, layers * width))
    tape = run_follows_definition(impl, loss, params, X,
                                  [slice(0, 1), slice(3, 12), slice(0, 37)])  # fmt: skip
    if impl is fastgrad._core:  # the layers did run together, their neurons interleaved
        groups = interleaved_layer_groups(tape)
        assert len(groups) >= 4 and len({colour for colour, _ in groups.values()}) >= 2


def interleaved_layer_groups(tape: Any) -> dict[int, tuple[int, list[int]]]:
    """The C engine's layer groups in the last run's plan, by first step: (colour, members);
    asserts that groups whose members interleave have different colours."""
    groups: dict[int, tuple[int, list[int]]] = {}
    for i, step in enumerate(tape._run_plan()["steps"]):
        if step["layer"] is not None:
            groups.setdefault(step["layer"], (step["colour"], []))[1].append(i)
    spans = [(members[0], members[-1], colour) for colour, members in groups.values()]
    for a in spans:
        for b in spans:
            if a != b and a[0] < b[0] <= a[1]:
                assert a[2] != b[2], "interleaved layer groups share a colour"
    return groups


def test_the_run_plan_says_how_run_lays_out_the_program(impl: types.ModuleType) -> None:
    """Tape._run_plan: nothing before a run has taken rows; then a step per step of the
    program; the C engine groups a layer's neurons (at most 8 a group), here those of an
    MLP's hidden layer of 20, and gives each n-ary step its loop."""
    tape, _, xs, onehot = per_sample_classifier(impl, 6, 20, 3)
    with pytest.raises(ValueError, match="not run rows"):
        tape._run_plan()
    X, y = classifier_data(10, 6, 3)
    tape.run(xs, X[:0], onehot, y[:0])
    with pytest.raises(ValueError, match="not run rows"):
        tape._run_plan()
    tape.run(xs, X, onehot, y)
    plan = tape._run_plan()
    assert len(plan["steps"]) == tape.steps and plan["rows_per_block"] >= 1
    assert {s["kind"] for s in plan["steps"]} <= {"unary", "binary", "n-ary", "divisions"}
    assert all((s["loop"] is None) == (s["kind"] != "n-ary") for s in plan["steps"])
    groups = interleaved_layer_groups(tape)
    if impl is fastgrad._core:
        assert sorted(len(members) for _, members in groups.values())[-3:] == [4, 8, 8]
        assert plan["rows_per_block"] % 8 == 0 and plan["lanes"] > 6
    else:
        assert groups == {} and plan["rows_per_block"] == 1


def test_calls_on_one_tape_feed_the_leaves_and_arrays_of_that_call(impl: types.ModuleType) -> None:
    """run remembers the leaves its last call fed, to check them once: a later call with other
    leaves, the same list changed in place, or a bad leaf is still taken as given; X and y in
    any layout or real dtype give the bits of their float64 C-ordered copies."""
    a, b, c = impl.Value(0.5), impl.Value(-1.5), impl.Value(2.0)
    tape = impl.Tape((a * b).tanh() + (c * a - b) ** 2)
    X = np.random.default_rng(3).normal(size=(13, 3))

    def by_definition(fed: list[Any], M: np.ndarray) -> list[int]:
        fresh = impl.Tape((a * b).tanh() + (c * a - b) ** 2)
        before = [v.data for v in (a, b, c)]
        out = []
        for row in M.tolist():
            for v, x in zip(fed, row):
                v.data = x
            out.append(bits(fresh.forward()))
        for v, x in zip((a, b, c), before):
            v.data = x
        return out

    def ran(fed: list[Any], M: Any) -> list[int]:
        return [bits(v) for v in tape.run(fed, M, backward=False).tolist()]

    fed = [a, b]
    assert ran(fed, X[:, :2]) == by_definition([a, b], X[:, :2])  # a strided view
    fed[0], fed[1] = b, a                                          # the same list, changed
    assert ran(fed, X[:, :2]) == by_definition([b, a], X[:, :2])
    assert ran([c, a, b], X) == by_definition([c, a, b], X)
    state = [(v.data, v.grad) for v in (a, b, c)]
    with pytest.raises(ValueError, match="is not a leaf of this tape"):
        tape.run([c, a, a * b], X)
    with pytest.raises(ValueError, match="a leaf is fed twice"):
        tape.run([c, a], X[:, :2], [a], X[:, :1])
    assert [(v.data, v.grad) for v in (a, b, c)] == state
    expected = by_definition([c, a, b], X)
    for layout in (np.asfortranarray(X), X.astype(">f8"), X.tolist(), X[::-1][::-1],
                   np.repeat(X, 2, axis=0)[::2]):  # fmt: skip
        assert ran([c, a, b], layout) == expected
    assert ran([c, a, b], X.astype(np.float32)) == by_definition([c, a, b], X.astype(np.float32))
    assert ran([a], np.arange(4)) == by_definition([a], np.arange(4.0).reshape(-1, 1))
    # leaves given as iterators, each read once: the target stays a target
    out = tape.run(iter([c, a]), X[:, :2], iter([b]), X[:, 2], backward=False)
    assert [bits(v) for v in out.tolist()] == by_definition([c, a, b], X)


@pytest.mark.parametrize("threads", [2**32 - 1, 2**64, 10**30])
def test_a_huge_thread_count_costs_nothing(impl: types.ModuleType, threads: int) -> None:
    """threads is clamped to the cores before any work, in O(1): 2**32 - 1 counted down for
    17 s before the run started. The bits are threads=1's."""
    X, y = classifier_data(40, 6, 3)
    results = []
    for n in (1, threads):
        tape, model, xs, onehot = per_sample_classifier(impl, 6, 5, 3)
        started = time.perf_counter()
        out = tape.run(xs, X, onehot, y, threads=n)
        assert time.perf_counter() - started < 5.0
        results.append(([bits(v) for v in out.tolist()],
                        [bits(p.grad) for p in model.parameters()]))  # fmt: skip
    assert results[0] == results[1]
