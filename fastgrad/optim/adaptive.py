"""NAdam, RAdam, Adagrad, Adamax and Adadelta, as ``torch.optim`` has them: each a row of the
one table of per-parameter rules (csrc/optim.c, and reference/optim.py's RULES), which one
kernel call runs over a parameter group. A class here names its rule, the order of the
hyperparameters the rule reads and its state arrays; PyTorch's signatures and checks.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._common import as_float
from .optimizer import Hyperparameter, Optimizer, Params, _betas, _non_negative

__all__ = ["Adadelta", "Adagrad", "Adamax", "NAdam", "RAdam"]


class _TableRule(Optimizer):
    """An optimizer whose update is one row of the rule table."""

    RULE: ClassVar[str]
    # the group's keys in the order the rule reads them ("betas" gives beta1 and beta2)
    HYPER: ClassVar[tuple[str, ...]]

    eps = Hyperparameter[float]()
    weight_decay = Hyperparameter[float]()
    maximize = Hyperparameter[bool]()

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        _non_negative(group["eps"], "eps", "epsilon value")
        _non_negative(group["weight_decay"], "weight_decay", "weight_decay value")
        if "betas" in group:
            _betas(group["betas"])

    def _hyper(self, group: dict[str, Any]) -> list[float]:
        values: list[float] = []
        for name in self.HYPER:
            if name == "betas":
                values.extend(_betas(group["betas"]))
            elif isinstance(self.defaults[name], bool):
                values.append(1.0 if group[name] else 0.0)
            else:
                values.append(as_float(group[name], name))
        return values

    def _update(self, kernel: Any, group: dict[str, Any], state: dict[str, np.ndarray]) -> None:
        kernel.rule(self.RULE, self._hyper(group), [state[name] for name in self.STATE])


class NAdam(_TableRule):
    """NAdam (Dozat), PyTorch's rule: Adam's moments with Nesterov momentum, whose factor
    mu_t = beta1 (1 - 0.96 ** (t momentum_decay) / 2) is kept as a running product;
    decoupled_weight_decay scales the data as AdamW does.

    Args:
        params: the leaf Values to optimise (model.parameters()), or a list of parameter
            groups: dicts with "params" and any hyperparameters of their own.
        lr: the learning rate.
        betas: beta1 and beta2, the decay rates of the moments, each in [0, 1).
        eps: added to the denominator.
        weight_decay: the L2 penalty (the decoupled decay's rate with
            decoupled_weight_decay).
        momentum_decay: psi, how fast the Nesterov factor mu_t moves to beta1.
        decoupled_weight_decay: AdamW's decay: scale data by 1 - lr * weight_decay.
        maximize: True ascends the gradient.

    Raises:
        ValueError: an empty params, a parameter in two groups or not a leaf, or a
            hyperparameter PyTorch refuses.
        TypeError: a parameter that is not a Value, or an unknown hyperparameter in a group.
    """

    RULE = "nadam"
    HYPER = ("lr", "betas", "eps", "weight_decay", "momentum_decay",
             "decoupled_weight_decay", "maximize")  # fmt: skip
    STATE = ("step", "mu_product", "exp_avg", "exp_avg_sq")
    NON_NEGATIVE = Optimizer.NON_NEGATIVE | {"mu_product"}

    betas = Hyperparameter[tuple[float, float]]()
    momentum_decay = Hyperparameter[float]()

    def __init__(self, params: Params, lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *,
                 maximize: bool = False) -> None:  # fmt: skip
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "momentum_decay": momentum_decay,
                                  "decoupled_weight_decay": decoupled_weight_decay,
                                  "maximize": maximize})  # fmt: skip

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        _non_negative(group["momentum_decay"], "momentum_decay", "momentum_decay value")

    def _zero_state(self, count: int) -> dict[str, np.ndarray]:
        state = super()._zero_state(count)
        state["mu_product"][:] = 1.0  # PyTorch's first value of the running product
        return state


class RAdam(_TableRule):
    """RAdam (Liu et al.), PyTorch's rule: Adam whose adaptive step is rectified by the
    variance of its moment estimate, plain momentum SGD while that is undefined (the first
    steps); decoupled_weight_decay scales the data as AdamW does.

    Args:
        params: the leaf Values to optimise (model.parameters()), or a list of parameter
            groups: dicts with "params" and any hyperparameters of their own.
        lr: the learning rate.
        betas: beta1 and beta2, the decay rates of the moments, each in [0, 1).
        eps: added to the denominator.
        weight_decay: the L2 penalty (the decoupled decay's rate with
            decoupled_weight_decay).
        decoupled_weight_decay: AdamW's decay: scale data by 1 - lr * weight_decay.
        maximize: True ascends the gradient.

    Raises:
        ValueError: an empty params, a parameter in two groups or not a leaf, or a
            hyperparameter PyTorch refuses.
        TypeError: a parameter that is not a Value, or an unknown hyperparameter in a group.
    """

    RULE = "radam"
    HYPER = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "maximize")
    STATE = ("step", "exp_avg", "exp_avg_sq")

    betas = Hyperparameter[tuple[float, float]]()

    def __init__(self, params: Params, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False) -> None:  # fmt: skip
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay,
                                  "decoupled_weight_decay": decoupled_weight_decay,
                                  "maximize": maximize})  # fmt: skip


class Adagrad(_TableRule):
    """Adagrad (Duchi et al.), PyTorch's rule: data += -lr / (1 + (t - 1) lr_decay) g /
    (sqrt(sum of g^2 so far) + eps), the sum starting at initial_accumulator_value.

    Args:
        params: the leaf Values to optimise (model.parameters()), or a list of parameter
            groups: dicts with "params" and any hyperparameters of their own.
        lr: the learning rate.
        lr_decay: how fast the learning rate decays with the step count.
        weight_decay: L2 penalty: weight_decay * data added to the gradient.
        initial_accumulator_value: where each sum of squares starts.
        eps: added to the denominator.
        maximize: True ascends the gradient.

    Raises:
        ValueError: an empty params, a parameter in two groups or not a leaf, or a
            hyperparameter PyTorch refuses.
        TypeError: a parameter that is not a Value, or an unknown hyperparameter in a group.
    """

    RULE = "adagrad"
    HYPER = ("lr", "lr_decay", "weight_decay", "eps", "maximize")
    STATE = ("step", "sum")
    NON_NEGATIVE = Optimizer.NON_NEGATIVE | {"sum"}

    lr_decay = Hyperparameter[float]()

    def __init__(self, params: Params, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, *, maximize: bool = False) -> None:  # fmt: skip
        super().__init__(params, {"lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay,
                                  "initial_accumulator_value": initial_accumulator_value,
                                  "eps": eps, "maximize": maximize})  # fmt: skip

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        _non_negative(group["lr_decay"], "lr_decay", "lr_decay value")
        _non_negative(group["initial_accumulator_value"], "initial_accumulator_value",
                      "initial_accumulator_value")  # fmt: skip

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group of parameters with its own hyperparameters (the defaults fill the rest).

        Args:
            param_group: a dict with "params" and any of Adagrad's hyperparameters; its sums
                start at its initial_accumulator_value.
        """
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        self._state[-1]["sum"][:] = as_float(group["initial_accumulator_value"],
                                             "initial_accumulator_value")  # fmt: skip

    def _has_state(self, state: dict[str, np.ndarray], i: int) -> bool:
        return True  # PyTorch makes it when the optimizer is made


