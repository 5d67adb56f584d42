"""What a PyTorch user reaches for beyond micrograd: softmax, logsumexp, cross_entropy, built
from Value's ops, and grad / value_and_grad, HIPS autograd's and JAX's way of asking for
derivatives of a function of numbers.

Written once over either implementation: the helpers take the engine of the Values they are
given (fastgrad's chosen one for plain numbers); grad and value_and_grad take ``engine=``, as
nn's modules do, defaulting to fastgrad's chosen implementation.

A choice made from ``.data`` while a graph is built (softmax's shift by the largest value) is
part of that graph: a Tape replays it as recorded, as ``jax.jit`` keeps a traced branch.
"""

from __future__ import annotations

import functools
import importlib
import math
import operator
import types
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, SupportsFloat

from ._common import as_float, engine_of

if TYPE_CHECKING:  # both implementations' Values; the C extension's stub describes them
    from ._core import Value

__all__ = ["cross_entropy", "grad", "logsumexp", "softmax", "value_and_grad"]


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


def _shift(values: list[Any]) -> float:
    """The largest data, subtracted before exp so that large inputs do not overflow; an
    infinite one shifts by 0 (PyTorch's logsumexp), so that inf - inf makes no nan."""
    m = max(v.data for v in values)
    return m if math.isfinite(m) else 0.0


def softmax(values: Iterable[Value | SupportsFloat]) -> list[Value]:
    """exp(v - m) / sum of them, m the largest .data (a number, fixed when the graph is
    built): one Value per input, summing to 1."""
    vs, engine = _values(values, "softmax")
    m = max(v.data for v in vs)
    exps = [(v - m).exp() for v in vs]
    total = engine.sum(exps)
    return [e / total for e in exps]


def logsumexp(values: Iterable[Value | SupportsFloat]) -> Value:
    """log(sum(exp(v))) as m + log(sum(exp(v - m))), m the largest finite .data."""
    vs, engine = _values(values, "logsumexp")
    m = _shift(vs)
    total: Value = engine.sum([(v - m).exp() for v in vs])
    return total.log() + m


def cross_entropy(logits: Iterable[Value | SupportsFloat], target_index: int) -> Value:
    """-log(softmax(logits)[target_index]) = logsumexp(logits) - logits[target_index]:
    PyTorch's cross_entropy of one sample of unnormalised scores and a class index."""
    vs, _ = _values(logits, "cross_entropy")
    target = operator.index(target_index)
    if not 0 <= target < len(vs):
        raise IndexError(f"target_index {target} is not a class of these {len(vs)} logits")
    loss: Value = logsumexp(vs) - vs[target]
    return loss


# ---- grad and value_and_grad ----


def _leaves(arg: Any, engine: types.ModuleType, where: str) -> Any:
    """A number as a leaf Value; a list, tuple or numpy array of numbers as the same shape of
    leaves (nested lists as nested lists)."""
    if isinstance(arg, (list, tuple)):
        return type(arg)(_leaves(item, engine, where) for item in arg)
    ndim = getattr(arg, "ndim", None)
    if type(arg).__module__ == "numpy" and isinstance(ndim, int) and ndim > 0:  # an array
        return _leaves(arg.tolist(), engine, where)
    if engine_of(arg) is not None:
        raise TypeError(f"{where} must be a number or a list of numbers, not a Value: "
                        "grad() makes the leaf Values itself")  # fmt: skip
    return engine.Value(as_float(arg, where))


def _grads(leaves: Any, like: Any) -> Any:
    """The leaves' grads as floats, in the shape the argument had."""
    if isinstance(leaves, (list, tuple)):
        shaped = [_grads(leaf, item) for leaf, item in zip(leaves, like)]
        if type(like).__module__ == "numpy":
            import numpy as np

            return np.array(shaped, dtype=np.float64)
        return type(leaves)(shaped)
    return float(leaves.grad)


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


def value_and_grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
                   engine: types.ModuleType | None = None) -> Callable[..., Any]:  # fmt: skip
    """A function that calls f with leaf Values in place of the numbers at argnums and
    returns (f's value, its gradient): a float and, per argument, a float or a list of
    floats in the argument's shape (a tuple of them when argnums is a tuple)."""
    name = getattr(f, "__name__", "f")

    @functools.wraps(f)
    def evaluate(*args: Any, **kwargs: Any) -> tuple[float, Any]:
        implementation = _engine((), engine)
        positions = _positions(argnums, len(args), name)
        call = list(args)
        for p in positions:
            call[p] = _leaves(args[p], implementation, f"argument {p} of {name}()")
        out = f(*call, **kwargs)
        if not isinstance(out, implementation.Value):
            raise TypeError(f"{name}() must return a Value to be differentiated, not "
                            f"{type(out).__name__!r}")  # fmt: skip
        out.backward()
        grads = tuple(_grads(call[p], args[p]) for p in positions)
        return float(out.data), grads[0] if isinstance(argnums, int) else grads

    return evaluate


def grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
         engine: types.ModuleType | None = None) -> Callable[..., Any]:  # fmt: skip
    """A function returning the gradient of f at the given numbers (see value_and_grad)."""
    evaluate = value_and_grad(f, argnums, engine=engine)

    @functools.wraps(f)
    def gradient(*args: Any, **kwargs: Any) -> Any:
        return evaluate(*args, **kwargs)[1]

    return gradient
