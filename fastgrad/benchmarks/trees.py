"""B12: many small programs, each new, built, recorded and run once over a dataset.

200 random expression trees of 30 ops (+ - * / sin cos exp tanh) over 3 inputs and 4
trainable constants; for each, 1,000 rows of the inputs, the value per row and the gradient
of the rows' sum with respect to the constants, everything included: building the graph,
recording it and running it. Beside: PyTorch eager over the 1,000-row tensors, JAX jit of
vmap (compile included: a new tree is a new program) and the floor, the same libm calls that
the tree's run makes, in a plain C loop (bench/b12_libm_floor.c). Before any timing, every
tree's values and gradients agree within 1e-9 between fastgrad and PyTorch.
"""

from __future__ import annotations

import ctypes
import itertools
import operator
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .case import (
    BENCH_SOURCES,
    JAX,
    Case,
    Contenders,
    compiled_library,
    jax_x64_one_thread,
    optional,
)

TREES, OPS, ROWS, INPUTS, CONSTANTS = 200, 30, 1000, 3, 4
UNARY = ("sin", "cos", "exp", "tanh")
BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
# The floor's calls (bench/b12_libm_floor.c's order): d sin a = cos a and d cos a = -sin a, so
# a sin or cos whose derivative is wanted takes both of its argument, one sincos call in
# fastgrad's tape and in the floor; exp and tanh differentiate through their own value.
CALLS = (*UNARY, "sin and cos")

FASTGRAD = "fastgrad: build, record, run"
PYTORCH = "pytorch eager, float64, 1 thread"
JAX_TREE = f"{JAX}, vmap, compile included"
FLOOR = "the same libm calls in a plain C loop (the floor)"

# ("x", i) an input, ("c", i) a constant, (unary, child) or (binary, left, right)
Tree = tuple[Any, ...]


@dataclass(frozen=True)
class Program:
    tree: Tree
    constants: tuple[float, ...]
    calls: tuple[tuple[str, np.ndarray], ...]  # the libm calls a run makes, with arguments


class _Unfit(Exception):
    """A tree whose values leave a safe range on the data (overflow, a tiny divisor)."""


def random_tree(rng: random.Random, ops: int) -> Tree:
    if ops == 0:
        kind, count = ("x", INPUTS) if rng.random() < 0.6 else ("c", CONSTANTS)
        return (kind, rng.randrange(count))
    if rng.random() < 0.4:
        return (rng.choice(UNARY), random_tree(rng, ops - 1))
    left = rng.randrange(ops)
    return (rng.choice(list(BINARY)), random_tree(rng, left), random_tree(rng, ops - 1 - left))


def evaluate(tree: Tree, leaves: list[Any], unary: Callable[[str, Any], Any]) -> Any:
    """The tree over one engine: leaves are the inputs then the constants; `unary(name, a)`
    applies sin, cos, exp or tanh the engine's way."""
    if tree[0] == "x":
        return leaves[tree[1]]
    if tree[0] == "c":
        return leaves[INPUTS + tree[1]]
    if len(tree) == 2:
        return unary(tree[0], evaluate(tree[1], leaves, unary))
    return BINARY[tree[0]](evaluate(tree[1], leaves, unary), evaluate(tree[2], leaves, unary))


def _libm_calls(tree: Tree, X: np.ndarray, constants: tuple[float, ...]) -> list[Any]:
    """The libm calls fastgrad's run of the tree makes (each op's, sin and cos together for
    one on a path to a constant), with their arguments per row; _Unfit when
    a value overflows or a divisor comes near zero, which no generated program may do."""
    calls: list[tuple[str, np.ndarray]] = []

    def walk(t: Tree) -> tuple[np.ndarray, bool]:
        if t[0] == "x":
            return X[:, t[1]], False
        if t[0] == "c":
            return np.full(len(X), constants[t[1]]), True
        if len(t) == 2:
            a, to_constant = walk(t[1])
            if t[0] == "exp" and a.max() > 30:
                raise _Unfit
            both = to_constant and t[0] in ("sin", "cos")
            calls.append(("sin and cos" if both else t[0], a))
            return getattr(np, t[0])(a), to_constant
        (a, left), (b, right) = walk(t[1]), walk(t[2])
        if t[0] == "/" and np.abs(b).min() < 0.05:
            raise _Unfit
        out = BINARY[t[0]](a, b)
        if not np.all(np.abs(out) < 1e6):
            raise _Unfit
        return out, left or right

    walk(tree)
    return calls


def programs(X: np.ndarray, count: int = TREES, seed: int = 12) -> list[Program]:
    """`count` random trees of OPS ops, each reading every input and some constant, that
    keep finite, moderate values over X."""
    rng, found = random.Random(seed), list[Program]()
    while len(found) < count:
        tree = random_tree(rng, OPS)
        constants = tuple(rng.uniform(-1, 1) for _ in range(CONSTANTS))
        leaves = set(_leaves(tree))
        if len({leaf for leaf in leaves if leaf[0] == "x"}) < INPUTS or leaves <= {
                ("x", i) for i in range(INPUTS)}:  # fmt: skip
            continue
        try:
            calls = _libm_calls(tree, X, constants)
        except _Unfit:
            continue
        found.append(Program(tree, constants, tuple(calls)))
    return found


