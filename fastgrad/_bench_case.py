"""What a benchmark case is (fastgrad/benchmarks.py holds the cases and their table)."""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

Contenders = dict[str, Callable[[], object]]


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

    def conditions(self) -> AbstractContextManager[None]:
        return self.under() if self.under is not None else contextlib.nullcontext()


@contextlib.contextmanager
def every_core_busy() -> Iterator[None]:
    """One process per core spinning in a loop of its own, for as long as the block runs:
    the machine of a user who trains while something else computes."""
    from ._common import CORES

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


def optional(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def torch_parameters(torch: Any, model: Any) -> list[Any]:
    """An MLP's weights as PyTorch float64 tensors, per layer a matrix (inputs x neurons) and
    a bias vector, for batched `h @ W + b`; PyTorch set to one thread, the baselines' rule."""
    torch.set_num_threads(1)
    params = []
    for layer in model.layers:
        W = [[n.w[i].data for n in layer.neurons] for i in range(len(layer.neurons[0].w))]
        params.append(torch.tensor(W, dtype=torch.float64, requires_grad=True))
        params.append(torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64,
                                   requires_grad=True))  # fmt: skip
    return params
