"""What a PyTorch user reaches for beyond micrograd: softmax, logsumexp, cross_entropy, built
from Value's ops, and grad / value_and_grad, HIPS autograd's and JAX's way of asking for
derivatives of a function of numbers.

Written once over either implementation: the helpers take the engine of the Values they are
given (fastgrad's chosen one for plain numbers); grad and value_and_grad take ``engine=``, as
nn's modules do, defaulting to fastgrad's chosen implementation.

The choices these functions make from the data (softmax's and logsumexp's shift by the
largest value) are nodes of the graph (``maximum``), so a Tape's replay makes them again for
each row. A choice made in your own code from ``.data`` while a graph is built is a number in
that graph: a Tape replays it as recorded, as ``torch.jit.trace`` and ``jax.jit`` keep a
traced branch.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import operator
import types
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, SupportsFloat

from ._common import as_float, engine_of
from ._losses import binary_cross_entropy_with_logits, l1_loss, mse_loss

if TYPE_CHECKING:  # both implementations' Values; the C extension's stub describes them
    from ._core import Value

__all__ = [
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "grad",
    "hessian",
    "l1_loss",
    "logsumexp",
    "mse_loss",
    "softmax",
    "value_and_grad",
]


def _engine(values: Sequence[Any], engine: types.ModuleType | None = None) -> types.ModuleType:
    """The implementation the values belong to (the first Value decides), else fastgrad's."""
    if engine is not None:
        return engine
    for v in values:
        module = engine_of(v)
        if module is not None:
            return importlib.import_module(module)
    from . import _implementation

    return _implementation


def _values(values: Iterable[Any], what: str) -> tuple[list[Any], types.ModuleType]:
    """The items as Values of one engine (numbers become leaves), and that engine."""
    items = list(values)
    if not items:
        raise ValueError(f"{what}() of an empty list")
    engine = _engine(items)
    return [v if isinstance(v, engine.Value) else engine.Value(as_float(v, f"{what}() item"))
            for v in items], engine  # fmt: skip


def _shift(values: list[Any], engine: types.ModuleType) -> Any:
    """The largest value, subtracted before exp so that large inputs do not overflow; an
    infinite one shifts by 0 (PyTorch's logsumexp), so that inf - inf makes no nan. Nodes
    (maximum, then finite), so that a Tape's replay picks the largest of its own row."""
    m = values[0]
    for v in values[1:]:
        m = engine.maximum(m, v)
    return engine._finite(m)


def softmax(values: Iterable[Value | SupportsFloat]) -> list[Value]:
    """exp(v - m) / sum of them, m the largest value (0 if it is infinite), a node of the
    graph, so that every replay shifts by its own row's: one Value per input, summing to 1."""
    vs, engine = _values(values, "softmax")
    m = _shift(vs, engine)
    exps = [(v - m).exp() for v in vs]
    total = engine.sum(exps)
    return [e / total for e in exps]


def logsumexp(values: Iterable[Value | SupportsFloat]) -> Value:
    """log(sum(exp(v))) as m + log(sum(exp(v - m))), m the largest value (0 if it is
    infinite), a node of the graph, so that every replay shifts by its own row's."""
    vs, engine = _values(values, "logsumexp")
    m = _shift(vs, engine)
    total: Value = engine.sum([(v - m).exp() for v in vs])
    result: Value = total.log() + m
    return result


def cross_entropy(logits: Iterable[Value | SupportsFloat], target_index: int | Value) -> Value:
    """-log(softmax(logits)[target_index]) = logsumexp(logits) - logits[target_index]:
    PyTorch's cross_entropy of one sample of unnormalised scores and a class index.

    The index is an int, or a Value holding the index (such as a leaf that ``Tape.run``
    feeds from a vector of labels, ``targets=[t], y=labels``): then the score is picked by
    nodes that every replay evaluates at its own row, with the bits the int gives, and a
    row whose label is not a class raises IndexError. An index has no gradient: a target
    Value that requires grad gets 0.0 added."""
    vs, engine = _values(logits, "cross_entropy")
    if engine_of(target_index) is not None:
        picked = _picked(vs, target_index, engine)
    else:
        index = operator.index(target_index)  # type: ignore[arg-type]
        if not 0 <= index < len(vs):
            raise IndexError(f"target_index {index} is not a class of these {len(vs)} logits")
        picked = vs[index]
    loss: Value = logsumexp(vs) - picked
    return loss


