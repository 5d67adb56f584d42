"""A first demo: a neuron learns a line by gradient descent, on both engines.

(The nn issue replaces this with micrograd's moons demo.)
"""

from __future__ import annotations

import random
import time
import types

from . import _core, reference


def train(engine: types.ModuleType, steps: int, seed: int) -> tuple[float, float]:
    rng = random.Random(seed)
    points = [(x, 3.0 * x - 1.0) for x in (rng.uniform(-1, 1) for _ in range(50))]
    w, b = engine.Value(rng.uniform(-1, 1), label="w"), engine.Value(0.0, label="b")
    start = time.perf_counter()
    loss = None
    for _ in range(steps):
        loss = engine.sum([(w * x + b - y) ** 2 for x, y in points]) * (1 / len(points))
        w.grad = b.grad = 0.0
        loss.backward()
        w.data -= 0.5 * w.grad
        b.data -= 0.5 * b.grad
    assert loss is not None
    return loss.data, time.perf_counter() - start


def main(steps: int = 100, seed: int = 0) -> None:
    loss, seconds = train(_core, steps, seed)
    reference_loss, reference_seconds = train(reference, steps, seed)
    assert loss == reference_loss
    print(f"fitted y = 3x - 1 in {steps} steps: loss {loss:.3g}")
    print(f"C engine {seconds * 1e3 / steps:.3f} ms/step, pure-Python reference "
          f"{reference_seconds * 1e3 / steps:.3f} ms/step ({reference_seconds / seconds:.0f}x)")
