"""The losses of torch.nn.functional over Values: mse_loss, l1_loss and
binary_cross_entropy_with_logits, each with reduction= ("mean", "sum" or "none").

An input is one Value (or number) or a list of them; a target is a number, a Value, or a
list of the same length. Written once over either implementation, from Value's ops, so the
loss is an ordinary node: backward(), Tape and run take it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload

from ._common import as_float, engine_of

if TYPE_CHECKING:
    from ._core import Value

__all__ = ["binary_cross_entropy_with_logits", "l1_loss", "mse_loss"]

Reduction = Literal["mean", "sum", "none"]


def _pairs(input: Any, target: Any, what: str) -> tuple[list[Any], list[Any], bool, Any]:
    """The inputs as Values and the targets, whether they came as lists, and the engine."""
    listed = isinstance(input, (list, tuple))
    xs = list(input) if listed else [input]
    ts = list(target) if isinstance(target, (list, tuple)) else None
    if ts is None:
        if listed:
            raise ValueError(f"{what}(): a list of inputs takes a list of targets")
        ts = [target]
    if len(ts) != len(xs):
        raise ValueError(f"{what}(): {len(xs)} inputs and {len(ts)} targets")
    if not xs:
        raise ValueError(f"{what}() of no inputs")
    from .functional import _engine

    engine = _engine(xs + ts)
    xs = [x if engine_of(x) else engine.Value(as_float(x, f"{what}() input")) for x in xs]
    ts = [t if engine_of(t) else as_float(t, f"{what}() target") for t in ts]
    return xs, ts, listed, engine


def _reduce(losses: list[Any], reduction: str, listed: bool, engine: Any, what: str) -> Any:
    if reduction == "none":
        return losses if listed else losses[0]
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{what}(): reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    total = engine.sum(losses)
    return total / len(losses) if reduction == "mean" else total


def _elementwise(what: str, loss: Callable[[Any, Any], Any], input: Any, target: Any,
                 reduction: str) -> Any:  # fmt: skip
    xs, ts, listed, engine = _pairs(input, target, what)
    return _reduce([loss(x, t) for x, t in zip(xs, ts)], reduction, listed, engine, what)


@overload
def mse_loss(input: list[Any], target: Any, reduction: Literal["none"]) -> list[Value]: ...
@overload
def mse_loss(input: Any, target: Any, reduction: Reduction = "mean") -> Value: ...
def mse_loss(input: Any, target: Any, reduction: Reduction = "mean") -> Any:
    """(input - target) ** 2, averaged (or summed, or each) over the elements."""
    return _elementwise("mse_loss", lambda x, t: (x - t) ** 2, input, target, reduction)


@overload
def l1_loss(input: list[Any], target: Any, reduction: Literal["none"]) -> list[Value]: ...
@overload
def l1_loss(input: Any, target: Any, reduction: Reduction = "mean") -> Value: ...
def l1_loss(input: Any, target: Any, reduction: Reduction = "mean") -> Any:
    """|input - target|, averaged (or summed, or each) over the elements."""
    return _elementwise("l1_loss", lambda x, t: abs(x - t), input, target, reduction)


def binary_cross_entropy_with_logits(input: Any, target: Any, weight: Any = None,
                                     reduction: Reduction = "mean",
                                     pos_weight: Any = None) -> Any:  # fmt: skip
    """The cross entropy of sigmoid(input) against targets in [0, 1], computed without
    overflow: (1 - t) * x + (1 + (pos_weight - 1) * t) * softplus(-x), times weight."""
    what = "binary_cross_entropy_with_logits"
    xs, ts, listed, engine = _pairs(input, target, what)
    weights = _broadcast(weight, len(xs), what, "weight")
    pos_weights = _broadcast(pos_weight, len(xs), what, "pos_weight")
    losses = []
    for x, t, w, pw in zip(xs, ts, weights, pos_weights):
        log_weight = 1.0 if pw is None else 1 + (pw - 1) * t
        loss = (1 - t) * x + log_weight * (-x).softplus()
        losses.append(loss if w is None else loss * w)
    return _reduce(losses, reduction, listed, engine, what)


def _broadcast(value: Any, count: int, what: str, name: str) -> list[Any]:
    if value is None or not isinstance(value, (list, tuple)):
        return [None if value is None else _number_or_value(value, what, name)] * count
    if len(value) != count:
        raise ValueError(f"{what}(): {name} has {len(value)} entries for {count} inputs")
    return [_number_or_value(v, what, name) for v in value]


def _number_or_value(x: Any, what: str, name: str) -> Any:
    return x if engine_of(x) else as_float(x, f"{what}() {name}")