def _leaves(tree: Tree) -> Iterator[Tree]:
    if tree[0] in ("x", "c"):
        yield tree
    else:
        for child in tree[1:]:
            yield from _leaves(child)


def dataset(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(ROWS, INPUTS))


def fastgrad_program(engine: Any, program: Program, X: np.ndarray) -> tuple[Any, list[float]]:
    """The tree built on Values, recorded and run over X: the root per row and the
    gradient with respect to the constants."""
    inputs = [engine.Value(x, requires_grad=False) for x in X[0]]  # built at the first row
    constants = [engine.Value(c) for c in program.constants]
    root = evaluate(program.tree, [*inputs, *constants], lambda name, a: getattr(a, name)())
    out = engine.Tape(root).run(inputs, X)
    return out, [c.grad for c in constants]


def torch_program(torch: Any, program: Program, columns: list[Any]) -> tuple[Any, list[Any]]:
    constants = [torch.tensor(c, dtype=torch.float64, requires_grad=True)
                 for c in program.constants]  # fmt: skip
    root = evaluate(program.tree, [*columns, *constants],
                    lambda name, a: getattr(torch, name)(a))  # fmt: skip
    root.sum().backward()
    return root.detach(), [c.grad for c in constants]


def jax_program(jax: Any, program: Program, X: Any) -> tuple[Any, Any]:
    """The tree as JAX code, jitted anew (a new tree is a new program) and run."""
    jnp = jax.numpy

    def total(constants: tuple[Any, ...], X: Any) -> Any:
        def row(x: Any) -> Any:
            leaves = [x[0], x[1], x[2], *constants]
            return evaluate(program.tree, leaves, lambda name, a: getattr(jnp, name)(a))

        per_row = jax.vmap(row)(X)
        return jnp.sum(per_row), per_row

    step = jax.jit(jax.value_and_grad(total, has_aux=True))
    (_, per_row), grads = step(tuple(jnp.float64(c) for c in program.constants), X)
    return jax.block_until_ready(per_row), grads


def _floor(library: Any, program: Program) -> Callable[[], object]:
    which = (ctypes.c_int * len(program.calls))(*(CALLS.index(n) for n, _ in program.calls))
    args = (ctypes.POINTER(ctypes.c_double) * len(program.calls))(
        *(a.ctypes.data_as(ctypes.POINTER(ctypes.c_double)) for _, a in program.calls)
    )
    calls = library.b12_calls
    return lambda: calls(len(program.calls), which, args, ROWS)


def _agree(ours: Any, theirs: Any, what: str) -> None:
    ours, theirs = np.asarray(ours, dtype=float).ravel(), np.asarray(theirs, dtype=float).ravel()
    scale = max(1.0, float(np.abs(theirs).max()))
    if not np.allclose(ours, theirs, rtol=1e-9, atol=1e-9 * scale):
        raise AssertionError(f"{what}: fastgrad's {ours[:3]}... is not {theirs[:3]}...")


def _cycling(calls: list[Callable[[], object]]) -> Callable[[], object]:
    """One call, the next program's: every contender times the same sequence of trees."""
    order = itertools.cycle(calls)
    return lambda: next(order)()


def _trees_case() -> Case:
    def build() -> Contenders:
        from .. import _core

        X = dataset()
        found = programs(X)
        contenders: Contenders = {
            FASTGRAD: _cycling([partial(fastgrad_program, _core, p, X) for p in found])
        }
        torch = optional("torch")
        if torch is not None:
            torch.set_num_threads(1)
            columns = [torch.tensor(X[:, i].copy()) for i in range(INPUTS)]
            for program in found:
                (out, grads), (theirs, their_grads) = (
                    fastgrad_program(_core, program, X),
                    torch_program(torch, program, columns),
                )
                _agree(out, theirs.numpy(), "PyTorch's values")
                _agree(
                    grads,
                    [0.0 if g is None else float(g) for g in their_grads],
                    "PyTorch's gradients",
                )  # None: the constant is not in the tree
            contenders[PYTORCH] = _cycling([partial(torch_program, torch, p, columns)
                                            for p in found])  # fmt: skip
        jax = jax_x64_one_thread()
        if jax is not None:
            Xj = jax.numpy.asarray(X)
            out, grads = fastgrad_program(_core, found[0], X)
            theirs, their_grads = jax_program(jax, found[0], Xj)
            _agree(out, theirs, "JAX's values")
            _agree(grads, [float(g) for g in their_grads], "JAX's gradients")
            contenders[JAX_TREE] = _cycling([partial(jax_program, jax, p, Xj) for p in found])
        library = compiled_library(BENCH_SOURCES / "b12_libm_floor.c")
        if library is not None:
            library.b12_calls.restype = ctypes.c_double
            contenders[FLOOR] = _cycling([_floor(library, p) for p in found])
        return contenders

    title = (f"{TREES} new random trees of {OPS} ops over {INPUTS} inputs and {CONSTANTS} "
             f"constants, {ROWS:,} rows each: value and gradient, all included")  # fmt: skip
    return Case(
        "B12",
        title,
        1,
        "tree",
        build,
        (FASTGRAD, PYTORCH, JAX_TREE, FLOOR),
        statistic="mean",
        rounds=TREES,
        rounds_of={JAX_TREE: 10},
    )


TREE_CASES: list[Case] = [_trees_case()]
