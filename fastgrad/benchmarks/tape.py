"""The benchmark cases of the compiled tape: B7 (one graph replayed, beside hand-written C),
a graph of another mix (what fusion buys beyond B7), and B8/B9 (tape.run over datasets,
beside PyTorch and across threads)."""

from __future__ import annotations

import ctypes
import random
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, cast

import numpy as np

from ..demos.moons import per_sample_model
from .case import (
    BENCH_SOURCES,
    COMPILING,
    JAX,
    Case,
    Contenders,
    compiled_library,
    every_core_busy,
    jax_contenders,
    jax_parameters,
    jax_x64_one_thread,
    optional,
    torch_parameters,
)

# ---- B7: the "fastest autograd" workload, recorded once and replayed ----

B7_PUBLISHED = {"PyTorch": 1130.0, "JAX": 470.0, "hand-written Rust": 1.4, "hand-written C": 0.99}
HANDWRITTEN = "hand-written C"
HANDWRITTEN_SOURCE = BENCH_SOURCES / "b7_handwritten.c"


def fastest_autograd_graph(engine: Any) -> tuple[Any, list[Any]]:
    """B7's graph, the "fastest autograd" workload: 10,000 ops over leaves i / 100 (softplus,
    sums of four, products, softmaxes of four). Returns the root and the 100 leaves."""
    leaves = [engine.Value(i / 100) for i in range(100)]
    nodes = list(leaves)
    for op in range(10_000):
        k = op % 4
        if k == 0:
            nodes.append((1 + nodes[-10].exp()).log())  # softplus
        elif k == 1:
            nodes.append(engine.sum(nodes[-30:-10:5]))  # sum of four
        elif k == 2:
            nodes.append(nodes[-20] * nodes[-10])  # product
        else:  # softmax of four
            e = [v.exp() for v in nodes[-4:]]
            s = engine.sum(e)
            nodes.extend(v / s for v in e)
    return nodes[-1], leaves


def compiled_handwritten() -> Callable[[], float] | None:
    """bench/b7_handwritten.c built now (None without the source tree or a C compiler): its
    b7_iteration() runs one forward and backward."""
    library = compiled_library(HANDWRITTEN_SOURCE, "-DB7_LIBRARY")
    if library is None:
        return None
    iteration = library.b7_iteration
    iteration.restype, iteration.argtypes = ctypes.c_double, []
    return iteration


def _fastest_autograd_case() -> Case:
    def build() -> Contenders:
        from .. import _core, reference

        root, leaves = fastest_autograd_graph(_core)
        tape, unfused = _core.Tape(root), _core.Tape(root, fuse=False)
        contenders: Contenders = {"fastgrad tape": replay(tape),
                                  "fastgrad tape, fusion off": replay(unfused)}  # fmt: skip
        handwritten = compiled_handwritten()
        if handwritten is not None:
            for leaf in leaves:
                leaf.grad = 0.0
            tape.forward()
            tape.backward()
            ours, theirs = sum(leaf.grad for leaf in leaves), handwritten()
            if abs(ours - theirs) > 1e-9 * abs(ours):
                raise AssertionError(f"hand-written C's leaf grads sum to {theirs}, not {ours}")
            contenders[HANDWRITTEN] = handwritten

        def eager(engine: Any) -> Callable[[], object]:
            return lambda: fastest_autograd_graph(engine)[0].backward()

        contenders["fastgrad eager (rebuilt each time)"] = eager(_core)
        contenders["pure-Python reference, eager"] = eager(reference)
        return contenders

    names = (
        "fastgrad tape",
        "fastgrad tape, fusion off",
        HANDWRITTEN,
        "fastgrad eager (rebuilt each time)",
        "pure-Python reference, eager",
    )
    return Case("B7", "10,000-op graph, one forward + backward", 1, "iteration", build, names,
                rounds=3)  # fmt: skip


def replay(tape: Any) -> Callable[[], object]:
    def forward_and_backward() -> object:
        tape.forward()
        tape.backward()
        return None

    return forward_and_backward


def _compile_case() -> Case:
    def build() -> Contenders:
        from .. import _core

        root, _ = fastest_autograd_graph(_core)
        return {"fastgrad Tape(root)": lambda: _core.Tape(root),
                "fastgrad, fuse=False": lambda: _core.Tape(root, fuse=False)}  # fmt: skip

    return Case("B7", "recording the tape of its 40,012 nodes", 1, "compile", build,
                ("fastgrad Tape(root)", "fastgrad, fuse=False"))  # fmt: skip


