"""B10: a PINN training pass through the tape, beside PyTorch's double backward.

u'' + pi^2 sin(pi x) = 0 on [0, 1] with an MLP 1-H-H-1 of tanh units, 1,000 collocation
points, the loss per point (u''(x) + pi^2 sin(pi x))^2, recorded once and run with
`tape.run` (forward and backward into the parameters) over the points. Three graphs of that
loss: the one `gradients(..., create_graph=True)` builds twice, the one `jvp` of `jvp`
builds (forward mode twice), and the forward-mode one (value, d/dx, d2/dx2 carried through
each unit) written by hand. PyTorch: float64 on one
thread, batched, `autograd.grad(create_graph=True)` twice then `backward()`. Before any
timing, the losses and every parameter's gradient agree within 1e-12 across the three.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from ..demos.pinn import (
    network,
    second_derivative_by_jvp,
    squared_residual,
    squared_residual_of,
    u_of,
)
from .case import (
    COMPILING,
    JAX,
    Case,
    Contenders,
    in_parameter_order,
    jax_contenders,
    jax_parameters,
    jax_x64_one_thread,
    optional,
    torch_parameters,
)

POINTS = 1000
PYTORCH = "pytorch, float64, 1 thread, autograd.grad twice"
DERIVATIVE = "fastgrad run, gradients graph"
JVP = "fastgrad run, jvp-of-jvp graph"
FORWARD_MODE = "fastgrad run, forward-mode graph by hand"


# the loss with u'' from gradients(create_graph=True) twice: the PINN demo's
derivative_loss = squared_residual


def jvp_loss(engine: Any, model: Any, x: Any) -> Any:
    """The loss with u'' from fastgrad.jvp twice (forward mode over forward mode): a graph
    of ordinary nodes, as gradients' is; the PINN demo's."""
    return squared_residual_of(second_derivative_by_jvp(engine, model, x), x)


def forward_mode_loss(engine: Any, model: Any, x: Any) -> Any:
    """The loss with u'' carried forward through each unit by hand: for a tanh unit of
    z, z', z'', h = tanh z, h' = (1 - h^2) z', h'' = -2 h h' z' + (1 - h^2) z''."""
    first, second, last = model.layers
    h, h1, h2 = [], [], []
    for n in first.neurons:  # z = w x + b: z' = w, z'' = 0
        value = (n.w[0] * x + n.b).tanh()
        slope = (1 - value * value) * n.w[0]
        h.append(value)
        h1.append(slope)
        h2.append(-2 * value * slope * n.w[0])
    g, g1, g2 = [], [], []
    for n in second.neurons:
        z, z1, z2 = engine.dot(n.w, h, n.b), engine.dot(n.w, h1), engine.dot(n.w, h2)
        value = z.tanh()
        s = 1 - value * value
        slope = s * z1
        g.append(value)
        g1.append(slope)
        g2.append(-2 * value * slope * z1 + s * z2)
    d2u = engine.dot(last.neurons[0].w, g2)
    return squared_residual_of(d2u, x)


def torch_pass(torch: Any, model: Any, X: Any) -> tuple[Callable[[], float], list[Any]]:
    """The pass in PyTorch: batched float64, autograd.grad twice, then backward(); and the
    parameters it accumulates grads into."""
    params = torch_parameters(torch, model)
    x = torch.tensor(X, dtype=torch.float64, requires_grad=True)

    def training_pass() -> float:
        h = x
        for i in range(0, len(params) - 2, 2):
            h = torch.tanh(h @ params[i] + params[i + 1])
        u = h @ params[-2] + params[-1]
        (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        (d2u,) = torch.autograd.grad(du.sum(), x, create_graph=True)
        total = ((d2u + math.pi**2 * torch.sin(math.pi * x)) ** 2).sum()
        total.backward()
        return float(total.detach())

    return training_pass, params


JVP_OF_JVP, GRAD_OF_GRAD = ", u'' by jvp of jvp", ", u'' by grad of grad"


def jax_pass(jax: Any, model: Any, X: Any, form: str) -> Contenders:
    """The pass in JAX, jitted: u'' per point by forward mode twice (jvp of jvp, JAX's
    fastest form here) or reverse mode twice (grad of grad), vmapped over the points; the
    summed loss and its gradient with respect to the weights."""
    jnp = jax.numpy

    def u(params: list[Any], x: Any) -> Any:
        h = jnp.reshape(x, (1,))
        for i in range(0, len(params) - 2, 2):
            h = jnp.tanh(h @ params[i] + params[i + 1])
        return (h @ params[-2] + params[-1])[0]

    def second_derivative(params: list[Any], x: Any) -> Any:
        if form == JVP_OF_JVP:

            def slope(x: Any) -> Any:
                return jax.jvp(lambda x: u(params, x), (x,), (1.0,))[1]

            return jax.jvp(slope, (x,), (1.0,))[1]
        return jax.grad(jax.grad(u, argnums=1), argnums=1)(params, x)

    def make() -> Callable[..., Any]:
        def total(params: list[Any], x: Any) -> Any:
            d2u = jax.vmap(second_derivative, in_axes=(None, 0))(params, x)
            return jnp.sum((d2u + math.pi**2 * jnp.sin(math.pi * x)) ** 2)

        return jax.value_and_grad(total)  # type: ignore[no-any-return]

    return jax_contenders(jax, make, (jax_parameters(jax, model), jnp.asarray(X[:, 0])), form)


def _agree(a: list[float], b: list[float], what: str) -> None:
    for x, y in zip(a, b):
        if not math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12 * max(1.0, max(map(abs, b)))):
            raise AssertionError(f"{what}: {x} is not {y}")


