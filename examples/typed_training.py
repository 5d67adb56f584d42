"""A typed program over fastgrad's public API; mypy --strict checks it in CI.

Trains micrograd's moons MLP for a few steps eagerly, then through a compiled tape, and
shows that both paths give the same numbers.
"""

from __future__ import annotations

import random

import numpy as np

import fastgrad
from fastgrad import Tape, Value, datasets, nn
from fastgrad.optim import SGD


def moons_loss(model: nn.MLP, X: np.ndarray, y: np.ndarray) -> Value:
    scores: list[Value] = [model([Value(float(a)), Value(float(b))]) for a, b in X]
    margins = [(1 - float(yi) * score).relu() for yi, score in zip(y, scores)]
    regularisation = 1e-4 * fastgrad.sum(p * p for p in model.parameters())
    loss: Value = fastgrad.sum(margins) * (1.0 / len(margins)) + regularisation
    return loss


def train(steps: int, tape: bool) -> list[float]:
    X, labels = datasets.make_moons(50, noise=0.1, random_state=0)
    y = labels * 2 - 1
    random.seed(0)
    model = nn.MLP(2, [8, 8, 1])
    optimizer = SGD(model.parameters(), lr=0.5)
    losses: list[float] = []
    recorded: Tape | None = Tape(moons_loss(model, X, y)) if tape else None
    for _ in range(steps):
        if recorded is not None:
            losses.append(recorded.forward())
            optimizer.zero_grad()
            recorded.backward()
        else:
            loss = moons_loss(model, X, y)
            losses.append(loss.data)
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
    return losses


def classifier_gradient(logits: list[float], target: int) -> list[float]:
    """d cross_entropy / d logits at these numbers, with fastgrad.grad."""

    def loss(scores: list[Value]) -> Value:
        return fastgrad.cross_entropy(scores, target)

    gradient: list[float] = fastgrad.grad(loss)(logits)
    return gradient


def main() -> None:
    eager, replayed = train(5, tape=False), train(5, tape=True)
    print(f"{fastgrad.BACKEND} backend, losses {[round(v, 6) for v in eager]}")
    print("the tape gives the same bits:", eager == replayed)
    probabilities = [p.data for p in fastgrad.softmax([Value(1.0), Value(2.0), 1000.0])]
    print("softmax of 1, 2 and 1000:", probabilities)
    print("cross-entropy gradient:", classifier_gradient([1.0, 2.0, 3.0], target=0))


if __name__ == "__main__":
    main()
