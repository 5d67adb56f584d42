"""The optimizers: PyTorch's SGD, Adam, AdamW and RMSprop over Values.

Written once over either implementation: each parameter group's update is one loop of the
engine its Values belong to (a C loop over the parameter nodes with the C extension, its
pure-Python twin with the reference), following PyTorch's single-tensor rule (foreach=False)
in its order of operations. Hyperparameters live in ``param_groups``, where schedulers change
them, as in PyTorch; ``opt.lr`` reads the first group's and sets every group's.
"""

from __future__ import annotations

import importlib
import math
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

import numpy as np

from .._common import as_float, engine_of

if TYPE_CHECKING:
    from .._core import Value

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop"]

T = TypeVar("T")
Params = Iterable["Value"] | Iterable[dict[str, Any]]


class Hyperparameter(Generic[T]):
    """opt.name: the first parameter group's value; setting it sets every group's."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> Hyperparameter[T]: ...
    @overload
    def __get__(self, obj: Optimizer, owner: type) -> T: ...
    def __get__(self, obj: Optimizer | None, owner: type) -> Any:
        if obj is None:
            return self
        value: T = obj.param_groups[0][self.name]
        return value

    def __set__(self, obj: Optimizer, value: T) -> None:
        for group in obj.param_groups:
            group[self.name] = value


def _engine(params: list[Any]) -> types.ModuleType:
    names = set()
    for p in params:
        name = engine_of(p)
        if name is None:
            raise TypeError(f"optimizer parameters must be Values, not {type(p).__name__!r}")
        names.add(name)
    if len(names) > 1:
        raise TypeError("optimizer parameters mix the C extension's Values with the pure-Python "
                        "reference's")  # fmt: skip
    return importlib.import_module(names.pop())


class _ParamList(list[Any]):
    """A group's "params": a list that notes being changed, so that the optimizer takes the
    edit in before its next step without comparing every parameter at every step."""

    changed = False

    def __reduce__(self) -> Any:
        return (list, (list(self),))


def _noting_change(name: str) -> Callable[..., Any]:
    change = getattr(list, name)

    def method(self: _ParamList, *args: Any, **kwargs: Any) -> Any:
        self.changed = True
        return change(self, *args, **kwargs)

    method.__name__ = name
    return method


for _name in ("__setitem__", "__delitem__", "__iadd__", "__imul__", "append", "extend",
              "insert", "pop", "remove", "clear", "sort", "reverse"):
    setattr(_ParamList, _name, _noting_change(_name))


def _params_of(given: Any) -> list[Any]:
    """A group's "params" as a list: one Value, or any iterable of them (None: none)."""
    return [given] if engine_of(given) is not None else list(given or [])


