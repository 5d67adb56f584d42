"""Function transforms: derivatives of a function of numbers, as JAX and torch.func ask.

grad, value_and_grad and hessian (reverse mode), jvp (forward mode), vjp, jacobian (either
mode) and hvp (forward over reverse, no Hessian formed). Each takes a function written with
Values and the numbers to evaluate it at, and gives numbers back; called inside another
transform, or given Values, it gives Values instead, a graph the outer transform
differentiates: grad(grad(f)) is f'', and jvp of jvp gives a second derivative as a graph a
Tape records and replays.

Written once over either implementation: ``engine=`` picks one (the Values among the
arguments decide, else fastgrad's chosen implementation).
"""

from __future__ import annotations

import contextvars
import functools
import types
from collections.abc import Callable, Sequence
from typing import Any

from . import _forward
from ._common import as_float, engine_of
from .functional import _engine

__all__ = ["grad", "hessian", "hvp", "jacobian", "jvp", "value_and_grad", "vjp"]

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
    return (
        type(x).__module__ == "numpy" and isinstance(getattr(x, "ndim", None), int) and x.ndim > 0
    )


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
    """One call of f by a transform: the Values it differentiates by, f's output, and
    whether the derivatives must be Values (a graph) rather than floats. With `outputs`, f
    may return Values in lists and tuples (jvp, vjp, jacobian); else one Value."""

    def __init__(self, f: Callable[..., Any], argnums: int | Sequence[int],
                 engine: types.ModuleType | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any], outputs: bool = False) -> None:  # fmt: skip
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
        self.out = out
        self.outputs = _flat(out) if outputs else [out]
        for item in self.outputs:
            if not isinstance(item, self.engine.Value):
                shape = "a Value, or lists or tuples of them," if outputs else "a Value"
                raise TypeError(f"{name}() must return {shape} to be differentiated, not "
                                f"{type(item).__name__!r}")  # fmt: skip

    def flat_variables(self) -> list[Any]:
        return [v for group in self.variables for v in group]

    def value(self) -> Any:
        return self.out if self.nested else float(self.out.data)

    def per_argument(self, flat: list[Any]) -> tuple[Any, ...]:
        """Flat results, one per variable, in the shapes of the arguments at argnums."""
        items = iter(flat)
        return tuple(_shaped(items, self.args[p]) for p in self.positions)

    def per_output(self, flat: list[Any]) -> Any:
        """Flat results, one per output Value, in the shape f returned them."""
        return _shaped(iter(flat), self.out)

    def output_values(self) -> Any:
        return self.per_output(self.outputs if self.nested else
                               [float(v.data) for v in self.outputs])  # fmt: skip


def value_and_grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
                   engine: types.ModuleType | None = None) -> Callable[..., Any]:  # fmt: skip
    """A function that calls f with leaf Values in place of the numbers at argnums (other
    numbers reach f as constant Values) and returns (f's value, its gradient): a float and,
    per argument, a float or a list of floats in the argument's shape (a tuple of them when
    argnums is a tuple). Called inside another grad, or with Values, it returns Values
    instead, a graph the outer call differentiates: grad(grad(f)) is f''.

    Args:
        f: a function of numbers (and lists or arrays of them) returning one Value.
        argnums: which positional arguments to differentiate: an index, or a tuple of them.
        engine: the implementation to build with (fastgrad._core or fastgrad.reference);
            by default the one the arguments' Values belong to, else fastgrad's.

    Returns:
        A function with f's arguments returning (value, gradient).

    Raises:
        TypeError: f does not return a Value.
        Errors of backward(): where a local derivative fails, as eager code raises them.
    """

    @functools.wraps(f)
    def evaluate(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        call = _Call(f, argnums, engine, args, kwargs)
        flat = call.engine.gradients(call.out, call.flat_variables(), create_graph=call.nested)
        grads = call.per_argument(flat)
        return call.value(), grads[0] if isinstance(argnums, int) else grads

    return evaluate


def grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
         engine: types.ModuleType | None = None) -> Callable[..., Any]:  # fmt: skip
    """A function returning the gradient of f at the given numbers (see value_and_grad).

    Args:
        f: a function of numbers (and lists or arrays of them) returning one Value.
        argnums: which positional arguments to differentiate: an index, or a tuple of them.
        engine: the implementation to build with (fastgrad._core or fastgrad.reference);
            by default the one the arguments' Values belong to, else fastgrad's.

    Returns:
        A function with f's arguments returning the gradient, as value_and_grad's second
        item.
    """
    evaluate = value_and_grad(f, argnums, engine=engine)

    @functools.wraps(f)
    def gradient(*args: Any, **kwargs: Any) -> Any:
        return evaluate(*args, **kwargs)[1]

    return gradient


