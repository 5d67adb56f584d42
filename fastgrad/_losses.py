"""The losses of torch.nn.functional over Values: mse_loss, l1_loss, huber_loss,
smooth_l1_loss, binary_cross_entropy_with_logits and nll_loss, each with reduction= ("mean",
"sum" or "none"). Their home is fastgrad.functional, beside softmax and cross_entropy.

An input is one Value (or number) or a list of them; a target is a number, a Value, or a
list of the same length. Written once over either implementation, from Value's ops, so the
loss is an ordinary node: backward(), Tape and run take it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload

from ._common import as_float, engine_for, engine_of

if TYPE_CHECKING:
    from ._core import Value

__all__ = ["binary_cross_entropy_with_logits", "huber_loss", "l1_loss", "mse_loss", "nll_loss",
           "smooth_l1_loss"]

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
    engine = engine_for(xs + ts)
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
    """(input - target) ** 2, averaged (or summed, or each) over the elements, as torch's.

    Args:
        input: a Value or a number, or a list of them.
        target: a number or a Value, or a list of them as long as input.
        reduction: "mean" averages the elements' losses, "sum" adds them, "none" returns
            each (a list when input is a list).

    Returns:
        The loss, a Value of the graph (a list of Values with reduction="none" and a list).

    Raises:
        ValueError: a list input with a target that is not a list of its length, an empty
            input, or an unknown reduction.
        TypeError: an element that is not a Value or a real number.
    """
    return _elementwise("mse_loss", lambda x, t: (x - t) ** 2, input, target, reduction)


@overload
def l1_loss(input: list[Any], target: Any, reduction: Literal["none"]) -> list[Value]: ...
@overload
def l1_loss(input: Any, target: Any, reduction: Reduction = "mean") -> Value: ...
def l1_loss(input: Any, target: Any, reduction: Reduction = "mean") -> Any:
    """|input - target|, averaged (or summed, or each) over the elements, as torch's.

    Args:
        input: a Value or a number, or a list of them.
        target: a number or a Value, or a list of them as long as input.
        reduction: "mean" averages the elements' losses, "sum" adds them, "none" returns
            each (a list when input is a list).

    Returns:
        The loss, a Value of the graph (a list of Values with reduction="none" and a list).

    Raises:
        ValueError: a list input with a target that is not a list of its length, an empty
            input, or an unknown reduction.
        TypeError: an element that is not a Value or a real number.
    """
    return _elementwise("l1_loss", lambda x, t: abs(x - t), input, target, reduction)


def _smaller(a: Any, b: float, engine: Any) -> Any:
    """min(a, b) as a node (-max(-a, -b)): a Tape's replay chooses again at every row."""
    return -engine.maximum(-a, -b)


