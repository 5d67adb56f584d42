"""The pure-Python Value: fastgrad's executable specification.

Everything the C extension computes is computed here, readably, with the same formulas in
the same order, so the two give the same bits. The tables below are the twins of the rows of
csrc/ops.def; Value's methods apply them as micrograd's closures do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Union

from ._common import as_float, exponent_text, not_a_number, op_error

__all__ = ["Value", "sum", "dot", "SGD"]

Number = Union[float, int]
Operand = Union["Value", float, int]


def _pow(x: float, y: float) -> float:
    """math.pow as Python 3.11+ has it: 3.10 raised ValueError for 0 ** -inf."""
    if x == 0.0 and y == -math.inf:
        return math.inf
    return math.pow(x, y)


def _sigmoid(x: float) -> float:
    """The logistic function, in the form that cannot overflow for either sign of x."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _pow_db(a: float, b: float, out: float) -> float:
    """d(a ** b)/db = a ** b * log(a): 0 where a == 0 and b >= 0, nan where log(a) is undefined."""
    if a == 0.0 and b >= 0.0:
        return 0.0
    if a <= 0.0:
        return math.nan
    return out * math.log(a)


# op: forward rule and local derivative side by side. `c` is the constant exponent of **c.
UNARY: dict[str, tuple[Callable[[float, float], float], Callable[[float, float, float], float]]] = {
    #            forward(a, c)                          d out / d a  (a, c, out)
    "neg":     (lambda a, c: -a,                      lambda a, c, out: -1.0),
    "**c":     (lambda a, c: _pow(a, c),              lambda a, c, out: c * _pow(a, c - 1.0)),
    "ReLU":    (lambda a, c: 0.0 if a < 0.0 else a,   lambda a, c, out: 1.0 if out > 0.0 else 0.0),
    "tanh":    (lambda a, c: math.tanh(a),            lambda a, c, out: 1.0 - out * out),
    "exp":     (lambda a, c: math.exp(a),             lambda a, c, out: out),
    "log":     (lambda a, c: math.log(a),             lambda a, c, out: 1.0 / a),
    "sigmoid": (lambda a, c: _sigmoid(a),             lambda a, c, out: out * (1.0 - out)),
}  # fmt: skip

BINARY: dict[
    str, tuple[Callable[[float, float], float], Callable[[float, float, float], tuple[float, float]]]
] = {
    #       forward(a, b)                  (d out / d a, d out / d b)  (a, b, out)
    "+":  (lambda a, b: a + b,           lambda a, b, out: (1.0, 1.0)),
    "-":  (lambda a, b: a - b,           lambda a, b, out: (1.0, -1.0)),
    "*":  (lambda a, b: a * b,           lambda a, b, out: (b, a)),
    "/":  (lambda a, b: a / b,           lambda a, b, out: (1.0 / b, -a / (b * b))),
    "**": (lambda a, b: _pow(a, b),      lambda a, b, out: (b * _pow(a, b - 1.0), _pow_db(a, b, out))),
}  # fmt: skip

# start + term + term + ...: operands per term, the term, and its derivatives.
NARY: dict[
    str, tuple[int, Callable[[float, float], float], Callable[[float, float], tuple[float, float]]]
] = {
    #       stride  term(v0, v1)              (d term / d v0, d term / d v1)
    "sum": (1,      lambda v0, v1: v0,        lambda v0, v1: (1.0, 0.0)),
    "dot": (2,      lambda v0, v1: v0 * v1,   lambda v0, v1: (v1, v0)),
}  # fmt: skip

_FAILURES = (ZeroDivisionError, ValueError, OverflowError)


def _operand(x: object) -> Value | None:
    """A Value for an operator's operand: itself, a constant leaf for a number, else None."""
    if isinstance(x, Value):
        return x
    try:
        return Value._leaf(as_float(x, "operand"))
    except TypeError:
        return None


