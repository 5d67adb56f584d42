"""python -m fastgrad demo --pinn: a physics-informed network, trained through its second
derivative.

It solves u''(x) = -pi^2 sin(pi x) on [0, 1] with u(0) = u(1) = 0, whose solution is
sin(pi x), with an MLP 1-16-16-1 of tanh units and nothing but the equation: the loss at a
collocation point x is the squared residual (u''(x) + pi^2 sin(pi x))^2, where u'' is built
by `fastgrad.jvp` of `fastgrad.jvp` (forward mode twice; `gradients(..., create_graph=True)`
twice gives the same numbers in a larger graph), so that it is a graph of ordinary nodes
whose own gradients train the network. That loss is written for one point, recorded
once as a Tape, and each step is one `tape.run` over the collocation points (and one over the
two boundary points, whose loss is u^2), then an Adam step.
"""

from __future__ import annotations

import math
import random
import time
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import nn, optim
from ..optim import lr_scheduler
from .moons import progress_bar, pyplot

HIDDEN = 16
POINTS = 64  # collocation points on [0, 1]
BOUNDARY_WEIGHT = 10.0


@dataclass
class Pinn:
    """The network, the one-point losses recorded as tapes, and their input leaves."""

    model: nn.MLP
    x: Any  # the interior tape's input leaf
    interior: Any  # Tape of (u''(x) + pi^2 sin(pi x))^2 / POINTS
    x_boundary: Any
    boundary: Any  # Tape of BOUNDARY_WEIGHT * u(x)^2 / 2

    def u(self, xs: Any) -> np.ndarray:
        """The network's u at each x, eagerly."""
        Value = type(self.x)
        return np.array([u_of(self.model, Value(float(x))).data for x in xs])


def u_of(model: nn.MLP, x: Any) -> Any:
    """The network's u at x: one output, a Value."""
    u = model([x])
    assert not isinstance(u, list)
    return u


def second_derivative(engine: types.ModuleType, model: nn.MLP, x: Any) -> tuple[Any, Any]:
    """u(x) and u''(x) as nodes of one graph: the network's output, and its derivative's
    derivative in x, each built by gradients(create_graph=True)."""
    u = u_of(model, x)
    du = engine.gradients(u, [x], create_graph=True)[0]
    d2u = engine.gradients(du, [x], create_graph=True)[0]
    return u, d2u


def second_derivative_by_jvp(engine: types.ModuleType, model: nn.MLP, x: Any) -> Any:
    """u''(x) as nodes built by forward mode twice (jvp of jvp): a fifth smaller than the
    graph gradients builds twice, and as much faster to run."""
    from ..transforms import jvp

    def slope(x: Any) -> Any:
        return jvp(lambda x: u_of(model, x), (x,), (1.0,), engine=engine)[1]

    return jvp(slope, (x,), (1.0,), engine=engine)[1]


def squared_residual_of(d2u: Any, x: Any) -> Any:
    """(u''(x) + pi^2 sin(pi x))^2, the equation's loss at x, from u''."""
    residual = d2u + math.pi**2 * (x * math.pi).sin()
    return residual * residual


def squared_residual(engine: types.ModuleType, model: nn.MLP, x: Any) -> Any:
    """The loss at x with u'' from gradients(create_graph=True) twice."""
    return squared_residual_of(second_derivative(engine, model, x)[1], x)


def network(engine: types.ModuleType, hidden: int = HIDDEN, seed: int = 0) -> nn.MLP:
    """An MLP 1-hidden-hidden-1 of tanh units, from seed's weights."""
    random.seed(seed)
    return nn.MLP(1, [hidden, hidden, 1], activation="tanh", engine=engine)


def build(engine: types.ModuleType, seed: int, points: int = POINTS) -> Pinn:
    model = network(engine, HIDDEN, seed)
    x = engine.Value(0.5)
    # divided by the number of points, so that run's sum over them is their mean
    d2u = second_derivative_by_jvp(engine, model, x)
    interior = engine.Tape(squared_residual_of(d2u, x) / points)
    x_boundary = engine.Value(0.0)
    u = u_of(model, x_boundary)
    boundary = engine.Tape(BOUNDARY_WEIGHT * u * u / 2)
    return Pinn(model, x, interior, x_boundary, boundary)


def train(engine: types.ModuleType, seed: int = 0, steps: int = 3000, threads: int = 1,
          progress: bool = False) -> tuple[Pinn, list[float], float]:  # fmt: skip
    """Trains with Adam and a cosine schedule; returns the network, the loss per step and
    the seconds taken (the recording included)."""
    start = time.perf_counter()
    pinn = build(engine, seed)
    X = np.linspace(0.0, 1.0, POINTS).reshape(-1, 1)
    X_boundary = np.array([[0.0], [1.0]])
    adam = optim.Adam(pinn.model.parameters(), lr=1e-2)
    schedule = lr_scheduler.CosineAnnealingLR(adam, T_max=steps, eta_min=1e-4)
    bar = progress_bar(steps, "training", "step") if progress else None
    losses = []
    for _ in range(steps):
        adam.zero_grad()
        interior = pinn.interior.run([pinn.x], X, threads=threads)
        boundary = pinn.boundary.run([pinn.x_boundary], X_boundary)
        losses.append(float(interior.sum() + boundary.sum()))
        adam.step()
        schedule.step()
        if bar is not None:
            bar.set_postfix(loss=f"{losses[-1]:.2e}")
            bar.update()
    if bar is not None:
        bar.close()
    return pinn, losses, time.perf_counter() - start


def max_error(pinn: Pinn, samples: int = 1001) -> float:
    """max |u(x) - sin(pi x)| over a grid of [0, 1] finer than the collocation points."""
    xs = np.linspace(0.0, 1.0, samples)
    return float(np.max(np.abs(pinn.u(xs) - np.sin(np.pi * xs))))


def plot(pinn: Pinn, path: str) -> None:
    """u beside sin(pi x), and the residual u'' + pi^2 sin(pi x)."""
    plt = pyplot()
    engine = __import__(type(pinn.x).__module__, fromlist=["gradients"])
    xs = np.linspace(0.0, 1.0, 201)
    residuals = []
    for x in xs:
        leaf = type(pinn.x)(float(x))
        _, d2u = second_derivative(engine, pinn.model, leaf)
        residuals.append(d2u.data + math.pi**2 * math.sin(math.pi * x))
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(xs, np.sin(np.pi * xs), "k-", label="sin(pi x), exact")
    left.plot(xs, pinn.u(xs), "r--", label="the network's u")
    left.set_xlabel("x")
    left.legend()
    left.set_title("u'' = -pi^2 sin(pi x), u(0) = u(1) = 0")
    right.plot(xs, residuals, "b-")
    right.set_xlabel("x")
    right.set_title("residual u'' + pi^2 sin(pi x)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"plot written to {path}")


def main(engine: types.ModuleType, steps: int = 3000, seed: int = 0, threads: int = 1,
         plot_path: str | None = None) -> None:  # fmt: skip
    pinn, losses, seconds = train(engine, seed, steps, threads, progress=True)
    nodes = len(pinn.interior)
    print(f"{steps} steps over {POINTS} collocation points (a {nodes}-node graph with u'' in "
          f"it, run per point) in {seconds:.1f} s: loss {losses[-1]:.2e}, "
          f"max |u - sin(pi x)| = {max_error(pinn):.1e}")  # fmt: skip
    if plot_path:
        plot(pinn, plot_path)