def hessian(f: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
            engine: types.ModuleType | None = None) -> Callable[..., Any]:  # fmt: skip
    """A function returning the matrix of f's second derivatives at the given numbers: for an
    argument that is a number, a float; for a list (or array) of n numbers, n lists of n
    floats (an n x n array); in general `H[i][j] = d2f / dx_i dx_j` with i and j each in the
    argument's shape (a tuple of blocks per pair of arguments when argnums is a tuple). The
    first derivatives are built as a graph, then each is differentiated again.

    Args:
        f: a function of numbers (and lists or arrays of them) returning one Value.
        argnums: which positional arguments to differentiate: an index, or a tuple of them.
        engine: the implementation to build with (fastgrad._core or fastgrad.reference);
            by default the one the arguments' Values belong to, else fastgrad's.

    Returns:
        A function with f's arguments returning the second derivatives.
    """

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
            mine, start = rows[start : start + len(group)], start + len(group)
            blocks.append(tuple(_shaped(iter([row[q] for row in mine]), call.args[p])
                                for q in range(len(call.positions))))  # fmt: skip
        return blocks[0][0] if isinstance(argnums, int) else tuple(blocks)

    return evaluate


# ---- forward mode, and the transforms built from both modes ----


def _tangents(call: _Call, tangents: Sequence[Any], name: str) -> list[Any]:
    """The tangents, flat, one per variable: each shaped as its primal, numbers or Values."""
    if len(tangents) != len(call.positions):
        raise ValueError(f"{name}() got {len(call.positions)} primals and {len(tangents)} "
                         "tangents")  # fmt: skip
    flat = []
    for p, tangent, variables in zip(call.positions, tangents, call.variables):
        items = _flat(tangent.tolist() if _is_array(tangent) else tangent)
        if len(items) != len(variables):
            raise ValueError(f"{name}(): tangent {p} has {len(items)} numbers where its primal "
                             f"has {len(variables)}")  # fmt: skip
        for item in items:
            if not isinstance(item, call.engine.Value):
                as_float(item, f"{name}() tangent {p}")
        flat += [item if isinstance(item, call.engine.Value) else float(item) for item in items]
    return flat


def _primals(primals: Any, name: str) -> tuple[Any, ...]:
    if not isinstance(primals, (tuple, list)) or not primals:
        raise TypeError(f"{name}() takes its primals as a non-empty tuple of arguments, not "
                        f"{type(primals).__name__!r}")  # fmt: skip
    return tuple(primals)


def jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any], *,
        create_graph: bool = False, engine: types.ModuleType | None = None,
        ) -> tuple[Any, Any]:  # fmt: skip
    """Forward mode, as torch.func.jvp and jax.jvp: f at the primals (a tuple of its
    arguments: numbers, or lists, tuples or arrays of them) and its derivative along the
    tangents (one per primal, of the same shape), J t, without forming J. Returns (outputs,
    tangent outputs), each shaped as what f returns (a Value, or lists and tuples of Values).

    Each op's tangent comes from the same local derivative backward uses. The results are
    floats; with create_graph=True, inside another transform, or given Values, they are
    Values, a graph: jvp of jvp gives a second derivative that a Tape records and replays.
    Raises what backward() raises where a derivative fails, ValueError where a tangent's
    shape is not its primal's.

    Args:
        f: the function, of the primals' number of arguments.
        primals: f's arguments, a tuple.
        tangents: one per primal, in its shape.
        create_graph: return Values (a graph) rather than floats.
        engine: the implementation to build with (fastgrad._core or fastgrad.reference);
            by default the one the arguments' Values belong to, else fastgrad's.

    Returns:
        (f's outputs, their tangents).

    Raises:
        ValueError: a tangent's shape is not its primal's.
    """
    args = _primals(primals, "jvp")
    call = _Call(f, tuple(range(len(args))), engine, args, {}, outputs=True)
    seeds = _tangents(call, tuple(tangents), "jvp")
    graph = create_graph or call.nested
    flat = _forward.tangents(call.engine, call.outputs, call.flat_variables(), seeds, graph)
    outputs = call.per_output(call.outputs) if graph else call.output_values()
    return outputs, call.per_output(flat)


