"""The benchmark cases (B1-B13), defined once: each says what it times and against what.

Every case times fastgrad beside a baseline in the same process, because these machines are
shared and noisy: the figure that means something is the ratio. ``bench/`` runs the cases
under pytest-benchmark; ``python -m fastgrad bench`` prints their table.

A case builds its contenders: a dict from a name ("fastgrad", "float", "micrograd", ...) to
a function of no arguments that does one unit of work. Baselines whose package is not
installed (micrograd, torch) are left out.
"""

from __future__ import annotations

import gc
import itertools
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from .case import COMPILING, Case, Contenders, optional, torch_parameters
from .derivatives import DERIVATIVE_CASES
from .distributed import DISTRIBUTED_CASES
from .tape import B7_PUBLISHED, HANDWRITTEN, TAPE_CASES
from .threads import THREAD_CASES
from .trees import TREE_CASES


def _engines() -> dict[str, Any]:
    """The Value classes to compare: fastgrad's C engine and, if installed, micrograd's."""
    from .. import _core

    engines: dict[str, Any] = {"fastgrad": _core.Value}
    micrograd = optional("micrograd.engine")
    if micrograd is not None:
        engines["micrograd"] = micrograd.Value
    return engines


# ---- B1, B2: one operation, beside the same on Python floats ----

OPS_PER_CALL = 1000


def _loop(expression: str) -> Callable[[Any, Any], Callable[[], object]]:
    """A function running `expression` over a and b OPS_PER_CALL times: the loop costs
    the same around a Value and around a float, so the ratio is the operation's."""
    namespace: dict[str, Any] = {}
    exec(
        f"def make(a, b):\n"
        f"    def run():\n"
        f"        for _ in range({OPS_PER_CALL}):\n"
        f"            {expression}\n"
        f"    return run\n",
        namespace,
    )
    return namespace["make"]  # type: ignore[no-any-return]


def _operation_case(id: str, expression: str) -> Case:
    make = _loop(expression)

    def build() -> Contenders:
        contenders = {name: make(V(1.5), V(2.5)) for name, V in _engines().items()}
        contenders["float"] = make(1.5, 2.5)
        return contenders

    return Case(id, f"`{expression}`", OPS_PER_CALL, "op", build,
                ("fastgrad", "float", "micrograd"))  # fmt: skip


# ---- B3: backward of a 100,000-node graph ----


def moons_loss(Value: Any, samples: int, seed: int = 0) -> tuple[Any, list[Any]]:
    """The loss of micrograd's moons demo (MLP(2, [16, 16, 1]), max-margin loss, L2) over
    `samples` random points, written as micrograd's own nn.py writes it (chains of + and *),
    so that every engine builds the very same graph. 150 samples make 102,718 nodes."""
    rng = random.Random(seed)
    sizes = [2, 16, 16, 1]
    layers = [
        [([Value(rng.uniform(-1, 1)) for _ in range(nin)], Value(0.0)) for _ in range(nout)]
        for nin, nout in itertools.pairwise(sizes)
    ]
    params = [p for layer in layers for w, b in layer for p in [*w, b]]
    losses = []
    for _ in range(samples):
        x: list[Any] = [rng.uniform(-2, 2), rng.uniform(-1, 1)]
        y = rng.choice([-1.0, 1.0])
        for depth, layer in enumerate(layers):
            acts = [sum((wi * xi for wi, xi in zip(w, x)), b) for w, b in layer]
            x = [a.relu() for a in acts] if depth < len(layers) - 1 else acts
        losses.append((1 + -y * x[0]).relu())
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * sum(p * p for p in params)
    return data_loss + reg_loss, params


B3_SAMPLES = 150


def _backward_case() -> Case:
    def build() -> Contenders:
        contenders = {}
        for name, V in _engines().items():
            root, _ = moons_loss(V, B3_SAMPLES)
            contenders[name] = root.backward
        return contenders

    return Case("B3", "backward of a 102,718-node graph", 1, "backward", build,
                ("fastgrad", "micrograd"))  # fmt: skip