def _picked(vs: list[Any], target: Any, engine: types.ModuleType) -> Any:
    """vs[k] for the class index k that target holds, as nodes: k checked as an index, then
    -0.0 + pick(vs[0], k) + pick(vs[1], k - 1) + ..., each pick vs[j] where k - j is 0 and
    else -0.0, which adds as nothing; so the sum has vs[k]'s bits, and its grad reaches
    vs[k] alone (the others get 0.0 added)."""
    k = engine._class_index(target, float(len(vs)))
    picks = [engine._pick(v, k - j if j else k) for j, v in enumerate(vs)]
    return engine.sum(picks, start=-0.0)


# ---- grad, value_and_grad and hessian ----

# How many grad()-family calls are running f now, in this thread or task: inside one, a call
# builds its derivative as a graph (create_graph) and returns Values, so that the outer call
# can differentiate it.
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("fastgrad_grad_depth", default=0)


def _is_number(x: object) -> bool:
    """A real number that f may receive as a constant Value (bools and strings stay)."""
    if isinstance(x, bool) or engine_of(x) is not None:
        return False
    if isinstance(x, (int, float)):
        return True
    return type(x).__module__ == "numpy" and getattr(x, "ndim", None) == 0


def _variables(arg: Any, engine: types.ModuleType, where: str) -> Any:
    """The Values f differentiates by, in the argument's shape: a leaf for a number, and for a
    Value (an outer grad's) a fresh node v * 1.0 with v's bits, so that this derivative follows
    only the paths through the argument, not those through v elsewhere in f (no perturbation
    confusion); lists, tuples and numpy arrays as the same shape of them."""
    if isinstance(arg, (list, tuple)):
        return type(arg)(_variables(item, engine, where) for item in arg)
    if _is_array(arg):
        return _variables(arg.tolist(), engine, where)
    if isinstance(arg, engine.Value):
        return arg * 1.0
    if engine_of(arg) is not None:
        raise TypeError(f"{where} is a Value of another implementation than {engine.__name__}")
    return engine.Value(as_float(arg, where))


def _flat(shaped: Any) -> list[Any]:
    if isinstance(shaped, (list, tuple)):
        return [leaf for item in shaped for leaf in _flat(item)]
    return [shaped]


def _shaped(items: Any, like: Any) -> Any:
    """The next items of an iterator, in the shape `like` has (a numpy array of floats for an
    array of numbers)."""
    if isinstance(like, (list, tuple)) or _is_array(like):
        shaped = [_shaped(items, item) for item in (like.tolist() if _is_array(like) else like)]
        if _is_array(like) and all(not _holds_values(x) for x in shaped):
            import numpy as np

            return np.array(shaped, dtype=np.float64)
        return shaped if _is_array(like) else type(like)(shaped)
    return next(items)


def _is_array(x: Any) -> bool:
    return type(x).__module__ == "numpy" and isinstance(getattr(x, "ndim", None), int) \
        and x.ndim > 0


def _holds_values(x: Any) -> bool:
    if isinstance(x, (list, tuple)):
        return any(_holds_values(item) for item in x)
    return engine_of(x) is not None


def _positions(argnums: int | Sequence[int], count: int, name: str) -> tuple[int, ...]:
    positions = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not positions or not all(isinstance(p, int) for p in positions):
        raise TypeError(f"argnums must be an int or a tuple of ints, not {argnums!r}")
    if len(set(positions)) != len(positions):
        raise ValueError(f"argnums {argnums!r} names an argument twice")
    for p in positions:
        if not -count <= p < count:
            raise ValueError(f"argnums {p} is out of range for {name}() called with {count} "
                             "positional arguments")  # fmt: skip
    return tuple(p % count for p in positions)


