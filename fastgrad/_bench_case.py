"""What a benchmark case is (fastgrad/benchmarks.py holds the cases and their table)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

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
