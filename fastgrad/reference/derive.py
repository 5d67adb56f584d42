"""gradients(): derivatives that touch no .grad, as floats or as new nodes (create_graph).

The twin of csrc/derive.c. micrograd's backward runs again over the order backward uses, with
the same formulas (ops.py), but each node's grad is a value of this pass's own: a float, or a
Derived node of the derivative graph, whose arithmetic builds Values, so that a derivative can
be differentiated again. The bits are backward's: a node's grad is ((0.0 + c1) + c2) + ...
over its contributions c = d * g in backward's order, one n-ary node (0.0 + c1 for one); the
folds keep the bits: 1.0 * x is x, and 0.0 + x is x for a node that is never -0.0. Where some
contributions are products made by the node's chain rule for them alone, the sum is one dot
over the products' factors (the others times 1.0): the same roundings in the same order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

from .._common import no_grad_input
from .ops import BINARY, NARY, UNARY, _term_contributions
from .value import Value, _choice, dot, sum

__all__ = ["gradients"]


def _is(x: Any, number: float) -> bool:
    return isinstance(x, float) and x == number and math.copysign(1.0, x) == math.copysign(
        1.0, number
    )


def _positive_constant(v: Value) -> bool:
    return v._constant and not _is(v._data, -0.0)


def _never_negative_zero(x: Any) -> bool:
    """x + y is -0.0 only where both are, so an add with a constant that is not -0.0, or a
    sum or dot starting from one, never is."""
    if not isinstance(x, Derived):
        return False
    v = x.value
    if v._rule == "+":
        return any(_positive_constant(child) for child in v._children)
    if v._rule in ("sum", "dot"):
        return _positive_constant(v._children[0])
    return False


def _unwrap(x: Any) -> Any:
    """x's Value (now an operand of another node: no longer a product alone), or number."""
    if isinstance(x, Derived):
        x.product = False
        return x.value
    return x


def _binary(rule: str, x: Any, y: Any) -> Any:
    """x rule y over floats and derivative nodes, folded as derive.c folds."""
    if rule == "*" and _is(x, 1.0):
        return y
    if rule == "*" and _is(y, 1.0):
        return x
    if rule == "+" and _is(x, 0.0) and _never_negative_zero(y):
        return y
    if rule == "+" and _is(y, 0.0) and _never_negative_zero(x):
        return x
    if isinstance(x, float) and isinstance(y, float):
        return BINARY[rule][0](x, y)
    node = Value._binary(rule, _unwrap(x), _unwrap(y))
    assert node is not None  # both are Values or numbers here
    return Derived(node, product=rule == "*")


_serials = itertools.count()


class Derived:
    """A node of the derivative graph inside a derivative formula: its arithmetic with numbers
    and other nodes builds Values, and its comparisons compare data (ops.def's DATA)."""

    __slots__ = ("product", "serial", "value")

    def __init__(self, value: Value, product: bool = False) -> None:
        self.value = value
        self.product = product  # a * node made here that nothing else holds yet
        self.serial = next(_serials)  # when it was made

    def __add__(self, other: Any) -> Any:
        return _binary("+", self, other)

    def __radd__(self, other: Any) -> Any:
        return _binary("+", other, self)

    def __sub__(self, other: Any) -> Any:
        return _binary("-", self, other)

    def __rsub__(self, other: Any) -> Any:
        return _binary("-", other, self)

    def __mul__(self, other: Any) -> Any:
        return _binary("*", self, other)

    def __rmul__(self, other: Any) -> Any:
        return _binary("*", other, self)

    def __truediv__(self, other: Any) -> Any:
        return _binary("/", self, other)

    def __rtruediv__(self, other: Any) -> Any:
        return _binary("/", other, self)

    def __pow__(self, other: Any) -> Any:  # a number exponent makes a **c node, as Value's
        if isinstance(other, float):
            return Derived(_unwrap(self)._unary("**c", other))
        return _binary("**", self, other)

    def __rpow__(self, other: Any) -> Any:
        return _binary("**", other, self)

    def __neg__(self) -> Derived:
        return Derived(_unwrap(self)._unary("neg"))

    def sigmoid(self) -> Derived:
        return Derived(_unwrap(self)._unary("sigmoid"))

    def sin(self) -> Derived:
        return Derived(_unwrap(self)._unary("sin"))

    def cos(self) -> Derived:
        return Derived(_unwrap(self)._unary("cos"))

    def log(self) -> Derived:
        return Derived(_unwrap(self)._unary("log"))

    def _choose(self, rule: str, *operands: Any) -> Derived:
        """A choice op's node over the operands (ops.py's _chosen)."""
        return Derived(_choice(rule, *(_unwrap(x) for x in operands)))

    @property
    def data(self) -> float:
        """The number it holds: ops.def's DATA(x), for a condition ops.py tests directly."""
        return self.value._data

    def __lt__(self, other: float) -> bool:
        return self.value._data < other

    def __le__(self, other: float) -> bool:
        return self.value._data <= other

    def __gt__(self, other: float) -> bool:
        return self.value._data > other

    def __ge__(self, other: float) -> bool:
        return self.value._data >= other

    def __eq__(self, other: object) -> bool:
        return self.value._data == other

    __hash__ = None  # type: ignore[assignment]


