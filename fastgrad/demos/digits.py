"""python -m fastgrad demo --digits: a classifier of handwritten digits, trained with Tape.run.

scikit-learn's digits (1,797 images of 8x8 pixels, 0-16) split 80/20 into training and test
rows. The model is written for one sample, with Values, as micrograd code is: an
MLP(64, [32, 10]) whose ten scores go through softmax cross-entropy against the sample's
one-hot label. That graph is recorded once as a Tape; each minibatch is one `tape.run` over
its rows (the inputs and the one-hot label fed as leaves), which adds the rows' gradients to
the parameters' grads in C, and SGD with momentum (`fastgrad.optim.SGD`) takes the step. The
test set is scored by a Tape of the ten scores (ten roots), run forward only.
"""

from __future__ import annotations

import importlib
import time
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import nn, optim
from .moons import ADAM_LR, per_sample_model, progress_bar, pyplot, sample_loss

CLASSES = 10
INPUTS = 64  # 8x8 pixels


@dataclass
class Digits:
    """The split: pixel rows scaled to [0, 1], their labels, and the test images."""

    X_train: Any
    y_train: Any
    X_test: Any
    y_test: Any
    images_test: Any


def load(seed: int) -> Digits:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        message = "the digits demo needs scikit-learn: pip install 'fastgrad[demo]'"
        raise SystemExit(message) from error
    digits = load_digits()
    X = digits.data / 16.0
    X_train, X_test, y_train, y_test, _, images_test = train_test_split(
        X, digits.target, digits.images, test_size=0.2, random_state=seed, stratify=digits.target
    )
    return Digits(X_train, y_train, X_test, y_test, images_test)


@dataclass
class Classifier:
    """The model and its loss for one sample, recorded as a tape, and its ten scores recorded
    as a tape of ten roots (for predictions)."""

    model: nn.MLP
    pixels: list[Any]  # the input leaves, fed a row of X
    onehot: list[Any]  # the label's leaves, fed a row of the one-hot labels
    tape: Any
    score_tape: Any

    def predict(self, X: Any, threads: int = 1) -> Any:
        """The class with the largest score, per row: the scores' tape run forward only."""
        scores = self.score_tape.run(self.pixels, X, backward=False, threads=threads)
        return np.argmax(scores, axis=1)


def classifier(engine: types.ModuleType, seed: int, hidden: int = 32) -> Classifier:
    """The model, with softmax cross-entropy against the one-hot label, for one sample."""
    tape, model, pixels, onehot = per_sample_model(engine, [INPUTS, hidden, CLASSES],
                                                   "cross_entropy", seed)  # fmt: skip
    scores = model(pixels)
    assert isinstance(scores, list)  # ten classes
    return Classifier(model, pixels, onehot, tape, engine.Tape(scores))


def build(model: nn.MLP) -> tuple[Any, ...]:
    """One image's softmax cross-entropy: (the pixel leaves, the one-hot label's leaves, the
    loss), the graph fastgrad.distributed.DataParallel records on each worker."""
    return sample_loss(model, "cross_entropy")


def run_as_loop(net: Classifier, X: Any, Y: Any) -> Any:
    """What tape.run(net.pixels, X, net.onehot, Y) does, as the Python loop it replaces:
    one forward() and backward() per row (each parameter is read once per row, so its grad
    gets the row's gradient in one addition, as run adds it)."""
    out = []
    for x, y in zip(X.tolist(), Y.tolist()):
        for leaf, value in zip(net.pixels, x):
            leaf.data = value
        for leaf, value in zip(net.onehot, y):
            leaf.data = value
        out.append(net.tape.forward())
        net.tape.backward()
    return np.array(out)


