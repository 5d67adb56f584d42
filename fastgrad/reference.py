"""The pure-Python Value: fastgrad's executable specification.

Everything the C extension computes is computed here, readably, with the same formulas in
the same order, so the two give the same bits. The tables below are the twins of the rows of
csrc/ops.def; Value's methods apply them as micrograd's closures do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

from ._common import (
    NUMPY_SCALAR_DEFERS,
    as_float,
    exponent_text,
    not_a_number,
    op_error,
    register_value_class,
    with_row,
)

__all__ = ["SGD", "Tape", "Value", "dot", "sum"]

Operand: TypeAlias = "Value | float | int"
UnaryRule: TypeAlias = tuple[
    Callable[[float, float], float], Callable[[float, float, float], float]
]
BinaryRule: TypeAlias = tuple[
    Callable[[float, float], float], Callable[[float, float, float], tuple[float, float]]
]
NaryRule: TypeAlias = tuple[
    int, Callable[[float, float], float], Callable[[float, float], tuple[float, float]]
]


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


def _softplus(x: float) -> float:
    """log(1 + exp(x)) in the form that cannot overflow: exp is only taken of x <= 0."""
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


def _pow_db(a: float, b: float, out: float) -> float:
    """d(a ** b)/db = a ** b * log(a): 0 where a == 0 and b >= 0, nan where log(a) is undefined."""
    if a == 0.0 and b >= 0.0:
        return 0.0
    if a <= 0.0:
        return math.nan
    return out * math.log(a)


# op: forward rule and local derivative side by side. `c` is the constant exponent of **c.
UNARY: dict[str, UnaryRule] = {
    #            forward(a, c)                          d out / d a  (a, c, out)
    "neg":     (lambda a, c: -a,                      lambda a, c, out: -1.0),
    "**c":     (lambda a, c: _pow(a, c),              lambda a, c, out: c * _pow(a, c - 1.0)),
    "ReLU":    (lambda a, c: 0.0 if a < 0.0 else a,   lambda a, c, out: 1.0 if out > 0.0 else 0.0),
    "tanh":    (lambda a, c: math.tanh(a),            lambda a, c, out: 1.0 - out * out),
    "exp":     (lambda a, c: math.exp(a),             lambda a, c, out: out),
    "log":     (lambda a, c: math.log(a),             lambda a, c, out: 1.0 / a),
    "sigmoid": (lambda a, c: _sigmoid(a),             lambda a, c, out: out * (1.0 - out)),
    "abs":     (lambda a, c: math.fabs(a),            lambda a, c, out: 1.0 if a > 0.0 else
                                                                        -1.0 if a < 0.0 else 0.0),
    "sqrt":    (lambda a, c: math.sqrt(a),            lambda a, c, out: 0.5 / out),
    "sin":     (lambda a, c: math.sin(a),             lambda a, c, out: math.cos(a)),
    "cos":     (lambda a, c: math.cos(a),             lambda a, c, out: -math.sin(a)),
    "softplus": (lambda a, c: _softplus(a),           lambda a, c, out: _sigmoid(a)),
}  # fmt: skip

BINARY: dict[str, BinaryRule] = {
    #       forward(a, b)             (d out / d a, d out / d b)  (a, b, out)
    "+":  (lambda a, b: a + b,      lambda a, b, out: (1.0, 1.0)),
    "-":  (lambda a, b: a - b,      lambda a, b, out: (1.0, -1.0)),
    "*":  (lambda a, b: a * b,      lambda a, b, out: (b, a)),
    "/":  (lambda a, b: a / b,      lambda a, b, out: (1.0 / b, -a / (b * b))),
    "**": (lambda a, b: _pow(a, b), lambda a, b, out: (b * _pow(a, b - 1.0), _pow_db(a, b, out))),
}  # fmt: skip

# start + term + term + ...: operands per term, the term, and its derivatives.
NARY: dict[str, NaryRule] = {
    #       stride  term(v0, v1)              (d term / d v0, d term / d v1)
    "sum": (1,      lambda v0, v1: v0,        lambda v0, v1: (1.0, 0.0)),
    "dot": (2,      lambda v0, v1: v0 * v1,   lambda v0, v1: (v1, v0)),
}  # fmt: skip

_FAILURES = (ZeroDivisionError, ValueError, OverflowError)


def _forward(rule: str, operands: tuple[float, ...], exponent: float = 0.0) -> float:
    """A unary or binary op's forward rule, raising what Python raises, naming the op."""
    try:
        if rule in UNARY:
            return UNARY[rule][0](operands[0], exponent)
        return BINARY[rule][0](operands[0], operands[1])
    except _FAILURES as e:
        raise op_error(type(e), rule, operands, exponent) from None


