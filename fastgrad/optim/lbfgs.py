"""L-BFGS, as ``torch.optim.LBFGS`` has it: not a rule per parameter but a quasi-Newton step
over all of them, from a history of gradient differences, with an optional strong-Wolfe line
search. Written once over either engine: it reads the parameters' grads and writes their
data, the closure recomputing the loss and its gradient (zero_grad, loss, backward).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._common import as_float, engine_of
from .optimizer import Optimizer, Params, _non_negative

__all__ = ["LBFGS"]

_VECTORS = ("d", "prev_flat_grad")
_HISTORY = ("old_dirs", "old_stps")
_NUMBERS = ("t", "H_diag", "prev_loss")


def _cubic_interpolate(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float,
                       bounds: tuple[float, float] | None = None) -> float:  # fmt: skip
    """The minimiser of the cubic through two points with their slopes, within bounds."""
    low, high = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = d2_square**0.5
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return float(min(max(min_pos, low), high))
    return (low + high) / 2.0


def _strong_wolfe(obj_func: Callable[[list[float], float, np.ndarray], tuple[float, np.ndarray]],
                  x: list[float], t: float, d: np.ndarray, f: float, g: np.ndarray, gtd: float,
                  c1: float = 1e-4, c2: float = 0.9, tolerance_change: float = 1e-9,
                  max_ls: int = 25) -> tuple[float, np.ndarray, float, int]:  # fmt: skip
    """A step t along d meeting the strong Wolfe conditions (bracketing, then zooming by
    cubic interpolation), as PyTorch's: (loss, gradient, t, evaluations)."""
    d_norm = float(np.abs(d).max())
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = float(g_new.dot(d))
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket: list[float] = []
    bracket_f: list[float] = []
    bracket_g: list[np.ndarray] = []
    bracket_gtd: list[float] = []
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                               bounds=(min_step, max_step))  # fmt: skip
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new.dot(d))
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1],
                               bracket_f[1], bracket_gtd[1])  # fmt: skip
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else \
                    min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new.dot(d))
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


def _number(loss: Any) -> float:
    return float(loss.data) if engine_of(loss) is not None else as_float(loss, "closure's loss")


