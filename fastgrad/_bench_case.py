"""What a benchmark case is (fastgrad/benchmarks.py holds the cases and their table)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
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
