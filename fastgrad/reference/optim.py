"""The parameter updates of fastgrad.optim over pure-Python Values: the twin of csrc/optim.c.

Each step is PyTorch's single-tensor rule (torch.optim with foreach=False) for parameters
that are one number each, in its order of operations: lerp as its CPU kernel computes it,
addcmul as self + value * t1 * t2, addcdiv as self + value * (t1 / t2). The state arrays are
float64 numpy arrays of one entry per parameter, updated in place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .value import Value

__all__ = ["_Parameters", "_read_parameters", "_write_parameters"]


def _lerp(start: float, end: float, weight: float) -> float:
    """torch.lerp for one number"""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


class _Parameters:
    """The parameter Values of one optimizer group, and the loops that update them."""

    def __init__(self, params: Iterable[Value]) -> None:
        self.params = list(params)
        for p in self.params:
            if not isinstance(p, Value):
                raise TypeError(f"optimizer parameters must be Values, not {type(p).__name__!r}")

    def __len__(self) -> int:
        return len(self.params)

    def _fits(self, *arrays: Any) -> None:
        for array in arrays:
            if len(array) != len(self.params):
                raise ValueError(f"an optimizer state array has {len(array)} entries for "
                                 f"{len(self.params)} parameters")  # fmt: skip

    def sgd(self, lr: float, momentum: float, dampening: float, weight_decay: float,
            nesterov: bool, maximize: bool, momentum_buffer: Any,
            has_buffer: Any) -> None:  # fmt: skip
        self._fits(momentum_buffer, has_buffer)
        for i, p in enumerate(self.params):
            d = -p._grad if maximize else p._grad
            if weight_decay != 0.0:
                d = d + weight_decay * p._data
            if momentum != 0.0:
                if not has_buffer[i]:
                    buf = d
                    has_buffer[i] = 1
                else:
                    buf = float(momentum_buffer[i]) * momentum + (1.0 - dampening) * d
                momentum_buffer[i] = buf
                d = d + momentum * buf if nesterov else buf
            p._data = p._data + -lr * d

    def adam(self, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
             decoupled: bool, amsgrad: bool, maximize: bool, step: Any, exp_avg: Any,
             exp_avg_sq: Any, max_exp_avg_sq: Any) -> None:  # fmt: skip
        self._fits(step, exp_avg, exp_avg_sq, max_exp_avg_sq)
        for i, p in enumerate(self.params):
            g = -p._grad if maximize else p._grad
            t = float(step[i]) + 1.0
            step[i] = t
            if weight_decay != 0.0:
                if decoupled:
                    p._data = p._data * (1.0 - lr * weight_decay)
                else:
                    g = g + weight_decay * p._data
            m = _lerp(float(exp_avg[i]), g, 1.0 - beta1)
            v = float(exp_avg_sq[i]) * beta2 + (1.0 - beta2) * g * g
            exp_avg[i], exp_avg_sq[i] = m, v
            bias_correction1 = 1.0 - beta1**t
            bias_correction2 = 1.0 - beta2**t
            step_size = lr / bias_correction1
            if amsgrad:
                v_max = float(max_exp_avg_sq[i])
                if math.isnan(v) or v > v_max:  # torch.maximum: nan wins
                    v_max = v
                max_exp_avg_sq[i] = v_max
                denom = _sqrt(v_max) / bias_correction2**0.5 + eps
            else:
                denom = _sqrt(v) / bias_correction2**0.5 + eps
            p._data = p._data + -step_size * _div(m, denom)

    def rmsprop(self, lr: float, alpha: float, eps: float, weight_decay: float, momentum: float,
                centered: bool, maximize: bool, step: Any, square_avg: Any, grad_avg: Any,
                momentum_buffer: Any) -> None:  # fmt: skip
        self._fits(step, square_avg, grad_avg, momentum_buffer)
        for i, p in enumerate(self.params):
            g = -p._grad if maximize else p._grad
            step[i] = float(step[i]) + 1.0
            if weight_decay != 0.0:
                g = g + weight_decay * p._data
            s = float(square_avg[i]) * alpha + (1.0 - alpha) * g * g
            square_avg[i] = s
            if centered:
                a = _lerp(float(grad_avg[i]), g, 1.0 - alpha)
                grad_avg[i] = a
                avg = _sqrt(s + -1.0 * a * a)
            else:
                avg = _sqrt(s)
            avg = avg + eps
            if momentum > 0.0:
                buf = float(momentum_buffer[i]) * momentum + 1.0 * _div(g, avg)
                momentum_buffer[i] = buf
                p._data = p._data + -lr * buf
            else:
                p._data = p._data + -lr * _div(g, avg)

    def rule(self, name: str, hyper: Any, states: Any) -> None:
        """One step of a rule of RULES: its hyperparameters and state arrays, in its order."""
        update, hyper_count, state_count = RULES.get(name, (None, -1, -1))
        if update is None or len(hyper) != hyper_count or len(states) != state_count:
            raise ValueError(f"no optimizer rule {name!r} of {len(hyper)} hyperparameters and "
                             f"{len(states)} states")  # fmt: skip
        self._fits(*states)
        h = [float(x) for x in hyper]
        for i, p in enumerate(self.params):
            update(p, h, states, i)

    def zero_grad(self) -> None:
        for p in self.params:
            p._grad = 0.0

    def fill_grads(self, value: float) -> None:
        for p in self.params:
            p._grad = value

    def read_grads(self, out: Any) -> None:
        if len(out) != len(self.params):
            raise ValueError(f"{len(out)} places for {len(self.params)} grads")
        for i, p in enumerate(self.params):
            out[i] = p._grad


def _sqrt(x: float) -> float:
    """C's sqrt: nan for a negative number (a centered average's rounding, a loaded state),
    where Python raises, as PyTorch gives."""
    return math.sqrt(x) if x >= 0.0 else math.nan


def _div(x: float, y: float) -> float:
    """C's x / y: where Python raises for y == 0, IEEE's inf or nan, as PyTorch gives."""
    if y != 0.0:
        return x / y
    if x == 0.0 or math.isnan(x):
        return math.nan
    return math.copysign(math.inf, x) * math.copysign(1.0, y)


# ---- the table of per-parameter rules (csrc/optim.c's): one function each, one row each ----


def _maximum(a: float, b: float) -> float:
    """torch.maximum of two numbers: nan wins"""
    return math.nan if math.isnan(a) or math.isnan(b) else a if a > b else b


def _rule_grad(p: Value, maximize: float, weight_decay: float) -> float:
    g = -p._grad if maximize != 0.0 else p._grad
    return g + weight_decay * p._data if weight_decay != 0.0 else g


def _nadam(p: Value, h: list[float], s: Any, i: int) -> None:
    """h lr beta1 beta2 eps weight_decay momentum_decay decoupled maximize;
    s step mu_product exp_avg exp_avg_sq"""
    lr, beta1, beta2, eps, wd, decay, decoupled, maximize = h
    g = _rule_grad(p, maximize, 0.0 if decoupled != 0.0 else wd)
    t = float(s[0][i]) + 1.0
    s[0][i] = t
    bias_correction2 = 1.0 - beta2**t
    if wd != 0.0 and decoupled != 0.0:
        p._data = p._data * (1.0 - lr * wd)
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * decay))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1.0) * decay))
    mu_product = float(s[1][i]) * mu
    s[1][i] = mu_product
    m = _lerp(float(s[2][i]), g, 1.0 - beta1)
    v = float(s[3][i]) * beta2 + (1.0 - beta2) * g * g
    s[2][i], s[3][i] = m, v
    denom = _sqrt(_div(v, bias_correction2)) + eps
    mu_product_next = mu_product * mu_next
    p._data = p._data + _div(-lr * (1.0 - mu), 1.0 - mu_product) * _div(g, denom)
    p._data = p._data + _div(-lr * mu_next, 1.0 - mu_product_next) * _div(m, denom)


def _radam(p: Value, h: list[float], s: Any, i: int) -> None:
    """h lr beta1 beta2 eps weight_decay decoupled maximize; s step exp_avg exp_avg_sq"""
    lr, beta1, beta2, eps, wd, decoupled, maximize = h
    g = _rule_grad(p, maximize, 0.0 if decoupled != 0.0 else wd)
    t = float(s[0][i]) + 1.0
    s[0][i] = t
    if wd != 0.0 and decoupled != 0.0:
        p._data = p._data * (1.0 - lr * wd)
    m = _lerp(float(s[1][i]), g, 1.0 - beta1)
    v = float(s[2][i]) * beta2 + (1.0 - beta2) * g * g
    s[1][i], s[2][i] = m, v
    bias_correction1 = 1.0 - beta1**t
    bias_correction2 = 1.0 - beta2**t
    corrected = _div(m, bias_correction1)
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - _div(2.0 * t * beta2**t, bias_correction2)
    if rho_t > 5.0:
        rect = _pow_half(_div((rho_t - 4.0) * (rho_t - 2.0) * rho_inf,
                              (rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))  # fmt: skip
        adaptive = _div(_pow_half(bias_correction2), _sqrt(v) + eps)
        p._data = p._data + -1.0 * (corrected * lr * adaptive * rect)
    else:
        p._data = p._data + -1.0 * (corrected * lr)


def _adagrad(p: Value, h: list[float], s: Any, i: int) -> None:
    """h lr lr_decay weight_decay eps maximize; s step sum"""
    lr, lr_decay, wd, eps, maximize = h
    g = _rule_grad(p, maximize, wd)
    t = float(s[0][i]) + 1.0
    s[0][i] = t
    clr = _div(lr, 1.0 + (t - 1.0) * lr_decay)
    total = float(s[1][i]) + 1.0 * g * g
    s[1][i] = total
    p._data = p._data + -clr * _div(g, _sqrt(total) + eps)


def _adamax(p: Value, h: list[float], s: Any, i: int) -> None:
    """h lr beta1 beta2 eps weight_decay maximize; s step exp_avg exp_inf"""
    lr, beta1, beta2, eps, wd, maximize = h
    g = _rule_grad(p, maximize, wd)
    t = float(s[0][i]) + 1.0
    s[0][i] = t
    m = _lerp(float(s[1][i]), g, 1.0 - beta1)
    u = _maximum(float(s[2][i]) * beta2, abs(g) + eps)
    s[1][i], s[2][i] = m, u
    p._data = p._data + -_div(lr, 1.0 - beta1**t) * _div(m, u)


def _adadelta(p: Value, h: list[float], s: Any, i: int) -> None:
    """h lr rho eps weight_decay maximize; s step square_avg acc_delta"""
    lr, rho, eps, wd, maximize = h
    g = _rule_grad(p, maximize, wd)
    s[0][i] = float(s[0][i]) + 1.0
    square_avg = float(s[1][i]) * rho + (1.0 - rho) * g * g
    s[1][i] = square_avg
    delta = _div(_sqrt(float(s[2][i]) + eps), _sqrt(square_avg + eps)) * g
    s[2][i] = float(s[2][i]) * rho + (1.0 - rho) * delta * delta
    p._data = p._data + -lr * delta


def _pow_half(x: float) -> float:
    """C's pow(x, 0.5): nan for a negative number, where Python's ** gives a complex"""
    return math.pow(x, 0.5) if x >= 0.0 or math.isnan(x) else math.nan


# name: (update, how many hyperparameters, how many state arrays), csrc/optim.c's rows
RULES: dict[str, tuple[Any, int, int]] = {
    "nadam": (_nadam, 8, 4),
    "radam": (_radam, 7, 3),
    "adagrad": (_adagrad, 5, 2),
    "adamax": (_adamax, 6, 3),
    "adadelta": (_adadelta, 5, 3),
}


def _read_parameters(parameters: Iterable[Value], out: Any, grads: bool) -> None:
    """Each parameter's data (or grad) into out, in order."""
    params = list(parameters)
    if len(out) != len(params):
        raise ValueError(f"{len(out)} places for {len(params)} parameters")
    for i, p in enumerate(params):
        if not isinstance(p, Value):
            raise TypeError(f"parameters must be Values, not {type(p).__name__!r}")
        out[i] = p._grad if grads else p._data


def _write_parameters(parameters: Iterable[Value], values: Any, grads: bool) -> None:
    """Each parameter's data (or grad) to values' entry, in order; every item is checked
    before any is written."""
    params = list(parameters)
    if len(values) != len(params):
        raise ValueError(f"{len(values)} numbers for {len(params)} parameters")
    for p in params:
        if not isinstance(p, Value):
            raise TypeError(f"parameters must be Values, not {type(p).__name__!r}")
    for p, number in zip(params, values.tolist()):
        if grads:
            p._grad = number
        else:
            p._data = number