def _sum_of(contributed: list[tuple[Any, bool]]) -> Any:
    """((0.0 + c1) + c2) + ...: a float if they all are, 0.0 + c1 for one, else one n-ary node
    from 0.0 (numbers among them become constant leaves, as sum() makes them): a dot where
    some are fresh products (made by the chain rule that contributed them, for them alone),
    else a sum."""
    contributions = [c for c, _ in contributed]
    if all(isinstance(c, float) for c in contributions):
        acc = 0.0
        for c in contributions:
            acc = acc + c
        return acc
    if len(contributions) == 1:
        return _binary("+", 0.0, contributions[0])
    alone = [fresh and c.product for c, fresh in contributed]
    if not any(alone):
        return Derived(sum([_unwrap(c) for c in contributions], start=0.0))
    ws, xs = [], []
    for c, product in zip(contributions, alone):
        if product:
            a, b = c.value._children  # the product's factors
            ws.append(a)
            xs.append(b)
        else:
            ws.append(_unwrap(c))
            xs.append(1.0)  # x * 1.0 is x, exactly
    return Derived(dot(ws, xs, start=0.0))


def _inputs(inputs: Any) -> list[Value]:
    try:
        items = list(inputs)
    except TypeError:
        raise TypeError(f"gradients() inputs must be a Value or a list of Values, not "
                        f"{type(inputs).__name__!r}") from None  # fmt: skip
    for v in items:
        if not isinstance(v, Value):
            raise TypeError(f"gradients() inputs must be Values, not {type(v).__name__!r}")
    return items


def gradients(output: Value, inputs: Value | Iterable[Value], *,
              create_graph: bool = False) -> Any:  # fmt: skip
    """d output / d input for each input (a Value, or a list of Values: then a list), as
    output.backward() leaves them in the inputs' .grad when every grad is 0.0 first, bit for
    bit, without touching any .grad. With create_graph=True, Values holding those numbers,
    built as ordinary nodes from each op's derivative formula, so that they can be combined,
    backpropagated and differentiated again. An input the output does not reach gets 0.0.
    A derivative that fails raises what backward() raises, and builds nothing."""
    if not isinstance(output, Value):
        raise TypeError(f"gradients() of {type(output).__name__!r}: the output must be a Value")
    single = isinstance(inputs, Value)
    items = [inputs] if isinstance(inputs, Value) else _inputs(inputs)
    for i, v in enumerate(items):
        if v._no_grad:
            raise RuntimeError(no_grad_input(i))
    order = output._topo(check=True)
    wanted = set(items)
    last = {v: i for i, (v, _) in enumerate(order)}
    needed: dict[Value, bool] = {}
    for i, (v, _) in enumerate(order):  # on a path from the output to an input
        if last[v] == i:
            opaque = not v._rule
            needed[v] = not v._no_grad and (
                v in wanted or (not opaque and any(needed[c] for c in v._children)))

    def operand(v: Value) -> Any:
        return Derived(v) if create_graph and not v._constant else v._data

    contributions: dict[Value, list[tuple[Any, bool]]] = {}
    grads: dict[Value, Any] = {}
    mark = 0

    def contribute(v: Value, amount: Any) -> None:
        fresh = isinstance(amount, Derived) and amount.product and amount.serial > mark
        contributions.setdefault(v, []).append((amount, fresh))

    for v, k in reversed(order):
        if not needed[v]:
            continue
        if v not in grads:  # (no contributions: it feeds only nodes that carry no gradient)
            grads[v] = 1.0 if v is output else _sum_of(contributions.get(v, []))
        g, rule, args = grads[v], v._rule, v._children
        mark = next(_serials)  # what the chain rule makes from here on is fresh
        if rule in UNARY:
            if needed[args[0]]:
                d = UNARY[rule][1](operand(args[0]), v._exponent, operand(v))
                contribute(args[0], d * g)
        elif rule in BINARY:
            _, rule_a, rule_b = BINARY[rule]
            a, b, out = operand(args[0]), operand(args[1]), operand(v)
            want_a, want_b = needed[args[0]], needed[args[1]]
            d_da = rule_a(a, b, out) if want_a else 0.0
            d_db = rule_b(a, b, out) if want_b else 0.0
            for child, want, d in ((args[0], want_a, d_da), (args[1], want_b, d_db)):
                if want:
                    contribute(child, d * g)
        elif rule in NARY:
            stride = NARY[rule][0]
            v0, v1 = operand(args[1 + k * stride]), operand(args[stride + k * stride])
            for position, amount in _term_contributions(rule, k, v._terms(), g, v0, v1):
                if needed[args[position]]:
                    contribute(args[position], amount)
    results = [grads[v] if needed.get(v) else 0.0 for v in items]
    if create_graph:
        results = [r.value if isinstance(r, Derived) else Value._leaf(r) for r in results]
    return results[0] if single else results
