"""Forward mode: the tangents of a graph's nodes, from the op tables' derivatives.

Each node's tangent is the sum of its local derivatives times its operands' tangents,
t(out) = d out/d a * t(a) + d out/d b * t(b) (an n-ary node: its start's tangent, then each
term's), taken from the same derivative formulas backward uses (reference/ops.py, the twin of
csrc/ops.def): no op has forward-mode code of its own. Written once over either engine's
Values: as floats, or, with `graph`, as Values built by the engine's own ops, so that a
tangent can be differentiated again (jvp of jvp), recorded in a Tape and replayed.

The bits: a node's tangent is c1 alone, or ((c1 + c2) + c3) + ... over its contributions
c = d * t in operand order (an n-ary node's as one dot node from -0.0, which adds as nothing:
the same roundings), only operands on a path from an input contributing. 1.0 * x is x.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

from ._common import engine_of, op_error
from .reference.ops import _FAILURES, BINARY, CHOICES, NARY, UNARY


class _Node:
    """A Value inside a derivative formula: its arithmetic builds Values with the engine's
    ops, and its comparisons compare data (ops.def's DATA), as derive.py's Derived does."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    @property
    def data(self) -> float:
        return float(self.value.data)

    def __add__(self, other: Any) -> Any:
        return _Node(self.value + _unwrap(other))

    def __radd__(self, other: Any) -> Any:
        return _Node(_unwrap(other) + self.value)

    def __sub__(self, other: Any) -> Any:
        return _Node(self.value - _unwrap(other))

    def __rsub__(self, other: Any) -> Any:
        return _Node(_unwrap(other) - self.value)

    def __mul__(self, other: Any) -> Any:
        return _times(self, other)

    def __rmul__(self, other: Any) -> Any:
        return _times(other, self)

    def __truediv__(self, other: Any) -> Any:
        return _Node(self.value / _unwrap(other))

    def __rtruediv__(self, other: Any) -> Any:
        return _Node(_unwrap(other) / self.value)

    def __pow__(self, other: Any) -> Any:
        return _Node(self.value ** _unwrap(other))

    def __neg__(self) -> Any:
        return _Node(-self.value)

    def sigmoid(self) -> Any:
        return _Node(self.value.sigmoid())

    def sin(self) -> Any:
        return _Node(self.value.sin())

    def cos(self) -> Any:
        return _Node(self.value.cos())

    def log(self) -> Any:
        return _Node(self.value.log())

    def _choose(self, rule: str, *operands: Any) -> Any:
        """A choice op's node over the operands (reference/ops.py's _chosen)."""
        engine = importlib.import_module(str(engine_of(self.value)))
        return _Node(engine._choice(rule, *(_unwrap(x) for x in operands)))

    def __lt__(self, other: float) -> bool:
        return self.data < other

    def __le__(self, other: float) -> bool:
        return self.data <= other

    def __gt__(self, other: float) -> bool:
        return self.data > other

    def __ge__(self, other: float) -> bool:
        return self.data >= other

    def __eq__(self, other: object) -> bool:
        return self.data == other

    __hash__ = None  # type: ignore[assignment]


def _unwrap(x: Any) -> Any:
    return x.value if isinstance(x, _Node) else x


def _is_one(x: Any) -> bool:
    return isinstance(x, float) and x == 1.0


def _times(d: Any, t: Any) -> Any:
    """d * t, where 1.0 * x is x (exactly, for every float x)."""
    if _is_one(d):
        return t
    if _is_one(t):
        return d
    if isinstance(d, float) and isinstance(t, float):
        return d * t
    return _Node(_unwrap(d) * _unwrap(t))


def _total(engine: types.ModuleType, contributions: list[tuple[Any, Any]]) -> Any:
    """c1, or ((c1 + c2) + ...) over c = d * t: floats added in order, or one dot node of the
    pairs from -0.0 (x + -0.0 is x: the same roundings as the floats')."""
    if len(contributions) == 1:
        return _times(*contributions[0])
    if all(isinstance(d, float) and isinstance(t, float) for d, t in contributions):
        acc = contributions[0][0] * contributions[0][1]
        for d, t in contributions[1:]:
            acc = acc + d * t
        return acc
    return _Node(engine.dot([_unwrap(d) for d, _ in contributions],
                            [_unwrap(t) for _, t in contributions], start=-0.0))  # fmt: skip


def tangents(engine: types.ModuleType, outputs: list[Any], inputs: list[Any],
             seeds: list[Any], graph: bool) -> list[Any]:  # fmt: skip
    """d output / d inputs along seeds (the inputs' tangents), for each output: floats, or
    with `graph` Values (numbers among the seeds are constants of that graph). An output no
    input reaches has tangent 0.0. A derivative that fails raises what backward() raises."""
    tangent: dict[Any, Any] = {}
    for v, seed in zip(inputs, seeds):
        tangent[v] = _Node(seed) if isinstance(seed, engine.Value) else float(seed)

    def operand(v: Any, constant: bool) -> Any:
        return _Node(v) if graph and not constant else float(v.data)

    constant_of: dict[Any, bool] = {}
    for v, rule, args, exponent, constant in engine._graph(outputs):
        constant_of[v] = constant
        if v in tangent or rule in CHOICES or not any(a in tangent for a in args):
            continue  # a choice made from data carries no derivative, as in backward
        out = operand(v, constant)
        try:
            if rule in UNARY:
                a = operand(args[0], constant_of[args[0]])
                pairs = [(UNARY[rule][1](a, exponent, out), tangent[args[0]])]
            elif rule in BINARY:
                a, b = (operand(x, constant_of[x]) for x in args)
                pairs = [
                    (derivative(a, b, out), tangent[x])
                    for x, derivative in zip(args, BINARY[rule][1:])
                    if x in tangent
                ]
            elif rule in NARY:
                pairs = _nary_pairs(rule, args, tangent, lambda x: operand(x, constant_of[x]))
            else:  # an opaque node (micrograd's Value(data, children)): no derivative
                continue
        except _FAILURES as e:
            operands = tuple(float(x.data) for x in args)
            raise op_error(type(e), rule, operands, exponent, in_backward=True) from None
        tangent[v] = _total(engine, pairs)
    results = [tangent.get(v, 0.0) for v in outputs]
    if graph:
        return [_unwrap(r) if isinstance(r, _Node) else engine._constant_leaf(r)
                for r in results]  # fmt: skip
    return [float(r) for r in results]


def _nary_pairs(rule: str, args: tuple[Any, ...], tangent: dict[Any, Any],
                operand: Any) -> list[tuple[Any, Any]]:  # fmt: skip
    """An n-ary node's (derivative, tangent) pairs: its start's (d = 1), then each term's
    operands' in order, from the table's term derivatives."""
    stride, _, term_derivatives = NARY[rule]
    pairs = [(1.0, tangent[args[0]])] if args[0] in tangent else []
    for first in range(1, len(args), stride):
        v0, v1 = args[first], args[first + stride - 1]
        if v0 not in tangent and v1 not in tangent:
            continue
        d_dv0, d_dv1 = term_derivatives(operand(v0), operand(v1))
        if v0 in tangent:
            pairs.append((d_dv0, tangent[v0]))
        if stride > 1 and v1 in tangent:
            pairs.append((d_dv1, tangent[v1]))
    return pairs