def _nary_forward(rule: str, operands: list[float]) -> float:
    """start + term + term + ..., added left to right."""
    stride, term, _ = NARY[rule]
    acc = operands[0]
    for i in range(1, len(operands), stride):
        acc = acc + term(operands[i], operands[i + 1] if stride > 1 else 0.0)
    return acc


def _derivatives(rule: str, operands: tuple[float, ...], exponent: float,
                 out: float) -> tuple[float, float]:  # fmt: skip
    """d out / d operand of a unary or binary op (0.0 for a missing second operand)."""
    try:
        if rule in UNARY:
            return UNARY[rule][1](operands[0], exponent, out), 0.0
        return BINARY[rule][1](operands[0], operands[1], out)
    except _FAILURES as e:
        raise op_error(type(e), rule, operands, exponent, in_backward=True) from None


def _term_contributions(rule: str, k: int, terms: int, g: float,
                        operands: list[float]) -> list[tuple[int, float]]:  # fmt: skip
    """Term k of an n-ary node's backward, g its grad, as (operand position, amount to add),
    in the order they are added: what the chain of + (and * for dot) the node replaces does
    between its partial sums s_k and s_k+1. Every partial sum but the last, and every
    product term, is a fresh node whose grad is 0.0 plus one addition: 0.0 + g."""
    stride, _, term_derivatives = NARY[rule]
    sum_grad = g if k + 1 == terms else 0.0 + g  # the grad of s_k+1
    first = 1 + k * stride
    added = [(0, 1.0 * sum_grad)] if k == 0 else []  # s_1 = start + term 0
    if stride == 1:
        d_dv0, _ = term_derivatives(operands[first], 0.0)
        return added + [(first, d_dv0 * (1.0 * sum_grad))]
    term_grad = 0.0 + 1.0 * sum_grad  # the fresh product node's grad
    d_dv0, d_dv1 = term_derivatives(operands[first], operands[first + 1])
    return added + [(first, d_dv0 * term_grad), (first + 1, d_dv1 * term_grad)]