# ---- another mix: fusion is not B7's alone ----


def mixed_graph(engine: Any, width: int = 64, layers: int = 60) -> Any:
    """A graph B7 never builds: `layers` layers of `width` nodes, each node one of tanh of a
    weighted input, sigmoid(a + 0.5) * b, 0.3 * a ** 2 - b, log of a sum of four exps of
    scaled inputs, or tanh of a dot of eight weights and inputs; summed at the root."""
    rng = random.Random(1)
    x = [engine.Value(0.01 * (i % 17) - 0.08) for i in range(width)]
    p = [engine.Value(rng.uniform(-0.5, 0.5)) for _ in range(2 * width)]
    for layer in range(layers):
        y = []
        for i in range(width):
            a, b = x[i], x[(i * 7 + layer) % width]
            kind = (i + layer) % 5
            if kind == 0:
                y.append((a * p[(i + layer) % (2 * width)]).tanh())
            elif kind == 1:
                y.append((a + 0.5).sigmoid() * b)
            elif kind == 2:
                y.append(0.3 * a**2 - b)
            elif kind == 3:
                exps = [(x[(i + 3 * j) % width] * 0.25).exp() for j in range(4)]
                y.append(engine.sum(exps).log())
            else:
                ws = [p[(i + j) % (2 * width)] for j in range(8)]
                y.append(engine.dot(ws, [x[(i + 5 * j) % width] for j in range(8)], 0.1).tanh())
        x = y
    return engine.sum(x)


MIXED_GRAPH_NODES = 21_651  # len(Tape(mixed_graph(engine))), which bench/ checks


def _mixed_graph_case() -> Case:
    nodes = MIXED_GRAPH_NODES

    def build() -> Contenders:
        from .. import _core

        root = mixed_graph(_core)
        return {"fastgrad tape": replay(_core.Tape(root)),
                "fastgrad tape, fusion off": replay(_core.Tape(root, fuse=False))}  # fmt: skip

    return Case("B7", f"beside: another mix ({nodes:,} nodes), one forward + backward", nodes,
                "node", build, ("fastgrad tape", "fastgrad tape, fusion off"))  # fmt: skip


# ---- B8, B9: tape.run over datasets, beside PyTorch ----

PYTORCH = "pytorch, float64, 1 thread"


