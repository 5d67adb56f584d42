"""fastgrad.gradcheck: backward() against central differences, input by input."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .functional import _values

__all__ = ["GradcheckError", "GradcheckReport", "gradcheck"]


@dataclass(frozen=True)
class InputCheck:
    """One input's check.

    Attributes:
        index: the input's position in gradcheck's inputs.
        label: the input Value's label ("" when it has none).
        analytic: the gradient backward() gives.
        numeric: the central difference (f(x + eps) - f(x - eps)) / 2 eps.
        error: |analytic - numeric|.
        allowed: atol + rtol * |numeric|.
    """

    index: int
    label: str
    analytic: float  # from backward()
    numeric: float  # (f(x + eps) - f(x - eps)) / 2 eps
    error: float  # |analytic - numeric|
    allowed: float  # atol + rtol * |numeric|

    @property
    def passed(self) -> bool:
        """Whether error <= allowed (False when either is nan)."""
        return self.error <= self.allowed  # False for nan, as it should be


@dataclass(frozen=True)
class GradcheckReport:
    """What gradcheck found: true when every input passed; str() says which input is worst.

    Args:
        inputs: one InputCheck per input, in the inputs' order.
    """

    inputs: list[InputCheck]

    @property
    def passed(self) -> bool:
        """Whether every input is within its allowance."""
        return all(check.passed for check in self.inputs)

    @property
    def worst(self) -> InputCheck:
        """The input furthest over its allowance (or nearest to it, when all pass)."""

        def excess(check: InputCheck) -> float:
            over = check.error - check.allowed
            return float("inf") if over != over else over  # nan: the worst of all

        return max(self.inputs, key=excess)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        w = self.worst
        name = f"input {w.index}" + (f" ({w.label!r})" if w.label else "")
        verdict = "passed" if self.passed else "FAILED"
        return (f"gradcheck {verdict} for {len(self.inputs)} inputs; worst: {name}, "
                f"backward gives {w.analytic!r}, central differences {w.numeric!r} "
                f"(off by {w.error:.3g}, allowed {w.allowed:.3g})")  # fmt: skip


class GradcheckError(AssertionError):
    """Raised by gradcheck when an input's gradient is off; its message is str(report).

    Args:
        report: the GradcheckReport, kept as .report.
    """

    def __init__(self, report: GradcheckReport) -> None:
        super().__init__(str(report))
        self.report = report


def gradcheck(f: Callable[..., Any], inputs: Sequence[Any], eps: float = 1e-6,
              rtol: float = 1e-5, atol: float = 1e-8,
              raise_exception: bool = True) -> GradcheckReport:  # fmt: skip
    """Compares the gradient backward() gives f(*inputs) with central differences
    (f(x + eps) - f(x - eps)) / 2 eps for every input, as torch.autograd.gradcheck.

    Args:
        f: a function of len(inputs) Values that returns a Value.
        inputs: Values, whose data and grads are left as they were, or numbers, which become
            leaf Values (of the engine of the Values among them, else fastgrad's).
        eps: the step of the central differences.
        rtol: the relative tolerance: an input passes when |analytic - numeric| <= atol +
            rtol * |numeric|.
        atol: the absolute tolerance.
        raise_exception: False returns a failing report instead of raising.

    Returns:
        The GradcheckReport, true when every input passed.

    Raises:
        GradcheckError: an input is out of tolerance (unless raise_exception is False).
        ValueError: no inputs.
        TypeError: an input that is not a Value or a real number.
    """
    if not inputs:
        raise ValueError("gradcheck needs at least one input")
    values, _ = _values(inputs, "gradcheck")
    saved = [(v.data, v.grad) for v in values]
    try:
        for v in values:
            v.grad = 0.0
        f(*values).backward()
        analytic = [v.grad for v in values]
        checks = []
        for i, v in enumerate(values):
            x = saved[i][0]
            v.data = x + eps
            up = f(*values).data
            v.data = x - eps
            down = f(*values).data
            v.data = x
            numeric = (up - down) / (2 * eps)
            error, allowed = abs(analytic[i] - numeric), atol + rtol * abs(numeric)
            checks.append(InputCheck(i, v.label, analytic[i], numeric, error, allowed))
    finally:
        for v, (data, grad) in zip(values, saved):
            v.data, v.grad = data, grad
    report = GradcheckReport(checks)
    if raise_exception and not report.passed:
        raise GradcheckError(report)
    return report