class Adamax(_TableRule):
    """Adamax (Kingma and Ba), PyTorch's rule: Adam with the infinity norm, u = max(beta2 u,
    |g| + eps), data += -(lr / (1 - beta1 ** t)) m / u.

    Args:
        params: the leaf Values to optimise (model.parameters()), or a list of parameter
            groups: dicts with "params" and any hyperparameters of their own.
        lr: the learning rate.
        betas: beta1 and beta2, the decay rates of the moments, each in [0, 1).
        eps: added to the denominator.
        weight_decay: L2 penalty: weight_decay * data added to the gradient.
        maximize: True ascends the gradient.

    Raises:
        ValueError: an empty params, a parameter in two groups or not a leaf, or a
            hyperparameter PyTorch refuses.
        TypeError: a parameter that is not a Value, or an unknown hyperparameter in a group.
    """

    RULE = "adamax"
    HYPER = ("lr", "betas", "eps", "weight_decay", "maximize")
    STATE = ("step", "exp_avg", "exp_inf")
    NON_NEGATIVE = Optimizer.NON_NEGATIVE | {"exp_inf"}

    betas = Hyperparameter[tuple[float, float]]()

    def __init__(self, params: Params, lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, maximize: bool = False) -> None:  # fmt: skip
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "maximize": maximize})  # fmt: skip


class Adadelta(_TableRule):
    """Adadelta (Zeiler), PyTorch's rule: running averages of g^2 and of the updates'
    squares, rho each, the update sqrt(acc_delta + eps) / sqrt(square_avg + eps) g times lr.

    Args:
        params: the leaf Values to optimise (model.parameters()), or a list of parameter
            groups: dicts with "params" and any hyperparameters of their own.
        lr: the learning rate.
        rho: the running averages' decay, in [0, 1].
        eps: added inside both square roots.
        weight_decay: L2 penalty: weight_decay * data added to the gradient.
        maximize: True ascends the gradient.

    Raises:
        ValueError: an empty params, a parameter in two groups or not a leaf, or a
            hyperparameter PyTorch refuses, or rho outside [0, 1].
        TypeError: a parameter that is not a Value, or an unknown hyperparameter in a group.
    """

    RULE = "adadelta"
    HYPER = ("lr", "rho", "eps", "weight_decay", "maximize")
    STATE = ("step", "square_avg", "acc_delta")
    NON_NEGATIVE = Optimizer.NON_NEGATIVE | {"acc_delta"}

    rho = Hyperparameter[float]()

    def __init__(self, params: Params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, *, maximize: bool = False) -> None:  # fmt: skip
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps,
                                  "weight_decay": weight_decay, "maximize": maximize})  # fmt: skip

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        rho = as_float(group["rho"], "rho")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