def train(engine: types.ModuleType, data: Digits, *, epochs: int, seed: int, batch: int = 32,
          lr: float = 0.1, momentum: float = 0.9, threads: int = 1, progress: bool = False,
          loop: bool = False,
          optimizer: str = "sgd") -> tuple[Classifier, list[float], float]:  # fmt: skip
    """Minibatch SGD with momentum (or Adam) over shuffled training rows, each batch one
    tape.run (or, with loop, run_as_loop); returns the classifier, the mean loss per epoch,
    and the seconds that training took."""
    net = classifier(engine, seed)
    labels = np.eye(CLASSES)[data.y_train]
    # the tape adds up the batch's gradients: lr / batch makes the step the mean's
    if optimizer == "adam":  # Adam's steps do not scale with the gradients' sum
        sgd: optim.Optimizer = optim.Adam(net.model.parameters(), lr=ADAM_LR)
    else:
        sgd = optim.SGD(net.model.parameters(), lr=lr / batch, momentum=momentum)
    rng = np.random.default_rng(seed)
    losses = []
    seconds = 0.0
    for epoch in range(epochs):
        order = rng.permutation(len(data.X_train))
        starts = range(0, len(order), batch)
        title = f"epoch {epoch + 1}/{epochs}"
        bar = progress_bar(len(starts), title, "batch") if progress else None
        total = 0.0
        start = time.perf_counter()
        for first in starts:
            rows = order[first : first + batch]
            sgd.zero_grad()
            X, Y = data.X_train[rows], labels[rows]
            out = run_as_loop(net, X, Y) if loop else net.tape.run(net.pixels, X, net.onehot, Y,
                                                                   threads=threads)  # fmt: skip
            total += float(out.sum())
            sgd.step()
            if bar is not None:
                bar.update()
        seconds += time.perf_counter() - start
        losses.append(total / len(order))
        if bar is not None:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.close()
    return net, losses, seconds


def train_full_batch(engine: types.ModuleType, data: Digits, *, steps: int, seed: int,
                     shards: int, client: Any = None,
                     progress: bool = False) -> tuple[Classifier, list[float], float]:  # fmt: skip
    """Adam on the mean loss over every training row, each step one run cut into `shards`:
    over a Dask cluster with client (fastgrad.distributed.DataParallel), else in this
    process (tape.run(..., shards=shards)), which gives the same bits. Returns the
    classifier, the mean loss per step and the seconds that training took."""
    net = classifier(engine, seed)
    labels = np.eye(CLASSES)[data.y_train]
    rows = len(data.X_train)
    adam = optim.Adam(net.model.parameters(), lr=ADAM_LR)
    bar = progress_bar(steps, "training", "step") if progress else None
    losses = []
    start = time.perf_counter()
    parallel = None
    if client is not None:
        from ..distributed import DataParallel

        parallel = DataParallel(net.model, build, data.X_train, labels, shards=shards,
                                client=client)  # fmt: skip
    try:
        for _ in range(steps):
            adam.zero_grad()
            if parallel is not None:
                out = parallel.run(root_grad=1.0 / rows)
            else:
                out = net.tape.run(net.pixels, data.X_train, net.onehot, labels,
                                   root_grad=1.0 / rows, shards=shards)  # fmt: skip
            losses.append(float(out.mean()))
            adam.step()
            if bar is not None:
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                bar.update()
    finally:
        if parallel is not None:
            parallel.close()
        if bar is not None:
            bar.close()
    return net, losses, time.perf_counter() - start