def _runner(tape: Any, x: Any, X: Any) -> Callable[[], object]:
    return lambda: tape.run([x], X)


def _pinn_case(hidden: int) -> Case:
    def build() -> Contenders:
        from .. import _core

        X = np.linspace(0.0, 1.0, POINTS).reshape(-1, 1)
        model = network(_core, hidden)
        params = model.parameters()
        contenders: Contenders = {}
        results = []
        for name, loss in ((DERIVATIVE, derivative_loss), (JVP, jvp_loss),
                           (FORWARD_MODE, forward_mode_loss)):  # fmt: skip
            x = _core.Value(0.5)
            tape = _core.Tape(loss(_core, model, x))
            for p in params:
                p.grad = 0.0
            total = float(tape.run([x], X).sum())
            results.append((total, [p.grad for p in params]))
            contenders[name] = _runner(tape, x, X)
        torch = optional("torch")
        for (total, grads), what in zip(results[1:], ("the jvp graph", "the forward-mode graph")):
            _agree([total], [results[0][0]], f"{what}'s loss")
            _agree(grads, results[0][1], f"{what}'s grads")
        if torch is not None:
            theirs, torch_params = torch_pass(torch, model, X)
            _agree([results[0][0]], [theirs()], "PyTorch's loss")
            their_grads = in_parameter_order([p.grad for p in torch_params], model)
            _agree(results[0][1], their_grads, "PyTorch's grads")
            contenders[PYTORCH] = theirs
        jax = jax_x64_one_thread()
        for form in (JVP_OF_JVP, GRAD_OF_GRAD) if jax is not None else ():
            contenders.update(jax_pass(jax, model, X, form))
            their_loss, their_grads = cast(Any, contenders[JAX + form]())
            _agree([results[0][0]], [float(their_loss)], "JAX's loss")
            _agree(results[0][1], in_parameter_order(list(their_grads), model), "JAX's grads")
        return contenders

    title = f"PINN pass, MLP 1-{hidden}-{hidden}-1 tanh, u'' in the loss, {POINTS:,} points"
    jax_names = [JAX + form + timing for form in (JVP_OF_JVP, GRAD_OF_GRAD)
                 for timing in ("", COMPILING)]  # fmt: skip
    return Case("B10", title, 1, "pass", build,
                (DERIVATIVE, JVP, FORWARD_MODE, PYTORCH, *jax_names))


BUILD = "fastgrad gradients(create_graph=True)"
EAGER = "eager ops building the graph"


def _graph_nodes(hidden: int) -> int:
    from .. import _core

    return len(_core.Tape(u_of(network(_core, hidden), _core.Value(0.5))))


def _build_cost_case(hidden: int = 16) -> Case:
    """What building the derivative graph costs, per node of the graph it differentiates,
    beside building that graph itself with eager ops."""

    def build() -> Contenders:
        from .. import _core

        model = network(_core, hidden)
        x = _core.Value(0.5)
        u = u_of(model, x)
        return {BUILD: lambda: _core.gradients(u, [x], create_graph=True),
                EAGER: lambda: model([x])}  # fmt: skip

    title = f"building du/dx of an MLP 1-{hidden}-{hidden}-1 tanh"
    return Case("B10", title, _graph_nodes(hidden), "node", build, (BUILD, EAGER))


DERIVATIVE_CASES: list[Case] = [_pinn_case(16), _pinn_case(32), _build_cost_case()]