class LBFGS(Optimizer):
    """L-BFGS (PyTorch's algorithm, after minFunc): each step(closure) runs up to max_iter
    iterations of a quasi-Newton update from the last history_size gradient differences,
    with step lr, or with line_search_fn="strong_wolfe" a line search; it stops where the
    gradient's largest entry is at most tolerance_grad, or a step or the loss changes by
    less than tolerance_change, or after max_eval evaluations (default max_iter * 5 / 4).
    One parameter group; step requires the closure.

    Args:
        params: the leaf Values to optimise (model.parameters()).
        lr: the step length (the line search's first trial step with "strong_wolfe").
        max_iter: the most iterations per step().
        max_eval: the most loss evaluations per step() (max_iter * 5 // 4 by default).
        tolerance_grad: stop when the gradient's largest |entry| is at most this.
        tolerance_change: stop when a step's or the loss's change is below this.
        history_size: how many gradient differences the quasi-Newton update keeps.
        line_search_fn: None (fixed steps of lr) or "strong_wolfe".

    Raises:
        ValueError: an unknown line_search_fn, parameter groups (LBFGS takes one), a count
            that is not a whole number >= 1, or a hyperparameter PyTorch refuses.
        TypeError: a parameter that is not a Value.
    """

    def __init__(self, params: Params, lr: float = 1, max_iter: int = 20,
                 max_eval: int | None = None, tolerance_grad: float = 1e-7,
                 tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None) -> None:  # fmt: skip
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"line_search_fn must be None or 'strong_wolfe', not "
                             f"{line_search_fn!r}")  # fmt: skip
        super().__init__(params, {"lr": lr, "max_iter": max_iter, "max_eval": max_eval,
                                  "tolerance_grad": tolerance_grad,
                                  "tolerance_change": tolerance_change,
                                  "history_size": history_size,
                                  "line_search_fn": line_search_fn})  # fmt: skip
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._history: dict[str, Any] = {"func_evals": 0, "n_iter": 0}

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        for name in ("max_iter", "max_eval", "history_size"):
            value = group[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LBFGS {name} must be a whole number >= 1, not {value!r}")
        _non_negative(group["tolerance_grad"], "tolerance_grad", "tolerance_grad value")
        _non_negative(group["tolerance_change"], "tolerance_change", "tolerance_change value")

    @property
    def _params(self) -> list[Any]:
        return list(self.param_groups[0]["params"])

    def _flat_grad(self) -> np.ndarray:
        return np.array([p.grad for p in self._params], dtype=np.float64)

    def _add_grad(self, step_size: float, update: np.ndarray) -> None:
        for p, u in zip(self._params, update.tolist()):
            p.data = p.data + step_size * u

    def _directional_evaluate(self, closure: Callable[[], Any], x: list[float], t: float,
                              d: np.ndarray) -> tuple[float, np.ndarray]:  # fmt: skip
        self._add_grad(t, d)
        loss = _number(closure())
        flat_grad = self._flat_grad()
        for p, data in zip(self._params, x):
            p.data = data
        return loss, flat_grad

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Up to max_iter iterations of L-BFGS.

        Args:
            closure: a function that clears the grads, computes the loss, backpropagates
                and returns the loss.

        Returns:
            The loss of closure's first call.

        Raises:
            TypeError: no closure.
        """
        if closure is None:
            raise TypeError("LBFGS.step needs a closure that recomputes the loss and its grads")
        self._see_edits()
        group = self.param_groups[0]
        self._check(group)
        lr = as_float(group["lr"], "lr")
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        history_size = group["history_size"]
        state = self._history
        orig_loss = closure()
        loss = _number(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad()
        if float(np.abs(flat_grad).max()) <= tolerance_grad:
            return orig_loss
        d: Any = state.get("d")
        t: Any = state.get("t")
        old_dirs: Any = state.get("old_dirs")
        old_stps: Any = state.get("old_stps")
        ro: Any = state.get("ro")
        H_diag: Any = state.get("H_diag")
        prev_flat_grad: Any = state.get("prev_flat_grad")
        prev_loss: Any = state.get("prev_loss")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro, H_diag = [], [], [], 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y.dot(s))
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / float(y.dot(y))
                num_old = len(old_dirs)
                al = [0.0] * num_old
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = float(old_stps[i].dot(q)) * ro[i]
                    q = q + -al[i] * old_dirs[i]
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = float(old_dirs[i].dot(r)) * ro[i]
                    r = r + (al[i] - be_i) * old_stps[i]
                d = r
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(np.abs(flat_grad).sum())) * lr
            else:
                t = lr
            gtd = float(flat_grad.dot(d))
            if gtd > -tolerance_change:
                break
            ls_func_evals = 0
            if group["line_search_fn"] is not None:
                x_init = [p.data for p in self._params]

                def obj_func(x: list[float], t: float, d: np.ndarray) -> tuple[float, np.ndarray]:
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd,
                    max_ls=max_eval - current_evals)  # fmt: skip
                self._add_grad(t, d)
                opt_cond = float(np.abs(flat_grad).max()) <= tolerance_grad
            else:
                self._add_grad(t, d)
                opt_cond = False
                if n_iter != max_iter:
                    loss = _number(closure())
                    flat_grad = self._flat_grad()
                    opt_cond = float(np.abs(flat_grad).max()) <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if float(np.abs(d * t).max()) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break
        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)  # fmt: skip
        return orig_loss

    # ---- state: the history, under parameter 0 as PyTorch keeps it ----

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs, in PyTorch's layout.

        Returns:
            {"state": {0: the history, directions and counters}, "param_groups": [the
            hyperparameters and "params"]}; load_state_dict() takes it.
        """
        self._see_edits()
        entry: dict[str, Any] = {}
        for key, value in self._history.items():
            if key in _VECTORS:
                entry[key] = value.tolist() if value is not None else None
            elif key in _HISTORY:
                entry[key] = [v.tolist() for v in value]
            else:
                entry[key] = value
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(self._params)))
        return {"state": {0: entry}, "param_groups": [group]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores what state_dict() returned; checks all of it before it changes anything.

        Args:
            state_dict: what state_dict() returned for the same parameters.

        Raises:
            ValueError: a state that does not fit these parameters or is not LBFGS's.
        """
        if not isinstance(state_dict, Mapping) or not isinstance(state_dict.get("state"),
                                                                 Mapping):  # fmt: skip
            raise ValueError("an optimizer state has 'state' and 'param_groups'")
        groups = state_dict.get("param_groups")
        count = len(self._params)
        if not isinstance(groups, list) or len(groups) != 1 or not isinstance(groups[0], Mapping) \
                or list(groups[0].get("params", ())) != list(range(count)):
            raise ValueError("the state's parameter groups do not fit this optimizer's")
        hyper = {k: v for k, v in groups[0].items() if k != "params"}
        if not set(self.defaults) <= set(hyper):
            raise ValueError(f"the state's hyperparameters {sorted(hyper)} are not LBFGS's "
                             f"{sorted(self.defaults)}")  # fmt: skip
        candidate = {**hyper, "params": self.param_groups[0]["params"]}
        self._check(candidate)
        states = dict(state_dict["state"])
        saved = states.pop(0, states.pop("0", {"func_evals": 0, "n_iter": 0}))
        if states or not isinstance(saved, Mapping):
            raise ValueError("LBFGS keeps its state under parameter 0 alone")
        history = self._decoded(dict(saved), count)
        self.param_groups[0] = candidate
        self._history = history

    @staticmethod
    def _decoded(saved: dict[str, Any], count: int) -> dict[str, Any]:
        def vector(x: Any) -> np.ndarray:
            v = np.array([as_float(e, "an LBFGS state entry") for e in x], dtype=np.float64)
            if v.shape != (count,):
                raise ValueError(f"an LBFGS state vector has {len(v)} entries for {count} "
                                 "parameters")  # fmt: skip
            return v

        history: dict[str, Any] = {}
        for key, value in saved.items():
            if key in ("func_evals", "n_iter"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"LBFGS state {key} must be a whole number >= 0")
                history[key] = value
            elif key in _VECTORS:
                history[key] = None if value is None else vector(value)
            elif key in _HISTORY:
                history[key] = [vector(v) for v in value]
            elif key == "ro":
                history[key] = [as_float(v, "ro") for v in value]
            elif key in _NUMBERS:
                history[key] = None if value is None else as_float(value, key)
            else:
                raise ValueError(f"LBFGS has no state entry {key!r}")
        if "func_evals" not in history or "n_iter" not in history:
            raise ValueError("an LBFGS state holds func_evals and n_iter")
        return history
