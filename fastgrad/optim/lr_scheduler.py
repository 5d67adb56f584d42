"""Learning-rate schedules, as ``torch.optim.lr_scheduler`` has them.

Each schedule computes the lr as PyTorch's does, in the same order of operations: StepLR,
MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR, ConstantLR, PolynomialLR and
MultiplicativeLR recursively from the group's current lr (their closed forms, which
SequentialLR uses at a milestone, differ from it in the last bits), so that the sequence of
learning rates is PyTorch's exactly. Call ``scheduler.step()`` after ``optimizer.step()``;
``ReduceLROnPlateau.step(metric)`` takes the metric it watches. SequentialLR runs schedules
one after another, ChainedScheduler all of them at every step.
"""

from __future__ import annotations

import bisect
import math
import types
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .._common import as_float, engine_of
from .optimizer import Optimizer

if TYPE_CHECKING:
    from .._core import Value

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]


def _optimizer(optimizer: Any) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
    return optimizer


def _per_group(name: str, optimizer: Optimizer, value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(f"{name} must have the same length as optimizer.param_groups. "
                             f"{name} has {len(value)} values, param_groups has "
                             f"{len(optimizer.param_groups)}.")  # fmt: skip
        return list(value)
    return [value] * len(optimizer.param_groups)


class LRScheduler:
    """A schedule of each parameter group's lr, one step() per optimizer step (or epoch)

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).

    Raises:
        KeyError: last_epoch >= 0 and a group without "initial_lr".
        TypeError: optimizer is not an optimizer.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        self.optimizer = _optimizer(optimizer)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] "
                                   "when resuming a scheduler with last_epoch >= 0: load the "
                                   "optimizer's state first")  # fmt: skip
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The lr of each group at last_epoch, from the groups' current lrs; step() calls it.

        Returns:
            One learning rate per parameter group.

        Raises:
            NotImplementedError: a schedule that does not define it (LRScheduler itself).
        """
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The lrs the last step() set.

        Returns:
            One learning rate per parameter group.
        """
        return self._last_lr

    def step(self) -> None:
        """Advances the schedule one step and sets each group's lr."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch: int | None = None) -> None:
        """The next step's lrs; or, at `epoch`, the closed form's where the schedule has one
        (SequentialLR starts a schedule so at its milestone, as PyTorch's does)."""
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            values = self._closed_form() if hasattr(self, "_closed_form") else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = self._current()

    def _current(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Everything the schedule holds but the optimizer, for checkpoints.

        Returns:
            A dict of the schedule's attributes (PyTorch's layout); load_state_dict() takes it.
        """
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Resumes from what state_dict() gave (the optimizer's own state is loaded apart).

        Args:
            state_dict: what state_dict() returned for a schedule of this kind.

        Raises:
            ValueError: a state of another schedule; nothing changes then.
        """
        if not isinstance(state_dict, Mapping) or set(state_dict) != set(self.state_dict()):
            held = sorted(state_dict) if isinstance(state_dict, Mapping) else state_dict
            raise ValueError(f"the state does not fit {type(self).__name__}: it holds {held!r}")
        self.__dict__.update(self._decoded(dict(state_dict)))

    def _decoded(self, state: dict[str, Any]) -> dict[str, Any]:
        """The state as this schedule holds it (a JSON round trip makes tuples lists)."""
        return state


class LambdaLR(LRScheduler):
    """lr = initial lr * lr_lambda(epoch), one function per group or one for all

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        lr_lambda: a function of the step count giving the factor, or one per group.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).

    Raises:
        ValueError: a list of lr_lambda of another length than the groups.
    """

    def __init__(self, optimizer: Optimizer,
                 lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
                 last_epoch: int = -1) -> None:  # fmt: skip
        _optimizer(optimizer)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != len(optimizer.param_groups):
                raise ValueError(f"Expected {len(optimizer.param_groups)} lr_lambdas, but got "
                                 f"{len(lr_lambda)}")  # fmt: skip
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * len(optimizer.param_groups)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base_lr * f(self.last_epoch) for f, base_lr in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self) -> dict[str, Any]:
        """As PyTorch's: a function's own attributes where it is a callable object, else None
        (functions are not state).

        Returns:
            The schedule's attributes, lr_lambdas as described.
        """
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(f, types.FunctionType) else dict(f.__dict__)
                               for f in self.lr_lambdas]  # fmt: skip
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        state = dict(state_dict)
        lambdas = state.pop("lr_lambdas", None)
        if not isinstance(lambdas, list) or len(lambdas) != len(self.lr_lambdas):
            raise ValueError("the state does not fit LambdaLR: its lr_lambdas do not")
        super().load_state_dict({**state, "lr_lambdas": self.lr_lambdas})
        for f, saved in zip(self.lr_lambdas, lambdas):
            if saved is not None:
                f.__dict__.update(saved)


