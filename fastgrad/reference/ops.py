"""The op tables: the pure-Python twin of csrc/ops.def.

Each op's forward rule sits beside its local derivatives, in the same formulas and the same
order as the C table, so the two implementations give the same bits. Value (value.py) applies
them as micrograd's closures do; Tape (tape.py) replays them over slots.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeAlias

from .._common import op_error

# the derivatives take floats, or nodes of a derivative graph (Any)
UnaryRule: TypeAlias = tuple[Callable[[float, float], float], Callable[[Any, float, Any], Any]]
BinaryRule: TypeAlias = tuple[Callable[[float, float], float], Callable[[Any, Any, Any], Any],
                              Callable[[Any, Any, Any], Any]]
NaryRule: TypeAlias = tuple[int, Callable[[float, float], float], Callable[[Any, Any], Any]]


def _pow(x: Any, y: Any) -> Any:
    """math.pow as Python 3.11+ has it (3.10 raised ValueError for 0 ** -inf); x ** y for a
    derivative node."""
    if not (isinstance(x, float) and isinstance(y, float)):
        return x ** y
    if x == 0.0 and y == -math.inf:
        return math.inf
    return math.pow(x, y)


def _sigmoid(x: Any) -> Any:
    """The logistic function, in the form that cannot overflow for either sign of x."""
    if not isinstance(x, float):
        return x.sigmoid()
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _softplus(x: float) -> float:
    """log(1 + exp(x)) in the form that cannot overflow: exp is only taken of x <= 0."""
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


def _sin(x: Any) -> Any:
    return math.sin(x) if isinstance(x, float) else x.sin()


def _cos(x: Any) -> Any:
    return math.cos(x) if isinstance(x, float) else x.cos()


def _log(x: Any) -> Any:
    return math.log(x) if isinstance(x, float) else x.log()


def _data(x: Any) -> float:
    """A derivative's operand as a number (ops.def's DATA): a float, or a derivative
    graph's node's data."""
    return x if isinstance(x, float) else x.data


def _finite(a: float) -> float:
    return a if math.isfinite(a) else 0.0


def _max(a: float, b: float) -> float:
    return a if a >= b or math.isnan(a) else b


def _class_index(a: float, b: float) -> float:
    if not (a >= 0.0 and a < b and a == math.floor(a)):
        raise IndexError
    return a


def _sign(a: float) -> float:
    return 1.0 if a > 0.0 else -1.0 if a < 0.0 else 0.0


def _picks_a(a: float, b: float) -> float:
    return 1.0 if a >= b or math.isnan(a) else 0.0


def _chosen(rule: str, *operands: Any) -> Any:
    """A choice a derivative makes from data (sign, isfinite, iszero, picks_a): a number at
    numbers; at a derivative graph's node, a node of that op (its `_choose`), so that the
    graph makes the choice again wherever it is evaluated (a Tape's replay, each row)."""
    node = next((x for x in operands if not isinstance(x, float)), None)
    if node is None:
        table = UNARY if rule in UNARY else BINARY
        return table[rule][0](*operands, *([0.0] if table is UNARY else []))
    return node._choose(rule, *operands)


def _pow_db(a: Any, b: Any, out: Any) -> Any:
    """d(a ** b)/db = a ** b * log(a): 0 where a == 0 and b >= 0, nan where log(a) is undefined."""
    if a == 0.0 and b >= 0.0:
        return 0.0
    if a <= 0.0:
        return math.nan
    return out * _log(a)


# op: forward rule and local derivative side by side. `c` is the constant exponent of **c.
# A derivative takes floats in backward, and in gradients(create_graph=True) the nodes of the
# derivative graph (derive.py), whose arithmetic builds Values: so it is written only with
# + - * /, the helpers above and comparisons, which compare data (a piece chosen from data is
# a constant of the derivative graph, as ops.def's IF).
UNARY: dict[str, UnaryRule] = {
    #            forward(a, c)                          d out / d a  (a, c, out)
    "neg":     (lambda a, c: -a,                      lambda a, c, out: -1.0),
    # x**0 is the constant 1: its derivative 0 everywhere, as PyTorch's
    "**c":     (lambda a, c: _pow(a, c),              lambda a, c, out: 0.0 if c == 0.0 else
                                                                        c * _pow(a, c - 1.0)),
    "ReLU":    (lambda a, c: 0.0 if a < 0.0 else a,   lambda a, c, out: _chosen("sign", out)),
    "tanh":    (lambda a, c: math.tanh(a),            lambda a, c, out: 1.0 - out * out),
    "exp":     (lambda a, c: math.exp(a),             lambda a, c, out: out),
    "log":     (lambda a, c: math.log(a),             lambda a, c, out: 1.0 / a),
    "sigmoid": (lambda a, c: _sigmoid(a),             lambda a, c, out: out * (1.0 - out)),
    "abs":     (lambda a, c: math.fabs(a),            lambda a, c, out: _chosen("sign", a)),
    "sqrt":    (lambda a, c: math.sqrt(a),            lambda a, c, out: 0.5 / out),
    "sin":     (lambda a, c: math.sin(a),             lambda a, c, out: _cos(a)),
    "cos":     (lambda a, c: math.cos(a),             lambda a, c, out: -_sin(a)),
    "softplus": (lambda a, c: _softplus(a),           lambda a, c, out: _sigmoid(a)),
    # a where finite, else 0: logsumexp's and softmax's shift (PyTorch's rule)
    "finite":  (lambda a, c: _finite(a),              lambda a, c, out: _chosen("isfinite", a)),
    # choices that derivatives make from data, as ops (so that a derivative graph makes them
    # again at new data): numbers that carry no gradient (CHOICES)
    "sign":    (lambda a, c: _sign(a),                lambda a, c, out: 0.0),
    "isfinite": (lambda a, c: 1.0 if math.isfinite(a) else 0.0, lambda a, c, out: 0.0),
    "iszero":  (lambda a, c: 1.0 if a == 0.0 else 0.0, lambda a, c, out: 0.0),
}  # fmt: skip

BINARY: dict[str, BinaryRule] = {
    #       forward(a, b)             d out / d a  (a, b, out)       d out / d b  (a, b, out)
    "+":  (lambda a, b: a + b,      lambda a, b, out: 1.0,         lambda a, b, out: 1.0),
    "-":  (lambda a, b: a - b,      lambda a, b, out: 1.0,         lambda a, b, out: -1.0),
    "*":  (lambda a, b: a * b,      lambda a, b, out: b,           lambda a, b, out: a),
    "/":  (lambda a, b: a / b,      lambda a, b, out: 1.0 / b,     lambda a, b, out: -a / (b * b)),
    "**": (lambda a, b: _pow(a, b), lambda a, b, out: b * _pow(a, b - 1.0),
                                                                   _pow_db),
    # the larger, a on a tie, nan if either is: the grad goes to the one picked
    "max": (lambda a, b: _max(a, b), lambda a, b, out: _chosen("picks_a", a, b),
                                     lambda a, b, out: 1.0 - _chosen("picks_a", a, b)),
    # a as a class index among b classes (IndexError if it is none); an index has no gradient
    "class": (lambda a, b: _class_index(a, b), lambda a, b, out: 0.0, lambda a, b, out: 0.0),
    # a where b is 0, else -0.0 (adds as nothing): sum of pick(x_j, k - j) over j is x_k
    "pick": (lambda a, b: a if b == 0.0 else -0.0,
                                     lambda a, b, out: _chosen("iszero", b),
                                     lambda a, b, out: 0.0),
    # whether max(a, b) picks a (a choice, as sign above)
    "picks_a": (lambda a, b: _picks_a(a, b), lambda a, b, out: 0.0, lambda a, b, out: 0.0),
}  # fmt: skip

CHOICES = frozenset({"sign", "isfinite", "iszero", "picks_a"})

# start + term + term + ...: operands per term, the term, and its derivatives.
NARY: dict[str, NaryRule] = {
    #       stride  term(v0, v1)              (d term / d v0, d term / d v1)
    "sum": (1,      lambda v0, v1: v0,        lambda v0, v1: (1.0, 0.0)),
    "dot": (2,      lambda v0, v1: v0 * v1,   lambda v0, v1: (v1, v0)),
}  # fmt: skip

_FAILURES = (ZeroDivisionError, ValueError, OverflowError, IndexError)


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


def _derivatives(rule: str, operands: tuple[float, ...], exponent: float, out: float,
                 wanted: tuple[bool, bool] = (True, True)) -> tuple[float, float]:  # fmt: skip
    """d out / d operand of a unary or binary op (0.0 for a missing second operand, and for
    an operand not `wanted`, whose derivative is not even computed: one that requires no
    grad)."""
    try:
        if rule in UNARY:
            return UNARY[rule][1](operands[0], exponent, out) if wanted[0] else 0.0, 0.0
        _, rule_a, rule_b = BINARY[rule]
        d_da = rule_a(operands[0], operands[1], out) if wanted[0] else 0.0
        d_db = rule_b(operands[0], operands[1], out) if wanted[1] else 0.0
        return d_da, d_db
    except _FAILURES as e:
        raise op_error(type(e), rule, operands, exponent, in_backward=True) from None


def _term_contributions(rule: str, k: int, terms: int, g: Any, v0: Any,
                        v1: Any) -> list[tuple[int, Any]]:  # fmt: skip
    """Term k of an n-ary node's backward, g its grad and v0, v1 the term's operands, as
    (operand position, amount to add), in the order they are added: what the chain of + (and
    * for dot) the node replaces does between its partial sums s_k and s_k+1. Every partial
    sum but the last, and every product term, is a fresh node whose grad is 0.0 plus one
    addition: 0.0 + g. Floats in backward, derivative nodes in gradients (ops.h's
    FG_NARY_TERM_RULE is the same rule)."""
    stride, _, term_derivatives = NARY[rule]
    sum_grad = g if k + 1 == terms else 0.0 + g  # the grad of s_k+1
    first = 1 + k * stride
    added = [(0, 1.0 * sum_grad)] if k == 0 else []  # s_1 = start + term 0
    d_dv0, d_dv1 = term_derivatives(v0, v1)
    if stride == 1:
        return added + [(first, d_dv0 * (1.0 * sum_grad))]
    term_grad = 0.0 + 1.0 * sum_grad  # the fresh product node's grad
    return added + [(first, d_dv0 * term_grad), (first + 1, d_dv1 * term_grad)]