def vjp(f: Callable[..., Any], *primals: Any, engine: types.ModuleType | None = None,
        ) -> tuple[Any, Callable[[Any], tuple[Any, ...]]]:  # fmt: skip
    """Reverse mode, as torch.func.vjp and jax.vjp: f at the primals (its arguments) and a
    function of cotangents (shaped as f's outputs) that returns their vector-Jacobian
    product, one result per primal in its shape: sum over outputs of cotangent * d output /
    d primal. A cotangent of 1.0 for one output gives grad's bits.

    Args:
        f: the function.
        *primals: f's arguments.
        engine: the implementation to build with (fastgrad._core or fastgrad.reference);
            by default the one the arguments' Values belong to, else fastgrad's.

    Returns:
        (f's outputs, a function of cotangents returning one vector-Jacobian product per
        primal).
    """
    args = _primals(primals, "vjp")
    call = _Call(f, tuple(range(len(args))), engine, args, {}, outputs=True)

    def products(cotangents: Any) -> tuple[Any, ...]:
        flat = _flat(cotangents.tolist() if _is_array(cotangents) else cotangents)
        if len(flat) != len(call.outputs):
            raise ValueError(f"vjp: {len(flat)} cotangents for {len(call.outputs)} outputs")
        if (
            len(flat) == 1
            and not isinstance(flat[0], call.engine.Value)
            and as_float(flat[0], "cotangent") == 1.0
        ):
            root = call.outputs[0]
        else:
            root = call.engine.dot(call.outputs, flat, start=-0.0)
        grads = call.engine.gradients(root, call.flat_variables(), create_graph=call.nested)
        return call.per_argument(grads)

    return call.output_values(), products


def jacobian(f: Callable[..., Any], argnums: int | Sequence[int] = 0, *, mode: str = "rev",
             engine: types.ModuleType | None = None) -> Callable[..., Any]:  # fmt: skip
    """A function returning f's Jacobian at the given numbers, as torch.func.jacrev
    (mode="rev": a reverse pass per output, grad's bits) and jacfwd (mode="fwd": a forward
    pass per input number, jvp's bits): shaped as f's output, each entry shaped as the
    argument (a tuple per argument when argnums is a tuple). For f of one number returning
    one Value, a float.

    Args:
        f: a function of numbers (and lists or arrays of them) returning Values.
        argnums: which positional arguments to differentiate: an index, or a tuple of them.
        mode: "rev" (reverse passes, one per output) or "fwd" (forward passes, one per input
            number).
        engine: the implementation to build with (fastgrad._core or fastgrad.reference);
            by default the one the arguments' Values belong to, else fastgrad's.

    Returns:
        A function with f's arguments returning the Jacobian.

    Raises:
        ValueError: mode is neither "rev" nor "fwd".
    """
    if mode not in ("rev", "fwd"):
        raise ValueError(f"jacobian mode must be 'rev' or 'fwd', not {mode!r}")

    @functools.wraps(f)
    def evaluate(*args: Any, **kwargs: Any) -> Any:
        call = _Call(f, argnums, engine, args, kwargs, outputs=True)
        variables = call.flat_variables()
        if mode == "rev":
            rows = [call.engine.gradients(out, variables, create_graph=call.nested)
                    for out in call.outputs]  # fmt: skip
        else:
            columns = [_forward.tangents(call.engine, call.outputs, variables,
                                         [1.0 if i == j else 0.0 for i in range(len(variables))],
                                         call.nested)
                       for j in range(len(variables))]  # fmt: skip
            rows = [[column[i] for column in columns] for i in range(len(call.outputs))]
        per_row = [call.per_argument(row) for row in rows]
        blocks = tuple(call.per_output([row[q] for row in per_row])
                       for q in range(len(call.positions)))  # fmt: skip
        return blocks[0] if isinstance(argnums, int) else blocks

    return evaluate


def hvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any], *,
        engine: types.ModuleType | None = None) -> tuple[Any, tuple[Any, ...]]:  # fmt: skip
    """The Hessian of f (returning one Value) times the tangents, as
    torch.autograd.functional.hvp: forward mode over f's gradient graph, no Hessian formed.
    primals is a tuple of f's arguments, tangents one per primal in its shape; returns (f's
    value, the product: a tuple, one per primal, in its shape).

    Args:
        f: a function returning one Value.
        primals: f's arguments, a tuple.
        tangents: one per primal, in its shape.
        engine: the implementation to build with (fastgrad._core or fastgrad.reference);
            by default the one the arguments' Values belong to, else fastgrad's.

    Returns:
        (f's value, the Hessian-vector product: a tuple, one per primal, in its shape).
    """
    args = _primals(primals, "hvp")
    positions = tuple(range(len(args)))
    value_and_gradient = value_and_grad(f, positions, engine=engine)
    (value, _), (_, product) = jvp(value_and_gradient, args, tangents, engine=engine)
    return value, product
