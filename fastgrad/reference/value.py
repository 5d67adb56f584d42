"""The pure-Python Value: micrograd's, over the op tables of ops.py, with sum and dot."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

from .._common import (
    INITIALISED_TWICE,
    NUMPY_SCALAR_DEFERS,
    as_float,
    exponent_text,
    inside_no_grad,
    mixed_engines,
    no_grad_root,
    not_a_number,
    value_is_not_a_number,
    watch_no_grad,
)
from .ops import (
    BINARY,
    CHOICES,
    NARY,
    UNARY,
    _derivatives,
    _forward,
    _nary_forward,
    _term_contributions,
)

__all__ = ["Value", "dot", "maximum", "sum"]

Operand: TypeAlias = "Value | float | int"

# Held while a backward or a tape's replay changes grads: threads that share leaves add into
# their grads one whole backward at a time (the C engine adds atomically instead).
GRADS_LOCK = threading.RLock()


# how many threads are inside no_grad() now, so that an op outside any pays one test
_no_grad_threads = 0


def _watch_no_grad(count: int) -> None:
    global _no_grad_threads
    _no_grad_threads = count


watch_no_grad(_watch_no_grad)


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


_serials = itertools.count()  # Value._serial


class Value:
    """stores a single scalar value and its gradient"""

    __array_priority__ = NUMPY_SCALAR_DEFERS  # np.float64(2) * v calls v.__rmul__ directly

    __slots__ = (
        "__weakref__",
        "_children",
        "_chosen",
        "_constant",
        "_data",
        "_exponent",
        "_grad",
        "_label",
        "_no_grad",
        "_opname",
        "_rule",
        "_serial",
    )  # fmt: skip

    _data: float
    _grad: float
    _label: str
    _children: tuple[Value, ...]
    _rule: str  # the row of the tables above; "" for leaves and opaque nodes
    _opname: str
    _exponent: float
    _constant: bool  # a leaf made for a number operand: part of a Tape's program
    _no_grad: bool  # requires no grad (ops.def's FG_NO_GRAD): backward never reaches it
    # ...because a choice made from data is below it (FG_CHOSEN): backward of it is no mistake
    _chosen: bool
    _serial: int  # creation order: of two failing nodes, eager code met the smaller first

    def __init__(
        self, data: Any, _children: Iterable[Value] = (), _op: str = "", label: str = "", *,
        requires_grad: bool = True,
    ) -> None:
        if hasattr(self, "_data"):
            raise RuntimeError(INITIALISED_TWICE)
        children = tuple(_children)
        for child in children:
            if not isinstance(child, Value):
                raise TypeError(f"Value children must be Values, not {type(child).__name__!r}")
        if not isinstance(_op, str):
            raise TypeError(f"Value _op must be a str, not {type(_op).__name__!r}")
        if type(requires_grad) is not bool:
            raise TypeError(f"requires_grad must be True or False, not "
                            f"{type(requires_grad).__name__!r}")
        self._data = as_float(data, "Value data")
        self._grad = 0.0
        self.label = label
        self._children = children
        self._rule = ""
        self._opname = _op
        self._exponent = 0.0
        self._constant = False
        self._no_grad = not requires_grad
        self._chosen = False
        self._serial = next(_serials)

    @classmethod
    def _node(
        cls, data: float, children: tuple[Value, ...], rule: str, exponent: float = 0.0
    ) -> Value:
        out = cls.__new__(cls)
        constant = bool(_no_grad_threads) and inside_no_grad()
        if constant:  # inside no_grad(): a constant, no graph behind it
            children, rule, exponent = (), "", 0.0
        out._data = data
        out._grad = 0.0
        out._serial = next(_serials)
        out._label = ""
        out._children = children
        out._rule = rule
        out._opname = rule if rule != "**c" else "**" + exponent_text(exponent)
        out._exponent = exponent
        out._constant = False
        # no grad when the operands need none, numbers aside (ops.c's inherit_no_grad)
        others = [c for c in children if not c._constant]
        out._no_grad = constant or rule in CHOICES or (
            any(c._no_grad for c in others) and all(c._no_grad for c in others))
        out._chosen = not constant and (rule in CHOICES or (
            out._no_grad and any(c._chosen for c in others)))
        return out

    @classmethod
    def _leaf(cls, data: float) -> Value:
        """The constant leaf for a number operand, micrograd's Value(other)."""
        out = cls._node(data, (), "")
        out._constant = True
        out._no_grad = False
        return out

    # ---- attributes ----

    @property
    def data(self) -> float:
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = as_float(value, "data")

    @data.deleter
    def data(self) -> None:
        raise AttributeError("a Value's data cannot be deleted (set it to a number instead)")

    @property
    def grad(self) -> float:
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        self._grad = as_float(value, "grad")

    @grad.deleter
    def grad(self) -> None:
        raise AttributeError("a Value's grad cannot be deleted (set it to 0.0 instead)")

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
            error = mixed_engines(left, right)
            if error is not None:
                raise error
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
            error = mixed_engines(self, other)
            if error is not None:
                raise error from None
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
        raise value_is_not_a_number(self)

    def item(self) -> float:
        """The number this Value holds (its .data), as PyTorch's Tensor.item()."""
        return self._data

    def __format__(self, spec: str) -> str:
        """format(v, ".3f") and f"{v:.3f}" format .data; an empty spec gives repr(v)."""
        return format(self._data, spec) if spec else repr(self)

    def detach(self) -> Value:
        """A new leaf holding this Value's data, outside any graph, that requires no grad (a
        constant: no gradient flows back through it)."""
        return Value(self._data, requires_grad=False)

    @property
    def requires_grad(self) -> bool:
        """Whether backward computes a grad for it: False for a Value(x, requires_grad=False),
        a detach(), and what ops make from such Values alone (numbers aside)."""
        return not self._no_grad

    # ---- the chain rule ----

    def _local_derivatives(self) -> tuple[float, float]:
        """d self / d operand for a unary or binary node, raising as its formulas do; only
        those toward operands that require grad are computed (the others are 0.0)."""
        operands = tuple(child._data for child in self._children)
        wanted = tuple(not child._no_grad for child in self._children) + (False,)
        return _derivatives(self._rule, operands, self._exponent, self._data,
                            (wanted[0], wanted[1]))  # fmt: skip

    def _backward(self) -> None:
        """Runs this node's local chain rule once, as micrograd's closure does (nothing for
        a node that requires no grad)."""
        rule, args = self._rule, self._children
        if self._no_grad:
            return
        if rule in UNARY:
            d_da, _ = self._local_derivatives()
            if not args[0]._no_grad:
                args[0]._grad += d_da * self._grad
        elif rule in BINARY:
            d_da, d_db = self._local_derivatives()
            if not args[0]._no_grad:
                args[0]._grad += d_da * self._grad
            if not args[1]._no_grad:
                args[1]._grad += d_db * self._grad
        elif rule in NARY:
            for k in reversed(range(self._terms())):
                self._term_backward(k)

    def _terms(self) -> int:
        return (len(self._children) - 1) // NARY[self._rule][0]

    def _term_backward(self, k: int) -> None:
        args, stride = self._children, NARY[self._rule][0]
        v0, v1 = args[1 + k * stride]._data, args[stride + k * stride]._data
        if self._no_grad:
            return
        for position, amount in _term_contributions(self._rule, k, self._terms(), self._grad,
                                                    v0, v1):  # fmt: skip
            if not args[position]._no_grad:
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
            if check and not node._no_grad and (node._rule in UNARY or node._rule in BINARY):
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
        (rule, data, grad, label, operand numbers, exponent, constant, op name,
        requires grad). Flat, so that a deep graph pickles without recursion; _core.Value has
        the same format."""
        order = self._topo()
        last = {v: i for i, (v, _) in enumerate(order)}  # an n-ary node is there per term
        number: dict[Value, int] = {}
        records: list[Record] = []
        for i, (v, _) in enumerate(order):
            if last[v] == i:  # recorded at its last entry, once all its operands are
                operands = tuple(number[child] for child in v._children)
                records.append((v._rule, v._data, v._grad, v._label, operands, v._exponent,
                                v._constant, "" if v._rule else v._opname,
                                not v._no_grad))  # fmt: skip
                number[v] = len(records) - 1
        return records

    def backward(self) -> None:
        # topological order all of the children in the graph (checking every derivative
        # first, so that a failure changes nothing)
        if self._no_grad and not self._chosen:
            raise RuntimeError(no_grad_root("backward()"))
        with GRADS_LOCK:
            topo = self._topo(check=True)
            # go one variable at a time and apply the chain rule to get its gradient
            self._grad = 1.0
            for v, k in reversed(topo):
                if k < 0:
                    v._backward()
                else:
                    v._term_backward(k)


Record: TypeAlias = tuple[Any, ...]  # as _records makes them (older files: no requires grad)


def _rebuild(records: list[Record]) -> Value:
    """The Value (and the graph below it) that Value._records described, data and grads as
    stored: nothing is computed again."""
    if not records:
        raise ValueError("no records to rebuild a Value from")
    made: list[Value] = []
    for i, record in enumerate(records):
        rule, data, grad, label, operands, exponent, constant, opname = record[:8]
        requires_grad = record[8] if len(record) > 8 else True
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
            v._no_grad = not requires_grad
        made.append(v)
    return made[-1]


def _choice(rule: str, a: object, b: object = None) -> Value:
    """A node of a choice op (sign, isfinite, iszero of a; picks_a of a and b), which
    carries no gradient: how a derivative built as a graph keeps a choice made from data."""
    if rule not in CHOICES:
        raise ValueError(f"{rule!r} is not a choice")
    if rule in UNARY:
        return a._unary(rule) if isinstance(a, Value) else Value._leaf(UNARY[rule][0](
            as_float(a, rule), 0.0))
    node = Value._binary(rule, a, b)
    if node is None:
        raise TypeError(f"{rule}() takes Values or numbers")
    return node


def _graph(roots: list[Value]) -> list[tuple[Value, str, tuple[Value, ...], float, bool]]:
    """The graph below the roots, each node once, operands before the nodes that use them:
    per node (its Value, rule, operand Values, exponent, constant); a leaf's rule is "".
    Forward mode (fastgrad.jvp) walks it."""
    seen: set[Value] = set()
    nodes = []
    for root in roots:
        order = root._topo()
        last = {v: i for i, (v, _) in enumerate(order)}
        for i, (v, _) in enumerate(order):
            if last[v] == i and v not in seen:
                seen.add(v)
                nodes.append((v, v._rule, tuple(v._children), v._exponent, v._constant))
    return nodes


def _constant_leaf(x: object) -> Value:
    """A constant leaf for the number x, as the 2.0 of x * 2.0: a Tape keeps it in its program."""
    return Value._leaf(as_float(x, "constant"))


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


def maximum(a: Operand, b: Operand) -> Value:
    """The larger of a and b as one node (a on a tie, nan if either is nan), evaluated again
    by every replay; its grad goes to the one it picked. Either may be a number."""
    if isinstance(a, Value) or isinstance(b, Value):
        result = Value._binary("max", a, b)
        if result is not None:
            return result
    raise TypeError(f"maximum() takes Values or numbers, one a Value, not "
                    f"{type(a).__name__!r} and {type(b).__name__!r}")


def _finite(v: Value) -> Value:
    """v where it is finite, else 0.0, as a node: logsumexp's shift."""
    return v._unary("finite")


def _class_index(target: Value, classes: float) -> Value:
    """target as an index among `classes` classes, as a node (IndexError where it is not a
    whole number from 0 to classes - 1), checked again by every replay."""
    result = Value._binary("class", target, classes)
    assert result is not None
    return result


def _pick(v: Value, offset: Value) -> Value:
    """v where offset is 0, else -0.0, as a node: one class's term of a picked score."""
    result = Value._binary("pick", v, offset)
    assert result is not None
    return result