def _huber(x: Any, t: Any, delta: float, engine: Any) -> Any:
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2), d = x - t, written with
    m = min(|d|, delta) as 0.5 m^2 + delta (|d| - m): one expression for both pieces."""
    d = abs(x - t)
    m = _smaller(d, delta, engine)
    return 0.5 * m * m + delta * (d - m)


def _positive(x: Any, what: str, name: str, zero: bool = False) -> float:
    number = as_float(x, f"{what}() {name}")
    if not (number > 0.0 or (zero and number == 0.0)):
        raise ValueError(f"{what}(): {name} must be {'at least 0' if zero else 'positive'}, "
                         f"not {number!r}")  # fmt: skip
    return number


def huber_loss(input: Any, target: Any, reduction: Reduction = "mean",
               delta: float = 1.0) -> Any:  # fmt: skip
    """0.5 (input - target)^2 where |input - target| < delta, else delta (|input - target|
    - delta / 2), as torch's huber_loss: averaged (or summed, or each) over the elements.

    The piece is chosen by a node (a maximum), so a Tape's replay chooses again at every row.

    Args:
        input: a Value or a number, or a list of them.
        target: a number or a Value, or a list of them as long as input.
        reduction: "mean" averages the elements' losses, "sum" adds them, "none" returns
            each (a list when input is a list).
        delta: where the quadratic piece turns linear, positive.

    Returns:
        The loss, a Value of the graph (a list of Values with reduction="none" and a list).

    Raises:
        ValueError: a list input with a target that is not a list of its length, an empty
            input, an unknown reduction, or delta <= 0.
        TypeError: an element that is not a Value or a real number.
    """
    d = _positive(delta, "huber_loss", "delta")
    xs, ts, listed, engine = _pairs(input, target, "huber_loss")
    return _reduce([_huber(x, t, d, engine) for x, t in zip(xs, ts)], reduction, listed, engine,
                   "huber_loss")  # fmt: skip


def smooth_l1_loss(input: Any, target: Any, reduction: Reduction = "mean",
                   beta: float = 1.0) -> Any:  # fmt: skip
    """0.5 (input - target)^2 / beta where |input - target| < beta, else |input - target| -
    beta / 2, as torch's smooth_l1_loss (beta = 0: l1_loss): averaged (or summed, or each).

    Args:
        input: a Value or a number, or a list of them.
        target: a number or a Value, or a list of them as long as input.
        reduction: "mean" averages the elements' losses, "sum" adds them, "none" returns
            each (a list when input is a list).
        beta: where the quadratic piece turns linear, at least 0.

    Returns:
        The loss, a Value of the graph (a list of Values with reduction="none" and a list).

    Raises:
        ValueError: a list input with a target that is not a list of its length, an empty
            input, an unknown reduction, or beta < 0.
        TypeError: an element that is not a Value or a real number.
    """
    b = _positive(beta, "smooth_l1_loss", "beta", zero=True)
    xs, ts, listed, engine = _pairs(input, target, "smooth_l1_loss")
    if b == 0.0:
        losses = [abs(x - t) for x, t in zip(xs, ts)]
    else:
        losses = []
        for x, t in zip(xs, ts):
            d = abs(x - t)
            m = _smaller(d, b, engine)
            losses.append(0.5 * m * m / b + (d - m))
    return _reduce(losses, reduction, listed, engine, "smooth_l1_loss")


def nll_loss(input: Any, target: Any, reduction: Reduction = "mean") -> Any:
    """-input[target]: the negative log-likelihood of log-probabilities (log_softmax's) at a
    class index, as torch's nll_loss.

    Args:
        input: one sample, a list of C Values (log-probabilities); or a batch, N such lists.
        target: the class index (an int, or a Value holding it, as cross_entropy takes); N
            of them for a batch.
        reduction: for a batch, "mean" averages the samples' losses, "sum" adds them, "none"
            returns each.

    Returns:
        The loss, a Value (a list of Values for a batch with reduction="none").

    Raises:
        ValueError: a batch with a different number of targets, or an unknown reduction.
        IndexError: a target that is not a class of its sample (for a Value target, when
            a replay's row holds such a label).
    """
    from .functional import _picked, _values

    rows = list(input)
    batch = bool(rows) and isinstance(rows[0], (list, tuple))
    samples = rows if batch else [rows]
    targets = list(target) if batch else [target]
    if len(targets) != len(samples):
        raise ValueError(f"nll_loss(): {len(samples)} samples and {len(targets)} targets")
    losses, engine = [], None
    for scores, k in zip(samples, targets):
        vs, engine = _values(scores, "nll_loss")
        if engine_of(k) is not None:
            losses.append(-_picked(vs, k, engine))
            continue
        index = k.__index__() if hasattr(k, "__index__") else k
        if not isinstance(index, int) or not 0 <= index < len(vs):
            raise IndexError(f"nll_loss(): target {k!r} is not a class of {len(vs)} scores")
        losses.append(-vs[index])
    if not batch:
        return losses[0]
    return _reduce(losses, reduction, True, engine, "nll_loss")


def binary_cross_entropy_with_logits(input: Any, target: Any, weight: Any = None,
                                     reduction: Reduction = "mean",
                                     pos_weight: Any = None) -> Any:  # fmt: skip
    """The cross entropy of sigmoid(input) against targets in [0, 1], computed without
    overflow: (1 - t) * x + (1 + (pos_weight - 1) * t) * softplus(-x), times weight, as
    torch's binary_cross_entropy_with_logits.

    Args:
        input: a Value or a number, or a list of them.
        target: a number in [0, 1] or a Value, or a list of them as long as input.
        reduction: "mean" averages the elements' losses, "sum" adds them, "none" returns
            each (a list when input is a list).
        weight: a number or Value multiplying every element's loss, or one per element.
        pos_weight: the positive class's weight, a number or Value, or one per element.

    Returns:
        The loss, a Value of the graph (a list of Values with reduction="none" and a list).

    Raises:
        ValueError: a list input with a target that is not a list of its length, an empty
            input, an unknown reduction, or a weight list of
            another length.
        TypeError: an element that is not a Value or a real number.
    """
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