class Value:
    """stores a single scalar value and its gradient"""

    __slots__ = ("_data", "_grad", "_label", "_children", "_rule", "_opname", "_exponent",
                 "__weakref__")  # fmt: skip

    _data: float
    _grad: float
    _label: str
    _children: tuple[Value, ...]
    _rule: str  # the row of the tables above; "" for leaves and opaque nodes
    _opname: str
    _exponent: float

    def __init__(
        self, data: Any, _children: Iterable[Value] = (), _op: str = "", label: str = ""
    ) -> None:
        children = tuple(_children)
        for child in children:
            if not isinstance(child, Value):
                raise TypeError(f"Value children must be Values, not {type(child).__name__!r}")
        if not isinstance(_op, str):
            raise TypeError(f"Value _op must be a str, not {type(_op).__name__!r}")
        self._data = as_float(data, "Value data")
        self._grad = 0.0
        self.label = label
        self._children = children
        self._rule = ""
        self._opname = _op
        self._exponent = 0.0

    @classmethod
    def _node(
        cls, data: float, children: tuple[Value, ...], rule: str, exponent: float = 0.0
    ) -> Value:
        out = cls.__new__(cls)
        out._data = data
        out._grad = 0.0
        out._label = ""
        out._children = children
        out._rule = rule
        out._opname = rule if rule != "**c" else "**" + exponent_text(exponent)
        out._exponent = exponent
        return out

    @classmethod
    def _leaf(cls, data: float) -> Value:
        return cls._node(data, (), "")

    # ---- attributes ----

    @property
    def data(self) -> float:
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = as_float(value, "data")

    @property
    def grad(self) -> float:
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        self._grad = as_float(value, "grad")

    @property
    def label(self) -> str:
        return self._label

    @label.setter
    def label(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"label must be a str, not {type(value).__name__!r}")
        self._label = str(value)

    @property
    def _op(self) -> str:
        return self._opname

    @property
    def _prev(self) -> set[Value]:
        return set(self._children)

    def __repr__(self) -> str:
        return f"Value(data={self._data}, grad={self._grad})"

    # ---- building the graph ----

    def _unary(self, rule: str, exponent: float = 0.0) -> Value:
        try:
            data = UNARY[rule][0](self._data, exponent)
        except _FAILURES as e:
            raise op_error(type(e), rule, (self._data,), exponent) from None
        return Value._node(data, (self,), rule, exponent)

    @staticmethod
    def _binary(rule: str, left: object, right: object) -> Value:
        a, b = _operand(left), _operand(right)
        if a is None or b is None:
            return NotImplemented
        try:
            data = BINARY[rule][0](a._data, b._data)
        except _FAILURES as e:
            raise op_error(type(e), rule, (a._data, b._data)) from None
        return Value._node(data, (a, b), rule)

    def __add__(self, other: Operand) -> Value:  # self + other
        return Value._binary("+", self, other)

    def __radd__(self, other: Operand) -> Value:  # other + self
        return Value._binary("+", other, self)

    def __sub__(self, other: Operand) -> Value:  # self - other
        return Value._binary("-", self, other)

    def __rsub__(self, other: Operand) -> Value:  # other - self
        return Value._binary("-", other, self)

    def __mul__(self, other: Operand) -> Value:  # self * other
        return Value._binary("*", self, other)

    def __rmul__(self, other: Operand) -> Value:  # other * self
        return Value._binary("*", other, self)

    def __truediv__(self, other: Operand) -> Value:  # self / other
        return Value._binary("/", self, other)

    def __rtruediv__(self, other: Operand) -> Value:  # other / self
        return Value._binary("/", other, self)

    def __pow__(self, other: Operand, modulo: None = None) -> Value:  # self ** other
        if modulo is not None:
            return NotImplemented
        if isinstance(other, Value):
            return Value._binary("**", self, other)
        try:
            exponent = as_float(other, "exponent")
        except TypeError:
            return NotImplemented
        return self._unary("**c", exponent)

    def __rpow__(self, other: Operand) -> Value:  # other ** self
        return Value._binary("**", other, self)

    def __neg__(self) -> Value:  # -self
        return self._unary("neg")

    def relu(self) -> Value:
        return self._unary("ReLU")

    def tanh(self) -> Value:
        return self._unary("tanh")

    def exp(self) -> Value:
        return self._unary("exp")

    def log(self) -> Value:
        return self._unary("log")

    def sigmoid(self) -> Value:
        return self._unary("sigmoid")

    # ---- the chain rule ----

    def _local_derivatives(self) -> tuple[float, float]:
        """d self / d operand for a unary or binary node, raising as its formulas do."""
        rule, args = self._rule, self._children
        try:
            if rule in UNARY:
                return UNARY[rule][1](args[0]._data, self._exponent, self._data), 0.0
            return BINARY[rule][1](args[0]._data, args[1]._data, self._data)
        except _FAILURES as e:
            operands = tuple(child._data for child in args)
            raise op_error(type(e), rule, operands, self._exponent, in_backward=True) from None

    def _backward(self) -> None:
        """Runs this node's local chain rule once, as micrograd's closure does."""
        rule, args = self._rule, self._children
        if rule in UNARY:
            d_da, _ = self._local_derivatives()
            args[0]._grad += d_da * self._grad
        elif rule in BINARY:
            d_da, d_db = self._local_derivatives()
            args[0]._grad += d_da * self._grad
            args[1]._grad += d_db * self._grad
        elif rule in NARY:
            for k in reversed(range(self._terms())):
                self._term_backward(k)

    def _terms(self) -> int:
        return (len(self._children) - 1) // NARY[self._rule][0]

    def _term_backward(self, k: int) -> None:
        """Term k of an n-ary node: what the chain of + (and * for dot) it replaces does
        between its partial sums s_k and s_k+1. Every partial sum but the last, and every
        product term, is a fresh node whose grad is 0.0 plus one addition: 0.0 + g."""
        stride, _, term_derivatives = NARY[self._rule]
        args, g = self._children, self._grad
        sum_grad = g if k + 1 == self._terms() else 0.0 + g  # the grad of s_k+1
        v0 = args[1 + k * stride]
        if k == 0:
            args[0]._grad += 1.0 * sum_grad  # s_1 = start + term 0
        if stride == 1:
            d_dv0, _ = term_derivatives(v0._data, 0.0)
            v0._grad += d_dv0 * (1.0 * sum_grad)
        else:
            v1 = args[2 + k * stride]
            term_grad = 0.0 + 1.0 * sum_grad  # the fresh product node's grad
            d_dv0, d_dv1 = term_derivatives(v0._data, v1._data)
            v0._grad += d_dv0 * term_grad
            v1._grad += d_dv1 * term_grad

    def _topo(self, check: bool = False) -> list[tuple[Value, int]]:
        """Depth-first post-order below self, operands left to right, without recursion.
        An n-ary node appears once per term (k), where its chain's partial sum would;
        other nodes once, with k = -1. With check, first raises any backward failure."""
        order: list[tuple[Value, int]] = []
        visited = {self}
        stack = [[self, 0]]
        while stack:
            frame = stack[-1]
            node: Value = frame[0]  # type: ignore[assignment]
            done: int = frame[1]  # type: ignore[assignment]
            if done < len(node._children):
                frame[1] = done + 1
                child = node._children[done]
                if child not in visited:
                    visited.add(child)
                    stack.append([child, 0])
                else:
                    node._operand_done(done + 1, order)
                continue
            if check and (node._rule in UNARY or node._rule in BINARY):
                node._local_derivatives()
            if node._rule not in NARY:
                order.append((node, -1))
            stack.pop()
            if stack:
                parent = stack[-1]
                parent[0]._operand_done(parent[1], order)  # type: ignore[union-attr]
        return order

    def _operand_done(self, done: int, order: list[tuple[Value, int]]) -> None:
        """An n-ary node takes its place in the order after each complete term."""
        if self._rule in NARY:
            stride = NARY[self._rule][0]
            if done >= 1 + stride and (done - 1) % stride == 0:
                order.append((self, (done - 1) // stride - 1))

    def backward(self) -> None:
        # topological order all of the children in the graph (checking every derivative
        # first, so that a failure changes nothing)
        topo = self._topo(check=True)
        # go one variable at a time and apply the chain rule to get its gradient
        self._grad = 1.0
        for v, k in reversed(topo):
            if k < 0:
                v._backward()
            else:
                v._term_backward(k)


def _nary(rule: str, operands: list[Value], start: object) -> Value:
    first = start if isinstance(start, Value) else Value._leaf(as_float(start, "start"))
    if not operands:
        return first
    children = (first, *operands)
    stride, term, _ = NARY[rule]
    acc = first._data
    for i in range(1, len(children), stride):
        v1 = children[i + 1]._data if stride > 1 else 0.0
        acc = acc + term(children[i]._data, v1)
    return Value._node(acc, children, rule)


def _operands(values: list[object], what: str) -> list[Value]:
    operands = []
    for v in values:
        operand = _operand(v)
        if operand is None:
            raise not_a_number(what, v)
        operands.append(operand)
    return operands


def sum(values: Iterable[Operand], start: Operand = 0.0) -> Value:  # noqa: A001
    """((start + v0) + v1) + ... as one node, bit for bit the chain of + it replaces."""
    items = list(values)
    return _nary("sum", _operands(items, "sum() term"), start)


def dot(ws: Iterable[Operand], xs: Iterable[Operand], start: Operand = 0.0) -> Value:
    """start + w0*x0 + w1*x1 + ... as one node, bit for bit the chain it replaces."""
    w, x = list(ws), list(xs)
    if len(w) != len(x):
        raise ValueError(f"dot() of {len(w)} weights and {len(x)} inputs")
    pairs = [item for pair in zip(w, x) for item in pair]
    return _nary("dot", _operands(pairs, "dot() operand"), start)


class SGD:
    """PyTorch's SGD (no dampening, no Nesterov) over Values. lr, momentum and weight_decay
    may be changed between steps."""

    def __init__(self, params: Iterable[Value], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:  # fmt: skip
        self.params = list(params)
        for p in self.params:
            if not isinstance(p, Value):
                raise TypeError(f"SGD parameters must be Values, not {type(p).__name__!r}")
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            as_float(value, name)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self._velocity = [0.0] * len(self.params)
        self._steps = 0

    def step(self) -> None:
        lr = as_float(self.lr, "lr")
        momentum = as_float(self.momentum, "momentum")
        weight_decay = as_float(self.weight_decay, "weight_decay")
        for i, p in enumerate(self.params):
            d = p._grad
            if weight_decay != 0.0:
                d = d + weight_decay * p._data
            if momentum != 0.0:
                self._velocity[i] = d if self._steps == 0 else momentum * self._velocity[i] + d
                d = self._velocity[i]
            p._data = p._data - lr * d
        self._steps += 1

    def zero_grad(self) -> None:
        for p in self.params:
            p._grad = 0.0