def _compared(x: object) -> float | None:
    """What a comparison compares a Value with: a Value's data, a number, else None."""
    if isinstance(x, Value):
        return x._data
    try:
        return as_float(x, "operand")
    except TypeError:
        return None


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

    __array_priority__ = NUMPY_SCALAR_DEFERS  # np.float64(2) * v calls v.__rmul__ directly

    __slots__ = (
        "__weakref__",
        "_children",
        "_constant",
        "_data",
        "_exponent",
        "_grad",
        "_label",
        "_opname",
        "_rule",
    )  # fmt: skip

    _data: float
    _grad: float
    _label: str
    _children: tuple[Value, ...]
    _rule: str  # the row of the tables above; "" for leaves and opaque nodes
    _opname: str
    _exponent: float
    _constant: bool  # a leaf made for a number operand: part of a Tape's program

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
        self._constant = False

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
        out._constant = False
        return out

    @classmethod
    def _leaf(cls, data: float) -> Value:
        """The constant leaf for a number operand, micrograd's Value(other)."""
        out = cls._node(data, (), "")
        out._constant = True
        return out

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
        return Value._node(_forward(rule, (self._data,), exponent), (self,), rule, exponent)

    @staticmethod
    def _binary(rule: str, left: object, right: object) -> Value | None:
        """left op right, or None (the operator then returns NotImplemented) for operands
        that are neither Values nor numbers."""
        a, b = _operand(left), _operand(right)
        if a is None or b is None:
            return None
        return Value._node(_forward(rule, (a._data, b._data)), (a, b), rule)

    def __add__(self, other: Operand) -> Value:  # self + other
        return Value._binary("+", self, other) or NotImplemented

    def __radd__(self, other: Operand) -> Value:  # other + self
        return Value._binary("+", other, self) or NotImplemented

    def __sub__(self, other: Operand) -> Value:  # self - other
        return Value._binary("-", self, other) or NotImplemented

    def __rsub__(self, other: Operand) -> Value:  # other - self
        return Value._binary("-", other, self) or NotImplemented

    def __mul__(self, other: Operand) -> Value:  # self * other
        return Value._binary("*", self, other) or NotImplemented

    def __rmul__(self, other: Operand) -> Value:  # other * self
        return Value._binary("*", other, self) or NotImplemented

    def __truediv__(self, other: Operand) -> Value:  # self / other
        return Value._binary("/", self, other) or NotImplemented

    def __rtruediv__(self, other: Operand) -> Value:  # other / self
        return Value._binary("/", other, self) or NotImplemented

    def __pow__(self, other: Operand, modulo: None = None) -> Value:  # self ** other
        if modulo is not None:
            return NotImplemented
        if isinstance(other, Value):
            return Value._binary("**", self, other) or NotImplemented
        try:
            exponent = as_float(other, "exponent")
        except TypeError:
            return NotImplemented
        return self._unary("**c", exponent)

    def __rpow__(self, other: Operand) -> Value:  # other ** self
        return Value._binary("**", other, self) or NotImplemented

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

    def __abs__(self) -> Value:  # abs(self)
        return self._unary("abs")

    def sqrt(self) -> Value:
        return self._unary("sqrt")

    def sin(self) -> Value:
        return self._unary("sin")

    def cos(self) -> Value:
        return self._unary("cos")

    def softplus(self) -> Value:
        return self._unary("softplus")

    # ---- comparisons: on .data, so max() and min() pick a Value; == stays identity ----

    def __lt__(self, other: Operand) -> bool:
        x = _compared(other)
        return NotImplemented if x is None else self._data < x

    def __le__(self, other: Operand) -> bool:
        x = _compared(other)
        return NotImplemented if x is None else self._data <= x

    def __gt__(self, other: Operand) -> bool:
        x = _compared(other)
        return NotImplemented if x is None else self._data > x

    def __ge__(self, other: Operand) -> bool:
        x = _compared(other)
        return NotImplemented if x is None else self._data >= x

    __hash__ = object.__hash__  # identity, as micrograd's (Values live in sets)

    def __float__(self) -> float:
        return self._data

    # ---- the chain rule ----

    def _local_derivatives(self) -> tuple[float, float]:
        """d self / d operand for a unary or binary node, raising as its formulas do."""
        operands = tuple(child._data for child in self._children)
        return _derivatives(self._rule, operands, self._exponent, self._data)

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
        args = self._children
        operands = [child._data for child in args]
        for position, amount in _term_contributions(self._rule, k, self._terms(), self._grad,
                                                    operands):  # fmt: skip
            args[position]._grad += amount

    def _topo(self, check: bool = False) -> list[tuple[Value, int]]:
        """Depth-first post-order below self, operands left to right, without recursion.
        An n-ary node appears once per term (k), where its chain's partial sum would;
        other nodes once, with k = -1. With check, first raises any backward failure."""
        order: list[tuple[Value, int]] = []
        visited = {self}
        stack, done = [self], [0]  # the path from self, and how many operands each has done
        while stack:
            node, k = stack[-1], done[-1]
            if k < len(node._children):
                done[-1] = k + 1
                child = node._children[k]
                if child not in visited:
                    visited.add(child)
                    stack.append(child)
                    done.append(0)
                else:
                    node._operand_done(k + 1, order)
                continue
            if check and (node._rule in UNARY or node._rule in BINARY):
                node._local_derivatives()
            if node._rule not in NARY:
                order.append((node, -1))
            stack.pop()
            done.pop()
            if stack:
                stack[-1]._operand_done(done[-1], order)
        return order

    def _operand_done(self, done: int, order: list[tuple[Value, int]]) -> None:
        """An n-ary node takes its place in the order after each complete term."""
        if self._rule in NARY:
            stride = NARY[self._rule][0]
            if done >= 1 + stride and (done - 1) % stride == 0:
                order.append((self, (done - 1) // stride - 1))

    # ---- pickle and copy.deepcopy: the graph below this Value, as records ----

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._records(),))

    def _records(self) -> list[Record]:
        """The graph below self, operands before the nodes that use them, one record a node:
        (rule, data, grad, label, operand numbers, exponent, constant, op name). Flat, so
        that a deep graph pickles without recursion; _core.Value has the same format."""
        order = self._topo()
        last = {v: i for i, (v, _) in enumerate(order)}  # an n-ary node is there per term
        number: dict[Value, int] = {}
        records: list[Record] = []
        for i, (v, _) in enumerate(order):
            if last[v] == i:  # recorded at its last entry, once all its operands are
                operands = tuple(number[child] for child in v._children)
                records.append((v._rule, v._data, v._grad, v._label, operands, v._exponent,
                                v._constant, "" if v._rule else v._opname))  # fmt: skip
                number[v] = len(records) - 1
        return records

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


