"""torch.nn.utils' gradient clipping over Values: clip_grad_norm_ and clip_grad_value_.

Both change the parameters' .grad in place (hence the trailing underscore, as PyTorch names
it) and work over either implementation's Values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._common import as_float, engine_of

if TYPE_CHECKING:
    from .._core import Value

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _params(parameters: Value | Iterable[Value]) -> list[Any]:
    params = [parameters] if engine_of(parameters) is not None else list(parameters)  # type: ignore[arg-type]
    for p in params:
        if engine_of(p) is None:
            raise TypeError(f"parameters must be Values, not {type(p).__name__!r}")
    return params


def clip_grad_norm_(parameters: Value | Iterable[Value], max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:  # fmt: skip
    """Scales every grad by max_norm / (total + 1e-6) where that is below 1, total being the
    norm_type-norm of all the grads together (inf: the largest |grad|); returns total, the
    norm before clipping."""
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
    """Clamps every grad into [-clip_value, clip_value] (nan stays nan)."""
    params = _params(parameters)
    c = as_float(clip_value, "clip_value")
    for p in params:
        g = p.grad
        p.grad = g if math.isnan(g) else min(max(g, -c), c)