def _flag(value: Any, name: str) -> bool:
    """A yes/no hyperparameter: a bool, exactly (the string "false" is truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, not {value!r}")
    return bool(value)


def _non_negative(value: Any, name: str, label: str) -> float:
    x = as_float(value, name)
    if not x >= 0.0:
        raise ValueError(f"Invalid {label}: {value}")
    return x


class Optimizer:
    """What every optimizer shares: parameter groups, zero_grad, step, state_dict.

    A subclass says what its per-parameter state holds (STATE, FLAGS) and how it updates
    (_update); hyperparameters live in param_groups, as PyTorch's.

    Args:
        params: the leaf Values to optimise (model.parameters()), or a list of parameter
            groups: dicts with "params" and any hyperparameters of their own.
        defaults: each hyperparameter's value for the groups that do not set it.

    Raises:
        ValueError: an empty params, a parameter in two groups, a parameter that is not a
            leaf, or a hyperparameter PyTorch refuses (a negative lr).
        TypeError: a parameter that is not a Value, Values of both engines, or an unknown
            hyperparameter in a group.
    """

    # per-parameter state arrays, float64 but for the flags, and the ones state_dict shows
    STATE: ClassVar[tuple[str, ...]] = ()
    FLAGS: ClassVar[tuple[str, ...]] = ()
    # state entries that are never negative (a step count, running averages of squares)
    NON_NEGATIVE: ClassVar[frozenset[str]] = frozenset(
        {"step", "exp_avg_sq", "max_exp_avg_sq", "square_avg"})

    lr = Hyperparameter[float]()

    def __init__(self, params: Params, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self._kernels: list[Any] = []
        self._state: list[dict[str, np.ndarray]] = []
        self._members: list[list[int]] = []  # each group's parameters, as the kernel has them
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)  # type: ignore[arg-type]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group of parameters with hyperparameters of its own (the rest default).

        Args:
            param_group: a dict with "params" (a Value or an iterable of Values) and any of
                this optimizer's hyperparameters.

        Raises:
            TypeError: param_group is not a dict, or names an unknown hyperparameter.
            ValueError: a parameter already in a group, one that is not a leaf, or a
                hyperparameter PyTorch refuses.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, not {type(param_group).__name__!r}")
        params = _params_of(param_group.get("params"))
        unknown = sorted(set(param_group) - set(self.defaults) - {"params"})
        if unknown:
            raise TypeError(f"{type(self).__name__} has no hyperparameter {unknown[0]!r}")
        self._check_apart(params, len(self.param_groups))
        group = {**self.defaults, **param_group, "params": _ParamList(params)}
        self._check(group)
        kernel = self._kernel(params)
        self.param_groups.append(group)
        self._kernels.append(kernel)
        self._state.append(self._zero_state(len(params)))
        self._members.append([id(p) for p in params])

    @staticmethod
    def _kernel(params: list[Any]) -> Any:
        """The update loop over these parameters: leaves only, as PyTorch takes them (a
        node computed from others would be overwritten by its graph's next replay)."""
        if not params:
            return None
        engine = _engine(params)
        for p in params:
            if p._op or p._prev:
                raise ValueError(f"optimizer parameters must be leaves (Values made from a "
                                 f"number), not the result of {p._op or 'an op'!r}: {p!r}")
        return engine._Parameters(params)

    def _see_edits(self) -> None:
        """Takes in edits of param_groups[i]["params"] (PyTorch's optimizers see them): a
        parameter that stays keeps its state, a new one starts without. Changing the number
        of groups other than by add_param_group is refused."""
        if len(self.param_groups) != len(self._kernels):
            raise ValueError(f"param_groups has {len(self.param_groups)} groups but this "
                             f"optimizer made {len(self._kernels)}: add groups with "
                             "add_param_group()")  # fmt: skip
        for i, group in enumerate(self.param_groups):
            params = group["params"]
            if type(params) is not _ParamList or params.changed:
                self._take_group_edit(i)

    def _check_apart(self, params: list[Any], group: int) -> None:
        """ValueError where params repeat one, or one of another group than `group`."""
        others = {id(p) for k, g in enumerate(self.param_groups) if k != group
                  for p in g["params"]}  # fmt: skip
        if any(id(p) in others for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError("some parameters appear in more than one parameter group")

    def _take_group_edit(self, i: int) -> None:
        group = self.param_groups[i]
        params = _params_of(group["params"])
        self._check_apart(params, i)
        kernel = self._kernel(params)
        old = {pid: k for k, pid in enumerate(self._members[i])}
        state = self._zero_state(len(params))
        for k, p in enumerate(params):
            if id(p) in old:
                for name, array in self._state[i].items():
                    state[name][k] = array[old[id(p)]]
        group["params"] = _ParamList(params)
        self._kernels[i], self._state[i], self._members[i] = kernel, state, [id(p) for p in params]

    def _zero_state(self, count: int) -> dict[str, np.ndarray]:
        state = {name: np.zeros(count) for name in self.STATE}
        state.update({name: np.zeros(count, dtype=np.uint8) for name in self.FLAGS})
        return state

    def _check(self, group: dict[str, Any]) -> None:
        """Raises ValueError for a hyperparameter PyTorch refuses, or of the wrong type."""
        _non_negative(group["lr"], "lr", "learning rate")
        for name, default in self.defaults.items():
            if isinstance(default, bool):
                _flag(group[name], name)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Sets every parameter's grad to 0.0.

        Args:
            set_to_none: accepted for PyTorch's signature; a Value's grad is always a number,
                so it zeroes too.
        """
        self._see_edits()
        for kernel in self._kernels:
            if kernel is not None:
                kernel.zero_grad()

    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], T]) -> T: ...
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter from its .grad.

        Args:
            closure: a function that recomputes the loss and its grads, called first.

        Returns:
            What closure returned (None without one).

        Raises:
            ValueError: a hyperparameter changed in param_groups to one PyTorch refuses.
        """
        loss = closure() if closure is not None else None
        self._see_edits()
        for group, kernel, state in zip(self.param_groups, self._kernels, self._state):
            if kernel is not None:
                self._check(group)
                self._update(kernel, group, state)
        return loss

    def _update(self, kernel: Any, group: dict[str, Any], state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    # ---- state: PyTorch's layout, a parameter's entries under its number ----

    def _has_state(self, state: dict[str, np.ndarray], i: int) -> bool:
        return bool(state["step"][i] != 0.0)

    def _shown(self, group: dict[str, Any]) -> tuple[str, ...]:
        """The state entries PyTorch keeps for a parameter of this group."""
        return self.STATE

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state in PyTorch's layout, for checkpoints.

        Returns:
            {"state": {number: {name: float}}, "param_groups": [{hyperparameters, "params":
            [numbers]}]}, the parameters numbered across the groups in order.
        """
        self._see_edits()
        states: dict[int, dict[str, Any]] = {}
        groups, number = [], 0
        for group, state in zip(self.param_groups, self._state):
            shown = self._shown(group)
            for i in range(len(group["params"])):
                if self._has_state(state, i):
                    states[number + i] = {name: self._entry(state, name, i) for name in shown}
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": list(range(number, number + len(group["params"])))})
            number += len(group["params"])
        return {"state": states, "param_groups": groups}

    def _entry(self, state: dict[str, np.ndarray], name: str, i: int) -> Any:
        return float(state[name][i])

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Loads what state_dict() gave; checks all of it before it changes anything.

        Args:
            state_dict: what state_dict() returned, for the same parameters in the same
                groups.

        Raises:
            ValueError: a state that does not fit this optimizer's groups, or holds entries
                that are not numbers of the right kind.
        """
        if not isinstance(state_dict, Mapping):
            raise ValueError("an optimizer state must be a dict")
        self._see_edits()
        groups, states = state_dict.get("param_groups"), state_dict.get("state")
        if not isinstance(groups, list) or not isinstance(states, Mapping):
            raise ValueError("an optimizer state has 'state' and 'param_groups'")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"the state has {len(groups)} parameter groups; this optimizer has "
                             f"{len(self.param_groups)}")  # fmt: skip
        new_groups, new_states, number = [], [], 0
        numbered = {int(k) if isinstance(k, (int, str)) and str(k).isdigit() else k: v
                    for k, v in states.items()}  # fmt: skip
        for saved, group in zip(groups, self.param_groups):
            count = len(group["params"])
            if not isinstance(saved, Mapping) or list(saved.get("params", ())) != list(
                range(number, number + count)
            ):
                raise ValueError("the state's parameter groups do not fit this optimizer's")
            hyper = {k: v for k, v in saved.items() if k != "params"}
            if not set(self.defaults) <= set(hyper):  # schedulers add keys of their own
                raise ValueError(f"the state's hyperparameters {sorted(hyper)} are not "
                                 f"{type(self).__name__}'s {sorted(self.defaults)}")  # fmt: skip
            candidate = {**hyper, "params": _ParamList(group["params"])}
            if "betas" in candidate:
                candidate["betas"] = tuple(candidate["betas"])
            self._check(candidate)
            arrays = self._zero_state(count)
            for i in range(count):
                entry = numbered.pop(number + i, None)
                if entry is not None:
                    self._load_entry(arrays, i, entry, self._shown(candidate))
            new_groups.append(candidate)
            new_states.append(arrays)
            number += count
        if numbered:
            raise ValueError(f"the state names parameters this optimizer does not have: "
                             f"{sorted(map(str, numbered))[:5]}")  # fmt: skip
        self.param_groups[:] = new_groups
        self._state[:] = new_states

    def _load_entry(self, arrays: dict[str, np.ndarray], i: int, entry: Any,
                    shown: tuple[str, ...]) -> None:  # fmt: skip
        if not isinstance(entry, Mapping) or set(entry) != set(shown):
            raise ValueError(f"a parameter's state must hold {sorted(shown)}, not {entry!r}")
        for name in shown:
            arrays[name][i] = _state_number(entry[name], name, name in self.NON_NEGATIVE)

    @property
    def state(self) -> dict[Value, dict[str, Any]]:
        """Each parameter with state (one that has taken a step): its entries, by name."""
        numbered = self.state_dict()["state"]
        params = [p for group in self.param_groups for p in group["params"]]
        return {params[i]: entry for i, entry in numbered.items()}

    # ---- pickling: the parameters (shared with the model pickled beside) and the state ----

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "param_groups": self.param_groups,
                "state_dict": self.state_dict()}  # fmt: skip

    def __setstate__(self, saved: dict[str, Any]) -> None:
        # the groups' hyperparameters (and the keys schedulers add, initial_lr...) come back
        # with the state
        Optimizer.__init__(self, [{"params": group["params"]} for group in saved["param_groups"]],
                           saved["defaults"])  # fmt: skip
        self.load_state_dict(saved["state_dict"])

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines + [")"])