register_value_class(Value, __name__)

Record: TypeAlias = tuple[str, float, float, str, tuple[int, ...], float, bool, str]


def _rebuild(records: list[Record]) -> Value:
    """The Value (and the graph below it) that Value._records described, data and grads as
    stored: nothing is computed again."""
    if not records:
        raise ValueError("no records to rebuild a Value from")
    made: list[Value] = []
    for i, (rule, data, grad, label, operands, exponent, constant, opname) in enumerate(records):
        if any(not (0 <= c < i) for c in operands):
            raise ValueError(f"record {i} refers to a node not before it")
        if rule and rule not in UNARY and rule not in BINARY and rule not in NARY:
            raise ValueError(f"record {i}: unknown op {rule!r}")
        stride = NARY[rule][0] if rule in NARY else 0
        fits = (len(operands) == 1 if rule in UNARY else len(operands) == 2 if rule in BINARY
                else len(operands) > stride and (len(operands) - 1) % stride == 0 if stride
                else True)  # fmt: skip
        if not fits:
            raise ValueError(f"record {i}: {rule!r} does not take {len(operands)} operands")
        v = Value._node(as_float(data, "data"), tuple(made[c] for c in operands), rule,
                        as_float(exponent, "exponent"))  # fmt: skip
        v._grad, v._label, v._constant = as_float(grad, "grad"), str(label), bool(constant)
        if not rule:
            v._opname = str(opname)
        made.append(v)
    return made[-1]


def _nary(rule: str, operands: list[Value], start: object) -> Value:
    if not operands:  # the chain of no terms is its start
        return start if isinstance(start, Value) else Value(as_float(start, "start"))
    first = start if isinstance(start, Value) else Value._leaf(as_float(start, "start"))
    children = (first, *operands)
    return Value._node(_nary_forward(rule, [v._data for v in children]), children, rule)


def _operands(values: Sequence[object], what: str) -> list[Value]:
    operands = []
    for v in values:
        operand = _operand(v)
        if operand is None:
            raise not_a_number(what, v)
        operands.append(operand)
    return operands


def sum(values: Iterable[Operand], start: Operand = 0.0) -> Value:
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


