"""python -m fastgrad demo: micrograd's moons demo, on fastgrad.

The training code below is micrograd's demo notebook with the imports changed: an
MLP(2, [16, 16, 1]) on 100 points of make_moons(noise=0.1), an SVM max-margin loss with 1e-4
L2 regularisation, and SGD whose learning rate falls from 1.0 to 0.1 over 100 steps. The
demo trains on the chosen engine, then runs the first steps again on the other one to show
that both give the same bits and how much faster the C engine is.
"""

from __future__ import annotations

import random
import time
import types
from typing import Any

import numpy as np

from .. import functional, nn, optim, reference
from .._common import engine_for
from ..datasets import make_moons

_core: types.ModuleType
try:
    from .. import _core
except ImportError:  # no C extension: the demo runs on the reference and says so
    _core = reference


def moons(seed: int, samples: int = 100) -> tuple[Any, Any]:
    X, y = make_moons(n_samples=samples, noise=0.1, random_state=seed)
    return X, y * 2 - 1  # labels -1 and 1


def loss_and_scores(model: nn.MLP, X: Any, y: Any, Value: Any) -> tuple[Any, list[Any]]:
    """micrograd's demo loss, as its notebook writes it, and the scores it was made from."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    # forward the model to get scores
    scores = list(map(model, inputs))
    # svm "max-margin" loss
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    # L2 regularization
    alpha = 1e-4
    reg_loss = alpha * sum(p * p for p in model.parameters())
    total_loss = data_loss + reg_loss
    return total_loss, scores


def per_sample_model(engine: Any, sizes: list[int], loss: str, seed: int = 0, *,
                     data_grads: bool = False) -> tuple[Any, ...]:  # fmt: skip
    """An MLP over `sizes` written for one sample, its loss recorded as a tape: "margin"
    (micrograd's max-margin, one target leaf y = +-1) or "cross_entropy" (softmax
    cross-entropy, one-hot target leaves). Returns tape, model, input leaves, target leaves.
    The input and target leaves require no grad (a run then spends nothing on d/dX), unless
    `data_grads`."""
    random.seed(seed)
    model = nn.MLP(sizes[0], sizes[1:], engine=engine)
    inputs, targets, root = sample_loss(model, loss, data_grads=data_grads)
    return engine.Tape(root), model, inputs, targets


def sample_loss(model: nn.MLP, loss: str, *, data_grads: bool = False) -> tuple[Any, ...]:
    """The model's loss for one sample, as leaves to feed: (input leaves, target leaves,
    root), over the engine the model's parameters belong to. loss as per_sample_model's."""
    engine = engine_for(model.parameters())
    first, last = model.layers[0].neurons, model.layers[-1].neurons
    inputs = [engine.Value(0.0, requires_grad=data_grads) for _ in range(len(first[0].w))]
    scores: Any = model(inputs)  # a Value for one output, else a list
    if loss == "margin":
        targets = [engine.Value(1.0, requires_grad=data_grads)]
        root = (1 + -targets[0] * scores).relu()  # one output: micrograd's MLP gives a Value
    else:
        targets = [engine.Value(0.0, requires_grad=data_grads) for _ in range(len(last))]
        root = functional.logsumexp(scores) - engine.dot(targets, scores)
    return inputs, targets, root


def _one(output: Any) -> Any:
    """The model's output where its last layer has one neuron (a Value, not a list)."""
    assert not isinstance(output, list), "the model has more than one output"
    return output


def accuracy(y: Any, scores: list[Any]) -> float:
    correct = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
    return float(sum(correct) / len(correct))


def loss(model: nn.MLP, X: Any, y: Any, Value: Any) -> tuple[Any, float]:
    """micrograd's demo loss and the accuracy of its scores."""
    total_loss, scores = loss_and_scores(model, X, y, Value)
    return total_loss, accuracy(y, scores)


def train_step(model: nn.MLP, X: Any, y: Any, Value: Any, k: int,
               steps: int = 100) -> tuple[float, float]:  # fmt: skip
    """One step of micrograd's demo: forward, backward, SGD update."""
    total_loss, acc = loss(model, X, y, Value)
    model.zero_grad()
    total_loss.backward()
    learning_rate = 1.0 - 0.9 * k / steps
    for p in model.parameters():
        p.data -= learning_rate * p.grad
    return total_loss.data, float(acc)


def tape_stepper(model: nn.MLP, X: Any, y: Any,
                 engine: types.ModuleType) -> Any:  # fmt: skip
    """The demo's step through a Tape: the loss graph is built once, then every step
    replays it in C and updates the parameters with SGD; the same bits as rebuilding."""
    total_loss, scores = loss_and_scores(model, X, y, engine.Value)
    tape = engine.Tape(total_loss)
    sgd = optim.SGD(model.parameters(), lr=1.0)

    def step(k: int, steps: int = 100) -> tuple[float, float]:
        tape.forward()
        result = (total_loss.data, accuracy(y, scores))  # the scores: replayed nodes too
        sgd.zero_grad()
        tape.backward()
        sgd.lr = 1.0 - 0.9 * k / steps
        sgd.step()
        return result

    return step


ADAM_LR = 0.02  # --optimizer adam: Adam's lr for the moons and the digits


def adam_stepper(model: nn.MLP, X: Any, y: Any, engine: types.ModuleType,
                 tape: bool) -> Any:  # fmt: skip
    """The demo's step with fastgrad.optim.Adam instead of micrograd's SGD update, eagerly
    or through a tape."""
    adam = optim.Adam(model.parameters(), lr=ADAM_LR)
    recorded = loss_and_scores(model, X, y, engine.Value) if tape else None
    replay = engine.Tape(recorded[0]) if recorded is not None else None

    def step(k: int, steps: int = 100) -> tuple[float, float]:
        if replay is not None and recorded is not None:
            replay.forward()
            total_loss, acc = recorded[0], accuracy(y, recorded[1])
        else:
            total_loss, acc = loss(model, X, y, engine.Value)
        adam.zero_grad()
        if replay is not None:
            replay.backward()
        else:
            total_loss.backward()
        adam.step()
        return total_loss.data, acc

    return step


