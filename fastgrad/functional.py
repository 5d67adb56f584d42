"""torch.nn.functional's losses and activations over Values, built from Value's ops: the home
of every loss (mse_loss, l1_loss, huber_loss, smooth_l1_loss, binary_cross_entropy_with_logits,
nll_loss, cross_entropy) and of softmax, log_softmax and logsumexp. (grad, value_and_grad and
hessian, once here, are in fastgrad.transforms and still importable from here.)

Written once over either implementation: the helpers take the engine of the Values they are
given (fastgrad's chosen one for plain numbers).

The choices these functions make from the data (softmax's and logsumexp's shift by the
largest value, huber's piece) are nodes of the graph (``maximum``), so a Tape's replay makes
them again for each row. A choice made in your own code from ``.data`` while a graph is built
is a number in that graph: a Tape replays it as recorded, as ``torch.jit.trace`` and
``jax.jit`` keep a traced branch.
"""

from __future__ import annotations

import operator
import types
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, SupportsFloat

from ._common import as_float, engine_for, engine_of
from ._losses import (
    binary_cross_entropy_with_logits,
    huber_loss,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)

if TYPE_CHECKING:  # both implementations' Values; the C extension's stub describes them
    from ._core import Value

__all__ = [
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "huber_loss",
    "l1_loss",
    "log_softmax",
    "logsumexp",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
    "softmax",
]


def _engine(values: Sequence[Any], engine: types.ModuleType | None = None) -> types.ModuleType:
    """The implementation the values belong to (the first Value decides), else fastgrad's."""
    return engine_for(values, engine)  # type: ignore[no-any-return]


def _values(values: Iterable[Any], what: str) -> tuple[list[Any], types.ModuleType]:
    """The items as Values of one engine (numbers become leaves), and that engine."""
    items = list(values)
    if not items:
        raise ValueError(f"{what}() of an empty list")
    engine = _engine(items)
    return [v if isinstance(v, engine.Value) else engine.Value(as_float(v, f"{what}() item"))
            for v in items], engine  # fmt: skip


def _shift(values: list[Any], engine: types.ModuleType) -> Any:
    """The largest value, subtracted before exp so that large inputs do not overflow; an
    infinite one shifts by 0 (PyTorch's logsumexp), so that inf - inf makes no nan. Nodes
    (maximum, then finite), so that a Tape's replay picks the largest of its own row."""
    m = values[0]
    for v in values[1:]:
        m = engine.maximum(m, v)
    return engine._finite(m)


def softmax(values: Iterable[Value | SupportsFloat]) -> list[Value]:
    """exp(v - m) / sum of them, m the largest value (0 if it is infinite), a node of the
    graph, so that every replay shifts by its own row's.

    Args:
        values: the scores, Values or numbers.

    Returns:
        One Value per input, summing to 1.

    Raises:
        ValueError: no values.
        TypeError: an item that is not a Value or a real number.
    """
    vs, engine = _values(values, "softmax")
    m = _shift(vs, engine)
    exps = [(v - m).exp() for v in vs]
    total = engine.sum(exps)
    return [e / total for e in exps]


def logsumexp(values: Iterable[Value | SupportsFloat]) -> Value:
    """log(sum(exp(v))) as m + log(sum(exp(v - m))), m the largest value (0 if it is
    infinite), a node of the graph, so that every replay shifts by its own row's.

    Args:
        values: Values or numbers.

    Returns:
        log(sum(exp(v))), a Value.

    Raises:
        ValueError: no values.
        TypeError: an item that is not a Value or a real number.
    """
    vs, engine = _values(values, "logsumexp")
    m = _shift(vs, engine)
    total: Value = engine.sum([(v - m).exp() for v in vs])
    result: Value = total.log() + m
    return result


def log_softmax(values: Iterable[Value | SupportsFloat]) -> list[Value]:
    """v - logsumexp(values) for each v, as torch's log_softmax: the log-probabilities that
    nll_loss takes, without the overflow of log(softmax).

    Args:
        values: the scores, Values or numbers.

    Returns:
        One Value per input: its log-probability.

    Raises:
        ValueError: no values.
        TypeError: an item that is not a Value or a real number.
    """
    vs, _ = _values(values, "log_softmax")
    total = logsumexp(vs)
    return [v - total for v in vs]


def cross_entropy(logits: Iterable[Value | SupportsFloat], target_index: int | Value) -> Value:
    """-log(softmax(logits)[target_index]) = logsumexp(logits) - logits[target_index]:
    PyTorch's cross_entropy of one sample of unnormalised scores and a class index.

    The index is an int, or a Value holding the index (such as a leaf that ``Tape.run``
    feeds from a vector of labels, ``targets=[t], y=labels``): then the score is picked by
    nodes that every replay evaluates at its own row, with the bits the int gives, and a
    row whose label is not a class raises IndexError. An index has no gradient: a target
    Value that requires grad gets 0.0 added.

    Args:
        logits: the unnormalised scores of one sample, Values or numbers.
        target_index: the true class: an int, or a Value holding it.

    Returns:
        The loss, a Value.

    Raises:
        IndexError: an index that is not a class of these logits.
        ValueError: no logits.
        TypeError: a logit that is not a Value or a real number.
    """
    vs, engine = _values(logits, "cross_entropy")
    if engine_of(target_index) is not None:
        picked = _picked(vs, target_index, engine)
    else:
        index = operator.index(target_index)  # type: ignore[arg-type]
        if not 0 <= index < len(vs):
            raise IndexError(f"target_index {index} is not a class of these {len(vs)} logits")
        picked = vs[index]
    loss: Value = logsumexp(vs) - picked
    return loss


def _picked(vs: list[Any], target: Any, engine: types.ModuleType) -> Any:
    """vs[k] for the class index k that target holds, as nodes: k checked as an index, then
    -0.0 + pick(vs[0], k) + pick(vs[1], k - 1) + ..., each pick vs[j] where k - j is 0 and
    else -0.0, which adds as nothing; so the sum has vs[k]'s bits, and its grad reaches
    vs[k] alone (the others get 0.0 added)."""
    k = engine._class_index(target, float(len(vs)))
    picks = [engine._pick(v, k - j if j else k) for j, v in enumerate(vs)]
    return engine.sum(picks, start=-0.0)


def __getattr__(name: str) -> Any:
    """grad, value_and_grad and hessian, here before fastgrad.transforms held them."""
    if name in ("grad", "value_and_grad", "hessian"):
        from . import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