def _state_number(value: Any, name: str, non_negative: bool) -> float:
    """A state entry: a real number (not a bool); a step count a whole number >= 0, a running
    average of squares >= 0 (or nan: a diverged run's, kept as it was)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"state {name!r} must be a number, not {value!r}")
    try:
        x = as_float(value, f"state {name!r}")
    except TypeError as error:
        raise ValueError(str(error)) from None
    if non_negative and x < 0.0:
        raise ValueError(f"state {name!r} must not be negative, not {value!r}")
    if name == "step" and not (math.isfinite(x) and x == math.floor(x)):
        raise ValueError(f"state 'step' must be a whole number of steps, not {value!r}")
    return x


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule: with maximize the gradient is negated;
    weight_decay adds weight_decay * data to it; with momentum a buffer starts as the first
    gradient and becomes momentum * buffer + (1 - dampening) * gradient (nesterov then steps
    along gradient + momentum * buffer); data becomes data - lr * step. Without momentum or
    weight decay, micrograd's p.data -= lr * p.grad, bit for bit.

    Args:
        params: the leaf Values to optimise (model.parameters()), or a list of parameter
            groups: dicts with "params" and any hyperparameters of their own.
        lr: the learning rate.
        momentum: the momentum factor (0 keeps no buffer).
        dampening: the dampening of the momentum's new gradient.
        weight_decay: L2 penalty: weight_decay * data added to the gradient.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: True ascends the gradient.

    Raises:
        ValueError: an empty params, a parameter in two groups, a parameter that is not a
            leaf, or a hyperparameter PyTorch refuses, or nesterov without
            momentum or with dampening.
        TypeError: a parameter that is not a Value, Values of both engines, or an unknown
            hyperparameter in a group.
    """

    STATE = ("momentum_buffer",)
    FLAGS = ("has_buffer",)

    momentum = Hyperparameter[float]()
    dampening = Hyperparameter[float]()
    weight_decay = Hyperparameter[float]()
    nesterov = Hyperparameter[bool]()
    maximize = Hyperparameter[bool]()

    def __init__(self, params: Params, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, *,
                 maximize: bool = False) -> None:  # fmt: skip
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov,
                                  "maximize": maximize})  # fmt: skip

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        momentum = _non_negative(group["momentum"], "momentum", "momentum value")
        _non_negative(group["weight_decay"], "weight_decay", "weight_decay value")
        dampening = as_float(group["dampening"], "dampening")
        if group["nesterov"] and (momentum <= 0.0 or dampening != 0.0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _update(self, kernel: Any, group: dict[str, Any], state: dict[str, np.ndarray]) -> None:
        kernel.sgd(as_float(group["lr"], "lr"), as_float(group["momentum"], "momentum"),
                   as_float(group["dampening"], "dampening"),
                   as_float(group["weight_decay"], "weight_decay"), bool(group["nesterov"]),
                   bool(group["maximize"]), state["momentum_buffer"], state["has_buffer"])

    def _has_state(self, state: dict[str, np.ndarray], i: int) -> bool:
        return True  # PyTorch keeps momentum_buffer, None until momentum makes one

    def _entry(self, state: dict[str, np.ndarray], name: str, i: int) -> Any:
        return float(state["momentum_buffer"][i]) if state["has_buffer"][i] else None

    def _load_entry(self, arrays: dict[str, np.ndarray], i: int, entry: Any,
                    shown: tuple[str, ...]) -> None:  # fmt: skip
        if not isinstance(entry, Mapping) or set(entry) != {"momentum_buffer"}:
            raise ValueError(f"an SGD parameter's state holds momentum_buffer, not {entry!r}")
        if entry["momentum_buffer"] is not None:
            arrays["momentum_buffer"][i] = _state_number(entry["momentum_buffer"],
                                                         "momentum_buffer", False)
            arrays["has_buffer"][i] = 1


def _betas(value: Any) -> tuple[float, float]:
    if not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"betas must be a pair of numbers, not {value!r}")
    betas = (as_float(value[0], "betas[0]"), as_float(value[1], "betas[1]"))
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {value[i]}")
    return betas