# ---- B4: one training step of micrograd's moons demo ----


def with_gc(run: Callable[[], object], enabled: bool) -> Callable[[], object]:
    """run() with the cyclic garbage collector on or off, whatever it was before."""

    def wrapped() -> object:
        was = gc.isenabled()
        gc.enable() if enabled else gc.disable()
        try:
            return run()
        finally:
            gc.enable() if was else gc.disable()

    return wrapped


def _training_step_case() -> Case:
    def build() -> Contenders:
        from .. import nn
        from ..demos import moons as demo

        X, y = demo.moons(seed=0)
        random.seed(0)
        models: dict[str, Any] = {"fastgrad": (nn.MLP(2, [16, 16, 1]), _engines()["fastgrad"])}
        micrograd_nn = optional("micrograd.nn")
        if micrograd_nn is not None:
            random.seed(0)
            models["micrograd"] = (micrograd_nn.MLP(2, [16, 16, 1]), _engines()["micrograd"])

        def stepper(model: Any, Value: Any) -> Callable[[], object]:
            k = iter(range(10**9))
            return lambda: demo.train_step(model, X, y, Value, next(k) % 100)

        contenders: Contenders = {"fastgrad": with_gc(stepper(*models["fastgrad"]), True)}
        if "micrograd" in models:
            run = stepper(*models["micrograd"])
            contenders["micrograd, gc on"] = with_gc(run, True)
            contenders["micrograd, gc off"] = with_gc(run, False)
        return contenders

    return Case("B4", "a training step of the moons demo (build, backward, update)", 1, "step",
                build, ("fastgrad", "micrograd, gc on", "micrograd, gc off"), statistic="mean",
                rounds=5)  # fmt: skip


# ---- B5: the same step through a tape, beside PyTorch ----


def _tape_step_case() -> Case:
    def build() -> Contenders:
        from .. import _core, nn, optim
        from ..demos import moons as demo

        X, y = demo.moons(seed=0)
        random.seed(0)
        model = nn.MLP(2, [16, 16, 1], engine=_core)
        loss, _ = demo.loss(model, X, y, _core.Value)
        tape = _core.Tape(loss)
        sgd = optim.SGD(model.parameters(), lr=1.0)
        steps = iter(range(10**9))

        def tape_step() -> object:
            k = next(steps) % 100
            tape.forward()
            sgd.zero_grad()
            tape.backward()
            sgd.lr = 1.0 - 0.9 * k / 100
            sgd.step()
            return None

        contenders: Contenders = {"fastgrad tape": tape_step}
        torch = optional("torch")
        if torch is not None:
            contenders["pytorch, float64, 1 thread"] = _torch_step(torch, model, X, y, loss.data)
        return contenders

    return Case("B5", "a training step of the moons demo through a compiled tape", 1, "step",
                build, ("fastgrad tape", "pytorch, float64, 1 thread"))  # fmt: skip