def main_workers(engine: types.ModuleType, *, workers: int, steps: int, seed: int = 0) -> float:
    """The digits model trained full-batch through DataParallel on a cluster of `workers`
    worker processes on this machine, then checked against the same training in this
    process. Returns the test accuracy."""
    try:
        distributed: Any = importlib.import_module("distributed")
    except ImportError as error:
        message = "--workers needs Dask: pip install 'fastgrad[distributed]'"
        raise SystemExit(message) from error
    data = load(seed)
    print(f"digits on {workers} Dask worker processes (one thread each), {workers} shards of "
          f"{len(data.X_train)} rows, Adam full-batch, {steps} steps")  # fmt: skip
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:  # fmt: skip
        net, losses, seconds = train_full_batch(engine, data, steps=steps, seed=seed,
                                                shards=workers, client=client, progress=True)
    accuracy = float(np.mean(net.predict(data.X_test) == data.y_test))
    print(f"trained in {seconds:.2f} s ({seconds / steps * 1e3:.1f} ms a step, recording "
          f"included); loss {losses[-1]:.4f}; test accuracy {accuracy:.1%}")  # fmt: skip
    alone, alone_losses, alone_seconds = train_full_batch(engine, data, steps=steps, seed=seed,
                                                          shards=workers)  # fmt: skip
    same = ([p.data for p in alone.model.parameters()] == [p.data for p in net.model.parameters()]
            and alone_losses == losses)  # fmt: skip
    alone_accuracy = float(np.mean(alone.predict(data.X_test) == data.y_test))
    print(f"one process, tape.run(shards={workers}): {alone_seconds:.2f} s, test accuracy "
          f"{alone_accuracy:.1%}; {'the same bits' if same else 'DIFFERENT numbers'}")
    return accuracy


def plot(data: Digits, predicted: Any, path: str, accuracy: float, shown: int = 60) -> None:
    """The first `shown` test images with the predicted class; wrong ones in red with the
    true class beside."""
    plt = pyplot()
    columns = 10
    rows = -(-min(shown, len(predicted)) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.1 + 0.6))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.set_axis_off()
        if i >= min(shown, len(predicted)):
            continue
        right = predicted[i] == data.y_test[i]
        ax.imshow(data.images_test[i], cmap="gray_r", interpolation="nearest")
        ax.set_title(f"{predicted[i]}" if right else f"{predicted[i]} (is {data.y_test[i]})",
                     color="black" if right else "red", fontsize=9)  # fmt: skip
        if not right:
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("red")
                spine.set_linewidth(2)
    fig.suptitle(f"MLP(64, [32, 10]) on scikit-learn's digits: {accuracy:.1%} test accuracy\n"
                 "each test image titled with the predicted class; red: wrong (true class in "
                 "brackets)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(engine: types.ModuleType, *, epochs: int = 15, seed: int = 0, threads: int = 1,
         plot_path: str | None = None, optimizer: str = "sgd") -> float:  # fmt: skip
    data = load(seed)
    net, losses, seconds = train(engine, data, epochs=epochs, seed=seed, threads=threads,
                                 progress=True, optimizer=optimizer)  # fmt: skip
    predicted = net.predict(data.X_test, threads=threads)
    accuracy = float(np.mean(predicted == data.y_test))
    rows = epochs * len(data.X_train)
    print(f"digits: {len(data.X_train)} training rows, {epochs} epochs in {seconds:.2f} s "
          f"({rows / seconds:,.0f} rows/s through tape.run, threads={threads}); "
          f"loss {losses[-1]:.4f}; test accuracy {accuracy:.1%} "
          f"({int(np.sum(predicted == data.y_test))}/{len(data.y_test)})")  # fmt: skip
    if plot_path is not None:
        plot(data, predicted, plot_path, accuracy)
        print(f"test digits and their predictions drawn to {plot_path}")
    # the first epoch again, each batch as the Python loop that run replaces
    first, _, first_seconds = train(engine, data, epochs=1, seed=seed, threads=threads,
                                    optimizer=optimizer)  # fmt: skip
    looped, _, loop_seconds = train(engine, data, epochs=1, seed=seed, loop=True,
                                    optimizer=optimizer)  # fmt: skip
    same = [p.data for p in first.model.parameters()] == [p.data for p in looped.model.parameters()]
    print(f"the first epoch as a loop of forward() and backward() per row: "
          f"{'the same bits' if same else 'DIFFERENT numbers'}; "
          f"tape.run is {loop_seconds / first_seconds:.0f}x faster")  # fmt: skip
    return accuracy