def dataset(rows: int, sizes: list[int], loss: str, seed: int = 0) -> tuple[Any, Any]:
    """Random data of the shape: inputs normal, targets +-1 (margin) or one-hot classes."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, sizes[0]))
    if loss == "margin":
        return X, rng.choice([-1.0, 1.0], size=(rows, 1))
    return X, np.eye(sizes[-1])[rng.integers(0, sizes[-1], size=rows)]


def torch_pass(torch: Any, model: Any, X: Any, Y: Any, loss: str) -> Callable[[], float]:
    """The same pass in PyTorch as batched float64 tensors on one thread, from the same
    weights: forward over every row, the rows' losses summed, backward (grads accumulate,
    as run adds the rows' gradients to the leaves')."""
    params = torch_parameters(torch, model)
    Xt = torch.tensor(X, dtype=torch.float64)
    Yt = torch.tensor(Y[:, 0] if loss == "margin" else Y.argmax(1))

    def training_pass() -> float:
        h = Xt
        for i in range(0, len(params) - 2, 2):
            h = torch.relu(h @ params[i] + params[i + 1])
        scores = h @ params[-2] + params[-1]
        if loss == "margin":
            total = torch.relu(1 - Yt * scores[:, 0]).sum()
        else:
            total = torch.nn.functional.cross_entropy(scores, Yt, reduction="sum")
        total.backward()
        return float(total.detach())

    return training_pass


def jax_pass(jax: Any, model: Any, X: Any, Y: Any, loss: str) -> Contenders:
    """The same pass in JAX, jitted: the rows' losses summed and their gradient with
    respect to the weights (JAX returns it where PyTorch accumulates it: the same work)."""
    jnp = jax.numpy
    args = (jax_parameters(jax, model), jnp.asarray(X),
            jnp.asarray(Y[:, 0] if loss == "margin" else Y.argmax(1)))  # fmt: skip

    def make() -> Callable[..., Any]:
        def total(params: list[Any], X: Any, Y: Any) -> Any:
            h = X
            for i in range(0, len(params) - 2, 2):
                h = jax.nn.relu(h @ params[i] + params[i + 1])
            scores = h @ params[-2] + params[-1]
            if loss == "margin":
                return jnp.sum(jax.nn.relu(1 - Y * scores[:, 0]))
            picked = jnp.take_along_axis(jax.nn.log_softmax(scores), Y[:, None], axis=1)
            return -jnp.sum(picked)

        return jax.value_and_grad(total)  # type: ignore[no-any-return]

    return jax_contenders(jax, make, args)


def _agrees(theirs: float, ours: float, who: str) -> None:
    if abs(ours - theirs) > 1e-9 * max(1.0, abs(ours)):
        raise AssertionError(f"{who}'s summed loss {theirs} is not fastgrad's {ours}")


def _dataset_case(id: str, title: str, rows: int, sizes: list[int], loss: str,
                  threads: tuple[int, ...] = (1,), torch: bool = True,
                  under: Callable[[], AbstractContextManager[None]] | None = None,
                  ) -> Case:  # fmt: skip
    runs = [f"fastgrad run, threads={n}" for n in threads] if len(threads) > 1 else ["fastgrad run"]

    def build() -> Contenders:
        from .. import _core

        tape, model, inputs, targets = per_sample_model(_core, sizes, loss)
        X, Y = dataset(rows, sizes, loss)

        def run(threads: int) -> Callable[[], float]:
            return lambda: float(tape.run(inputs, X, targets, Y, threads=threads).sum())

        contenders: Contenders = {name: run(n) for name, n in zip(runs, threads)}
        module = optional("torch") if torch else None
        if module is not None:
            theirs = torch_pass(module, model, X, Y, loss)
            _agrees(theirs(), run(1)(), "PyTorch")
            contenders[PYTORCH] = theirs
        jax = jax_x64_one_thread() if torch else None
        if jax is not None:
            contenders.update(jax_pass(jax, model, X, Y, loss))
            _agrees(float(cast(Any, contenders[JAX]())[0]), run(1)(), "JAX")
        return contenders

    baselines = (PYTORCH, JAX, JAX + COMPILING) if torch else ()
    return Case(id, title, 1, "pass", build, (*runs, *baselines), under=under)


def _minibatch_case(batch: int = 32) -> Case:
    """B9's second half: digits-size data in minibatches, one run per batch, where the rows are
    too few to share well between threads (run then uses fewer)."""
    sizes, rows = [64, 32, 10], 1797
    names = ("fastgrad run, threads=2", "fastgrad run, threads=1")

    def build() -> Contenders:
        from .. import _core

        tape, _model, inputs, targets = per_sample_model(_core, sizes, "cross_entropy")
        X, Y = dataset(rows, sizes, "cross_entropy")

        def epoch(threads: int) -> Callable[[], float]:
            def run_batches() -> float:
                total = 0.0
                for i in range(0, rows, batch):
                    total += float(tape.run(inputs, X[i:i + batch], targets, Y[i:i + batch],
                                            threads=threads).sum())  # fmt: skip
                return total

            return run_batches

        return {names[0]: epoch(2), names[1]: epoch(1)}

    return Case("B9", f"digits-size in minibatches of {batch} rows, on two threads", 1, "epoch",
                build, names)  # fmt: skip


MNIST = [784, 128, 10]

TAPE_CASES: list[Case] = [
    _fastest_autograd_case(),
    _compile_case(),
    _mixed_graph_case(),
    _dataset_case("B8", "tape.run, moons: 100 rows, MLP 2-16-16-1, max-margin", 100,
                  [2, 16, 16, 1], "margin"),
    _dataset_case("B8", "tape.run, digits-size: 1,797 rows, MLP 64-32-10, cross-entropy", 1797,
                  [64, 32, 10], "cross_entropy"),
    _dataset_case("B8", "tape.run, MNIST-size: 1,000 rows, MLP 784-128-10, cross-entropy", 1000,
                  MNIST, "cross_entropy"),
    _dataset_case("B9", "B8 MNIST-size on two threads", 1000, MNIST, "cross_entropy",
                  threads=(2, 1), torch=False),
    _minibatch_case(),
    _dataset_case("B9L", "B8 digits-size on two threads, every core busy with another process",
                  1797, [64, 32, 10], "cross_entropy", threads=(2, 1), torch=False,
                  under=every_core_busy),
]  # fmt: skip
