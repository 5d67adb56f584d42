"""What a benchmark case is (fastgrad/benchmarks.py holds the cases and their table)."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

Contenders = dict[str, Callable[[], object]]
BENCH_SOURCES = Path(__file__).resolve().parents[2] / "bench"  # hand-written C baselines


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    per_call: int  # operations in one call of a contender
    unit: str  # what per_call counts
    build: Callable[[], Contenders]
    names: tuple[str, ...]  # the contenders build() makes, the optional ones included
    # "min" of repeated timings; "mean" where pauses are part of the cost (the cyclic GC)
    statistic: str = "min"
    rounds: int = 5
    # what the machine is doing meanwhile (every core busy, for B9L); None: nothing else
    under: Callable[[], AbstractContextManager[None]] | None = None
    # contenders too slow for `rounds` calls ("mean" only): their own count
    rounds_of: Mapping[str, int] = field(default_factory=dict)

    def rounds_for(self, contender: str) -> int:
        return self.rounds_of.get(contender, self.rounds)

    def conditions(self) -> AbstractContextManager[None]:
        return self.under() if self.under is not None else contextlib.nullcontext()


@contextlib.contextmanager
def every_core_busy() -> Iterator[None]:
    """One process per core spinning in a loop of its own, for as long as the block runs:
    the machine of a user who trains while something else computes."""
    from .._common import CORES

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(CORES)]  # fmt: skip
    try:
        time.sleep(0.2)  # let them start spinning
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def compiled_library(source: Path, *flags: str) -> ctypes.CDLL | None:
    """A C file of bench/ built now as a shared library, optimised as the engine is and with
    no contraction into FMA, and loaded; None without the source tree or a C compiler."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    compiler = shutil.which(compiler) or shutil.which("cc") or shutil.which("gcc") or ""
    if not source.exists() or not compiler or sys.platform == "win32":
        return None
    library = Path(tempfile.mkdtemp(prefix="fastgrad-bench-")) / f"{source.stem}.so"
    build = subprocess.run([compiler, "-O2", "-ffp-contract=off", *flags, "-shared", "-fPIC",
                            str(source), "-o", str(library), "-lm"],
                           capture_output=True, text=True)  # fmt: skip
    if build.returncode != 0:
        return None
    loaded = ctypes.CDLL(str(library))
    os.unlink(library)  # loaded: the file is no longer needed
    return loaded


def optional(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def layer_numbers(model: Any) -> list[list[Any]]:
    """An MLP's weights as numbers, per layer a matrix (inputs x neurons) then a bias vector,
    for batched `h @ W + b`."""
    numbers: list[list[Any]] = []
    for layer in model.layers:
        numbers.append([[n.w[i].data for n in layer.neurons]
                        for i in range(len(layer.neurons[0].w))])  # fmt: skip
        numbers.append([n.b.data for n in layer.neurons])
    return numbers


def in_parameter_order(arrays: list[Any], model: Any) -> list[float]:
    """Arrays in layer_numbers' layout (per layer a matrix, then a bias vector: a gradient),
    as floats in the order of model.parameters(); a bias of None (no gradient) gives zeros."""
    out: list[float] = []
    for layer, W, b in zip(model.layers, arrays[::2], arrays[1::2]):
        for j, n in enumerate(layer.neurons):
            out += [float(W[i][j]) for i in range(len(n.w))]
            out.append(0.0 if b is None else float(b[j]))
    return out


def torch_parameters(torch: Any, model: Any) -> list[Any]:
    """An MLP's weights as PyTorch float64 tensors (layer_numbers' layout); PyTorch set to
    one thread, the baselines' rule."""
    torch.set_num_threads(1)
    return [torch.tensor(x, dtype=torch.float64, requires_grad=True)
            for x in layer_numbers(model)]  # fmt: skip


JAX = "jax jit, x64, 1 thread"
COMPILING = ": trace + compile, once (not in the ratio)"  # a JAX contender's compile time


def jax_x64_one_thread() -> ModuleType | None:
    """JAX set up as the baselines run: float64 on one core; None when not installed.

    XLA has no setting that keeps its CPU runtime to one thread: it sizes its thread pool by
    the cores the process may use, and its threads inherit that set. So JAX starts while the
    calling thread may use one core only, which is given back afterwards (fastgrad's own
    threads and PyTorch's one are not confined). When something else imported JAX first,
    its thread pool is already sized, but float64 is still switched on."""
    if "jax" in sys.modules:
        return _jax_configured()
    if not hasattr(os, "sched_setaffinity"):
        return _jax_configured()
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        return _jax_configured()
    finally:
        os.sched_setaffinity(0, allowed)


def _jax_configured() -> ModuleType | None:
    jax = optional("jax")
    if jax is None:
        return None
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    jax.block_until_ready(jax.jit(lambda x: x + 1)(1.0))  # the runtime's threads start now
    return jax


def jax_parameters(jax: ModuleType, model: Any) -> list[Any]:
    """An MLP's weights as JAX float64 arrays (layer_numbers' layout)."""
    return [jax.numpy.asarray(x, dtype=jax.numpy.float64) for x in layer_numbers(model)]


def jax_contenders(jax: ModuleType, make: Callable[[], Callable[..., Any]],
                   args: tuple[Any, ...], form: str = "") -> Contenders:  # fmt: skip
    """A jitted function as two contenders: its steady-state call (compiled before any
    timing) and its compilation, each time from a fresh function so nothing is cached.
    `make()` returns a new Python function of `args` each time it is called; `form` names
    which of several ways of writing it this is."""
    compiled = jax.jit(make())
    jax.block_until_ready(compiled(*args))

    def call() -> object:
        return jax.block_until_ready(compiled(*args))

    def compile_fresh() -> object:
        return jax.jit(make()).lower(*args).compile()

    return {JAX + form: call, JAX + form + COMPILING: compile_fresh}