class Tape:
    """The graph below root compiled once into a program over slots, and replayed.

    forward() recomputes every node from the leaves' current data; backward() is micrograd's
    backward over that forward, as on a freshly built graph: interior grads from 0, the
    root's 1, the leaves' added to what they hold. The results are the bits of building the
    graph again and calling backward(). The leaves are the Values the program reads; the
    constant leaves made for numbers in expressions are part of the program, read once.
    Replay writes the root's data and grad and the leaves' grads into their Values; sync()
    writes every other node. A call that fails raises what eager code raises and changes
    nothing."""

    def __init__(self, root: Value) -> None:
        if not isinstance(root, Value):
            raise TypeError(f"Tape needs a Value to start from, not {type(root).__name__!r}")
        order = root._topo()
        slot: dict[Value, int] = {}
        for v, _ in order:
            slot.setdefault(v, len(slot))
        self.root = root
        self._nodes = list(slot)
        self._slot = slot
        self._root = slot[root]
        self._leaves = [i for i, v in enumerate(self._nodes) if not v._rule and not v._constant]
        self._leaf_number = {slot: number for number, slot in enumerate(self._leaves)}
        # one instruction per entry of the order but the leaves: an n-ary node once per term
        self._code = [(v._rule, slot[v], tuple(slot[c] for c in v._children), v._exponent, k)
                      for v, k in order if v._rule]  # fmt: skip
        self._value = [v._data for v in self._nodes]
        self._grad = [v._grad for v in self._nodes]

    @property
    def leaves(self) -> list[Value]:
        return [self._nodes[i] for i in self._leaves]

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"Tape({len(self)} nodes, {len(self._leaves)} leaves, root={self.root!r})"

    def _forward_values(self) -> list[float]:
        value = list(self._value)  # constants keep the data they had when compiled
        for i in self._leaves:
            value[i] = self._nodes[i]._data
        for rule, out, operands, exponent, k in self._code:
            if rule in NARY:  # computed whole at its last term, when every operand is
                if k + 1 == (len(operands) - 1) // NARY[rule][0]:
                    value[out] = _nary_forward(rule, [value[i] for i in operands])
            else:
                value[out] = _forward(rule, tuple(value[i] for i in operands), exponent)
        return value

    def _backward_grads(self, value: list[float], grad: list[float]) -> None:
        """Backward over `value` into `grad`, whose leaf entries hold the grads to add to."""
        for rule, out, operands, exponent, _ in self._code:  # check first: change nothing
            if rule not in NARY:
                _derivatives(rule, tuple(value[i] for i in operands), exponent, value[out])
        for _, out, _, _, _ in self._code:
            grad[out] = 0.0
        grad[self._root] = 1.0
        for rule, out, operands, exponent, k in reversed(self._code):
            values = [value[i] for i in operands]
            if rule in NARY:
                terms = (len(operands) - 1) // NARY[rule][0]
                for position, amount in _term_contributions(rule, k, terms, grad[out], values):
                    grad[operands[position]] += amount
            else:
                d_da, d_db = _derivatives(rule, tuple(values), exponent, value[out])
                grad[operands[0]] += d_da * grad[out]
                if rule in BINARY:
                    grad[operands[1]] += d_db * grad[out]

    def _leaf_grads(self) -> list[float]:
        grad = list(self._grad)
        for i in self._leaves:
            grad[i] = self._nodes[i]._grad
        return grad

    def _commit_grads(self, grad: list[float]) -> None:
        self._grad = grad
        for i in self._leaves:
            self._nodes[i]._grad = grad[i]
        self.root._grad = grad[self._root]

    def forward(self) -> float:
        """Recomputes every node from the leaves' data; returns the root's new data."""
        self._value = self._forward_values()
        self.root._data = self._value[self._root]
        return self.root._data

    def backward(self) -> None:
        grad = self._leaf_grads()
        self._backward_grads(self._value, grad)
        self._commit_grads(grad)

    def _leaf_numbers(self, values: Iterable[Value], what: str) -> list[int]:
        numbers = []
        for v in values:
            i = self._slot.get(v) if isinstance(v, Value) else None
            if i not in self._leaf_number:
                raise ValueError(f"{what} {v!r} is not a leaf of this tape")
            numbers.append(self._leaf_number[i])
        return numbers

    def run(self, inputs: Iterable[Value], X: Any, targets: Iterable[Value] = (),
            y: Any = None) -> Any:  # fmt: skip
        """For each row of X (and of y): the input leaves take the row's values (the target
        leaves y's), then forward and backward; the leaves' grads add up over the rows, as
        the Python loop doing this one row at a time would leave them. Returns the root's
        value for every row as a numpy array. A failing row raises and changes nothing."""
        import numpy as np

        leaves = [self._leaves[i] for i in self._leaf_numbers(inputs, "input")]
        target_leaves = [self._leaves[i] for i in self._leaf_numbers(targets, "target")]
        X_rows = _rows(np, X, len(leaves), "X")
        y_rows = _rows(np, y if y is not None else np.empty((len(X_rows), 0)),
                       len(target_leaves), "y")  # fmt: skip
        if len(y_rows) != len(X_rows):
            raise ValueError(f"X has {len(X_rows)} rows and y {len(y_rows)}")
        saved = [self._nodes[i]._data for i in leaves + target_leaves]
        grad, value, out = self._leaf_grads(), self._value, np.empty(len(X_rows))
        for row, (xs, ys) in enumerate(zip(X_rows.tolist(), y_rows.tolist())):
            for i, x in zip(leaves + target_leaves, xs + ys):
                self._nodes[i]._data = x
            try:
                value = self._forward_values()
                self._backward_grads(value, grad)
            except _FAILURES as e:
                for i, x in zip(leaves + target_leaves, saved):
                    self._nodes[i]._data = x
                raise with_row(e, row) from None
            out[row] = value[self._root]
        if len(X_rows):
            self._value = value
            self._commit_grads(grad)
            self.root._data = value[self._root]
        return out

    def sync(self) -> None:
        """Writes the data and grad of every node but the leaves (whose data is the user's
        and whose grads backward writes) from the tape: interior nodes and constants."""
        leaves = set(self._leaves)
        for i, v in enumerate(self._nodes):
            if i not in leaves:
                v._data, v._grad = self._value[i], self._grad[i]


def _rows(np: Any, array: Any, columns: int, name: str) -> Any:
    """array as a float64 matrix of `columns` columns (a vector is one column)."""
    matrix = np.asarray(array, dtype=np.float64)
    if matrix.ndim == 1 and columns == 1:
        matrix = matrix.reshape(-1, 1)
    if matrix.ndim != 2 or matrix.shape[1] != columns:
        raise ValueError(f"{name} must have {columns} column(s), one per leaf; its shape is "
                         f"{matrix.shape}")  # fmt: skip
    return matrix