class MultiplicativeLR(LambdaLR):
    """lr times lr_lambda(epoch) at every step, one function per group or one for all

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        lr_lambda: a function of the step count giving the factor, or one per group.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).

    Raises:
        ValueError: a list of lr_lambda of another length than the groups.
    """

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._current()
        return [lr * f(self.last_epoch) for f, lr in zip(self.lr_lambdas, self._current())]


class StepLR(LRScheduler):
    """lr times gamma every step_size steps

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        step_size: the steps between decays.
        gamma: the factor of each decay.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:  # fmt: skip
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current()
        return [lr * self.gamma for lr in self._current()]

    def _closed_form(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """lr times gamma at each milestone (times gamma**k at a milestone named k times)

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        milestones: the step counts at which lr decays.
        gamma: the factor of each decay.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).
    """

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:  # fmt: skip
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch not in self.milestones:
            return self._current()
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in self._current()]

    def _closed_form(self) -> list[float]:
        milestones = sorted(self.milestones.elements())
        return [base * self.gamma ** bisect.bisect_right(milestones, self.last_epoch)
                for base in self.base_lrs]  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "milestones": dict(self.milestones)}

    def _decoded(self, state: dict[str, Any]) -> dict[str, Any]:
        state["milestones"] = Counter({int(k): int(v) for k, v in state["milestones"].items()})
        return state


class ExponentialLR(LRScheduler):
    """lr times gamma every step

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        gamma: the factor of each step.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._current()
        return [lr * self.gamma for lr in self._current()]

    def _closed_form(self) -> list[float]:
        return [base * self.gamma**self.last_epoch for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr from its initial value down to eta_min along half a cosine over T_max steps (and
    back up over the next T_max, as PyTorch's recursive form does)

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        T_max: the steps of half a period.
        eta_min: the lowest lr.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:  # fmt: skip
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        e, t, low = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current()
        if self._step_count == 1 and e > 0:
            return [low + (base - low) * (1 + math.cos(e * math.pi / t)) / 2
                    for base in self.base_lrs]  # fmt: skip
        if (e - 1 - t) % (2 * t) == 0:
            return [lr + (base - low) * (1 - math.cos(math.pi / t)) / 2
                    for base, lr in zip(self.base_lrs, self._current())]  # fmt: skip
        return [(1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t))
                * (lr - low) + low for lr in self._current()]  # fmt: skip

    def _closed_form(self) -> list[float]:
        low = self.eta_min
        return [low + (base - low) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base in self.base_lrs]  # fmt: skip


class LinearLR(LRScheduler):
    """lr times a factor going linearly from start_factor to end_factor over total_iters

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        start_factor: the first step's factor, in (0, 1].
        end_factor: the factor from total_iters on, in [0, 1].
        total_iters: the steps the factor takes to reach end_factor.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).

    Raises:
        ValueError: a factor out of its range.
    """

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1) -> None:  # fmt: skip
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 and "
                             "less or equal to 1.")  # fmt: skip
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        e, start, end = self.last_epoch, self.start_factor, self.end_factor
        if e == 0:
            return [lr * start for lr in self._current()]
        if self._is_initial or e > self.total_iters:
            return self._current()
        return [lr * (1.0 + (end - start) / (self.total_iters * start + (e - 1) * (end - start)))
                for lr in self._current()]  # fmt: skip

    def _closed_form(self) -> list[float]:
        start, end, n = self.start_factor, self.end_factor, self.total_iters
        return [base * (start + (end - start) * min(n, self.last_epoch) / n)
                for base in self.base_lrs]  # fmt: skip


class ConstantLR(LRScheduler):
    """lr times factor for the first total_iters steps, then lr

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        factor: the factor of the first steps, in [0, 1].
        total_iters: how many steps it applies.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).

    Raises:
        ValueError: a factor out of [0, 1].
    """

    def __init__(self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1) -> None:  # fmt: skip
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        self.factor, self.total_iters = factor, total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [lr * self.factor for lr in self._current()]
        if self.last_epoch != self.total_iters:
            return self._current()
        return [lr * (1.0 / self.factor) for lr in self._current()]

    def _closed_form(self) -> list[float]:
        done = self.last_epoch >= self.total_iters
        return [base * (self.factor + done * (1 - self.factor)) for base in self.base_lrs]


