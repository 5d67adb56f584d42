"""micrograd's nn.py over fastgrad: Module, Neuron, Layer, MLP.

The same signatures, reprs and initialisation as micrograd (one random.uniform(-1, 1) per
weight, in the same order), so that after random.seed(s) both hold the same weights. Written
once over either implementation: `engine` is fastgrad._core or fastgrad.reference, by
default the one fastgrad chose. A neuron is one dot node instead of micrograd's 2 * nin.
"""

from __future__ import annotations

import random
import types
from collections.abc import Sequence
from typing import Any

from . import _implementation

__all__ = ["MLP", "Layer", "Module", "Neuron"]


class Module:
    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0

    def parameters(self) -> list[Any]:
        return []


class Neuron(Module):
    def __init__(self, nin: int, nonlin: bool = True, *,
                 engine: types.ModuleType | None = None) -> None:  # fmt: skip
        self.engine = engine or _implementation
        self.w = [self.engine.Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = self.engine.Value(0)
        self.nonlin = nonlin

    def __call__(self, x: Sequence[Any]) -> Any:
        act = self.engine.dot(self.w, x, self.b)  # micrograd: sum((wi*xi ...), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self) -> list[Any]:
        return self.w + [self.b]

    def __repr__(self) -> str:
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):
    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x: Sequence[Any]) -> Any:
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Any]:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    def __init__(self, nin: int, nouts: list[int], *,
                 engine: types.ModuleType | None = None) -> None:  # fmt: skip
        sz = [nin] + nouts
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1, engine=engine)
                       for i in range(len(nouts))]  # fmt: skip

    def __call__(self, x: Sequence[Any]) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Any]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
