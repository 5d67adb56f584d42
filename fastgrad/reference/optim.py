"""SGD over pure-Python Values: the twin of csrc/optim.c."""

from __future__ import annotations

from collections.abc import Iterable

from .._common import as_float
from .value import Value

__all__ = ["SGD"]


class SGD:
    """PyTorch's SGD (no dampening, no Nesterov) over Values. lr, momentum and weight_decay
    may be changed between steps."""

    def __init__(self, params: Iterable[Value], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:  # fmt: skip
        self.params = list(params)
        for p in self.params:
            if not isinstance(p, Value):
                raise TypeError(f"SGD parameters must be Values, not {type(p).__name__!r}")
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            as_float(value, name)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self._velocity = [0.0] * len(self.params)
        self._steps = 0

    def step(self) -> None:
        lr = as_float(self.lr, "lr")
        momentum = as_float(self.momentum, "momentum")
        weight_decay = as_float(self.weight_decay, "weight_decay")
        for i, p in enumerate(self.params):
            d = p._grad
            if weight_decay != 0.0:
                d = d + weight_decay * p._data
            if momentum != 0.0:
                self._velocity[i] = d if self._steps == 0 else momentum * self._velocity[i] + d
                d = self._velocity[i]
            p._data = p._data - lr * d
        self._steps += 1

    def zero_grad(self) -> None:
        for p in self.params:
            p._grad = 0.0