class PolynomialLR(LRScheduler):
    """lr decaying as (1 - step / total_iters) ** power to 0 over total_iters steps

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        total_iters: the steps until lr reaches 0.
        power: the polynomial's power.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).
    """

    def __init__(self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0,
                 last_epoch: int = -1) -> None:  # fmt: skip
        self.total_iters, self.power = total_iters, power
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        e, n = self.last_epoch, self.total_iters
        if self._is_initial or e > n:
            return self._current()
        decay = ((1.0 - e / n) / (1.0 - (e - 1) / n)) ** self.power
        return [lr * decay for lr in self._current()]

    def _closed_form(self) -> list[float]:
        n = self.total_iters
        return [base * (1.0 - min(n, self.last_epoch) / n) ** self.power for base in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    """lr from its initial value down to eta_min along half a cosine over T_0 steps, then
    restarting, each period T_mult times the last (SGDR). step(epoch) takes a fractional
    epoch, for a schedule per batch

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        T_0: the steps of the first period, a positive int.
        T_mult: each period's length over the last's, an int >= 1.
        eta_min: the lowest lr.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).

    Raises:
        ValueError: T_0, T_mult or eta_min of the wrong kind.
    """

    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:  # fmt: skip
        if not isinstance(T_0, int) or T_0 <= 0:
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if not isinstance(T_mult, int) or T_mult < 1:
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        if isinstance(eta_min, bool) or not isinstance(eta_min, (float, int)):
            raise ValueError(f"Expected float or int eta_min, but got {eta_min!r}")
        self.T_0, self.T_i, self.T_mult, self.eta_min = T_0, T_0, T_mult, eta_min
        self.T_cur: float = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        low = self.eta_min
        return [low + (base - low) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
                for base in self.base_lrs]  # fmt: skip

    def step(self, epoch: float | None = None) -> None:
        """The next step, or the schedule at a given epoch.

        Args:
            epoch: None for the next step, or the (fractional: a step per batch) epoch.

        Raises:
            ValueError: a negative epoch.
        """
        self._step_count += 1
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            epoch = as_float(epoch, "epoch") if not isinstance(epoch, int) else epoch
            if epoch < 0:
                raise ValueError(f"Expected non-negative epoch, but got {epoch}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult**n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = self._current()


def _set_momentum(group: dict[str, Any], momentum: float, use_beta1: bool) -> None:
    """A group's momentum, or Adam's beta1, as OneCycleLR and CyclicLR cycle it."""
    if use_beta1:
        group["betas"] = (momentum, *group["betas"][1:])
    else:
        group["momentum"] = momentum


def _momentum_cycle(optimizer: Optimizer, base_momentum: Any, max_momentum: Any,
                    last_epoch: int) -> tuple[bool, list[float], list[float]]:  # fmt: skip
    """For a schedule that cycles momentum (OneCycleLR, CyclicLR): whether it is Adam's beta1,
    and each group's base and max momentum; a fresh schedule starts every group at its max
    and notes both in the group."""
    if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
        raise ValueError("optimizer must support momentum or beta1 with `cycle_momentum` "
                         "option enabled")  # fmt: skip
    use_beta1 = "betas" in optimizer.defaults
    bases = _per_group("base_momentum", optimizer, base_momentum)
    tops = _per_group("max_momentum", optimizer, max_momentum)
    if last_epoch == -1:
        for top, base, group in zip(tops, bases, optimizer.param_groups):
            _set_momentum(group, top, use_beta1)
            group["max_momentum"], group["base_momentum"] = top, base
    return use_beta1, bases, tops


class CyclicLR(LRScheduler):
    """lr cycling between base_lr and max_lr (Smith's cyclical learning rates):
    step_size_up steps up, step_size_down (default: the same) down, the amplitude scaled by
    mode ("triangular": 1, "triangular2": halved each cycle, "exp_range": gamma ** step) or by
    scale_fn; momentum (or Adam's beta1) the other way between base_ and max_momentum

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        base_lr: the lowest lr, one for all groups or one per group.
        max_lr: the highest lr, one for all groups or one per group.
        step_size_up: the steps of the rising half of a cycle.
        step_size_down: the steps of the falling half (step_size_up by default).
        mode: "triangular", "triangular2" or "exp_range" (ignored with scale_fn).
        gamma: exp_range's factor per step.
        scale_fn: a function of the cycle (or step) count giving the amplitude's scale.
        scale_mode: what scale_fn takes: "cycle" or "iterations".
        cycle_momentum: whether momentum (or Adam's beta1) cycles the other way.
        base_momentum: the lowest momentum, one or one per group.
        max_momentum: the highest momentum, one or one per group.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).

    Raises:
        ValueError: an unknown mode without scale_fn, a list of the wrong length, or
            cycle_momentum with an optimizer that has no momentum.
    """

    def __init__(self, optimizer: Optimizer, base_lr: float | list[float],
                 max_lr: float | list[float], step_size_up: int = 2000,
                 step_size_down: int | None = None,
                 mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
                 gamma: float = 1.0, scale_fn: Callable[[float], float] | None = None,
                 scale_mode: Literal["cycle", "iterations"] = "cycle",
                 cycle_momentum: bool = True, base_momentum: float | list[float] = 0.8,
                 max_momentum: float | list[float] = 0.9,
                 last_epoch: int = -1) -> None:  # fmt: skip
        _optimizer(optimizer)
        base_lrs = _per_group("base_lr", optimizer, base_lr)
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups):
                group["lr"] = lr
        self.max_lrs = _per_group("max_lr", optimizer, max_lr)
        up = float(step_size_up)
        down = float(step_size_down) if step_size_down is not None else up
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")
        self.mode, self.gamma, self._scale_fn_custom = mode, gamma, scale_fn
        self.scale_mode = scale_mode if scale_fn is not None else (
            "iterations" if mode == "exp_range" else "cycle")
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1, self.base_momentums, self.max_momentums = _momentum_cycle(
                optimizer, base_momentum, max_momentum, last_epoch)
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def scale_fn(self, x: float) -> float:
        """The amplitude's scale.

        Args:
            x: the cycle count or the step count, as scale_mode says.

        Returns:
            The factor the cycle's amplitude is multiplied by.
        """
        if self._scale_fn_custom is not None:
            return float(self._scale_fn_custom(x))
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / float(2.0 ** (x - 1))
        return float(self.gamma**x)

    def get_lr(self) -> list[float]:
        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle
        if x <= self.step_ratio:
            scale_factor = x / self.step_ratio
        else:
            scale_factor = (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else self.last_epoch)
        lrs = [base + (top - base) * scale_factor * scale
               for base, top in zip(self.base_lrs, self.max_lrs)]  # fmt: skip
        if self.cycle_momentum:
            for base, top, group in zip(self.base_momentums, self.max_momentums,
                                        self.optimizer.param_groups):  # fmt: skip
                _set_momentum(group, top - (top - base) * scale_factor * scale, self.use_beta1)
        return lrs

    def state_dict(self) -> dict[str, Any]:
        """As PyTorch's: a custom scale_fn's own attributes where it is a callable object,
        else None (functions are not state).

        Returns:
            The schedule's attributes, the scale function as described.
        """
        state = super().state_dict()
        fn = state.pop("_scale_fn_custom")
        state["_scale_fn_custom"] = (None if fn is None or isinstance(fn, types.FunctionType)
                                     else dict(fn.__dict__))  # fmt: skip
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        state = dict(state_dict)
        saved = state.pop("_scale_fn_custom", None)
        super().load_state_dict({**state, "_scale_fn_custom": self._scale_fn_custom})
        if saved is not None and self._scale_fn_custom is not None:
            self._scale_fn_custom.__dict__.update(saved)

    def _decoded(self, state: dict[str, Any]) -> dict[str, Any]:
        return state


def _same_optimizer(kind: str, schedulers: Sequence[Any], optimizer: Any) -> None:
    if len(schedulers) < 1:
        raise ValueError(f"{kind} expects at least one scheduler, but got no scheduler.")
    for i, scheduler in enumerate(schedulers):
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(f"{kind}: schedulers[{i}] is a {type(scheduler).__name__}, not a "
                            "scheduler")  # fmt: skip
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(f"{kind} does not support ReduceLROnPlateau (its step takes the "
                             f"metric), but got one at index {i}")  # fmt: skip
        if scheduler.optimizer is not optimizer:
            raise ValueError(f"{kind} expects all schedulers to belong to the same optimizer, "
                             f"but schedulers[{i}] has another")  # fmt: skip


class _Composite(LRScheduler):
    """A schedule made of schedules: its state holds theirs."""

    _schedulers: list[LRScheduler]

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if not isinstance(state_dict, Mapping) or set(state_dict) != set(self.state_dict()):
            held = sorted(state_dict) if isinstance(state_dict, Mapping) else state_dict
            raise ValueError(f"the state does not fit {type(self).__name__}: it holds {held!r}")
        inner = state_dict["_schedulers"]
        if not isinstance(inner, list) or len(inner) != len(self._schedulers):
            raise ValueError(f"the state does not fit {type(self).__name__}: its schedulers "
                             "do not")  # fmt: skip
        before = [s.state_dict() for s in self._schedulers]
        try:
            for scheduler, saved in zip(self._schedulers, inner):
                scheduler.load_state_dict(saved)
        except BaseException:
            for scheduler, old in zip(self._schedulers, before):
                scheduler.load_state_dict(old)
            raise
        self.__dict__.update({k: v for k, v in state_dict.items() if k != "_schedulers"})


class SequentialLR(_Composite):
    """schedulers one after another: schedulers[i + 1] takes over at milestones[i] (from
    its closed form at epoch 0, as PyTorch's does)

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        schedulers: the schedules, all of this optimizer.
        milestones: the step counts at which the next schedule takes over, one fewer than
            schedulers.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).

    Raises:
        ValueError: milestones of the wrong length, no schedulers, a ReduceLROnPlateau,
            or a schedule of another optimizer.
        TypeError: an item that is not a schedule.
    """

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler],
                 milestones: Sequence[int], last_epoch: int = -1) -> None:  # fmt: skip
        _same_optimizer("SequentialLR", schedulers, optimizer)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError("Sequential Schedulers expects number of schedulers provided to be "
                             "one more than the number of milestone points, but got number of "
                             f"schedulers {len(schedulers)} and the number of milestones to be "
                             f"equal to {len(milestones)}")  # fmt: skip
        self._schedulers, self._milestones = list(schedulers), list(milestones)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self._undo(self)
        idx = bisect.bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = self._schedulers[idx].get_last_lr()

    def _undo(self, scheduler: Any) -> None:
        """Each schedule (nested ones too) one step back: they each stepped once when made."""
        if isinstance(scheduler, _Composite):
            for inner in scheduler._schedulers:
                self._undo(inner)
        else:
            scheduler.last_epoch -= 1

    def step(self) -> None:
        """Advances the schedule one step and sets each group's lr."""
        self.last_epoch += 1
        idx = bisect.bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()