def _torch_step(
    torch: Any, model: Any, X: Any, y: Any, expected_loss: float
) -> Callable[[], object]:
    """The moons step in PyTorch as batched float64 tensors on one thread, from the same
    weights; checks that its loss is fastgrad's before anything is timed."""
    params = torch_parameters(torch, model)
    Xt, yt = torch.tensor(X, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    optimizer = torch.optim.SGD(params, lr=1.0)
    steps = iter(range(10**9))

    def loss() -> Any:
        W1, b1, W2, b2, W3, b3 = params
        h = torch.relu(Xt @ W1 + b1)
        h = torch.relu(h @ W2 + b2)
        score = (h @ W3 + b3).squeeze(1)
        return torch.relu(1 - yt * score).mean() + 1e-4 * sum((p * p).sum() for p in params)

    with torch.no_grad():
        first = float(loss())
    if abs(first - expected_loss) > 1e-9 * max(1.0, abs(expected_loss)):
        raise AssertionError(f"PyTorch's loss {first} is not fastgrad's {expected_loss}")

    def step() -> object:
        k = next(steps) % 100
        total = loss()
        optimizer.zero_grad()
        total.backward()
        for group in optimizer.param_groups:
            group["lr"] = 1.0 - 0.9 * k / 100
        optimizer.step()
        return None

    return step


# ---- B6: memory per retained node ----

B6_STEPS = 10**6

_B6_CHILD = """
import gc, sys
from fastgrad.benchmarks import _engines, _rss_reader
Value = _engines()[sys.argv[1]]
rss = _rss_reader()
steps = int(sys.argv[2])
gc.collect()
before = rss()
y, c = Value(1.0), 1.0000001
for _ in range(steps):
    y = y * c
gc.collect()
print((rss() - before) / steps)
"""


def retained_bytes(engine: str, steps: int = B6_STEPS) -> float:
    """Bytes a fresh process gains per `y = y * c` kept alive, c a number (micrograd makes a
    Value of it, as fastgrad makes a constant leaf). A child process, so that memory freed
    by earlier work cannot be reused and hide the cost."""
    child = subprocess.run([sys.executable, "-c", _B6_CHILD, engine, str(steps)],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return float(child.stdout)


def _rss_reader() -> Callable[[], int]:
    psutil = optional("psutil")
    if psutil is not None:
        process = psutil.Process()
        return lambda: int(process.memory_info().rss)

    def statm() -> int:  # Linux without psutil
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    return statm


CASES: list[Case] = [
    _operation_case("B1", "a + b"),
    _operation_case("B1", "a * b"),
    _operation_case("B2", "a * 2.0"),
    _operation_case("B2", "2.0 + a"),
    _backward_case(),
    _training_step_case(),
    _tape_step_case(),
    *TAPE_CASES,
    *DERIVATIVE_CASES,
    *THREAD_CASES,
    *TREE_CASES,
    *DISTRIBUTED_CASES,
]


def mean_time(run: Callable[[], object], rounds: int) -> float:
    """The mean of `rounds` consecutive calls after one warm-up call: for costs that come
    in pauses, like the cyclic garbage collector's."""
    run()
    start = time.perf_counter()
    for _ in range(rounds):
        run()
    return (time.perf_counter() - start) / rounds


def loops_for(run: Callable[[], object], budget: float) -> int:
    """How many calls of run() make one timing long enough to be read reliably."""
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            run()
        if time.perf_counter() - start > budget / 10 or loops > 10**6:
            return loops
        loops *= 2


def best_times(contenders: dict[str, Callable[[], object]], budget: float = 0.25,
               repeats: int = 5) -> dict[str, float]:  # fmt: skip
    """Each contender's fastest of `repeats` timings, taken in turns (one timing of each, then
    again), so that a machine whose load changes meanwhile weighs on all of them alike."""
    loops = {name: loops_for(run, budget) for name, run in contenders.items()}
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            for _ in range(loops[name]):
                run()
            best[name] = min(best[name], (time.perf_counter() - start) / loops[name])
    return best


OPPOSITES = {"faster": "slower", "smaller": "larger"}


def compare(fastgrad: float, baseline: float, name: str, better: str) -> str:
    """The ratio said the way the targets say it, always as a factor of at least 1: fastgrad
    `Nx faster` than a slower peer and `Nx slower` than a faster one; against the float
    baseline (which fastgrad cannot beat), `fastgrad takes Nx` the float op."""
    if name == "float":
        return f"fastgrad takes {_ratio(fastgrad / baseline)} the float op"
    if name.endswith(COMPILING):
        return "(compile time: reported apart)"
    if baseline >= fastgrad:
        return f"fastgrad {_ratio(baseline / fastgrad)} {better}"
    worse = better.replace(better.split()[0], OPPOSITES.get(better.split()[0], "worse"), 1)
    return f"fastgrad {_ratio(fastgrad / baseline)} {worse}"


def subject(times: dict[str, float]) -> str:
    """The contender the others are compared with: fastgrad's first (eager or tape)."""
    return next(name for name in times if name.startswith("fastgrad"))



def case_ids() -> frozenset[str]:
    return frozenset({case.id for case in CASES} | {"B6"})


def table(quick: bool = False, cases: frozenset[str] | None = None,
          ) -> list[tuple[str, str, str, str]]:  # fmt: skip
    """Rows of (case, contender, its figure, how fastgrad compares) for every case, or for
    those whose ids `cases` holds."""
    rows = []
    budget = 0.05 if quick else 0.25
    gc_was_enabled = gc.isenabled()
    for case in CASES:
        if cases is not None and case.id not in cases:
            continue
        contenders = case.build()
        gc.disable()  # the cyclic collector is not what B1-B3 measure (B4 sets it itself)
        try:
            with case.conditions():
                if case.statistic == "min":
                    # a compilation takes a second: timed once or twice, apart from the rest
                    compiles = {n: f for n, f in contenders.items() if n.endswith(COMPILING)}
                    times = best_times({n: f for n, f in contenders.items()
                                        if n not in compiles}, budget)  # fmt: skip
                    times.update(best_times(compiles, budget, repeats=1 if quick else 2))
                else:
                    times = {name: mean_time(run, case.rounds_for(name))
                             for name, run in contenders.items()}  # fmt: skip
            times = {name: seconds / case.per_call for name, seconds in times.items()}
        finally:
            if gc_was_enabled:
                gc.enable()
        ours = subject(times)
        for name, seconds in times.items():
            verdict = "" if name == ours else compare(times[ours], seconds, name, "faster")
            rows.append((f"{case.id} {case.title}", name, f"{_duration(seconds)} per {case.unit}",
                         verdict))  # fmt: skip
        if case.id == "B7" and "iteration" in case.unit:
            rows.extend(_b7_totals(times))
    if cases is not None and "B6" not in cases:
        return rows
    steps = 10**5 if quick else B6_STEPS
    memory = {name: retained_bytes(name, steps) for name in _engines()}
    for name, per_step in memory.items():
        verdict = "" if name == "fastgrad" else compare(memory["fastgrad"], per_step, name,
                                                        "smaller")  # fmt: skip
        rows.append(("B6 retained y = y * c", name, f"{per_step:,.0f} bytes per step", verdict))
    return rows


def _b7_totals(times: dict[str, float]) -> list[tuple[str, str, str, str]]:
    """B7's 10,000 iterations: the tape's, hand-written C's if it was built in this run, and
    the published figures for the workload."""
    ours = times[subject(times)] * 1e4
    rows = [("B7 10,000 iterations", "fastgrad tape", f"{ours:.2f} s", "")]
    if HANDWRITTEN in times:
        rows.append(("", f"{HANDWRITTEN} (this run)", f"{times[HANDWRITTEN] * 1e4:.2f} s",
                     compare(ours, times[HANDWRITTEN] * 1e4, HANDWRITTEN, "faster")))  # fmt: skip
    for name, seconds in B7_PUBLISHED.items():
        rows.append(("", f"{name} (published)", f"{seconds:g} s",
                     compare(ours, seconds, name, "faster")))  # fmt: skip
    return rows


def _duration(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:.1f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


def _ratio(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


def machine() -> str:
    """The CPU the figures were measured on and the vector kernel Tape.run used."""
    import platform

    from .. import simd

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)  # fmt: skip
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores; Tape.run's SIMD kernel: {simd()}"


def main(quick: bool = False, cases: frozenset[str] | None = None,
         plot_path: str | None = None) -> None:  # fmt: skip
    print(f"machine: {machine()}\n")
    rows = table(quick, cases)
    headers = ("case", "contender", "figure", "fastgrad against it")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    previous = None
    for row in rows:
        shown = ("" if row[0] == previous else row[0], *row[1:])
        print("  ".join(cell.ljust(w) for cell, w in zip(shown, widths)))
        previous = row[0]
    print("\nEach figure is the best of several timings in this one process, a case's contenders")
    print("timed in turns; the ratios are what carries over between machines: each baseline ran")
    print("in the same process, on the same machine, at the same time as fastgrad did.")
    if plot_path is not None:
        from .plot import plot

        drawn = plot(rows, plot_path, machine())
        print(f"\n{drawn} ratios drawn to {plot_path}")
