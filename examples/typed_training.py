"""A typed program over fastgrad's public API; mypy --strict checks it in CI.

Trains micrograd's moons MLP for a few steps eagerly, then through a compiled tape, and
shows that both paths give the same numbers; then resumes an Adam run from a checkpoint. The
lines in rejected() must be refused by mypy: each carries the `type: ignore` of the error it
must raise, and --strict (warn_unused_ignores) fails the check if one is not raised.
"""

from __future__ import annotations

import random
import tempfile

import numpy as np

import fastgrad
from fastgrad import Tape, Value, datasets, nn
from fastgrad.optim import SGD, Adam, lr_scheduler


def score(model: nn.MLP, x: list[Value]) -> Value:
    out = model(x)  # a Value where the last layer has one neuron, else a list of them
    assert isinstance(out, Value)
    return out


def moons_loss(model: nn.MLP, X: np.ndarray, y: np.ndarray) -> Value:
    scores = [score(model, [Value(float(a)), Value(float(b))]) for a, b in X]
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


def resume_from_a_checkpoint(path: str) -> list[float]:
    random.seed(1)
    model = nn.MLP(2, [4, 1], activation="tanh")
    optimizer = Adam(model.parameters(), lr=0.01, betas=(0.9, 0.99))
    schedule = lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    fastgrad.save(model, path, optimizer=optimizer, scheduler=schedule)
    loaded: nn.MLP = fastgrad.load(path, model, optimizer=optimizer, scheduler=schedule)
    optimizer.lr = optimizer.lr * 0.9
    output = score(loaded, [Value(0.5), Value(1.0)])
    first: float = fastgrad.gradients(output, loaded.parameters()[0])
    return [first, schedule.get_last_lr()[0], optimizer.lr]


def rejected(model: nn.MLP, v: Value) -> None:
    """Lines a type checker must refuse (never called)."""
    bad: int = model([v, v])  # type: ignore[assignment]
    lost = float(v)  # type: ignore[arg-type]
    opt = SGD(model.parameters(), lr="fast")  # type: ignore[arg-type]
    del bad, lost, opt


def main() -> None:
    eager, replayed = train(5, tape=False), train(5, tape=True)
    print(f"{fastgrad.BACKEND} backend, losses {[round(v, 6) for v in eager]}")
    print("the tape gives the same bits:", eager == replayed)
    probabilities = [p.data for p in fastgrad.softmax([Value(1.0), Value(2.0), 1000.0])]
    print("softmax of 1, 2 and 1000:", probabilities)
    print("cross-entropy gradient:", classifier_gradient([1.0, 2.0, 3.0], target=0))
    with tempfile.TemporaryDirectory() as folder:
        print("from a checkpoint:", resume_from_a_checkpoint(f"{folder}/checkpoint.json"))


if __name__ == "__main__":
    main()
