"""torch.nn.utils over Values: gradient clipping (clip_grad_norm_, clip_grad_value_) and
the parameters as one flat float64 array (parameters_to_vector, vector_to_parameters, and the
same for their grads: grads_to_vector, vector_to_grads).

The clipping functions change the parameters' .grad in place (hence the trailing underscore,
as PyTorch names it). All work over either implementation's Values; the flat arrays are read
and written by one C loop each (the pure-Python engine's by a Python loop).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from .._common import as_float, engine_for, engine_of

if TYPE_CHECKING:
    from .._core import Value

__all__ = ["clip_grad_norm_", "clip_grad_value_", "grads_to_vector", "parameters_to_vector",
           "vector_to_grads", "vector_to_parameters"]


def _params_listed(parameters: Value | Iterable[Value]) -> list[Any]:
    """parameters as a list (one Value: a list of it; a list: itself), unchecked."""
    if type(parameters) is list:
        return parameters
    return [parameters] if engine_of(parameters) is not None else list(parameters)  # type: ignore[arg-type]


def _params(parameters: Value | Iterable[Value]) -> list[Any]:
    params = _params_listed(parameters)
    for p in params:
        if engine_of(p) is None:
            raise TypeError(f"parameters must be Values, not {type(p).__name__!r}")
    return params


def clip_grad_norm_(parameters: Value | Iterable[Value], max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:  # fmt: skip
    """Scales every grad by max_norm / (total + 1e-6) where that is below 1, total being the
    norm_type-norm of all the grads together, as torch.nn.utils.clip_grad_norm_.

    Args:
        parameters: a Value or an iterable of Values whose grads are clipped.
        max_norm: the largest total norm left.
        norm_type: p of the p-norm; inf takes the largest |grad|, -inf the smallest, 0 counts
            the non-zero grads.
        error_if_nonfinite: True raises when the total norm is nan or infinite.

    Returns:
        The total norm before clipping, a float.

    Raises:
        RuntimeError: error_if_nonfinite and a total norm that is nan or infinite (no grad
            changes then).
        TypeError: an item that is not a Value, or a norm that is not a real number.
    """
    params = _params(parameters)
    max_norm = as_float(max_norm, "max_norm")
    p_norm = as_float(norm_type, "norm_type")
    if not params:
        return 0.0
    sizes = [abs(p.grad) for p in params]
    if p_norm == math.inf:
        total = max(sizes)
    elif p_norm == -math.inf:
        total = min(sizes)
    elif p_norm == 0.0:
        total = float(sum(1 for s in sizes if s != 0.0))
    else:  # scaled by the largest, so that tiny grads do not underflow (nor huge overflow)
        largest = max(sizes)
        if largest == 0.0 or not math.isfinite(largest):
            total = largest if not any(math.isnan(s) for s in sizes) else math.nan
        else:
            total = largest * math.fsum((s / largest) ** p_norm for s in sizes) ** (1.0 / p_norm)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {p_norm} for gradients from `parameters` "
                           "is non-finite, so it cannot be clipped. To disable this error and "
                           "scale the gradients by the non-finite norm anyway, set "
                           "`error_if_nonfinite=False`")  # fmt: skip
    coefficient = min(max_norm / (total + 1e-6), 1.0) if not math.isnan(total) else math.nan
    for p in params:
        p.grad = p.grad * coefficient
    return float(total)


def clip_grad_value_(parameters: Value | Iterable[Value], clip_value: float) -> None:
    """Clamps every grad into [-clip_value, clip_value] (nan stays nan).

    Args:
        parameters: a Value or an iterable of Values whose grads are clamped.
        clip_value: the largest |grad| left.

    Raises:
        TypeError: an item that is not a Value, or clip_value is not a real number.
    """
    params = _params(parameters)
    c = as_float(clip_value, "clip_value")
    for p in params:
        g = p.grad
        p.grad = g if math.isnan(g) else min(max(g, -c), c)


def _one_pass(parameters: Value | Iterable[Value], vec: Any, grads: bool) -> np.ndarray:
    """The engine's one-pass loop (C for the C engine's Values): the parameters' data or grads
    into a new array (vec None), or written from vec (every item checked before any write);
    returns the array read or written."""
    params = _params_listed(parameters)  # (a list already: as it is)
    engine = engine_of(params[0]) if params else None
    module = engine_for(params)
    array = np.empty(len(params)) if vec is None else _vector(vec, len(params))
    loop = module._read_parameters if vec is None else module._write_parameters
    try:
        loop(params, array, grads)
        return array
    except TypeError:  # name the culprit: not a Value, or another engine's
        for i, p in enumerate(params):
            if engine_of(p) != engine:
                kind = "a Value of the other engine" if engine_of(p) else type(p).__name__
                raise TypeError(f"parameters must be Values of one engine: item {i} is "
                                f"{kind!r}") from None  # fmt: skip
        raise


def _vector(vec: Any, count: int) -> np.ndarray:
    try:
        values = np.ascontiguousarray(vec, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"vec must be an array of numbers: {e}") from None
    if values.ndim != 1:
        raise ValueError(f"vec must be 1-D, not of shape {values.shape}")
    if len(values) != count:
        raise ValueError(f"vec has {len(values)} numbers for {count} parameters")
    return values


def parameters_to_vector(parameters: Value | Iterable[Value]) -> np.ndarray:
    """The parameters' data, in order, as a new 1-D float64 array (as PyTorch's
    parameters_to_vector flattens its tensors).

    Args:
        parameters: Values (model.parameters()), or one Value.

    Returns:
        An array of len(parameters) float64 numbers.

    Raises:
        TypeError: an item is not a Value, or the Values mix the C and pure-Python engines.
    """
    return _one_pass(parameters, None, grads=False)


def vector_to_parameters(vec: Any, parameters: Value | Iterable[Value]) -> None:
    """Sets each parameter's data to vec's entry, in order (parameters_to_vector's inverse).

    Args:
        vec: 1-D numbers, one per parameter (converted to float64).
        parameters: Values (model.parameters()), or one Value.

    Raises:
        TypeError: vec is not numbers, or parameters are not Values of one engine.
        ValueError: vec is not 1-D or its length is not the number of parameters; nothing
            is written then.
    """
    _one_pass(parameters, vec, grads=False)


def grads_to_vector(parameters: Value | Iterable[Value]) -> np.ndarray:
    """The parameters' grads, in order, as a new 1-D float64 array.

    Args:
        parameters: Values (model.parameters()), or one Value.

    Returns:
        An array of len(parameters) float64 numbers.

    Raises:
        TypeError: an item is not a Value, or the Values mix the C and pure-Python engines.
    """
    return _one_pass(parameters, None, grads=True)


def vector_to_grads(vec: Any, parameters: Value | Iterable[Value]) -> None:
    """Sets each parameter's grad to vec's entry, in order (grads_to_vector's inverse).

    Args:
        vec: 1-D numbers, one per parameter (converted to float64).
        parameters: Values (model.parameters()), or one Value.

    Raises:
        TypeError: vec is not numbers, or parameters are not Values of one engine.
        ValueError: vec is not 1-D or its length is not the number of parameters; nothing
            is written then.
    """
    _one_pass(parameters, vec, grads=True)
