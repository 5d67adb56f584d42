"""Draws the README's pictures again: python docs/make_pictures.py (needs the demo and viz
extras, and Graphviz's dot program)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from fastgrad import nn, viz
from fastgrad.demos import digits as digits_demo
from fastgrad.demos import moons as demo
from fastgrad.demos import pinn as pinn_demo

HERE = Path(__file__).parent / "images"


def main() -> None:
    HERE.mkdir(exist_ok=True)
    model, history, _ = demo.train(demo._core, seed=0, steps=100)
    demo.plot(model, 0, str(HERE / "moons.png"), history[-1][1])

    data = digits_demo.load(seed=0)
    net, _, _ = digits_demo.train(demo._core, data, epochs=15, seed=0)
    predicted = net.predict(data.X_test)
    accuracy = float(np.mean(predicted == data.y_test))
    digits_demo.plot(data, predicted, str(HERE / "digits.png"), accuracy)

    pinn, _, _ = pinn_demo.train(demo._core, seed=0, steps=2000)
    pinn_demo.plot(pinn, str(HERE / "pinn.png"))

    random.seed(2)
    neuron = nn.Neuron(3)
    x = [neuron.engine.Value(v, label=f"x{i}") for i, v in enumerate([2.0, -1.0, 0.5])]
    for i, w in enumerate(neuron.w):
        w.label = f"w{i}"
    neuron.b.label = "b"
    out = neuron(x)
    out.label = "out"
    (act,) = out._prev
    act.label = "act"
    out.backward()
    viz.draw_dot(out, format="png").render(HERE / "neuron", cleanup=True)


if __name__ == "__main__":
    main()