class _Call:
    """One call of f by grad, value_and_grad or hessian: the Values it differentiates by, f's
    output, and whether the derivatives must be Values (a graph) rather than floats."""

    def __init__(self, f: Callable[..., Any], argnums: int | Sequence[int],
                 engine: types.ModuleType | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:  # fmt: skip
        name = getattr(f, "__name__", "f")
        self.engine = _engine([x for x in _flat(list(args)) if engine_of(x) is not None],
                              engine)  # fmt: skip
        self.positions = _positions(argnums, len(args), name)
        self.args = args
        # inside another grad, or given an outer grad's Values: its derivatives are a graph
        self.nested = _depth.get() > 0 or _holds_values(list(args))
        call = [self.engine._constant_leaf(x) if _is_number(x) else x
                for x in args]  # fmt: skip
        for p in self.positions:
            call[p] = _variables(args[p], self.engine, f"argument {p} of {name}()")
        self.variables = [_flat(call[p]) for p in self.positions]
        token = _depth.set(_depth.get() + 1)
        try:
            out = f(*call, **kwargs)
        finally:
            _depth.reset(token)
        if not isinstance(out, self.engine.Value):
            raise TypeError(f"{name}() must return a Value to be differentiated, not "
                            f"{type(out).__name__!r}")  # fmt: skip
        self.out = out

    def flat_variables(self) -> list[Any]:
        return [v for group in self.variables for v in group]

    def value(self) -> Any:
        return self.out if self.nested else float(self.out.data)

    def per_argument(self, flat: list[Any]) -> tuple[Any, ...]:
        """Flat results, one per variable, in the shapes of the arguments at argnums."""
        items = iter(flat)
        return tuple(_shaped(items, self.args[p]) for p in self.positions)


def value_and_grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
                   engine: types.ModuleType | None = None) -> Callable[..., Any]:  # fmt: skip
    """A function that calls f with leaf Values in place of the numbers at argnums (other
    numbers reach f as constant Values) and returns (f's value, its gradient): a float and,
    per argument, a float or a list of floats in the argument's shape (a tuple of them when
    argnums is a tuple). Called inside another grad, or with Values, it returns Values
    instead, a graph the outer call differentiates: grad(grad(f)) is f''."""

    @functools.wraps(f)
    def evaluate(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        call = _Call(f, argnums, engine, args, kwargs)
        flat = call.engine.gradients(call.out, call.flat_variables(), create_graph=call.nested)
        grads = call.per_argument(flat)
        return call.value(), grads[0] if isinstance(argnums, int) else grads

    return evaluate


def grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
         engine: types.ModuleType | None = None) -> Callable[..., Any]:  # fmt: skip
    """A function returning the gradient of f at the given numbers (see value_and_grad)."""
    evaluate = value_and_grad(f, argnums, engine=engine)

    @functools.wraps(f)
    def gradient(*args: Any, **kwargs: Any) -> Any:
        return evaluate(*args, **kwargs)[1]

    return gradient


def hessian(f: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
            engine: types.ModuleType | None = None) -> Callable[..., Any]:  # fmt: skip
    """A function returning the matrix of f's second derivatives at the given numbers: for an
    argument that is a number, a float; for a list (or array) of n numbers, n lists of n
    floats (an n x n array); in general H[i][j] = d2f / dx_i dx_j with i and j each in the
    argument's shape (a tuple of blocks per pair of arguments when argnums is a tuple). The
    first derivatives are built as a graph, then each is differentiated again."""

    @functools.wraps(f)
    def evaluate(*args: Any, **kwargs: Any) -> Any:
        call = _Call(f, argnums, engine, args, kwargs)
        variables = call.flat_variables()
        first = call.engine.gradients(call.out, variables, create_graph=True)
        # rows[i][q]: d(df / d variable i) / d (argument q), in argument q's shape
        rows = [call.per_argument(call.engine.gradients(g, variables, create_graph=call.nested))
                for g in first]  # fmt: skip
        blocks, start = [], 0
        for p, group in zip(call.positions, call.variables):
            mine, start = rows[start:start + len(group)], start + len(group)
            blocks.append(tuple(_shaped(iter([row[q] for row in mine]), call.args[p])
                                for q in range(len(call.positions))))  # fmt: skip
        return blocks[0][0] if isinstance(argnums, int) else tuple(blocks)

    return evaluate