def train(engine: types.ModuleType, seed: int, steps: int, progress: bool = False,
          stop: int | None = None, tape: bool = False,
          optimizer: str = "sgd") -> tuple[nn.MLP, list[tuple[float, float]], float]:
    """Trains from seed's weights with the learning rate schedule of `steps` steps (the
    first `stop` of them only, if given), eagerly or through a tape, with micrograd's SGD
    update or with optimizer="adam"; returns the model,
    (loss, accuracy) per step and the seconds taken (the tape's recording included)."""
    X, y = moons(seed)
    random.seed(seed)
    model = nn.MLP(2, [16, 16, 1], engine=engine)
    history = []
    run = steps if stop is None else stop
    bar = progress_bar(run, "training", "step") if progress else None
    start = time.perf_counter()
    if optimizer == "adam":
        step = adam_stepper(model, X, y, engine, tape)
    else:
        step = tape_stepper(model, X, y, engine) if tape else None
    for k in range(run):
        if step is not None:
            history.append(step(k, steps))
        else:
            history.append(train_step(model, X, y, engine.Value, k, steps))
        if bar is not None:
            bar.set_postfix(loss=f"{history[-1][0]:.4f}", accuracy=f"{history[-1][1]:.0%}")
            bar.update()
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    return model, history, seconds


def progress_bar(total: int, title: str, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=title, unit=unit)


def pyplot() -> Any:
    """matplotlib.pyplot drawing to files, or a SystemExit saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit("--plot needs matplotlib: pip install 'fastgrad[demo]'") from error
    return plt


def plot(model: nn.MLP, seed: int, path: str, accuracy: float) -> None:
    """The decision boundary over the data, as the micrograd notebook draws it."""
    plt = pyplot()
    X, y = moons(seed)
    h = 0.05
    x_min, x_max = X[:, 0].min() - 1, X[:, 0].max() + 1
    y_min, y_max = X[:, 1].min() - 1, X[:, 1].max() + 1
    xx, yy = np.meshgrid(np.arange(x_min, x_max, h), np.arange(y_min, y_max, h))
    Value = model.parameters()[0].__class__
    grid = [list(map(Value, point)) for point in np.c_[xx.ravel(), yy.ravel()]]
    scores = np.array([_one(model(point)).data for point in grid]).reshape(xx.shape)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contourf(xx, yy, scores > 0, cmap=plt.cm.Spectral, alpha=0.8)
    for label, color in ((-1, plt.cm.Spectral(0.0)), (1, plt.cm.Spectral(1.0))):
        points = X[y == label]
        ax.scatter(points[:, 0], points[:, 1], color=color, s=30, edgecolors="k",
                   label=f"class {label:+d}")  # fmt: skip
    ax.set_xlim(xx.min(), xx.max())
    ax.set_ylim(yy.min(), yy.max())
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="upper right", title="training points")
    ax.set_title(f"MLP(2, [16, 16, 1]) on make_moons (seed {seed}): "
                 f"{accuracy:.0%} training accuracy\nshaded: the side of the decision boundary "
                 "the model predicts", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def engine_named(backend: str) -> types.ModuleType:
    """The engine for --backend c|python; the reference, saying so, where C is not built."""
    if backend == "c" and _core is reference:
        print("fastgrad's C extension is not built here: running on the pure-Python reference "
              "(pip install -e . builds it in a checkout)")  # fmt: skip
    return _core if backend == "c" else reference


def main(steps: int = 100, seed: int = 0, backend: str = "c", plot_path: str | None = None,
         tape: bool = False, optimizer: str = "sgd") -> None:
    engine = engine_named(backend)
    backend = "c" if engine is _core and _core is not reference else "python"
    model, history, seconds = train(engine, seed, steps, progress=True, tape=tape,
                                    optimizer=optimizer)  # fmt: skip
    final_loss, final_accuracy = history[-1]
    how = f"{backend} engine{' through a tape' if tape else ''}"
    how += " with Adam" if optimizer == "adam" else ""
    print(f"{how}: {steps} steps, loss {final_loss:.4f}, accuracy {final_accuracy:.0%}, "
          f"{seconds * 1e3 / steps:.2f} ms per step")  # fmt: skip
    if plot_path is not None:
        plot(model, seed, plot_path, final_accuracy)
        print(f"decision boundary drawn to {plot_path}")
    if _core is reference and not tape:
        return  # nothing to compare with
    # the same first steps another way: the same bits, and how the speeds compare
    compared = min(steps, 10)
    if tape:
        other, other_how = engine, f"{backend} engine eagerly"
        _, other_history, other_seconds = train(engine, seed, steps, stop=compared,
                                                optimizer=optimizer)  # fmt: skip
    else:
        other = reference if backend == "c" else _core
        other_how = "reference engine" if backend == "c" else "C engine"
        _, other_history, other_seconds = train(other, seed, steps, stop=compared,
                                                optimizer=optimizer)  # fmt: skip
    same = other_history == history[:compared]
    ratio = (other_seconds / compared) / (seconds / steps)
    print(f"the {other_how} on the first {compared} steps: "
          f"{'the same bits' if same else 'DIFFERENT numbers'}; "
          f"{how} is {ratio:.0f}x {'faster' if ratio >= 1 else 'slower'}")