class Adam(Optimizer):
    """Adam (Kingma and Ba), PyTorch's rule: moments m = lerp(m, g, 1 - beta1) and
    v = beta2 * v + (1 - beta2) * g * g, data += -(lr / (1 - beta1**t)) * m /
    (sqrt(v) / sqrt(1 - beta2**t) + eps); weight_decay adds to the gradient (L2), or, with
    decoupled_weight_decay (AdamW), scales the data by 1 - lr * weight_decay first; amsgrad
    divides by the largest v so far.

    Args:
        params: the leaf Values to optimise (model.parameters()), or a list of parameter
            groups: dicts with "params" and any hyperparameters of their own.
        lr: the learning rate.
        betas: beta1 and beta2, the decay rates of the moments, each in [0, 1).
        eps: added to the denominator.
        weight_decay: the L2 penalty (the decoupled decay's rate with
            decoupled_weight_decay).
        amsgrad: AMSGrad: divide by the largest v so far.
        maximize: True ascends the gradient.
        decoupled_weight_decay: AdamW's decay: scale data by 1 - lr * weight_decay.

    Raises:
        ValueError: an empty params, a parameter in two groups, a parameter that is not a
            leaf, or a hyperparameter PyTorch refuses.
        TypeError: a parameter that is not a Value, Values of both engines, or an unknown
            hyperparameter in a group.
    """

    STATE = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    DECOUPLED: ClassVar[bool] = False

    betas = Hyperparameter[tuple[float, float]]()
    eps = Hyperparameter[float]()
    weight_decay = Hyperparameter[float]()
    amsgrad = Hyperparameter[bool]()
    maximize = Hyperparameter[bool]()

    def __init__(self, params: Params, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False) -> None:  # fmt: skip
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "amsgrad": amsgrad,
                                  "maximize": maximize,
                                  "decoupled_weight_decay": decoupled_weight_decay or
                                  self.DECOUPLED})  # fmt: skip

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        _non_negative(group["eps"], "eps", "epsilon value")
        _betas(group["betas"])
        _non_negative(group["weight_decay"], "weight_decay", "weight_decay value")

    def _update(self, kernel: Any, group: dict[str, Any], state: dict[str, np.ndarray]) -> None:
        beta1, beta2 = _betas(group["betas"])
        kernel.adam(as_float(group["lr"], "lr"), beta1, beta2, as_float(group["eps"], "eps"),
                    as_float(group["weight_decay"], "weight_decay"),
                    bool(group["decoupled_weight_decay"]), bool(group["amsgrad"]),
                    bool(group["maximize"]), state["step"], state["exp_avg"],
                    state["exp_avg_sq"], state["max_exp_avg_sq"])

    def _shown(self, group: dict[str, Any]) -> tuple[str, ...]:
        return self.STATE if group["amsgrad"] else self.STATE[:3]


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): data is scaled by
    1 - lr * weight_decay before each step; weight_decay defaults to 0.01, as PyTorch's.

    Args:
        params: the leaf Values to optimise (model.parameters()), or a list of parameter
            groups: dicts with "params" and any hyperparameters of their own.
        lr: the learning rate.
        betas: beta1 and beta2, the decay rates of the moments, each in [0, 1).
        eps: added to the denominator.
        weight_decay: the decoupled decay's rate.
        amsgrad: AMSGrad: divide by the largest v so far.
        maximize: True ascends the gradient.

    Raises:
        ValueError: an empty params, a parameter in two groups, a parameter that is not a
            leaf, or a hyperparameter PyTorch refuses.
        TypeError: a parameter that is not a Value, Values of both engines, or an unknown
            hyperparameter in a group.
    """

    DECOUPLED = True

    def __init__(self, params: Params, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:  # fmt: skip
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)  # fmt: skip


class RMSprop(Optimizer):
    """RMSprop, PyTorch's rule: v = alpha * v + (1 - alpha) * g * g; centered subtracts the
    square of the gradient's running mean; data += -lr * g / (sqrt(v) + eps), through a
    momentum buffer when momentum > 0.

    Args:
        params: the leaf Values to optimise (model.parameters()), or a list of parameter
            groups: dicts with "params" and any hyperparameters of their own.
        lr: the learning rate.
        alpha: the smoothing constant of the running average of squares.
        eps: added to the denominator.
        weight_decay: L2 penalty: weight_decay * data added to the gradient.
        momentum: the momentum factor (0 keeps no buffer).
        centered: normalise by the gradient's estimated variance.
        maximize: True ascends the gradient.

    Raises:
        ValueError: an empty params, a parameter in two groups, a parameter that is not a
            leaf, or a hyperparameter PyTorch refuses.
        TypeError: a parameter that is not a Value, Values of both engines, or an unknown
            hyperparameter in a group.
    """

    STATE = ("step", "square_avg", "grad_avg", "momentum_buffer")

    alpha = Hyperparameter[float]()
    eps = Hyperparameter[float]()
    weight_decay = Hyperparameter[float]()
    momentum = Hyperparameter[float]()
    centered = Hyperparameter[bool]()
    maximize = Hyperparameter[bool]()

    def __init__(self, params: Params, lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False, *, maximize: bool = False) -> None:  # fmt: skip
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps,
                                  "weight_decay": weight_decay, "momentum": momentum,
                                  "centered": centered, "maximize": maximize})  # fmt: skip

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        _non_negative(group["eps"], "eps", "epsilon value")
        _non_negative(group["momentum"], "momentum", "momentum value")
        _non_negative(group["weight_decay"], "weight_decay", "weight_decay value")
        _non_negative(group["alpha"], "alpha", "alpha value")

    def _update(self, kernel: Any, group: dict[str, Any], state: dict[str, np.ndarray]) -> None:
        kernel.rmsprop(as_float(group["lr"], "lr"), as_float(group["alpha"], "alpha"),
                       as_float(group["eps"], "eps"),
                       as_float(group["weight_decay"], "weight_decay"),
                       as_float(group["momentum"], "momentum"), bool(group["centered"]),
                       bool(group["maximize"]), state["step"], state["square_avg"],
                       state["grad_avg"], state["momentum_buffer"])

    def _shown(self, group: dict[str, Any]) -> tuple[str, ...]:
        shown = ["step", "square_avg"]
        if as_float(group["momentum"], "momentum") > 0.0:
            shown.append("momentum_buffer")
        if group["centered"]:
            shown.append("grad_avg")
        return tuple(shown)