class ChainedScheduler(_Composite):
    """Every schedule's step at each step, in order (their factors compound)

    Args:
        schedulers: the schedules, all of one optimizer.
        optimizer: that optimizer (the first schedule's by default).

    Raises:
        ValueError: no schedulers, a ReduceLROnPlateau, or a schedule of another optimizer.
        TypeError: an item that is not a schedule.
    """

    def __init__(self, schedulers: Sequence[LRScheduler],
                 optimizer: Optimizer | None = None) -> None:  # fmt: skip
        if len(schedulers) < 1:
            raise ValueError("ChainedScheduler expects at least one scheduler to be chained, "
                             "but got no scheduler.")  # fmt: skip
        self.optimizer = optimizer or schedulers[0].optimizer
        _same_optimizer("ChainedScheduler", schedulers, self.optimizer)
        self._schedulers = list(schedulers)
        self._last_lr = self._current()

    def step(self) -> None:
        """Advances the schedule one step and sets each group's lr."""
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = self._current()


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith and Topin): lr from max_lr / div_factor up to max_lr over
    pct_start of total_steps, then down to that over final_div_factor; momentum (or Adam's
    beta1) the other way between max_momentum and base_momentum

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        max_lr: the peak lr, one for all groups or one per group.
        total_steps: the steps of the whole cycle; or give epochs and steps_per_epoch.
        epochs: the epochs of the cycle, with steps_per_epoch.
        steps_per_epoch: the steps per epoch, with epochs.
        pct_start: the share of the cycle spent rising, in [0, 1].
        anneal_strategy: "cos" or "linear".
        cycle_momentum: whether momentum (or Adam's beta1) cycles the other way.
        base_momentum: the lowest momentum, one or one per group.
        max_momentum: the highest momentum, one or one per group.
        div_factor: the first lr is max_lr / div_factor.
        final_div_factor: the last lr is the first / final_div_factor.
        three_phase: a third phase that anneals to the last lr after coming back down.
        last_epoch: the index of the last step taken, to resume (-1: a new schedule; the
            groups then need "initial_lr", which a loaded optimizer state holds).

    Raises:
        ValueError: no total_steps (nor epochs and steps_per_epoch), a count that is
            not a positive int, pct_start out of [0, 1], or an unknown anneal_strategy.
    """

    def __init__(self, optimizer: Optimizer, max_lr: float | list[float],
                 total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: Literal["cos", "linear"] = "cos",
                 cycle_momentum: bool = True, base_momentum: float | list[float] = 0.85,
                 max_momentum: float | list[float] = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:  # fmt: skip
        _optimizer(optimizer)
        if total_steps is not None:
            if not isinstance(total_steps, int) or total_steps <= 0:
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            for name, n in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
                if not isinstance(n, int) or n <= 0:
                    raise ValueError(f"Expected positive integer {name}, but got {n}")
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError("anneal_strategy must be one of 'cos' or 'linear', instead got "
                             f"{anneal_strategy}")  # fmt: skip
        self.anneal_strategy = anneal_strategy
        up = float(pct_start * self.total_steps) - 1
        phases = [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum")]
        if three_phase:
            phases.append((float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr",
                           "base_momentum", "max_momentum"))  # fmt: skip
            phases.append((self.total_steps - 1, "initial_lr", "min_lr", "max_momentum",
                           "max_momentum"))  # fmt: skip
        else:
            phases.append((self.total_steps - 1, "max_lr", "min_lr", "base_momentum",
                           "max_momentum"))  # fmt: skip
        self.phases: list[list[Any]] = [list(phase) for phase in phases]
        max_lrs = _per_group("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for top, group in zip(max_lrs, optimizer.param_groups):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = _momentum_cycle(optimizer, base_momentum, max_momentum,
                                             last_epoch)[0]  # fmt: skip
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group: dict[str, Any], momentum: float) -> None:
        _set_momentum(group, momentum, self.use_beta1)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"Tried to step {step} times. The specified number of total steps "
                             f"is {self.total_steps}")  # fmt: skip
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, (end_step, lr0, lr1, m0, m1) in enumerate(self.phases):
                if step <= end_step or i == len(self.phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[lr0], group[lr1], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[m0], group[m1], pct))
                    break
                start_step = end_step
        return lrs


class ReduceLROnPlateau(LRScheduler):
    """lr times factor when the metric passed to step() has not improved (by threshold) for
    more than patience steps, then cooldown steps of rest; never below min_lr

    Args:
        optimizer: the optimizer whose param_groups' lr it sets.
        mode: "min" (the metric should fall, a loss) or "max".
        factor: the factor lr is multiplied by, below 1.
        patience: the steps without improvement tolerated.
        threshold: the least change that counts as an improvement.
        threshold_mode: "rel" (threshold relative to the best) or "abs".
        cooldown: the steps of rest after a reduction.
        min_lr: the lowest lr, one for all groups or one per group.
        eps: a reduction smaller than this is skipped.

    Raises:
        ValueError: factor >= 1, an unknown mode or threshold_mode.
    """

    def __init__(self, optimizer: Optimizer, mode: Literal["min", "max"] = "min",
                 factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 threshold_mode: Literal["rel", "abs"] = "rel", cooldown: int = 0,
                 min_lr: float | list[float] = 0.0, eps: float = 1e-8) -> None:  # fmt: skip
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode} is unknown!")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {threshold_mode} is unknown!")
        self.optimizer = _optimizer(optimizer)
        self.factor, self.patience, self.cooldown, self.eps = factor, patience, cooldown, eps
        self.default_min_lr = None if isinstance(min_lr, (list, tuple)) else min_lr
        self.min_lrs = _per_group("min_lr", optimizer, min_lr)
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = self._current()
        self.best, self.cooldown_counter, self.num_bad_epochs = self.mode_worse, 0, 0

    def step(self, metrics: float | Value) -> None:  # type: ignore[override]
        """One step with the metric's new value.

        Args:
            metrics: the metric (a loss with mode "min"): a number, or the loss's Value
                itself, whose .data it reads.

        Raises:
            TypeError: a metric that is not a number or a Value.
        """
        if engine_of(metrics) is not None:
            current = metrics.data  # type: ignore[union-attr]
        else:
            current = as_float(metrics, "ReduceLROnPlateau.step's metric")
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for low, group in zip(self.min_lrs, self.optimizer.param_groups):
                old = float(group["lr"])
                new = max(old * self.factor, low)
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = self._current()

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold
