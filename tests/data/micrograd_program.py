"""A micrograd program as people write it: no fastgrad in it anywhere."""

import random
import sys

from micrograd.engine import Value
from micrograd.nn import MLP

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
random.seed(42)
xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
ys = [1.0, -1.0, -1.0, 1.0]
model = MLP(3, [4, 4, 1])
print(model)
for k in range(steps):
    predictions = [model(x) for x in xs]
    loss = sum((yout - ygt) ** 2 for ygt, yout in zip(ys, predictions))
    model.zero_grad()
    loss.backward()
    for p in model.parameters():
        p.data -= 0.05 * p.grad
    print(f"step {k}: loss {loss.data:.6f}")
a, b = Value(-4.0), Value(2.0)
c = (a * b + b**3).relu() - a / 2
c.backward()
print(f"{c.data:.6f} {a.grad:.6f} {b.grad:.6f}")
print(" ".join(f"{p.data:.6f}" for p in model.parameters()[:5]))
